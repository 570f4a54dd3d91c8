"""How visible the joins are where a frame was made from the frame after it (pure numpy; no Blender)."""
from __future__ import annotations

import numpy as np


def seam_ratio(images: np.ndarray) -> float:
    """Mean absolute step between neighbouring pixels along the border between the pixels that frame t shares
    with frame t + 1 and those it does not, divided by the step at the same places in frame t + 1; pooled over
    every story and frame t < T - 1 of ``images`` (uint8, (N, T, H, W, 3)). 1.0: the border is as smooth as the
    picture around it; above 1: a seam. NaN when no frame has such a border."""
    images = np.asarray(images, dtype=np.int16)
    steps_here, steps_next = 0.0, 0.0
    for story in images:
        for here, after in zip(story[:-1], story[1:]):
            shared = (here == after).all(axis=-1)
            for axis in (0, 1):
                a, b = _neighbours(axis)
                border = shared[a] != shared[b]
                steps_here += np.abs(here[a] - here[b])[border].sum()
                steps_next += np.abs(after[a] - after[b])[border].sum()
    return float(steps_here / steps_next) if steps_next else float("nan")


def _neighbours(axis: int) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """Index pairs of each pixel and its neighbour below (axis 0) or to its right (axis 1)."""
    first, second = [slice(None), slice(None)], [slice(None), slice(None)]
    first[axis], second[axis] = slice(None, -1), slice(1, None)
    return tuple(first), tuple(second)
