"""Reading a shard: its header (:func:`read_info`) and its stories, by runs of HDF5 hyperslabs (:class:`ShardReader`)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import h5py
import numpy as np

from sv_data.shards.header import damaged, h5_reason, info_from, open_shard, shape_problems
from sv_data.shards.layout import COLUMNS, EXTRA_GROUP, ShardError, ShardInfo, StoryBatch


def read_info(path: os.PathLike | str) -> ShardInfo:
    """Open a shard just to read and check its header; raises :class:`ShardError` (one line) if it cannot."""
    path = Path(path)
    f, spec = open_shard(path)
    with f:
        try:
            return info_from(f, path, spec)
        except OSError as exc:
            raise damaged(path, exc) from None


class ShardReader:
    """Random access to the stories of a shard.

    The HDF5 file is opened on first use in each process, so that a reader can be handed to DataLoader workers
    (each of which then holds its own handle) without sharing one across ``fork``.
    """

    def __init__(self, path: os.PathLike | str):
        self.path = Path(path)
        f, spec = open_shard(self.path)
        with f:
            try:
                self.info = info_from(f, self.path, spec)
                problems = shape_problems(f, spec)
            except OSError as exc:
                raise damaged(self.path, exc) from None
        if problems:  # reading would return rows that do not belong together
            more = f" (and {len(problems) - 1} more; see sv-data validate)" if len(problems) > 1 else ""
            raise ShardError(self.path, f"{problems[0]}{more}")
        self._file: h5py.File | None = None
        self._pid: int | None = None

    def __len__(self) -> int:
        return self.info.num_stories

    def __getstate__(self):
        return {"path": self.path, "info": self.info, "_file": None, "_pid": None}

    @property
    def file(self) -> h5py.File:
        if self._file is None or self._pid != os.getpid():
            self._file, _ = open_shard(self.path)
            self._pid = os.getpid()
        return self._file

    def close(self) -> None:
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = None

    def read(self, name: str, indices) -> np.ndarray:
        """Rows ``indices`` of one array (``images``, ``labels``, ``extra/...``), in the order asked for.

        The rows are read as runs of consecutive indices, one slice each: h5py's own fancy indexing is two orders
        of magnitude slower on chunked, compressed arrays.
        """
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if indices.size and (indices.min() < 0 or indices.max() >= len(self)):
            raise IndexError(f"{self.path}: story index out of range 0..{len(self) - 1}")
        ds = self.file[name]
        text = h5py.check_string_dtype(ds.dtype) is not None
        unique, inverse = np.unique(indices, return_inverse=True)
        runs = np.split(unique, np.flatnonzero(np.diff(unique) != 1) + 1) if unique.size else []
        try:
            data = self._text_runs(ds, runs) if text else self._numeric_runs(ds, runs)
        except OSError as exc:  # a chunk that cannot be read or decompressed
            raise ShardError(self.path, f"damaged data in {name} ({h5_reason(exc)})") from None
        return data if np.array_equal(unique, indices) else data[inverse]

    @staticmethod
    def _text_runs(ds: h5py.Dataset, runs: list[np.ndarray]) -> np.ndarray:
        parts = [ds.asstr()[int(run[0]) : int(run[-1]) + 1] for run in runs]
        return np.concatenate(parts) if parts else np.empty((0, *ds.shape[1:]), dtype=object)

    @staticmethod
    def _numeric_runs(ds: h5py.Dataset, runs: list[np.ndarray]) -> np.ndarray:
        """Each run straight into one output array through HDF5's own selections: h5py's slicing costs about as
        much again per call as decompressing a 64x64 story, and a training batch is many short runs."""
        rest = ds.shape[1:]
        data = np.empty((sum(run.size for run in runs), *rest), ds.dtype)
        file_space = ds.id.get_space()
        memory_spaces: dict[int, h5py.h5s.SpaceID] = {}
        done = 0
        for run in runs:
            n = run.size
            file_space.select_hyperslab((int(run[0]), *(0,) * len(rest)), (n, *rest))
            # A memory space of the run's own shape: HDF5 then writes into the view without a selection to walk.
            if n not in memory_spaces:
                memory_spaces[n] = h5py.h5s.create_simple((n, *rest))
            ds.id.read(memory_spaces[n], file_space, data[done : done + n])
            done += n
        return data

    def read_images(self, indices, frames=None, block: int = 64) -> np.ndarray:
        """uint8 (n, T, H, W, 3), or (n, H, W, 3) for one frame per story when ``frames`` gives it.

        With ``frames``, each story asked for is read once (its chunk is decompressed once, however many of its
        frames are wanted), ``block`` distinct stories at a time, with :meth:`read`'s contiguous slices.
        """
        if frames is None:
            return self.read("images", indices)
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        frames = np.asarray(frames, dtype=np.int64).reshape(-1)
        if frames.shape != indices.shape:
            raise ValueError(f"{self.path}: {indices.size} story indices but {frames.size} frame indices")
        t, (h, w) = self.info.frames_per_story, self.info.image_size
        if frames.size and (frames.min() < 0 or frames.max() >= t):
            raise IndexError(f"{self.path}: frame index out of range 0..{t - 1}")
        out = np.empty((indices.size, h, w, 3), np.uint8)
        unique, inverse = np.unique(indices, return_inverse=True)
        for start, stop in iter_blocks(unique.size, block):
            stories = self.read("images", unique[start:stop])  # (stop - start, T, H, W, 3)
            wanted = (inverse >= start) & (inverse < stop)
            out[wanted] = stories[inverse[wanted] - start, frames[wanted]]
        return out

    def read_stories(self, indices) -> StoryBatch:
        return StoryBatch(
            **{column.name: self.read(column.name, indices) for column in COLUMNS},
            extra={name: self.read(f"{EXTRA_GROUP}/{name}", indices) for name in self.info.spec.extras},
        )

    def __enter__(self) -> "ShardReader":
        return self

    def __exit__(self, *exc):
        self.close()


def iter_blocks(n: int, block: int) -> Iterable[tuple[int, int]]:
    """(start, stop) of consecutive blocks of at most ``block`` items covering range(n)."""
    for start in range(0, n, block):
        yield start, min(start + block, n)
