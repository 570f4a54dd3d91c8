"""What the two Pororo-SV builders' StoryJobs share: the shard header, and stories in batches whose conditions
are the encoded texts of their frames (a .npy file that each worker maps into memory once)."""
from __future__ import annotations

from typing import Iterator, Mapping, Sequence

import numpy as np

from sv_data.pororo.encoder import CONDITION_DIM
from sv_data.shards import ExtraSpec, ShardSpec, StoryBatch

DATASET = "pororo-sv"
CHUNK_SIZE = 200  # stories per part file: the unit of resumption of the story writing
MIN_IMAGE_SIZE = 8  # the smallest side of the frames either builder writes
STORIES_PER_BATCH = 16  # stories per StoryBatch, to bound memory when frame pools are large


class EncodedStoryJob:
    """A :class:`sv_data.build.StoryJob` over ``stories_by_split``: per split, one entry per story, from which
    :meth:`batch` makes the stories. Only plain values are pickled to the workers."""

    def __init__(self, config: dict, stories_by_split: Mapping[str, Sequence], conditions: str):
        self._config = config
        self.stories_by_split = stories_by_split
        self.conditions_path = conditions
        self._conditions: np.ndarray | None = None

    def __getstate__(self):
        return {**self.__dict__, "_conditions": None}

    def config(self) -> dict:
        return self._config

    def shard_spec(self, split: str, frames_per_story: int, label_names: Sequence[str],
                   extras: Mapping[str, ExtraSpec]) -> ShardSpec:
        size = self._config["image_size"]
        return ShardSpec(
            dataset=DATASET,
            split=split,
            frames_per_story=frames_per_story,
            image_size=(size, size),
            label_names=tuple(label_names),
            condition_dim=CONDITION_DIM,
            build_config=self._config,
            condition_kind="sentence-embedding",
            labels_in_condition=True,
            extras=extras,
        )

    def setup(self) -> None:
        self._conditions = np.load(self.conditions_path, mmap_mode="r")

    def stories(self, split: str, start: int, stop: int) -> Iterator[StoryBatch]:
        if self._conditions is None:
            self.setup()
        for first in range(start, stop, STORIES_PER_BATCH):
            yield self.batch(self.stories_by_split[split][first:min(first + STORIES_PER_BATCH, stop)])

    def conditions_of(self, rows) -> np.ndarray:
        """The encoded texts of ``rows`` (any shape of row indices)."""
        return self._conditions[np.asarray(rows, dtype=np.int64)]

    def batch(self, stories: Sequence) -> StoryBatch:
        raise NotImplementedError
