"""``sv-model evaluate``'s scores: draw every test story K times and score the drawings, each score next to what the
same measure gives on the real test frames (its ceiling) and on the same model fed other stories' conditions (its
floor, :mod:`.floor`).

The test stories are read and drawn in blocks; per block, the real frames go through every measure once (the
ceilings) and each noise draw k goes through them again, twice: once with the stories' own conditions, once with
those of the stories that a seeded derangement assigns them (the floor; only the measures that compare a frame
with its own story). Sums and feature statistics are kept per draw, so the report gives each score's mean and
standard deviation over the K draws. The frames of block b in draw k come from
``generate(..., seed=SeedSequence([seed, k, b]))``, the floor's with the same seed: the same seed and block size
give the same report.
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
from sv_model.evaluation.floor import NO_FLOOR, derangement
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
PAIRED_GROUPS = {"ssim", "psnr", "attributes", "characters"}  # those with a floor (see .floor.NO_FLOOR)


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
    """Running sums of one pass over the test stories: the real frames (ceiling), one noise draw, or the floor of
    one noise draw."""

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
    # Whose conditions each story is drawn with for the floor; one story has no other to take them from.
    floor_order = derangement(stories, seed) if stories >= 2 and wants & PAIRED_GROUPS else None

    def new_pass(features: bool) -> _Pass:
        p = _Pass(tally=evaluator.new_tally() if wants & {"attributes", "characters"} else None)
        if features:
            p.inception = [GaussianStats(inception.FEATURE_DIM) for _ in range(2)] if fid_features else []
            p.evaluator = [GaussianStats(evaluator.feature_dim) for _ in range(2)] if "evaluator-fd" in wants else []
        return p

    passes = [new_pass(features=True) for _ in range(samples + 1)]  # passes[0] is the real frames
    floors = [new_pass(features=False) for _ in range(samples)] if floor_order is not None else []

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

    def draw(conditions: np.ndarray, labels: np.ndarray, draw_seed: int, shape: tuple) -> np.ndarray:
        drawn = np.asarray(generator.generate(conditions, labels, seed=draw_seed))
        if drawn.shape != shape:
            raise SvkitError(f"the generator drew frames of shape {drawn.shape[1:]}, expected {shape[1:]}")
        return drawn

    blocks = list(iter_blocks(stories, block_size))
    total = stories * (1 + samples + len(floors))
    with ShardReader(data) as reader, tqdm(total=total, desc="evaluating", unit="story", disable=not progress) as bar:
        every = np.arange(stories)  # conditions and labels are small: read once, so a block can take any story's
        all_conditions, all_labels = reader.read("conditions", every), reader.read("labels", every)
        for b, (start, stop) in enumerate(blocks):
            rows = np.arange(start, stop)
            real = _resize(reader.read("images", rows), size)
            conditions, labels = all_conditions[rows], all_labels[rows]
            parity = rows % 2
            score(passes[0], real, real, conditions, labels, parity)
            bar.update(len(rows))
            for k in range(samples):
                draw_seed = _draw_seed(seed, k, b)
                score(passes[k + 1], draw(conditions, labels, draw_seed, real.shape), real, conditions, labels, parity)
                bar.update(len(rows))
                if floors:
                    fed = floor_order[rows]
                    drawn = draw(all_conditions[fed], all_labels[fed], draw_seed, real.shape)
                    score(floors[k], drawn, real, conditions, labels, parity)  # against the story's own truth
                    bar.update(len(rows))
    results = _results(metrics, passes, floors, stories, info.frames_per_story)
    return build_report(generator, info, evaluator, metrics, results, samples, seed, block_size, stories, str(device))


def _fd(sets: Sequence[GaussianStats], reference: Sequence[GaussianStats]) -> float | None:
    """Fréchet distance of all of ``sets`` against all of ``reference`` (None when too few samples)."""
    a, b = sets[0] + sets[1], reference[0] + reference[1]
    return frechet_distance(a, b) if a.count >= 2 and b.count >= 2 else None


def _paired_scores(p: _Pass, wants: set[str]) -> dict[str, float]:
    """SSIM, PSNR and the evaluator's scores of a pass of drawn frames: all but the Fréchet distances."""
    scores = {name: getattr(p, name) / p.frames for name in ("ssim", "psnr") if name in wants}
    return {**scores, **(p.tally.scores() if p.tally is not None else {})}


def _over_draws(values: list[float | None]) -> dict:
    known = [v for v in values if v is not None]
    mean, std = mean_and_std(known) if known else (None, None)
    return {"mean": mean, "std": std, "draws": values}


def _results(metrics: Sequence[str], passes: list[_Pass], floors: list[_Pass], stories: int, frames_per_story: int
             ) -> dict[str, dict]:
    real, draws = passes[0], passes[1:]
    model = [_paired_scores(d, set(metrics)) for d in draws]
    floor = [_paired_scores(f, set(metrics)) for f in floors]
    ceiling: dict[str, float | None] = {"ssim": 1.0, "psnr": None, **(real.tally.scores() if real.tally else {})}
    for name, attr in (("fid", "inception"), ("evaluator_fd", "evaluator")):
        halves = getattr(real, attr)
        if halves:
            for scores, d in zip(model, draws):
                scores[name] = _fd(getattr(d, attr), halves)
            ceiling[name] = frechet_distance(*halves) if min(h.count for h in halves) >= 2 else None
    out = {}
    for name in (name for group in metrics for name in METRIC_GROUPS[group]):
        out[name] = {
            **_over_draws([scores[name] for scores in model]),
            "floor": _over_draws([scores[name] for scores in floor]) if floor and name not in NO_FLOOR else None,
            "ceiling": ceiling[name],
            "higher_is_better": name not in LOWER_IS_BETTER,
            "stories": stories,
            "frames": stories * frames_per_story,
        }
    return out
