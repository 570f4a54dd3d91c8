"""``sv-model evaluate``'s scores: draw every test story K times and score the drawings, each score next to what the same
measure gives on the real test frames (its ceiling).

The test stories are read and drawn in blocks; per block, the real frames go through every measure once (the
ceilings) and each noise draw k goes through them again. Sums and feature statistics are kept per draw, so the
report gives each score's mean and standard deviation over the K draws. The frames of block b in draw k come from
``generate(..., seed=SeedSequence([seed, k, b]))``: the same seed and block size give the same report.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from sv_data.errors import SvkitError
from sv_data.shards import ShardInfo, ShardReader, iter_blocks, read_info
from sv_model.evaluation import image_metrics, inception
from sv_model.evaluation.clevr_objects import CONDITION_KIND as CLEVR_OBJECTS
from sv_model.evaluation.evaluators import ATTRIBUTES, CHARACTERS, Evaluator
from sv_model.evaluation.frechet import GaussianStats, frechet_distance
from sv_model.evaluation.report import build_report
from sv_model.evaluation.scores import mean_and_std

METRIC_GROUPS = {
    "ssim": ("ssim",),
    "psnr": ("psnr",),
    "attributes": (
        "object_precision",
        "object_recall",
        "object_f1",
        "exact_match_accuracy",
        "object_count_accuracy",
        "consistency",
    ),
    "characters": ("character_precision", "character_recall", "character_f1", "frame_accuracy"),
    "fid": ("fid",),
    "evaluator-fd": ("evaluator_fd",),
}
LOWER_IS_BETTER = {"fid", "evaluator_fd"}
EVALUATOR_GROUPS = {"attributes", "characters", "evaluator-fd"}
class StoryDrawer(Protocol):
    """What evaluation needs of a generator (``sv_model.generate.StoryGenerator`` is one)."""

    dataset: str
    image_size: tuple[int, int]

    def check_compatible(self, info: ShardInfo) -> None: ...

    def generate(self, conditions: np.ndarray, labels: np.ndarray, seed: int) -> np.ndarray: ...


def default_metrics(info: ShardInfo, evaluator: Evaluator | None) -> list[str]:
    """Every metric that applies to the shard: SSIM and PSNR when its conditions are CLEVR object slots (the only
    conditions that fix the picture), the evaluator's scores when one is given, and FID."""
    chosen = ["ssim", "psnr"] if info.spec.condition_kind == CLEVR_OBJECTS else []
    if evaluator is not None:
        chosen += ["attributes" if evaluator.kind == ATTRIBUTES else "characters", "evaluator-fd"]
    return [*chosen, "fid"]


def check_metrics(metrics: Sequence[str], info: ShardInfo, evaluator: Evaluator | None) -> None:
    unknown = [m for m in metrics if m not in METRIC_GROUPS]
    if unknown:
        raise SvkitError(f"--metrics {unknown[0]}: unknown metric (choose from {', '.join(METRIC_GROUPS)})")
    needs = [m for m in metrics if m in EVALUATOR_GROUPS]
    if needs and evaluator is None:
        raise SvkitError(f"--metrics {needs[0]} needs an evaluator: train one with sv-model train-evaluator and pass --evaluator")
    for group, kind in (("attributes", ATTRIBUTES), ("characters", CHARACTERS)):
        if group in metrics and evaluator is not None and evaluator.kind != kind:
            raise SvkitError(f"--metrics {group}: does not apply to dataset {info.spec.dataset!r}")


