"""Phase 1 of a Pororo build: sampling the clips of each video into a cache file, in worker processes or Ray actors.

Each video is one :class:`VideoTask`; its result is written atomically to ``task.cache`` (an .npz holding, per
clip, the k drawn frames, their indices and times, the position of the story image, or the reason the clip
failed). A task whose cache file exists and names the same clips is never run again. This module stays light
(numpy; OpenCV only inside the workers), because every worker process imports it.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from sv_data.files import atomic_file
from sv_data.workers import run_work


@dataclass(frozen=True)
class VideoTask:
    video: str  # relative to --videos
    path: str
    cache: str
    requests: tuple  # of video.ClipRequest
    frames_per_clip: int
    image_size: int
    seed: int


def run_sampling(tasks: list[VideoTask], workers: int, ray_address: str | None = None
                 ) -> Iterator[tuple[str, list[str | None]]]:
    """Run :func:`sample_to_cache` on every task, in ``workers`` processes (Ray actors with ``ray_address``);
    yields as videos are finished."""
    if not tasks:
        return
    tasks = sorted(tasks, key=_task_size, reverse=True)  # long videos first, so that no worker finishes last alone
    if ray_address is None and (workers == 1 or len(tasks) == 1):  # here, with OpenCV's own threads
        for task in tasks:
            yield sample_to_cache(task)
        return
    yield from run_work(SamplingWork(), tasks, workers, lambda n: None, ray_address=ray_address,
                        shared_dir=Path(tasks[0].cache).parent,
                        items_per_task=max(1, min(16, len(tasks) // (8 * workers))))


def _task_size(task: VideoTask) -> int:
    try:
        return os.path.getsize(task.path)
    except OSError:
        return 0


def _init_sampler() -> None:
    import cv2

    cv2.setNumThreads(1)


class SamplingWork:
    """Phase 1 as work for worker processes or Ray actors (:func:`sv_data.workers.run_work`): one video per item."""

    def setup(self) -> None:
        _init_sampler()

    def run(self, task: VideoTask, report) -> tuple[str, list[str | None]]:
        # The driver found the file; one that this node cannot see must fail loudly, not be cached as unreadable.
        if not Path(task.path).is_file():
            raise FileNotFoundError(f"{task.path}: not visible on node {os.uname().nodename}; the videos of a Ray "
                                    "build must be on storage that all nodes share, at the same path")
        return sample_to_cache(task)

    def name(self, task: VideoTask) -> str:
        return f"video {task.video}"


def sample_to_cache(task: VideoTask) -> tuple[str, list[str | None]]:
    """Sample one video's clips and store the frames (atomically) in ``task.cache``; the clips' problems."""
    from sv_data.pororo.video import sample_video

    sampled = sample_video(Path(task.path), task.requests, task.frames_per_clip, task.image_size, task.seed)
    k, size = task.frames_per_clip, task.image_size
    images = np.zeros((len(sampled), k, size, size, 3), dtype=np.uint8)
    frame_index = np.full((len(sampled), k), -1, dtype=np.int64)
    frame_time = np.full((len(sampled), k), np.nan, dtype=np.float64)
    for row, clip in enumerate(sampled):
        if clip.problem is None:
            images[row], frame_index[row], frame_time[row] = clip.images, clip.frame_index, clip.frame_time
    arrays = {
        "keys": np.array([c.key for c in sampled], dtype=str),
        "problems": np.array([c.problem or "" for c in sampled], dtype=str),
        "images": images,
        "frame_index": frame_index,
        "frame_time": frame_time,
        "primary": np.array([c.primary for c in sampled], dtype=np.int64),
    }
    with atomic_file(task.cache) as f:
        np.savez(f, **arrays)
    return task.video, [c.problem for c in sampled]


def cached_outcome(task: VideoTask) -> list[str | None] | None:
    """The clips' problems from a finished cache file that matches the task, or None."""
    try:
        with np.load(task.cache) as cached:
            keys, problems = cached["keys"].tolist(), cached["problems"].tolist()
    except (OSError, KeyError, ValueError):
        return None
    if keys != [r.key for r in task.requests]:
        return None
    return [p or None for p in problems]


def load_samples(path: str) -> dict[str, np.ndarray]:
    with np.load(path) as cached:
        return {name: cached[name] for name in ("images", "frame_index", "frame_time", "primary")}


class SampleFiles:
    """The sampled-frames files that one build's story writer reads, the last few kept in memory (a window of
    clips touches a few videos only). One per build, never shared between builds: a later build into the same
    folder rewrites files of the same names, which a cache keyed by path alone would serve stale."""

    def __init__(self, keep: int = 8):
        self.keep = keep
        self._files: OrderedDict[str, dict[str, np.ndarray]] = OrderedDict()

    def __call__(self, path: str) -> dict[str, np.ndarray]:
        if path in self._files:
            self._files.move_to_end(path)
            return self._files[path]
        self._files[path] = loaded = load_samples(path)
        while len(self._files) > self.keep:
            self._files.popitem(last=False)
        return loaded
