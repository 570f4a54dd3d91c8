"""A score's floor: the same model, with the same noise, fed the conditions of *other* test stories, and scored
against each story's own ground truth exactly as the model is. What a model scores above its floor is what it
draws because it was told to; a score close to its floor (SSIM on CLEVR-SV's grey floors) says little.

Plain numpy: :mod:`.evaluate` and the training loop's validation draw the floor, this module says whose
conditions each story gets.
"""
from __future__ import annotations

import numpy as np

# Scores that never compare a frame with its own story: fed another coherent story, a model draws as consistent
# stories and the same distribution of frames (a derangement feeds the same conditions, only to other stories),
# so their "floor" would equal the model by construction and tell nothing.
NO_FLOOR = frozenset({"consistency", "fid", "evaluator_fd"})


def derangement(n: int, seed: int) -> np.ndarray:
    """A permutation of range(n) that moves every index (story i is fed the conditions of story result[i] != i),
    drawn uniformly from all such permutations by a generator seeded with ``seed``. Needs n >= 2."""
    if n < 2:
        raise ValueError(f"no story can take another's conditions among {n}")
    rng = np.random.default_rng(seed)
    while True:  # about e draws on average: the share of permutations without a fixed point tends to 1/e
        order = rng.permutation(n)
        if not (order == np.arange(n)).any():
            return order
