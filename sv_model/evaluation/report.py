"""The evaluation report (see docs/evaluation.md): its JSON fields, its table, and writing both."""
from __future__ import annotations

import os
from pathlib import Path

from sv_data import files
from sv_model.evaluation import image_metrics, inception
from sv_model.evaluation.provenance import package_versions, utc_now

REPORT_FORMAT, REPORT_VERSION = "svkit-evaluation", 1
NOTES = {
    "ssim": image_metrics.SSIM_IMPLEMENTATION + "; each generated frame against the real frame of the same "
    "story and position, averaged over all frames. Ceiling: a real frame against itself.",
    "psnr": "10 log10(255^2 / MSE) per frame, averaged over all frames. Ceiling: infinite (a frame against itself).",
    "fid": inception.IMPLEMENTATION + "; generated test frames against all real test frames. Ceiling: real frames "
    "of the even-numbered test stories against those of the odd-numbered ones (half the samples on each side, "
    "and FID grows as samples shrink, so the best reachable value lies somewhat below this ceiling).",
    "evaluator_fd": "Fréchet distance in the pooled features of svkit's own evaluator, generated test frames "
    "against real test frames; ceiling as for FID (even against odd stories).",
    "ceilings": "Each ceiling is the same measure applied to the real test frames in place of generated ones: the "
    "best score that measure can give on this test set.",
    "floors": "Each floor is the same model with the same noise fed the conditions (and labels) of another test "
    "story, whole stories swapped by a derangement seeded with the protocol's seed, and scored against each "
    "story's own ground truth as the model is: what the measure gives a model that ignores what it is told. "
    "Null for measures that never compare a frame with its own story (consistency, FID, evaluator_fd) and when "
    "only one story is scored.",
}


def build_report(generator, info, evaluator, metrics, results, samples, seed, block_size, stories, device) -> dict:
    return {
        "format": REPORT_FORMAT,
        "version": REPORT_VERSION,
        "created": utc_now(),
        "model": {
            "checkpoint": str(getattr(generator, "checkpoint", "")),
            "architecture": getattr(generator, "model", None),
            "step": getattr(generator, "step", None),
            "dataset": generator.dataset,
            "image_size": list(generator.image_size),
        },
        "data": {
            "path": str(info.path),
            "dataset": info.spec.dataset,
            "split": info.spec.split,
            "stories": stories,
            "stories_in_shard": info.num_stories,
            "frames": stories * info.frames_per_story,
            "frames_per_story": info.frames_per_story,
            "image_size": list(info.image_size),
            "compared_at": list(generator.image_size),
        },
        "protocol": {
            "samples": samples,
            "seed": seed,
            "stories_per_block": block_size,
            "device": device,
            "metrics": list(metrics),
            "std": "sample standard deviation (n - 1) over the noise draws; null for one draw",
        },
        "evaluator": None
        if evaluator is None
        else {
            "name": evaluator.info.get("name"),  # a packaged evaluator's versioned name (kept by copies of its folder)
            "sha256": evaluator.info["sha256"],  # of its evaluator.pt
            "folder": evaluator.info["folder"],
            "kind": evaluator.kind,
            "trained_on": evaluator.info["trained_on"],
            "held_out": evaluator.info.get("held_out"),
            "note": evaluator.info["note"],
        },
        "metrics": results,
        "notes": {k: v for k, v in NOTES.items() if k in ("ceilings", "floors") or k in results},
        "versions": package_versions(),
    }


def format_table(report: dict) -> str:
    """The report as a fixed-width table for the terminal."""
    data, protocol = report["data"], report["protocol"]
    k = protocol["samples"]
    lines = [
        f"{report['model']['checkpoint']} on {data['path']} ({data['dataset']}, split {data['split']}): "
        f"{data['stories']} stories, {data['frames']} frames, {k} noise draw{'s' if k > 1 else ''}, seed {protocol['seed']}",
        f"{'metric':<24}{'model (mean ± std over draws)':>32}{'floor (shuffled conditions)':>30}"
        f"{'ceiling (real test frames)':>30}",
    ]

    def number(value):
        return "—" if value is None else f"{value:.4f}"

    def over_draws(entry):
        if entry is None:
            return "—"
        return number(entry["mean"]) + ("" if entry["std"] is None else f" ± {entry['std']:.4f}")

    for name, entry in report["metrics"].items():
        arrow = "↑" if entry["higher_is_better"] else "↓"
        ceiling = "∞" if name == "psnr" else number(entry["ceiling"])
        floor = over_draws(entry["floor"])
        lines.append(f"{name + ' ' + arrow:<24}{over_draws(entry):>32}{floor:>30}{ceiling:>30}")
    scorer = report["evaluator"]
    if scorer is not None:
        which = f"svkit's packaged {scorer['name']}" if scorer["name"] else scorer["folder"]
        lines.append(f"evaluator: {which} ({scorer['kind']}, {scorer['sha256']}); {scorer['note']}")
    return "\n".join(lines)


def write_report(report: dict, out: os.PathLike | str) -> Path:
    """The report as JSON at ``out`` and as :func:`format_table` beside it with the suffix .txt, each atomically;
    returns the table's path."""
    files.write_json(out, report, allow_nan=False)
    return files.write_text(table_path(out), format_table(report) + "\n")


def table_path(out: os.PathLike | str) -> Path:
    """Where :func:`write_report` puts the table of a report written to ``out``."""
    return Path(out).with_suffix(".txt")
