"""Pororo-SV frame sampling: clips per second with 1 and 2 workers, against a plain decode of every frame.

Writes test videos with OpenCV (H.264 where the installed OpenCV can encode it, else MPEG-4 Part 2; the codec
used is printed; 854x480, 30 fps, a moving picture), cuts them into consecutive clips of 3 to 6 seconds, and times
in one run:

- a plain sequential decode of every frame of every video (``VideoCapture.read`` in a loop, one process), with
  one decoder thread, as each sampling worker uses, and with FFmpeg's default threads, for reference;
- the sampling phase of ``sv-data build-pororo`` (one frame per clip, 64x64, cached to disk), with 1 and with
  2 worker processes (each with one decoder thread).

Targets (docs/benchmarks.md): sampling with 1 worker costs at most 1.2x the one-thread plain decode, and 2
workers sample at least 1.8x as many clips per second as 1. Each figure is the best of ``--repeat`` runs; the
2-worker time includes starting the worker processes (also shown alone), as a build's does.

    python benchmarks/pororo.py [--minutes 6] [--videos 6] [--frames-per-clip 1] [--repeat 3] [--keep DIR]

With ``--keep DIR`` the videos are kept in DIR with a manifest (``videos.json``: minutes, videos, fps, size,
codec) and reused by a later run only when it asks for the same videos; otherwise they are written again.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from sv_data.pororo.frames import VideoTask, run_sampling
from sv_data.pororo.video import ClipRequest, open_video

import cv2  # noqa: E402  (after sv_data.pororo.video, which quietens FFmpeg)

WIDTH, HEIGHT, FPS = 854, 480, 30
# The fourccs tried, in order: H.264 under the names FFmpeg builds know it by, then MPEG-4 Part 2.
CODECS = {"avc1": "H.264", "H264": "H.264", "X264": "H.264", "mp4v": "MPEG-4 Part 2"}
MANIFEST = "videos.json"


@contextlib.contextmanager
def _quiet_stderr():
    """OpenCV and FFmpeg print straight to the file descriptor when an encoder is missing; probing is not news."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def pick_codec(folder: Path) -> str:
    """The first fourcc of CODECS that this OpenCV can encode and decode again at the benchmark's size."""
    probe = folder / ".probe.mp4"
    frame = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    try:
        for fourcc in CODECS:
            with _quiet_stderr():
                writer = cv2.VideoWriter(str(probe), cv2.VideoWriter_fourcc(*fourcc), FPS, (WIDTH, HEIGHT))
                if not writer.isOpened():
                    continue
                for _ in range(3):
                    writer.write(frame)
                writer.release()
                capture = open_video(probe)
                ok = capture.read()[0]
                capture.release()
            if ok:
                return fourcc
    finally:
        probe.unlink(missing_ok=True)
    raise SystemExit(f"this OpenCV can encode none of {', '.join(CODECS)} (H.264 or MPEG-4)")


