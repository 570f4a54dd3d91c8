"""Figures computed over a whole shard."""
from __future__ import annotations

import os

import numpy as np

from sv_data.shards.reader import ShardReader, iter_blocks


def label_frequencies(path: os.PathLike | str, block: int = 1024) -> dict[str, float]:
    """Fraction of frames on which each label is on."""
    with ShardReader(path) as reader:
        n = len(reader)
        totals = np.zeros(len(reader.info.spec.label_names), dtype=np.int64)
        for start, stop in iter_blocks(n, block):
            totals += reader.read("labels", range(start, stop)).sum(axis=(0, 1), dtype=np.int64)
        frames = max(n * reader.info.frames_per_story, 1)
        return {name: float(c) / frames for name, c in zip(reader.info.spec.label_names, totals)}
