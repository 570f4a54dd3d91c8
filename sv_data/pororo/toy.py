"""A tiny cartoon to try ``sv-data build-pororo`` on, made from scratch: a few episode videos and their clip table.

    python -m sv_data.pororo.toy DIR        # writes DIR/videos/*.mp4 and DIR/clips.csv
    sv-data build-pororo --videos DIR/videos --descriptions DIR/clips.csv --out DIR/toy-sv

Each episode is one MPEG-4 video at 10 fps in which coloured discs (the characters) glide over a sky and snow;
each clip is a few seconds of it, described by a sentence naming the characters that are on screen.
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np

from sv_data.files import atomic_file
from sv_data.pororo import video  # noqa: F401  (first: it quietens FFmpeg before cv2 loads)
from sv_data.pororo.characters import PORORO_CHARACTERS

import cv2  # noqa: E402  (isort: skip)

WIDTH, HEIGHT, FPS = 160, 120, 10
COLOURS = {  # BGR
    "Pororo": (200, 120, 40), "Loopy": (180, 130, 250), "Crong": (60, 180, 60), "Eddy": (40, 160, 230),
    "Poby": (230, 230, 230), "Petty": (200, 80, 200), "Tongtong": (40, 40, 200), "Rody": (150, 150, 150),
    "Harry": (60, 200, 230),
}
PLACES = ("in the snow", "by the lake", "near Pororo's house", "on the hill", "in the forest")
ACTIONS = ("play", "talk", "run around", "laugh together", "look at the sky")


def _frame(t: int, cast: list[str], rng_offset: int) -> np.ndarray:
    frame = np.empty((HEIGHT, WIDTH, 3), np.uint8)
    frame[: HEIGHT * 2 // 3] = (235, 200, 150)  # sky
    frame[HEIGHT * 2 // 3:] = (245, 245, 245)  # snow
    for k, name in enumerate(cast):
        # inside the centre square that a build keeps
        x = int((WIDTH - HEIGHT) / 2 + HEIGHT / (len(cast) + 1) * (k + 1) + 8 * np.sin((t + 7 * k + rng_offset) / 6))
        y = int(HEIGHT * 0.62 + 6 * np.cos((t + 5 * k) / 4))
        cv2.circle(frame, (x, y), 14, COLOURS[name], -1)
        cv2.circle(frame, (x - 4, y - 4), 3, (20, 20, 20), -1)
        cv2.circle(frame, (x + 4, y - 4), 3, (20, 20, 20), -1)
    return frame


def write_toy_show(folder: Path, episodes: int = 3, clips_per_episode: int = 8, seed: int = 0) -> tuple[Path, Path]:
    """Write the videos and the clip table; returns (videos folder, CSV path)."""
    rng = np.random.default_rng(seed)
    videos = Path(folder) / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    rows = [("episode", "clip", "video", "start", "end", "description")]
    for e in range(1, episodes + 1):
        name = f"toy_ep{e}.mp4"
        writer = cv2.VideoWriter(str(videos / name), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT))
        t = 0
        for c in range(1, clips_per_episode + 1):
            cast = list(rng.choice(PORORO_CHARACTERS, size=int(rng.integers(1, 4)), replace=False))
            length = int(rng.integers(2 * FPS, 4 * FPS))
            for i in range(length):
                writer.write(_frame(t + i, cast, e))
            who = " and ".join(cast) if len(cast) < 3 else f"{', '.join(cast[:-1])} and {cast[-1]}"
            verb = ACTIONS[int(rng.integers(len(ACTIONS)))] if len(cast) > 1 else "plays alone"
            rows.append((f"toy_ep{e}", c, name, f"{t / FPS:g}", f"{(t + length) / FPS:g}",
                         f"{who} {verb} {PLACES[int(rng.integers(len(PLACES)))]}."))
            t += length
        writer.release()
    table = Path(folder) / "clips.csv"
    with atomic_file(table, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    return videos, table


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m sv_data.pororo.toy DIR")
    videos_dir, csv_path = write_toy_show(Path(sys.argv[1]))
    print(f"sv-data build-pororo --videos {videos_dir} --descriptions {csv_path} --out {Path(sys.argv[1]) / 'toy-sv'}")