def write_videos(folder: Path, videos: int, seconds: float, fourcc: str, seed: int = 0) -> list[Path]:
    """Videos of a textured picture that pans and changes, so that the codec has real work to do."""
    rng = np.random.default_rng(seed)
    paths = []
    for v in range(videos):
        texture = cv2.resize(rng.integers(0, 256, (HEIGHT // 8, WIDTH // 4, 3), dtype=np.uint8),
                             (WIDTH * 2, HEIGHT), interpolation=cv2.INTER_CUBIC)
        path = folder / f"episode{v:02d}.mp4"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), FPS, (WIDTH, HEIGHT))
        if not writer.isOpened():
            raise SystemExit(f"this OpenCV cannot encode {fourcc} at {WIDTH}x{HEIGHT}")
        for i in range(int(seconds * FPS)):
            offset = (3 * i) % WIDTH
            frame = texture[:, offset:offset + WIDTH].copy()
            cv2.circle(frame, (100 + (5 * i) % (WIDTH - 200), HEIGHT // 2), 60, (40 * v % 255, 200, 90), -1)
            cv2.putText(frame, str(i), (20, 60), cv2.FONT_HERSHEY_SIMPLEX, 2, (255, 255, 255), 3)
            writer.write(frame)
        writer.release()
        paths.append(path)
    return paths


def kept_videos(folder: Path, wanted: dict) -> tuple[list[Path], str] | None:
    """The videos of an earlier run with --keep, and their codec, if they are the ones ``wanted``."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    paths = [folder / name for name in manifest.get("files", [])]
    if {k: manifest.get(k) for k in wanted} != wanted or not paths or not all(p.is_file() for p in paths):
        return None
    return paths, manifest.get("codec", "?")


def prepare_videos(folder: Path, minutes: float, videos: int, keep: bool) -> tuple[list[Path], str]:
    """The benchmark's videos in ``folder``: those kept from an earlier run if they match, else new ones."""
    wanted = {"minutes": minutes, "videos": videos, "fps": FPS, "width": WIDTH, "height": HEIGHT}
    if keep:
        found = kept_videos(folder, wanted)
        if found is not None:
            print(f"using the {videos} videos kept in {folder} ({found[1]})")
            return found
        (folder / MANIFEST).unlink(missing_ok=True)  # a run stopped while writing leaves no manifest behind
        for old in folder.glob("episode*.mp4"):
            old.unlink()
    fourcc = pick_codec(folder)
    codec = f"{CODECS[fourcc]}, fourcc {fourcc}"
    seconds = 60 * minutes / videos
    began = time.perf_counter()
    paths = write_videos(folder, videos, seconds, fourcc)
    print(f"wrote {videos} videos of {seconds:.0f} s ({WIDTH}x{HEIGHT}, {FPS} fps, {codec}) "
          f"in {time.perf_counter() - began:.0f} s")
    if keep:
        manifest = {**wanted, "codec": codec, "files": [p.name for p in paths]}
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return paths, codec


def cut_into_clips(path: Path, seconds: float, rng: np.random.Generator) -> list[ClipRequest]:
    clips, start = [], 0.0
    while start < seconds - 1:
        end = min(start + rng.uniform(3, 6), seconds)
        clips.append(ClipRequest(f"{path.stem}/{len(clips) + 1}", start, end))
        start = end
    return clips


def plain_decode(paths: list[Path], one_thread: bool) -> tuple[int, float]:
    frames, began = 0, time.perf_counter()
    for path in paths:
        capture = open_video(path) if one_thread else cv2.VideoCapture(str(path))
        while capture.read()[0]:
            frames += 1
        capture.release()
    return frames, time.perf_counter() - began


def sampling(tasks: list[VideoTask], workers: int, cache: Path) -> float:
    shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir(parents=True)
    began = time.perf_counter()
    problems = [p for _, found in run_sampling(tasks, workers) for p in found if p is not None]
    elapsed = time.perf_counter() - began
    if problems:
        raise SystemExit(f"sampling failed: {problems[0]}")
    return elapsed


def pool_start(workers: int) -> float:
    """Seconds to start ``workers`` spawned processes that import the sampler, as a build does."""
    began = time.perf_counter()
    with mp.get_context("spawn").Pool(workers) as pool:
        pool.map(abs, range(workers))  # any call: the cost is in starting the processes
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=6.0, help="total length of the test videos")
    parser.add_argument("--videos", type=int, default=6, help="number of test videos")
    parser.add_argument("--frames-per-clip", type=int, default=1)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each measurement; the best is shown")
    parser.add_argument("--keep", type=Path, help="write the videos here and keep them (default: a temp folder)")
    args = parser.parse_args()

    folder = args.keep or Path(tempfile.mkdtemp(prefix="svkit-pororo-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    seconds = 60 * args.minutes / args.videos
    try:
        paths, codec = prepare_videos(folder, args.minutes, args.videos, keep=args.keep is not None)
        rng = np.random.default_rng(1)
        tasks = [
            VideoTask(video=p.name, path=str(p), cache=str(folder / "cache" / f"{p.stem}.npz"),
                      requests=tuple(cut_into_clips(p, seconds, rng)), frames_per_clip=args.frames_per_clip,
                      image_size=args.image_size, seed=0)
            for p in paths
        ]
        clips = sum(len(t.requests) for t in tasks)
        print(f"{clips} clips of {60 * args.minutes / clips:.1f} s on average, {args.minutes:g} min of video "
              f"({codec})")

        frames, _ = plain_decode(paths, one_thread=True)  # also warms the file cache
        # The measurements take turns, so that a change in the machine's load falls on all of them alike.
        timings: dict[str, list[float]] = {}
        for _ in range(args.repeat):
            for name, measure in (("decode_1", lambda: plain_decode(paths, one_thread=True)[1]),
                                  ("decode_default", lambda: plain_decode(paths, one_thread=False)[1]),
                                  ("one", lambda: sampling(tasks, 1, folder / "cache")),
                                  ("two", lambda: sampling(tasks, 2, folder / "cache")),
                                  ("start", lambda: pool_start(2))):
                timings.setdefault(name, []).append(measure())
        decode_1, decode_default, one, two, start = (min(timings[n]) for n in
                                                     ("decode_1", "decode_default", "one", "two", "start"))

        print(f"plain decode of every frame, 1 decoder thread:       {decode_1:7.2f} s  {frames / decode_1:7.0f} "
              f"frames/s  ({clips / decode_1:.1f} clips/s)")
        print(f"plain decode of every frame, FFmpeg default threads: {decode_default:7.2f} s  "
              f"{frames / decode_default:7.0f} frames/s  ({clips / decode_default:.1f} clips/s)")
        print(f"sampling, 1 worker:  {one:7.2f} s  {clips / one:7.1f} clips/s")
        print(f"sampling, 2 workers: {two:7.2f} s  {clips / two:7.1f} clips/s  (of which {start:.2f} s to start "
              "the 2 processes)")
        print(f"cost of sampling (1 worker) / plain decode (1 thread): {one / decode_1:.2f}x   (target <= 1.2x)")
        print(f"speed-up of 2 workers over 1:                          {one / two:.2f}x   (target >= 1.8x)")
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
