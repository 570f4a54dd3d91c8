"""Sampling the frames of every clip of one video in a single pass (OpenCV, FFmpeg backend; GIFs included).

The video is read once, from its first frame to the end of its last clip; it is never seeked, because frame-exact
seeking is not reliable across containers. Frames that no clip keeps are only grabbed (decoded, not converted),
so sampling costs about what decoding the video costs. The decoder runs one thread: parallelism comes from
running one video per worker process, which scales better than FFmpeg's frame threads.

A frame that is one flat colour after the crop and resize (a fade to black) is never drawn: shards hold no blank
images. A clip with nothing else is reported as blank.

Damage costs only the clips that need it: a frame that cannot be decoded fails the clips that drew it (the others'
draws do not depend on it), and where decoding stops early the clips that ended before are kept.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from sv_data.pororo.sampling import FrameChooser

# OpenCV and FFmpeg would otherwise print their own complaints about damaged files; ours go into the report.
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
import cv2  # noqa: E402

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".gif", ".mov", ".m4v")
# A reported frame count is a guess for some containers (from duration and rate): how far short of it the decoded
# count may fall before we call the video truncated.
_COUNT_SLACK_FRAMES = 2
_COUNT_SLACK_FRACTION = 0.05
_TIME_EPSILON = 1e-6  # seconds; timestamps computed from rates are off by float rounding


@dataclass(frozen=True)
class ClipRequest:
    key: str  # "episode/clip"; with the build's seed it decides which frames are drawn
    start: float | None = None  # seconds; None: from the first frame
    end: float | None = None  # seconds, exclusive; None: to the last frame


@dataclass
class SampledClip:
    key: str
    problem: str | None  # why nothing could be sampled; the arrays below are then empty
    images: np.ndarray  # (k, S, S, 3) uint8 RGB
    frame_index: np.ndarray  # (k,) int64
    frame_time: np.ndarray  # (k,) float64 seconds
    primary: int = 0


def square_resize(bgr: np.ndarray, size: int) -> np.ndarray:
    """Centre square crop, resized to size x size, as RGB."""
    h, w = bgr.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    crop = bgr[top:top + side, left:left + side]
    interpolation = cv2.INTER_AREA if side >= size else cv2.INTER_CUBIC
    return cv2.cvtColor(cv2.resize(crop, (size, size), interpolation=interpolation), cv2.COLOR_BGR2RGB)


def open_video(path: Path) -> "cv2.VideoCapture":
    return cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])


def sample_video(
    path: Path, requests: Sequence[ClipRequest], frames_per_clip: int, image_size: int, seed: int
) -> list[SampledClip]:
    """For each request, ``frames_per_clip`` frames drawn uniformly inside its time range, or the reason why not."""
    path = Path(path)
    capture = open_video(path)
    if not capture.isOpened():
        return [_failed(r, "cannot open video: not a video file, or damaged") for r in requests]
    try:
        return _Pass(capture, path, requests, frames_per_clip, image_size, seed).run()
    finally:
        capture.release()


def _failed(request: ClipRequest, reason: str) -> SampledClip:
    empty = np.empty(0)
    return SampledClip(request.key, reason, np.empty((0, 0, 0, 3), np.uint8), empty.astype(np.int64), empty)


class _Pass:
    def __init__(self, capture, path: Path, requests, frames_per_clip: int, image_size: int, seed: int):
        self.capture = capture
        self.path = path
        self.requests = list(requests)
        self.image_size = image_size
        self.choosers = [FrameChooser(seed, r.key, frames_per_clip) for r in self.requests]
        fps = capture.get(cv2.CAP_PROP_FPS)
        self.frame_duration = 1.0 / fps if fps and math.isfinite(fps) and fps > 0 else 0.0
        self.reported_frames = max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0), 0)
        self.decoded = 0
        self.at_end = False
        self.damaged: dict[int, int] = {}  # clip -> the first frame it drew that could not be decoded
        self.saw_blank = [False] * len(self.requests)

    def run(self) -> list[SampledClip]:
        starts = [r.start or 0.0 for r in self.requests]
        ends = [math.inf if r.end is None else r.end for r in self.requests]
        waiting = sorted(range(len(self.requests)), key=lambda i: starts[i])  # not yet begun
        active: list[int] = []
        last_end = max(ends, default=0.0)
        previous_time = -math.inf
        while waiting or active:
            if not self.capture.grab():
                self.at_end = True
                break
            time = self.capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
            if not time > previous_time:  # a container without usable timestamps
                time = 0.0 if self.decoded == 0 else previous_time + self.frame_duration
            previous_time = time
            while waiting and starts[waiting[0]] <= time + _TIME_EPSILON:
                active.append(waiting.pop(0))
            active = [i for i in active if time < ends[i] - _TIME_EPSILON and i not in self.damaged]
            self._offer(self.decoded, time, active)
            self.decoded += 1
            if time >= last_end:
                break
        duration = previous_time + self.frame_duration if self.decoded else 0.0
        return [self._result(i, starts[i], ends[i], duration) for i in range(len(self.requests))]

    def _offer(self, index: int, time: float, active: list[int]) -> None:
        drawn = [i for i in active if self.choosers[i].offer()]  # the clips that keep this frame, so far
        if not drawn:
            return
        ok, frame = self.capture.retrieve()
        if not ok or frame is None:
            # Only the clips that drew this frame lose their draw; the others (those already finished, those that
            # pass over it, those still to come) are sampled as from an intact video, so the pass goes on.
            for i in drawn:
                self.damaged[i] = index
            return
        image = square_resize(frame, self.image_size)
        if image.min() == image.max():
            # One flat colour (a fade to black): never a story image; it is passed over as if not in the clip.
            for i in drawn:
                self.saw_blank[i] = True
            return
        for i in drawn:
            self.choosers[i].keep(index, time, image)

    def _truncated(self) -> bool:
        if self.path.suffix.lower() == ".gif" and not _gif_complete(self.path):
            return True
        if not self.at_end or not self.reported_frames:
            return False
        slack = max(_COUNT_SLACK_FRAMES, _COUNT_SLACK_FRACTION * self.reported_frames)
        return self.decoded < self.reported_frames - slack

    def _result(self, i: int, start: float, end: float, duration: float) -> SampledClip:
        request = self.requests[i]
        if i in self.damaged:
            return _failed(request, f"damaged video: frame {self.damaged[i]} cannot be decoded")
        if self.decoded == 0:
            return _failed(request, "damaged video: no frame can be decoded")
        reaches_end = end == math.inf or (self.at_end and end > duration - _TIME_EPSILON)
        if reaches_end and self._truncated():
            known = f" of {self.reported_frames}" if self.reported_frames else ""
            return _failed(request, f"truncated video: decoding stops after {self.decoded}{known} frames")
        chosen = self.choosers[i].result()
        if chosen is None and self.at_end and start >= duration:
            return _failed(request, f"time range outside the video: the clip starts at {start:g} s, the video "
                                    f"lasts {duration:.3f} s")
        if chosen is None and self.saw_blank[i]:
            return _failed(request, "blank clip: every frame is one flat colour")
        if chosen is None:
            return _failed(request, f"empty time range: {start:g}-{end:g} s holds no frame")
        if self.at_end and end != math.inf and end > duration + self.frame_duration:
            return _failed(request, f"time range outside the video: the clip ends at {end:g} s, the video "
                                    f"lasts {duration:.3f} s")
        return SampledClip(request.key, None, chosen.images, chosen.frame_index, chosen.frame_time, chosen.primary)


def _gif_complete(path: Path) -> bool:
    """A GIF ends with its trailer byte (``;``); a cut-off download does not, and FFmpeg then just stops early."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() == 0:
            return False
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b";"
