"""StoryGAN training speed, eager and compiled side by side: stories per second, step time (split into data,
discriminators and generator), compile time and peak GPU memory, at the widths of a preset and at other widths.

It runs the training's own pieces (the shard's DataLoader streams, the device transfer, Trainer.step) on a shard:
an existing one (--shard), or a synthetic CLEVR-like one written first (CLEVR-SV's 75-d conditions and labels).
The sizes and weights are those of an ``sv-model train --preset`` (sv_model/options.py); --widths measures them at
the preset's widths and at others (``64``: G and D 64; ``128/64``: G 128, D 64). Each variant starts from the
same weights and reads the same batches:

- ``eager``: the step as ``sv-model train --no-compile`` runs it;
- ``compiled``: as ``--compile`` runs it (torch.compile in sv_model.options.COMPILE_MODE);
- ``compiled:MODE``: torch.compile in another mode (``default``, ``max-autotune-no-cudagraphs``, ...), to compare.

Compile time is the warm-up steps' wall clock less as many steady steps: what compiling (and recording CUDA
graphs) cost. Stories/s comes from an unsynchronised pass; the split from a second pass with the GPU synchronised
between phases, so the phases need not add up to the step time.

    PYTHONPATH=. python benchmarks/train.py                                  # official recipe and widths 64, on the GPU
    PYTHONPATH=. python benchmarks/train.py --preset small --widths preset,16 --steps 10 --device cpu
"""
from __future__ import annotations

import argparse
import platform
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from sv_data.clevr.scene import CONDITION_DIM, LABEL_NAMES, NUM_OBJECTS
from sv_data.shards import ShardSpec, ShardWriter, StoryBatch, read_info
from sv_model.data import FRAME_STREAM, STORY_STREAM, default_workers, stream_loader, to_device
from sv_model.devices import resolve_device
from sv_model.networks import Networks
from sv_model.options import COMPILE_MODE, PRESETS, TrainOptions
from sv_model.trainer import Trainer
from sv_model.training_loop import model_config_for

EPOCHS, STORIES = 120, 10_000  # the official recipe's length on a CLEVR-SV of 10,000 training stories


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


def compile_mode(variant: str) -> str | None:
    """The torch.compile mode of a variant's name; None for eager."""
    if variant == "eager":
        return None
    if variant == "compiled":
        return COMPILE_MODE
    if variant.startswith("compiled:"):
        return variant.split(":", 1)[1]
    raise SystemExit(f"--variants {variant}: use eager, compiled or compiled:MODE")


def widths_of(spec: str, options: TrainOptions) -> tuple[int, int]:
    """``preset`` -> the preset's (G, D) widths; ``64`` -> (64, 64); ``128/64`` -> (128, 64)."""
    if spec == "preset":
        return options.g_width, options.d_width
    g, _, d = spec.partition("/")
    return int(g), int(d or g)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(trainer: Trainer, shard: Path, args, options: TrainOptions, device: torch.device, sync: bool) -> dict:
    """Seconds of the warm-up steps, of the timed steps, and the timed steps' mean split."""
    common = dict(seed=0, start=0, workers=args.workers, pin=device.type == "cuda", pool_frames=False)
    stories = iter(stream_loader(shard, STORY_STREAM, options.story_batch, **common))
    frames = iter(stream_loader(shard, FRAME_STREAM, options.image_batch, **common))
    size = trainer.config.image_size
    totals = {"data": 0.0, "discriminators": 0.0, "generator": 0.0}
    _sync(device)
    start = warmup_start = time.perf_counter()
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            _sync(device)
            start = time.perf_counter()
            totals = dict.fromkeys(totals, 0.0)
        fetch = time.perf_counter()
        s, f = to_device(next(stories), device, size), to_device(next(frames), device, size)
        if sync:
            _sync(device)
        totals["data"] += time.perf_counter() - fetch
        stats, phases = trainer.step(s, f, sync=sync)
        for name, seconds in phases.items():
            totals[name] += seconds
    loss = float(stats["loss/g"])  # waits for the last step
    end = time.perf_counter()
    return {"warmup": start - warmup_start, "wall": end - start, "loss": loss,
            **{k: v / args.steps for k, v in totals.items()}}


