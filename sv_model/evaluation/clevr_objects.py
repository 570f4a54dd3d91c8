"""CLEVR-SV objects as the attribute evaluator sees them: what a frame should show, and the training targets that
the builder's instance masks give (plain numpy; the network is in :mod:`.attribute_net`).

An object is the tuple (shape, colour, material, size) of indices into the vocabularies of ``sv_data.clevr.scene``
(docs/clevr.md); a frame is a multiset of objects.
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from sv_data.clevr.scene import COLOR_NAMES, MATERIALS, NUM_OBJECTS, SHAPES, SIZE_NAMES, SLOT_SIZE
from sv_model.evaluation.scores import ObjectKey, ObjectSet

CONDITION_KIND = "clevr-objects"  # a shard's condition kind when its conditions are these object slots
ATTRIBUTES = (("shape", SHAPES), ("color", COLOR_NAMES), ("material", MATERIALS), ("size", SIZE_NAMES))
ATTRIBUTE_SIZES = tuple(len(values) for _, values in ATTRIBUTES)
EXTRA_NAMES = ("masks", *(name for name, _ in ATTRIBUTES))  # the builder's extra/ arrays that training needs

INPUT_SIZE = 64  # the evaluator looks at frames of this size (StoryGAN draws 64x64)
STRIDE = 1  # its output grid is INPUT_SIZE / STRIDE cells on a side
GRID = INPUT_SIZE // STRIDE
IGNORE = -1


def describe(key: ObjectKey) -> str:
    """(0, 1, 1, 0) -> 'large red metal cube'."""
    shape, color, material, size = key
    return f"{SIZE_NAMES[size]} {COLOR_NAMES[color]} {MATERIALS[material]} {SHAPES[shape]}"


def objects_from_conditions(conditions: np.ndarray) -> list[list[ObjectSet]]:
    """StoryGAN's 75-d CLEVR vectors (n, T, 75) -> per story, per frame, the multiset of objects it asks for.

    Slot k holds one-hots of shape, colour, material and size (then x, y, z); an all-zero slot is an object not
    yet added."""
    conditions = np.asarray(conditions)
    n, frames = conditions.shape[:2]
    slots = conditions[..., : NUM_OBJECTS * SLOT_SIZE].reshape(n, frames, NUM_OBJECTS, SLOT_SIZE)
    bounds = np.cumsum((0, *ATTRIBUTE_SIZES))
    present = np.abs(slots[..., : bounds[-1]]).sum(axis=-1) > 0
    indices = np.stack([slots[..., a:b].argmax(axis=-1) for a, b in zip(bounds, bounds[1:])], axis=-1)
    return [
        [Counter(tuple(int(v) for v in indices[i, t, k]) for k in range(NUM_OBJECTS) if present[i, t, k]) for t in range(frames)]
        for i in range(n)
    ]


def resize_mask(mask: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """Nearest-neighbour resize of an instance mask (H, W) to (size, size), sampling at pixel centres."""
    h, w = mask.shape
    if (h, w) == (size, size):
        return mask
    rows = ((np.arange(size) + 0.5) * h / size).astype(np.int64)
    cols = ((np.arange(size) + 0.5) * w / size).astype(np.int64)
    return mask[np.ix_(rows, cols)]


def anchor_pixel(visible: np.ndarray) -> tuple[int, int]:
    """The visible pixel nearest to the centroid of the visible pixels: a point that lies on the object even when
    another object hides its middle or it is seen only in part."""
    ys, xs = np.nonzero(visible)
    nearest = np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2)
    return int(ys[nearest]), int(xs[nearest])


def frame_targets(mask: np.ndarray, attributes: np.ndarray, sigma: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Training targets of one frame on the GRID x GRID output grid.

    mask: instance mask (H, W), 0 = background, k + 1 = object k; attributes: (objects, 4) indices per object.
    Returns ``heat`` float32 (GRID, GRID), a Gaussian bump of peak 1 at each object's anchor cell, and ``labels``
    int64 (4, GRID, GRID): per attribute, the class of the object covering most of each cell, IGNORE on background
    cells. An anchor cell always carries its own object's attributes, even where a neighbour covers more of it.
    """
    mask = resize_mask(np.asarray(mask))
    cells = mask.reshape(GRID, STRIDE, GRID, STRIDE).transpose(0, 2, 1, 3).reshape(GRID, GRID, STRIDE * STRIDE)
    owners = np.stack([(cells == k).sum(axis=-1) for k in range(len(attributes) + 1)], axis=-1).argmax(axis=-1)
    table = np.concatenate([np.full((1, 4), IGNORE), np.asarray(attributes, np.int64)])
    labels = table[owners].transpose(2, 0, 1).copy()
    heat = np.zeros((GRID, GRID), np.float32)
    yy, xx = np.mgrid[0:GRID, 0:GRID]
    for k in range(len(attributes)):
        visible = mask == k + 1
        if not visible.any():
            continue
        y, x = (v // STRIDE for v in anchor_pixel(visible))
        heat = np.maximum(heat, np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * sigma**2)))
        heat[y, x] = 1.0
        labels[:, y, x] = attributes[k]
    return heat, labels.astype(np.int8)


def attribute_values(objects: ObjectSet, attribute: int) -> Counter:
    """A frame's objects reduced to one attribute (an index into ATTRIBUTES): value -> how many objects have it."""
    values: Counter = Counter()
    for key, count in objects.items():
        values[key[attribute]] += count
    return values


def attribute_errors(seen: list[ObjectSet], wanted: list[ObjectSet]) -> dict[str, float]:
    """Per attribute, over frames: the share of wanted objects whose value of that attribute has no counterpart
    among the objects seen in their frame (the frame's objects reduced to that attribute, e.g. the shapes
    {cube, cylinder, cylinder}, compared as multisets)."""
    total = sum(sum(frame.values()) for frame in wanted)
    return {
        name: sum(sum((attribute_values(w, a) - attribute_values(s, a)).values()) for s, w in zip(seen, wanted))
        / max(total, 1)
        for a, (name, _) in enumerate(ATTRIBUTES)
    }


def confusions(seen: list[ObjectSet], wanted: list[ObjectSet]) -> dict[str, dict[str, int]]:
    """Per attribute, in the frames where exactly one value of it was read wrong: "true read as seen", counted,
    most frequent first."""
    found: dict[str, Counter] = {name: Counter() for name, _ in ATTRIBUTES}
    for s, w in zip(seen, wanted):
        for a, (name, names) in enumerate(ATTRIBUTES):
            seen_values, wanted_values = attribute_values(s, a), attribute_values(w, a)
            missing, extra = wanted_values - seen_values, seen_values - wanted_values
            if sum(missing.values()) == 1 and sum(extra.values()) == 1:
                found[name][f"{names[next(iter(missing))]} read as {names[next(iter(extra))]}"] += 1
    return {name: dict(counts.most_common()) for name, counts in found.items()}
