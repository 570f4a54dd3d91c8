"""PyTorch datasets over a shard, for training and evaluation code.

They return uint8 image tensors (channels first) so that batches travel to the GPU small and are turned into
floats there. Each DataLoader worker opens the file itself on first use, and a batch of indices is read with one
call per array (``__getitems__``, or :meth:`StoryDataset.batch` already collated) instead of one call per story.
"""
from __future__ import annotations

import os

import numpy as np
import torch
from torch.utils.data import Dataset

from sv_data.shards import ShardReader

FRAME_POOL = "frame_pool"  # optional extra: uint8 (N, T, K, H, W, 3), K candidate frames per story frame
IN_MEMORY_LIMIT = 64 << 20  # conditions and labels are read once per process when together at most this large


def _channels_first(images: np.ndarray) -> torch.Tensor:
    """(..., H, W, 3) uint8 -> (..., 3, H, W) uint8 tensor."""
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(images, -1, -3)))


class StoryDataset(Dataset):
    """Whole stories: ``images`` uint8 (T, 3, H, W), ``conditions`` float32 (T, D), ``labels`` uint8 (T, L),
    ``index`` (the story's row in the shard).

    With ``random_pool_frame=True`` and a shard that has ``extra/frame_pool``, each frame is drawn at random from
    its clip's candidate frames every time the story is read, as Pororo-SV's original loaders did.
    """

    def __init__(self, path: os.PathLike | str, indices=None, random_pool_frame: bool = False):
        self.reader = ShardReader(path)
        self.info = self.reader.info
        self.indices = np.arange(len(self.reader)) if indices is None else np.asarray(indices, dtype=np.int64)
        if random_pool_frame and FRAME_POOL not in self.info.spec.extras:
            raise ValueError(f"{path}: random_pool_frame needs extra/{FRAME_POOL}, which this shard lacks")
        self.random_pool_frame = random_pool_frame
        spec, n = self.info.spec, len(self.reader)
        small = n * spec.frames_per_story * (4 * spec.condition_dim + len(spec.label_names)) <= IN_MEMORY_LIMIT
        self._in_memory: dict[str, np.ndarray] | None = {} if small else None

    def __getstate__(self):
        return {**self.__dict__, "_in_memory": None if self._in_memory is None else {}}  # each process reads its own

    def __len__(self) -> int:
        return len(self.indices)

    def per_story(self, name: str, rows: np.ndarray) -> np.ndarray:
        """Rows of ``conditions`` or ``labels``: small next to the images, so a shuffled batch's many one-story
        reads of them are saved by holding the whole array, read once per process, where it fits."""
        if self._in_memory is None:
            return self.reader.read(name, rows)
        if name not in self._in_memory:
            self._in_memory[name] = self.reader.read(name, np.arange(len(self.reader)))
        return self._in_memory[name][rows]

    def _images(self, rows: np.ndarray) -> np.ndarray:
        if not self.random_pool_frame:
            return self.reader.read("images", rows)
        pool = self.reader.read(f"extra/{FRAME_POOL}", rows)  # (n, T, K, H, W, 3)
        n, t, k = pool.shape[:3]
        pick = np.random.randint(0, k, size=(n, t))  # seeded per worker by the DataLoader
        return pool[np.arange(n)[:, None], np.arange(t)[None, :], pick]

    def batch(self, items) -> dict[str, torch.Tensor]:
        """Items ``items`` as one batch: ``images`` uint8 (B, T, 3, H, W), ``conditions`` (B, T, D), ``labels``
        (B, T, L) and ``index`` (B,), each made once, for loaders that take whole batches rather than items."""
        rows = self.indices[np.asarray(items, dtype=np.int64)]
        return {
            "images": _channels_first(self._images(rows)),
            "conditions": torch.from_numpy(self.per_story("conditions", rows)),
            "labels": torch.from_numpy(self.per_story("labels", rows)),
            "index": torch.from_numpy(rows),
        }

    def __getitems__(self, items) -> list[dict]:
        batch = self.batch(items)
        return [{**{key: batch[key][j] for key in ("images", "conditions", "labels")}, "index": int(batch["index"][j])}
                for j in range(len(batch["index"]))]

    def __getitem__(self, item: int) -> dict:
        return self.__getitems__([item])[0]


class FrameDataset(Dataset):
    """Single frames with their story, for the image discriminator: ``image`` uint8 (3, H, W), ``condition``
    (D), ``label`` (L), ``story_conditions`` (T, D), ``index`` and ``frame``. Item ``i`` is frame ``i % T`` of
    story ``i // T`` (of the stories in ``indices``). A batch (``__getitems__``, which DataLoader calls) reads each
    story it touches once, however many of its frames it holds."""

    def __init__(self, path: os.PathLike | str, indices=None):
        self.stories = StoryDataset(path, indices)
        self.info = self.stories.info

    def __len__(self) -> int:
        return len(self.stories) * self.info.frames_per_story

    def __getitems__(self, items) -> list[dict]:
        items = np.asarray(items, dtype=np.int64)
        t = self.info.frames_per_story
        rows, frames = self.stories.indices[items // t], items % t
        images = _channels_first(self.stories.reader.read_images(rows, frames))
        conditions = torch.from_numpy(self.stories.per_story("conditions", rows))
        labels = torch.from_numpy(self.stories.per_story("labels", rows))
        return [
            {
                "image": images[j],
                "condition": conditions[j, frames[j]],
                "label": labels[j, frames[j]],
                "story_conditions": conditions[j],
                "index": int(rows[j]),
                "frame": int(frames[j]),
            }
            for j in range(len(items))
        ]

    def __getitem__(self, item: int) -> dict:
        return self.__getitems__([item])[0]
