"""Stories per second into a training loop, against per-frame PNG files resized with PIL.

The PNG loader is what StoryGAN's reference code does: one 320x240 PNG per frame, opened with PIL and resized to
64x64 when the story is read, one story per item of a shuffled DataLoader. The shard is read by the training
loop's own loader (``sv_model.data.stream_loader``: shuffled batches of whole stories). Both use the same batch
size and number of DataLoader workers, and each batch is turned into float tensors as a training step would.
After one epoch to warm up, each side is timed over ``--repeat`` epochs, the two sides taking turns so that a busy
neighbour slows both alike; the best epoch of each counts.

    python benchmarks/loader.py [--stories 2000] [--workers 0 2] [--repeat 3] [--shard existing.h5]

Without ``--shard`` it makes CLEVR-like stories of T=4 frames at 64x64 (and their 320x240 PNG frames). With
``--shard existing.h5`` the PNG frames are those of the shard's first ``--stories`` stories, scaled up to 320x240,
and read at the shard's own T and image size; the shard's loader draws its batches from all of its stories.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from sv_data.shards import ShardError, ShardReader, ShardSpec, ShardWriter, StoryBatch, read_info
from sv_model.data import STORY_STREAM, stream_loader

T, SIZE, PNG_SIZE = 4, 64, (320, 240)


def clevr_like_frames(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """T frames of a grey floor with k coloured discs on frame k: compresses like real renders, unlike noise."""
    yy, xx = np.mgrid[0:height, 0:width]
    floor = (100 + 40 * yy / height + rng.normal(0, 3, (height, width)))[..., None].repeat(3, axis=2)
    frames = np.empty((T, height, width, 3), np.uint8)
    canvas = floor.copy()
    for k in range(T):
        cx, cy, r = rng.uniform(0.15, 0.85) * width, rng.uniform(0.3, 0.85) * height, rng.uniform(0.05, 0.12) * width
        disc = (xx - cx) ** 2 + (yy - cy) ** 2 < r**2
        canvas[disc] = rng.integers(20, 255, 3)
        frames[k] = np.clip(canvas, 0, 255)
    return frames


def pngs_from_shard(shard: Path, folder: Path, stories: int) -> Path:
    """The shard's first ``stories`` stories as per-frame PNG files at 320x240, named as StoryGAN's CLEVR data."""
    png_dir = folder / "png"
    png_dir.mkdir()
    with ShardReader(shard) as reader:
        for start in range(0, stories, 100):
            for j, story in enumerate(reader.read("images", range(start, min(start + 100, stories)))):
                for k, frame in enumerate(story):
                    Image.fromarray(frame).resize(PNG_SIZE, Image.BICUBIC).save(
                        png_dir / f"CLEVR_new_{start + j:06d}_{k + 1}.png")
    return png_dir


def make_data(folder: Path, stories: int) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    png_dir = folder / "png"
    png_dir.mkdir()
    spec = ShardSpec("benchmark", "train", T, (SIZE, SIZE), ("a",), 75)
    shard = folder / "train.h5"
    with ShardWriter(shard, spec) as writer:
        for start in range(0, stories, 100):
            n = min(100, stories - start)
            big = np.stack([clevr_like_frames(rng, *PNG_SIZE) for _ in range(n)])
            small = np.stack([[np.asarray(Image.fromarray(f).resize((SIZE, SIZE), Image.BICUBIC)) for f in s]
                              for s in big])
            for j, story in enumerate(big):
                for k, frame in enumerate(story):
                    Image.fromarray(frame).save(png_dir / f"CLEVR_new_{start + j:06d}_{k + 1}.png")
            writer.append(StoryBatch(small, [["text"] * T] * n, [f"s{start + j}" for j in range(n)],
                                     np.zeros((n, T, 1)), np.zeros((n, T, 75))))
    return shard, png_dir


class PngStories(Dataset):
    def __init__(self, folder: Path, stories: int, frames: int = T, size: tuple[int, int] = (SIZE, SIZE)):
        self.folder, self.stories, self.frames, self.size = folder, stories, frames, size  # size: (H, W)

    def __len__(self):
        return self.stories

    def __getitem__(self, i):
        h, w = self.size
        frames = [np.asarray(Image.open(self.folder / f"CLEVR_new_{i:06d}_{k + 1}.png").convert("RGB")
                             .resize((w, h), Image.BICUBIC)) for k in range(self.frames)]
        return {"images": torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)}


def png_batches(dataset: Dataset, workers: int, batch: int) -> Iterator[dict]:
    loader = DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers, drop_last=True,
                        persistent_workers=workers > 0)
    while True:
        yield from loader


def shard_batches(shard: Path, workers: int, batch: int) -> Iterator[dict]:
    return iter(stream_loader(shard, STORY_STREAM, batch, seed=0, start=0, workers=workers, pin=False,
                              pool_frames=False))


def stories_per_second(batches: Iterator[dict], count: int) -> float:
    """Over the next ``count`` batches, each turned into floats as a training step would."""
    began, seen = time.perf_counter(), 0
    for _ in range(count):
        seen += next(batches)["images"].float().div_(127.5).sub_(1).shape[0]
    return seen / (time.perf_counter() - began)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stories", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=24, help="StoryGAN's story batch")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--repeat", type=int, default=3, help="timed epochs of each side; the best counts")
    parser.add_argument("--shard", type=Path, help="benchmark the first --stories stories of this existing shard")
    args = parser.parse_args()
    if args.stories < args.batch:
        parser.error(f"--stories {args.stories} is fewer than one batch (--batch {args.batch})")
    with tempfile.TemporaryDirectory() as tmp:
        if args.shard is None:
            stories, frames, (h, w) = args.stories, T, (SIZE, SIZE)
            shard, png_dir = make_data(Path(tmp), stories)
            size_mb = shard.stat().st_size / 1e6
        else:
            try:
                info = read_info(args.shard)
            except ShardError as exc:
                raise SystemExit(f"error: {exc}") from None
            stories, frames, (h, w), shard = min(args.stories, info.num_stories), info.frames_per_story, \
                info.image_size, args.shard
            if stories < args.batch:
                raise SystemExit(f"error: {shard}: {stories} stories, fewer than one batch (--batch {args.batch})")
            png_dir = pngs_from_shard(shard, Path(tmp), stories)
            size_mb = shard.stat().st_size / 1e6 * stories / info.num_stories
        png_mb = sum(p.stat().st_size for p in png_dir.iterdir()) / 1e6
        print(f"{stories} stories of {frames}x{h}x{w} from {'synthetic data' if args.shard is None else shard}: "
              f"shard {'~' if args.shard else ''}{size_mb:.1f} MB, PNG frames {png_mb:.1f} MB")
        print(f"{'workers':>8} {'shard stories/s':>16} {'PNG stories/s':>14} {'ratio':>7}")
        per_epoch = stories // args.batch
        for workers in args.workers:
            fast_batches = shard_batches(shard, workers, args.batch)
            slow_batches = png_batches(PngStories(png_dir, stories, frames, (h, w)), workers, args.batch)
            fast = slow = 0.0
            for epoch in range(args.repeat + 1):  # epoch 0 warms up workers and the page cache
                fast_now, slow_now = (stories_per_second(b, per_epoch) for b in (fast_batches, slow_batches))
                if epoch:
                    fast, slow = max(fast, fast_now), max(slow, slow_now)
            print(f"{workers:>8} {fast:>16.0f} {slow:>14.0f} {fast / slow:>6.1f}x")


if __name__ == "__main__":
    main()
