"""Videos whose frames say which frame they are, for the Pororo tests; and the check that the code survives each
format and the centre crop and resize of a build.

Each frame shows a 4x4 grid of black and white cells inside its centre square: 16 bits, the low 10 the frame's
index in its video, the high 6 a number (from 1) for the video. A sampled image can thus be traced to its exact
frame. (Video 0 is not allowed: its first frame would be all black, which a shard's validation rightly rejects.)
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sv_data.pororo.video import open_video, square_resize  # first: it quietens FFmpeg before cv2 loads

import cv2  # noqa: E402  (isort: skip)

GRID = 4
WIDTH, HEIGHT = 96, 72  # landscape, so that the centre crop matters
FRAME_BITS = 10


def coded_frame(index: int, video: int = 1) -> np.ndarray:
    """uint8 (HEIGHT, WIDTH, 3): the code of (video, index) in the centre square; grey sides."""
    assert 1 <= video < 64 and 0 <= index < 1 << FRAME_BITS
    value = (video << FRAME_BITS) | index
    frame = np.full((HEIGHT, WIDTH, 3), 128, dtype=np.uint8)
    left = (WIDTH - HEIGHT) // 2
    cell = HEIGHT // GRID
    for bit in range(GRID * GRID):
        row, col = divmod(bit, GRID)
        shade = 255 if value >> bit & 1 else 0
        frame[row * cell:(row + 1) * cell, left + col * cell:left + (col + 1) * cell] = shade
    return frame


def read_code(image: np.ndarray) -> tuple[int, int]:
    """(video, frame index) from a square image made from a coded frame (any size, RGB or BGR)."""
    side = image.shape[0]
    cell = side / GRID
    value = 0
    for bit in range(GRID * GRID):
        row, col = divmod(bit, GRID)
        inner = image[int((row + 0.3) * cell):int((row + 0.7) * cell), int((col + 0.3) * cell):int((col + 0.7) * cell)]
        if inner.mean() > 128:
            value |= 1 << bit
    return value >> FRAME_BITS, value & ((1 << FRAME_BITS) - 1)


def write_video(path: Path, frames: int, fps: float = 10, video: int = 1) -> Path:
    """A real video file of ``frames`` coded frames: MPEG-4 in .mp4, Motion-JPEG in .avi, or an animated GIF."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images = [coded_frame(i, video) for i in range(frames)]
    if path.suffix == ".gif":
        pictures = [Image.fromarray(im) for im in images]
        pictures[0].save(path, save_all=True, append_images=pictures[1:], duration=round(1000 / fps), loop=0)
        return path
    fourcc = {".mp4": "mp4v", ".avi": "MJPG"}[path.suffix]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (WIDTH, HEIGHT))
    assert writer.isOpened(), f"this OpenCV cannot write {fourcc}"
    for image in images:
        writer.write(image)
    writer.release()
    return path


def damaged_copy(source: Path, dest: Path, start: float, stop: float | None = None) -> Path:
    """``source`` damaged part-way into ``dest``: its bytes from fraction ``start`` to ``stop`` of the file zeroed,
    or, without ``stop``, the file cut off at ``start`` (a download that stopped)."""
    data = bytearray(Path(source).read_bytes())
    a = int(len(data) * start)
    if stop is None:
        del data[a:]
    else:
        b = int(len(data) * stop)
        data[a:b] = bytes(b - a)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(bytes(data))
    return dest


@pytest.mark.parametrize("suffix", [".mp4", ".avi", ".gif"])
def test_frame_codes_survive_each_format_and_the_resize(tmp_path, suffix):
    path = write_video(tmp_path / f"v{suffix}", frames=40, video=5)
    capture = open_video(path)
    decoded = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        decoded.append(read_code(square_resize(frame, 24)))
    capture.release()
    assert decoded == [(5, i) for i in range(40)]


def pororoqa_descriptions() -> Path:
    """The real PororoQA description file, from the shared folder beside the repository (or $SVKIT_SHARED)."""
    shared = Path(os.environ["SVKIT_SHARED"]) if os.environ.get("SVKIT_SHARED") else \
        Path(__file__).resolve().parents[2] / "shared"
    path = shared / "data" / "pororoqa" / "descriptions.csv"
    if not path.is_file():
        pytest.fail(f"{path} is missing: these tests need the shared data folder beside the repository, or "
                    "SVKIT_SHARED set to it")
    return path
