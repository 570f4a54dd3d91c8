"""StoryGAN training speed: stories per second, and each step's time split into data, discriminators and generator.

It runs the training's own pieces (the shard's DataLoader streams, the device transfer, Trainer.step) on a shard:
an existing one (--shard), or a synthetic CLEVR-like one written first (CLEVR-SV's 75-d conditions and labels).
The sizes and weights are those of an ``sv-model train --preset`` (sv_model/options.py). On a GPU it also reports
peak GPU memory. The split is measured with the GPU synchronised between phases; stories/s comes from a separate
unsynchronised pass.

    PYTHONPATH=. python benchmarks/train.py                                     # the official recipe
    PYTHONPATH=. python benchmarks/train.py --preset small --steps 10           # the small preset, on a CPU
"""
from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from sv_data.clevr.scene import CONDITION_DIM, LABEL_NAMES, NUM_OBJECTS
from sv_data.shards import ShardSpec, ShardWriter, StoryBatch, read_info
from sv_model.data import FRAME_STREAM, STORY_STREAM, default_workers, stream_loader, to_device
from sv_model.devices import resolve_device
from sv_model.options import PRESETS, TrainOptions
from sv_model.trainer import Trainer
from sv_model.training_loop import model_config_for


def synthetic_shard(path: Path, stories: int, size: int) -> Path:
    """Grey floor, one more coloured disc per frame: LZF compresses it about as much as real CLEVR renders."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size]
    spec = ShardSpec("benchmark", "train", NUM_OBJECTS, (size, size), LABEL_NAMES, CONDITION_DIM)
    with ShardWriter(path, spec) as writer:
        for start in range(0, stories, 100):
            n = min(100, stories - start)
            images = np.empty((n, NUM_OBJECTS, size, size, 3), np.uint8)
            for i in range(n):
                canvas = (100 + 40 * yy / size + rng.normal(0, 3, (size, size)))[..., None].repeat(3, axis=2)
                for k in range(NUM_OBJECTS):
                    cx, cy, r = rng.uniform(0.15, 0.85, 2).tolist() + [rng.uniform(0.05, 0.12)]
                    canvas[(xx / size - cx) ** 2 + (yy / size - cy) ** 2 < r**2] = rng.integers(20, 255, 3)
                    images[i, k] = np.clip(canvas, 0, 255)
            writer.append(StoryBatch(
                images, [["a sentence"] * NUM_OBJECTS] * n, [f"s{start + i}" for i in range(n)],
                rng.integers(0, 2, (n, NUM_OBJECTS, len(LABEL_NAMES))),
                rng.standard_normal((n, NUM_OBJECTS, CONDITION_DIM)),
            ))
    return path


def measure(trainer: Trainer, shard: Path, args, options: TrainOptions, device: torch.device, sync: bool) -> dict:
    common = dict(seed=0, start=0, workers=args.workers, pin=device.type == "cuda", pool_frames=False)
    stories = iter(stream_loader(shard, STORY_STREAM, options.story_batch, **common))
    frames = iter(stream_loader(shard, FRAME_STREAM, options.image_batch, **common))
    size = trainer.config.image_size
    totals = {"data": 0.0, "discriminators": 0.0, "generator": 0.0}
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            totals = dict.fromkeys(totals, 0.0)
            start = time.perf_counter()
        fetch = time.perf_counter()
        s, f = to_device(next(stories), device, size), to_device(next(frames), device, size)
        if sync and device.type == "cuda":
            torch.cuda.synchronize(device)
        totals["data"] += time.perf_counter() - fetch
        stats, phases = trainer.step(s, f, sync=sync)
        for name, seconds in phases.items():
            totals[name] += seconds
    loss = float(stats["loss/g"])  # waits for the last step
    wall = time.perf_counter() - start
    return {"wall": wall, "loss": loss, **{k: v / args.steps for k, v in totals.items()}}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shard", type=Path, help="an existing training shard (default: a synthetic one)")
    parser.add_argument("--stories", type=int, default=600, help="stories in the synthetic shard")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30, help="timed steps (after --warmup)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--preset", choices=tuple(PRESETS), default=TrainOptions.preset,
                        help="the sizes of sv-model train --preset")
    parser.add_argument("--model", choices=("storygan", "imagegan"), default="storygan")
    parser.add_argument("--workers", type=int, default=default_workers(), help="DataLoader workers per stream")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        shard = args.shard or synthetic_shard(Path(tmp) / "train.h5", args.stories, args.image_size)
        info = read_info(shard)
        options = TrainOptions(str(shard), "", preset=args.preset, model=args.model, image_size=args.image_size)
        config = model_config_for(options, info)
        torch.manual_seed(0)
        trainer = Trainer(config, options.hyperparameters(), steps_per_epoch=1000, device=device)
        params = sum(p.numel() for net in trainer.nets.modules().values() for p in net.parameters())
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
        print(f"device: {name}; torch {torch.__version__}" + (", bf16 autocast" if device.type == "cuda" else ""))
        print(options.recipe(config.story_dim))
        print(f"model: {args.model}, {args.image_size}x{args.image_size}, {params / 1e6:.1f}M parameters; "
              f"{args.workers} workers per stream; shard {shard if args.shard else 'synthetic'} "
              f"({info.num_stories} stories)")
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        fast = measure(trainer, shard, args, options, device, sync=False)
        split = measure(trainer, shard, args, options, device, sync=True)
    print(f"steps timed: {args.steps} (after {args.warmup} warm-up steps)")
    print(f"training: {args.steps * options.story_batch / fast['wall']:.1f} stories/s, "
          f"{fast['wall'] / args.steps * 1000:.1f} ms/step")
    print(f"step time split (synchronised): data {split['data'] * 1000:.1f} ms, discriminators "
          f"{split['discriminators'] * 1000:.1f} ms, generator {split['generator'] * 1000:.1f} ms")
    if device.type == "cuda":
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
