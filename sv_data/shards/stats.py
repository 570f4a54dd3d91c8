"""Figures computed over a whole shard."""
from __future__ import annotations

import hashlib
import os

import numpy as np

from sv_data.shards.reader import ShardReader, iter_blocks


def images_sha256(path: os.PathLike | str, block: int = 256) -> str:
    """SHA-256 of a shard's frames: the uint8 pixels of every story in order (N, T, H, W, 3), C order. It depends
    on the pixels alone, not on how the file stores or compresses them."""
    digest = hashlib.sha256()
    with ShardReader(path) as reader:
        for start, stop in iter_blocks(len(reader), block):
            digest.update(np.ascontiguousarray(reader.read_images(range(start, stop))).tobytes())
    return digest.hexdigest()


def label_frequencies(path: os.PathLike | str, block: int = 1024) -> dict[str, float]:
    """Fraction of frames on which each label is on."""
    with ShardReader(path) as reader:
        n = len(reader)
        totals = np.zeros(len(reader.info.spec.label_names), dtype=np.int64)
        for start, stop in iter_blocks(n, block):
            totals += reader.read("labels", range(start, stop)).sum(axis=(0, 1), dtype=np.int64)
        frames = max(n * reader.info.frames_per_story, 1)
        return {name: float(c) / frames for name, c in zip(reader.info.spec.label_names, totals)}
