"""Which frames of a clip are kept: a uniform random choice that depends only on (seed, clip).

Frames are chosen while the video streams by, without knowing beforehand how many frames the clip has (a GIF's
or an MKV's frame count is only an estimate until it has been decoded): every frame of the clip gets a random key
from a generator seeded by (seed, clip), and the k frames with the smallest keys are kept. That is a uniform
random k-subset of the clip's frames; the smallest key of all marks the frame that becomes the story image.
"""
from __future__ import annotations

import hashlib
import heapq
from dataclasses import dataclass

import numpy as np

_KEY_BLOCK = 256


def clip_seed(seed: int, clip_key: str) -> np.random.SeedSequence:
    digest = hashlib.sha256(clip_key.encode("utf-8")).digest()
    return np.random.SeedSequence([seed & 0xFFFFFFFF, *np.frombuffer(digest[:16], dtype="<u4").tolist()])


@dataclass
class ChosenFrames:
    """The kept frames of one clip, in time order. Where the clip has fewer than k frames, its frames repeat
    (in time order) to fill the k places."""

    images: np.ndarray  # (k, ...) as given to FrameChooser.keep
    frame_index: np.ndarray  # (k,) int64, index of the frame in its video (from 0)
    frame_time: np.ndarray  # (k,) float64, seconds
    primary: int  # position of the story image among the k


class FrameChooser:
    """Call :meth:`offer` for each frame of the clip in order; where it returns True, the caller decodes the frame
    and hands it over with :meth:`keep` (only about ``k * (1 + ln(frames / k))`` frames of a clip are ever
    decoded into images)."""

    def __init__(self, seed: int, clip_key: str, k: int):
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.k = k
        self._rng = np.random.default_rng(clip_seed(seed, clip_key))
        self._keys = np.empty(0)
        self._next = 0
        self._pending: float | None = None
        self._heap: list[tuple[float, int, float, np.ndarray]] = []  # (-key, frame index, time, image)

    def _draw(self) -> float:
        if self._next == len(self._keys):
            self._keys = self._rng.random(_KEY_BLOCK)
            self._next = 0
        self._next += 1
        return float(self._keys[self._next - 1])

    def offer(self) -> bool:
        """The next frame of the clip goes by: True if it is, so far, one of the k kept."""
        key = self._draw()
        if len(self._heap) < self.k or key < -self._heap[0][0]:
            self._pending = key
            return True
        return False

    def keep(self, frame_index: int, time: float, image: np.ndarray) -> None:
        if self._pending is None:
            raise RuntimeError("keep() without an accepted offer()")
        entry = (-self._pending, frame_index, time, image)
        self._pending = None
        if len(self._heap) < self.k:
            heapq.heappush(self._heap, entry)
        else:
            heapq.heapreplace(self._heap, entry)

    def result(self) -> ChosenFrames | None:
        """None when the clip had no frame."""
        if not self._heap:
            return None
        entries = sorted(self._heap, key=lambda e: e[1])
        primary = min(range(len(entries)), key=lambda i: -entries[i][0])
        entries = [entries[i % len(entries)] for i in range(self.k)]
        return ChosenFrames(
            images=np.stack([e[3] for e in entries]),
            frame_index=np.array([e[1] for e in entries], dtype=np.int64),
            frame_time=np.array([e[2] for e in entries], dtype=np.float64),
            primary=primary,
        )
