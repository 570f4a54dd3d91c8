"""CLEVR-SV rendering speed and fidelity, in one run.

1. Builds ``--stories`` training stories with ``sv-data build-clevr``'s defaults (all cores, 16 samples, denoised)
   and reports frames per second, wall clock, start-up included.
   It also reports the seam ratio of those frames (sv_data.clevr.seams: 1.00 is seamless) and, with
   ``--seam-sheet PATH``, writes the first four stories magnified 4x with the floor's greys stretched
   ((x - 90) x 3), where a seam would show.
2. Renders the first ``--reference-stories`` of them again with ``--reference-samples`` samples, every frame whole
   (same seed and settings otherwise), and reports the PSNR of the build's frames against those references: so
   the figure holds both the noise that the samples leave and what building a story up region by region costs.

    python benchmarks/render.py                       # 200 stories, 16 references at 1024 samples
    python benchmarks/render.py --stories 40 --reference-stories 4 --reference-samples 256
    python benchmarks/render.py --workers 1 --reference-stories 0   # speed alone, one worker
    python benchmarks/render.py --stories 100 --reference-stories 0 --seam-sheet docs/figures/clevr-seams.png
"""
from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from sv_data.clevr import DEFAULT_SAMPLES
from sv_data.clevr.job import build_clevr, default_workers
from sv_data.clevr.seams import seam_ratio
from sv_data.shards import ShardReader

# Story i of a 13,000-story build (10,000 train + 3,000 test) costs the same as story i of this one.
FULL_DATASET_FRAMES = 13_000 * 4


def write_seam_sheet(images: np.ndarray, path: Path) -> None:
    """Stories as rows of frames, magnified 4x, with the greys of the floor stretched ((x - 90) x 3)."""
    from PIL import Image

    rows = [np.concatenate(list(story), axis=1) for story in images]
    sheet = np.clip((np.concatenate(rows, axis=0).astype(np.float64) - 90) * 3, 0, 255).astype(np.uint8)
    Image.fromarray(sheet).resize((sheet.shape[1] * 4, sheet.shape[0] * 4), Image.NEAREST).save(path)


def read(path: Path, n: int) -> tuple[np.ndarray, np.ndarray]:
    with ShardReader(path) as shard:
        return shard.read_images(range(n)), shard.read("extra/position", range(n))


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the build's worker processes)."""
    return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                  resource.getrusage(resource.RUSAGE_CHILDREN)))


def psnr(mse: float) -> float:
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stories", type=int, default=200, help="stories to build for the speed figure")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--samples", type=int, default=DEFAULT_SAMPLES)
    parser.add_argument("--no-denoise", action="store_true")
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--reference-stories", type=int, default=16, help="stories rendered again as references")
    parser.add_argument("--reference-samples", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seam-sheet", type=Path, help="write the first 4 stories, contrast-stretched, here")
    args = parser.parse_args()
    denoise = not args.no_denoise
    common = dict(seed=args.seed, image_size=args.image_size, denoise=denoise, workers=args.workers, progress=False)

    with tempfile.TemporaryDirectory(prefix="svkit-bench-") as tmp:
        start, cpu_start = time.perf_counter(), cpu_seconds()
        build = build_clevr(Path(tmp, "build"), {"train": args.stories}, samples=args.samples,
                            chunk_size=max(1, args.stories // (4 * args.workers)), **common)["train"]
        seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu_start
        frames = 4 * args.stories
        fps = frames / seconds
        print(f"build: {args.stories} stories ({frames} frames) at {args.image_size}x{args.image_size}, "
              f"{args.samples} samples, denoise {'on' if denoise else 'off'}, {args.workers} workers "
              f"({os.cpu_count()} cores): {seconds:.1f} s = {fps:.1f} frames/s, "
              f"{args.stories / seconds:.2f} stories/s")
        print(f"  at this rate the 10,000 + 3,000-story dataset takes {FULL_DATASET_FRAMES / fps / 60:.0f} min")
        # On a shared machine the wall clock depends on the neighbours; CPU time per frame much less so.
        print(f"  CPU time {cpu / frames:.3f} s per frame: {args.workers * frames / cpu:.1f} frames/s "
              f"if the {args.workers} workers had their cores to themselves")

        built, _ = read(build, args.stories)
        print(f"  seam ratio {seam_ratio(built):.3f} over {args.stories} stories (1.00: no seams)")
        if args.seam_sheet:
            write_seam_sheet(built[:4], args.seam_sheet)
            print(f"  seam sheet: {args.seam_sheet}")

        n = min(args.reference_stories, args.stories)
        if n < 1:
            return  # speed alone (e.g. to compare worker counts)
        start = time.perf_counter()
        reference = build_clevr(Path(tmp, "reference"), {"train": n}, samples=args.reference_samples,
                                chunk_size=max(1, n // args.workers), whole_frames=True, **common)["train"]
        print(f"reference: {n} stories at {args.reference_samples} samples in {time.perf_counter() - start:.1f} s")
        ours, our_positions = read(build, n)
        ref, ref_positions = read(reference, n)
    same = np.all(np.isclose(our_positions, ref_positions), axis=(1, 2))
    if not same.all():  # the visibility check saw the scenes differently: compare only identical scenes
        print(f"  {np.count_nonzero(~same)} of {n} stories differ in their scene and are left out")
    diff = ours[same].astype(np.float64) - ref[same]
    per_frame = (diff**2).reshape(-1, diff[0, 0].size).mean(axis=1)
    print(f"PSNR vs {args.reference_samples}-sample renders over {per_frame.size} frames: "
          f"{psnr(per_frame.mean()):.2f} dB (pooled), mean per frame {np.mean([psnr(m) for m in per_frame]):.2f} dB, "
          f"worst frame {psnr(per_frame.max()):.2f} dB")


if __name__ == "__main__":
    main()