def _resize(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 (n, T, H, W, 3) -> (n, T, *size, 3), area-averaged: real frames meet generated ones at the model's size."""
    if frames.shape[2:4] == tuple(size):
        return frames
    n, t = frames.shape[:2]
    pixels = torch.from_numpy(frames.reshape(n * t, *frames.shape[2:])).permute(0, 3, 1, 2).float()
    small = F.interpolate(pixels, size=tuple(size), mode="area").round().to(torch.uint8)
    return small.permute(0, 2, 3, 1).reshape(n, t, *size, 3).numpy()


def _draw_seed(seed: int, draw: int, block: int) -> int:
    return int(np.random.SeedSequence([seed, draw, block]).generate_state(1)[0])


@dataclass
class _Pass:
    """Running sums of one pass over the test stories: the real frames (ceiling) or one noise draw."""

    ssim: float = 0.0
    psnr: float = 0.0
    frames: int = 0
    tally: object = None
    inception: list[GaussianStats] = field(default_factory=list)  # [even stories, odd stories]
    evaluator: list[GaussianStats] = field(default_factory=list)


def evaluate(
    generator: StoryDrawer,
    data: os.PathLike | str,
    *,
    evaluator: Evaluator | None = None,
    metrics: Sequence[str] | None = None,
    samples: int = 1,
    seed: int = 0,
    block_size: int = 64,
    device: str | torch.device = "cpu",
    max_stories: int | None = None,
    progress: bool = True,
) -> dict:
    """Score ``generator`` on the stories of the shard ``data``; returns the report (see docs/evaluation.md)."""
    info = read_info(data)
    generator.check_compatible(info)
    if evaluator is not None:
        evaluator.check_compatible(info)
    metrics = list(metrics) if metrics else default_metrics(info, evaluator)
    check_metrics(metrics, info, evaluator)
    for option, value in (("--samples", samples), ("--batch-size", block_size), ("--max-stories", max_stories)):
        if value is not None and value < 1:
            raise SvkitError(f"{option} {value}: must be at least 1")
    stories = min(info.num_stories, max_stories or info.num_stories)
    if stories == 0:
        raise SvkitError(f"{info.path}: holds no stories to evaluate")
    size = tuple(generator.image_size)
    wants = set(metrics)
    fid_features = inception.InceptionFeatures(device) if "fid" in wants else None
    passes = [_Pass() for _ in range(samples + 1)]  # passes[0] is the real frames
    for p in passes:
        p.tally = evaluator.new_tally() if wants & {"attributes", "characters"} else None
        p.inception = [GaussianStats(inception.FEATURE_DIM) for _ in range(2)] if fid_features else []
        p.evaluator = [GaussianStats(evaluator.feature_dim) for _ in range(2)] if "evaluator-fd" in wants else []

    def score(p: _Pass, frames: np.ndarray, real: np.ndarray, conditions, labels, parity: np.ndarray) -> None:
        n, t = frames.shape[:2]
        flat = frames.reshape(n * t, *frames.shape[2:])
        if wants & {"ssim", "psnr"} and p is not passes[0]:
            a = torch.from_numpy(frames).permute(0, 1, 4, 2, 3)
            b = torch.from_numpy(real).permute(0, 1, 4, 2, 3)
            p.ssim += float(image_metrics.ssim_per_frame(a, b).double().sum())
            p.psnr += float(image_metrics.psnr_per_frame(a, b).double().sum())
        p.frames += n * t
        if p.tally is not None:
            p.tally += evaluator.tally(frames, conditions, labels)
        frame_parity = np.repeat(parity, t)
        for stats, extract in ((p.inception, fid_features), (p.evaluator, evaluator and evaluator.features)):
            if stats:
                features = extract(flat)
                for half in (0, 1):
                    stats[half].add(features[frame_parity == half])

    blocks = list(iter_blocks(stories, block_size))
    with ShardReader(data) as reader, tqdm(total=stories * (samples + 1), desc="evaluating", unit="story", disable=not progress) as bar:
        for b, (start, stop) in enumerate(blocks):
            rows = np.arange(start, stop)
            real = _resize(reader.read("images", rows), size)
            conditions, labels = reader.read("conditions", rows), reader.read("labels", rows)
            parity = rows % 2
            score(passes[0], real, real, conditions, labels, parity)
            bar.update(len(rows))
            for k in range(samples):
                drawn = np.asarray(generator.generate(conditions, labels, seed=_draw_seed(seed, k, b)))
                if drawn.shape != real.shape:
                    raise SvkitError(f"the generator drew frames of shape {drawn.shape[1:]}, expected {real.shape[1:]}")
                score(passes[k + 1], drawn, real, conditions, labels, parity)
                bar.update(len(rows))
    results = _results(metrics, passes, stories, info.frames_per_story)
    return build_report(generator, info, evaluator, metrics, results, samples, seed, block_size, stories, str(device))


def _fd(sets: Sequence[GaussianStats], reference: Sequence[GaussianStats]) -> float | None:
    """Fréchet distance of all of ``sets`` against all of ``reference`` (None when too few samples)."""
    a, b = sets[0] + sets[1], reference[0] + reference[1]
    return frechet_distance(a, b) if a.count >= 2 and b.count >= 2 else None


def _results(metrics: Sequence[str], passes: list[_Pass], stories: int, frames_per_story: int) -> dict[str, dict]:
    real, draws = passes[0], passes[1:]
    per_draw: dict[str, list[float | None]] = {}
    ceiling: dict[str, float | None] = {}
    for group in metrics:
        if group == "ssim":
            per_draw["ssim"], ceiling["ssim"] = [d.ssim / d.frames for d in draws], 1.0
        elif group == "psnr":
            per_draw["psnr"], ceiling["psnr"] = [d.psnr / d.frames for d in draws], None
        elif group in ("attributes", "characters"):
            for name, value in real.tally.scores().items():
                ceiling[name] = value
                per_draw[name] = [d.tally.scores()[name] for d in draws]
        else:
            name, attr = ("fid", "inception") if group == "fid" else ("evaluator_fd", "evaluator")
            halves = getattr(real, attr)
            per_draw[name] = [_fd(getattr(d, attr), halves) for d in draws]
            ceiling[name] = frechet_distance(*halves) if min(h.count for h in halves) >= 2 else None
    out = {}
    for name, values in per_draw.items():
        known = [v for v in values if v is not None]
        mean, std = mean_and_std(known) if known else (None, None)
        out[name] = {
            "mean": mean,
            "std": std,
            "draws": values,
            "ceiling": ceiling[name],
            "higher_is_better": name not in LOWER_IS_BETTER,
            "stories": stories,
            "frames": stories * frames_per_story,
        }
    return out