def run_variant(variant: str, options: TrainOptions, shard: Path, args, device: torch.device) -> dict:
    config = model_config_for(options, read_info(shard))
    torch.manual_seed(0)
    trainer = Trainer(config, options.hyperparameters(), steps_per_epoch=1000, device=device,
                      compile_mode=compile_mode(variant))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    fast = measure(trainer, shard, args, options, device, sync=False)
    split = measure(trainer, shard, args, options, device, sync=True)
    step = fast["wall"] / args.steps
    result = {
        "variant": variant, "step": step, "stories_per_s": options.story_batch / step, "loss": fast["loss"],
        "compile": max(0.0, fast["warmup"] - args.warmup * step),
        "peak_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
        **{k: split[k] for k in ("data", "discriminators", "generator")},
    }
    del trainer
    torch._dynamo.reset()  # frees the compiled graphs and their CUDA graph memory before the next variant
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def print_table(rows: list[dict]) -> None:
    print(f"{'widths G / D':>13} {'variant':<22} {'stories/s':>9} {'vs eager':>8} {'ms/step':>8} {'data':>6} "
          f"{'D ms':>7} {'G ms':>7} {'compile s':>9} {'peak GiB':>8} {'loss/g':>7}  120 epochs of 10,000")
    eager = {r["widths"]: r["stories_per_s"] for r in rows if r["variant"] == "eager"}
    for r in rows:
        ratio = f"{r['stories_per_s'] / eager[r['widths']]:.2f}x" if r["widths"] in eager else ""
        peak = f"{r['peak_gib']:.2f}" if r["peak_gib"] is not None else ""
        compiled = f"{r['compile']:.1f}" if compile_mode(r["variant"]) else "-"
        recipe_minutes = (EPOCHS * STORIES / r["stories_per_s"] + r["compile"]) / 60
        print(f"{r['widths']:>13} {r['variant']:<22} {r['stories_per_s']:9.1f} {ratio:>8} {r['step'] * 1000:8.1f} "
              f"{r['data'] * 1000:6.1f} {r['discriminators'] * 1000:7.1f} {r['generator'] * 1000:7.1f} "
              f"{compiled:>9} {peak:>8} {r['loss']:7.3f}  {recipe_minutes:.0f} min")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shard", type=Path, help="an existing training shard (default: a synthetic one)")
    parser.add_argument("--stories", type=int, default=600, help="stories in the synthetic shard")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30, help="timed steps (after --warmup)")
    parser.add_argument("--warmup", type=int, default=5,
                        help="steps before timing; compiling, and recording CUDA graphs, happens in them")
    parser.add_argument("--preset", choices=tuple(PRESETS), default=TrainOptions.preset,
                        help="the sizes of sv-model train --preset")
    parser.add_argument("--widths", default="preset,64",
                        help="comma-separated widths: preset (the preset's), W (G and D), G/D")
    parser.add_argument("--variants", default="eager,compiled",
                        help="comma-separated: eager, compiled (as --compile trains), compiled:MODE")
    parser.add_argument("--model", choices=("storygan", "imagegan"), default="storygan")
    parser.add_argument("--workers", type=int, default=default_workers(), help="DataLoader workers per stream")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    variants = args.variants.split(",")
    for variant in variants:
        compile_mode(variant)  # a misspelt variant stops here, not after the others have run
    if args.warmup < 3 and any(compile_mode(v) for v in variants):
        parser.error("--warmup must be at least 3 with a compiled variant (CUDA graphs are recorded on the 2nd call)")

    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        shard = args.shard or synthetic_shard(Path(tmp) / "train.h5", args.stories, args.image_size)
        info = read_info(shard)
        base = TrainOptions(str(shard), "", preset=args.preset, model=args.model, image_size=args.image_size)
        name = (torch.cuda.get_device_name(device) if device.type == "cuda" else
                f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)")
        print(f"device: {name}; torch {torch.__version__}" + (", bf16 autocast" if device.type == "cuda" else ""))
        print(base.recipe(model_config_for(base, info).story_dim))
        print(f"model: {args.model}, {args.image_size}x{args.image_size}; {args.workers} workers per stream; shard "
              f"{shard if args.shard else 'synthetic'} ({info.num_stories} stories); {args.steps} steps timed after "
              f"{args.warmup} warm-up steps; compiled = torch.compile mode {COMPILE_MODE}")
        rows = []
        for spec in args.widths.split(","):
            g_width, d_width = widths_of(spec, base)
            options = replace(base, g_width=g_width, d_width=d_width)
            nets = Networks.build(model_config_for(options, info)).modules().values()
            params = sum(p.numel() for net in nets for p in net.parameters())
            print(f"widths G {g_width} / D {d_width}: {params / 1e6:.1f}M parameters", flush=True)
            for variant in variants:
                rows.append({"widths": f"{g_width} / {d_width}", **run_variant(variant, options, shard, args, device)})
                print(f"  {variant}: {rows[-1]['stories_per_s']:.1f} stories/s", flush=True)
    print_table(rows)


if __name__ == "__main__":
    main()
