"""The CLEVR-SV reproduction run in one command: train the official StoryGAN recipe for a wall-clock budget, score
the checkpoints of fixed steps on the test stories with an attribute evaluator, and write the numbers, a learning
curve and a sample sheet.

    PYTHONPATH=. python benchmarks/reproduce_clevr.py --train train.h5 --test test.h5 --evaluator EVALUATOR \\
        --out OUT --minutes 6

- Training is ``sv-model train``'s loop (sv_model.training_loop) with ``--max-minutes``: the official recipe
  (``--preset official``, 120 epochs unless ``--max-steps``), stopped once ``--minutes`` have passed, a checkpoint
  every ``--eval-every`` steps and one where it stopped. Running the command again trains on from there.
- Scoring is ``sv-model evaluate``'s (sv_model.evaluation.evaluate, the attribute scores only) on each checkpoint:
  exact match and object F1 of the drawn test stories, with their floors (the same model fed other stories'
  conditions) and ceilings (the evaluator on the real test frames).
- The evaluator is svkit's packaged CLEVR-SV attribute evaluator unless ``--evaluator`` names another (a folder of
  ``sv-model train-evaluator`` trained on CLEVR-SV, or a packaged name).

It writes into OUT: ``run/`` (the run folder: every checkpoint is kept, a point of the curve each),
``reports/step_XXXXXX.json`` and ``.txt`` (the evaluation report of each checkpoint), ``reproduction.json`` (the
numbers), ``curve.png`` (exact match and object F1 against training stories seen, floor and ceiling beside them)
and ``samples.png`` (test stories drawn by the last checkpoint, real frames on the left).

It imports no Blender (bpy) and needs no pytorch-msssim, FID or sentence-encoder packages: it runs in a Python
with PyTorch, h5py, numpy, Pillow, click, tqdm and tensorboard (docs/benchmarks.md says how it ran on a lent GPU).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from sv_data import files
from sv_data.errors import SvkitError
from sv_data.shards import read_info
from sv_model.checkpoint import CheckpointFolder
from sv_model.devices import resolve_device
from sv_model.evaluation.evaluate import evaluate
from sv_model.evaluation.evaluators import ATTRIBUTES
from sv_model.evaluation.packaged import choose_evaluator
from sv_model.evaluation.provenance import package_versions, utc_now
from sv_model.evaluation.report import write_report
from sv_model.generate import generate_from_shard, load_generator
from sv_model.options import PRESETS, TrainOptions
from sv_model.training_loop import train

FORMAT, VERSION = "svkit-reproduction", 1
SCORES = {"exact_match_accuracy": "exact match", "object_f1": "object F1"}  # what the curve shows, and its titles
SEED = 0  # of the evaluation's noise and the sample sheet's
COLOURS = {"ceiling": (44, 160, 44), "floor": (214, 39, 40), "model": (31, 119, 180)}  # the model's drawn last, on top


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=Path, required=True, help="CLEVR-SV training shard")
    parser.add_argument("--test", type=Path, required=True, help="CLEVR-SV test shard: the stories scored")
    parser.add_argument("--evaluator",
                        help="evaluator folder of sv-model train-evaluator, or a packaged name [default: svkit's "
                             "packaged CLEVR-SV attribute evaluator]")
    parser.add_argument("--out", type=Path, required=True, help="folder to write (an existing one trains on)")
    parser.add_argument("--minutes", type=float, default=6.0,
                        help="wall clock of training (compiling included); scoring comes after it")
    parser.add_argument("--max-steps", type=int, help="stop after this many steps even if time is left")
    parser.add_argument("--eval-every", type=int, default=1000, help="steps between the checkpoints scored")
    parser.add_argument("--test-stories", type=int, help="score only the first N test stories [default: all]")
    parser.add_argument("--draws", type=int, default=1, help="noise draws per test story (evaluate's --samples)")
    parser.add_argument("--sample-stories", type=int, default=8, help="test stories in samples.png")
    parser.add_argument("--preset", choices=tuple(PRESETS), default=TrainOptions.preset,
                        help="sv-model train --preset (official: the recipe reproduced)")
    parser.add_argument("--g-width", type=int, help="override the preset's generator width (quick checks only)")
    parser.add_argument("--d-width", type=int, help="override the preset's discriminators' width (likewise)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    compiled = parser.add_mutually_exclusive_group()
    compiled.add_argument("--compile", dest="compile", action="store_true", default=None,
                          help="compile the training step [default: on a GPU]")
    compiled.add_argument("--no-compile", dest="compile", action="store_false")
    parser.add_argument("--workers", type=int, help="DataLoader workers per stream [default: as sv-model train]")
    parser.add_argument("--seed", type=int, default=TrainOptions.seed, help="seed of training")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return parser.parse_args(argv)


def training_options(args: argparse.Namespace) -> TrainOptions:
    return TrainOptions(
        train=str(args.train), out=str(args.out / "run"), preset=args.preset, g_width=args.g_width,
        d_width=args.d_width, max_minutes=args.minutes, max_steps=args.max_steps, device=args.device,
        compile=args.compile, workers=args.workers, seed=args.seed, checkpoint_every=args.eval_every,
        sample_every=args.eval_every, progress=args.progress,
        keep=sys.maxsize,  # every checkpoint is a point of the curve
    )


def score(checkpoint: Path, args: argparse.Namespace, evaluator, device) -> dict:
    """``sv-model evaluate``'s report of one checkpoint: the attribute scores with floors and ceilings."""
    generator = load_generator(checkpoint, device=str(device))
    return evaluate(generator, args.test, evaluator=evaluator, metrics=["attributes"], samples=args.draws,
                    seed=SEED, device=device, max_stories=args.test_stories, progress=False)


def point(step: int, report: dict, stories_per_step: int, steps_per_epoch: int) -> dict:
    metrics = report["metrics"]
    return {
        "step": step,
        "stories_seen": step * stories_per_step,
        "epochs": step / steps_per_epoch,
        **{name: {"model": metrics[name]["mean"], "floor": metrics[name]["floor"]["mean"],
                  "ceiling": metrics[name]["ceiling"]} for name in SCORES},
    }


def draw_curves(points: list[dict], path: Path) -> Path:
    """One panel per score of :data:`SCORES`: the model, its floor and its ceiling against stories seen."""
    font = ImageFont.load_default()
    width, height, left, right, top, bottom = 460, 320, 48, 16, 30, 40
    image = Image.new("RGB", (width * len(SCORES), height), "white")
    draw = ImageDraw.Draw(image)
    most = max(p["stories_seen"] for p in points)
    for panel, (name, title) in enumerate(SCORES.items()):
        x0, x1, y0, y1 = panel * width + left, (panel + 1) * width - right, height - bottom, top

        def at(stories: float, value: float) -> tuple[float, float]:
            return x0 + (x1 - x0) * stories / most, y0 - (y0 - y1) * value

        draw.rectangle((x0, y1, x1, y0), outline="black")
        for tick in np.linspace(0, 1, 5):
            draw.line((*at(0, tick), *at(most, tick)), fill=(225, 225, 225))
            draw.text((x0 - 6, at(0, tick)[1]), f"{tick:.2f}", fill="black", font=font, anchor="rm")
        for tick in np.linspace(0, most, 5):
            draw.text((at(tick, 0)[0], y0 + 6), f"{tick:,.0f}", fill="black", font=font, anchor="ma")
        draw.text(((x0 + x1) / 2, y0 + 22), "training stories seen", fill="black", font=font, anchor="ma")
        draw.text((x0, 8), title, fill="black", font=font)
        for line, colour in COLOURS.items():
            xy = [at(p["stories_seen"], p[name][line]) for p in points]
            if len(xy) > 1:
                draw.line(xy, fill=colour, width=2)
            for x, y in xy:
                draw.ellipse((x - 3, y - 3, x + 3, y + 3), fill=colour)
        for slot, (line, colour) in enumerate(COLOURS.items()):
            draw.text((x1 - 60 * slot, 8), line, fill=colour, font=font, anchor="ra")
    with files.atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return path


def reproduce(args: argparse.Namespace, command: list[str]) -> dict:
    if not args.minutes > 0:
        raise SvkitError(f"--minutes {args.minutes:g}: must be a number > 0")
    options = training_options(args)
    options.check()
    for flag, value in (("--eval-every", args.eval_every), ("--sample-stories", args.sample_stories),
                        ("--draws", args.draws), ("--test-stories", args.test_stories)):
        if value is not None and value < 1:
            raise SvkitError(f"{flag} {value}: must be at least 1")
    device = resolve_device(args.device)
    test = read_info(args.test)
    evaluator = choose_evaluator(args.evaluator, test, device=str(device))
    if evaluator is None or evaluator.kind != ATTRIBUTES:
        raise SvkitError(f"{args.test}: the reproduction scores CLEVR-SV objects, with an attribute evaluator")
    if min(test.num_stories, args.test_stories or test.num_stories) < 2:
        raise SvkitError(f"{args.test}: the floors need at least 2 test stories (each is drawn with another's "
                         "conditions)")

    checkpoints = CheckpointFolder(args.out / "run" / "checkpoints")
    earlier = checkpoints.numbered()
    resumed_from = earlier[-1][0] if earlier else 0
    started = time.perf_counter()
    result = train(options)
    training_seconds = time.perf_counter() - started
    if result.checkpoint is None:
        raise SvkitError(f"--minutes {args.minutes:g} passed before the first training step: nothing to score")
    config = json.loads((args.out / "run" / "config.json").read_text())
    stories_per_step, steps_per_epoch = config["batches"]["effective_story"], config["batches"]["steps_per_epoch"]

    started = time.perf_counter()
    points = []
    for step, path in checkpoints.numbered():
        report = score(path, args, evaluator, device)
        write_report(report, args.out / "reports" / f"step_{step:06d}.json")
        points.append(point(step, report, stories_per_step, steps_per_epoch))
        print("step {step}: ".format(**points[-1]) + ", ".join(
            f"{name} {points[-1][name]['model']:.4f} (floor {points[-1][name]['floor']:.4f}, ceiling "
            f"{points[-1][name]['ceiling']:.4f})" for name in SCORES), flush=True)
    last = load_generator(result.checkpoint, device=str(device))
    shown = np.unique(np.linspace(0, test.num_stories - 1, min(args.sample_stories, test.num_stories)).round())
    generate_from_shard(last, args.test, shown.astype(int).tolist(), args.out / "samples.png", seed=SEED)
    draw_curves(points, args.out / "curve.png")
    evaluation_seconds = time.perf_counter() - started

    numbers = {
        "format": FORMAT,
        "version": VERSION,
        "created": utc_now(),
        "command": ["benchmarks/reproduce_clevr.py", *command],
        "recipe": options.recipe(config["model"]["story_dim"]),
        "device": str(device),
        "compiled": options.compiles(device.type),
        "train": {"path": str(args.train), "stories": config["shard_kind"]["num_stories"]},
        "test": {"path": str(args.test), "stories_scored": report["data"]["stories"]},
        "evaluator": {"name": evaluator.info.get("name"), "folder": evaluator.info["folder"],
                      "sha256": evaluator.info["sha256"]},
        "training": {
            "budget_minutes": args.minutes,
            "seconds": training_seconds,
            "resumed_from_step": resumed_from,
            "steps": result.step,
            "total_steps": result.total_steps,
            "stopped_by": "finished" if result.step == result.total_steps else "time budget",
            "stories_seen": result.step * stories_per_step,
            "epochs": result.step / steps_per_epoch,
            "stories_per_second": (result.step - resumed_from) * stories_per_step / training_seconds,
        },
        "evaluation": {"seconds": evaluation_seconds, "draws": args.draws, "seed": SEED,
                       "reports": "reports/step_XXXXXX.json"},
        "points": points,
        "final": points[-1],
        "figure": "curve.png",
        "samples": "samples.png",
        "versions": package_versions(),
    }
    files.write_json(args.out / "reproduction.json", numbers, allow_nan=False)
    return numbers


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    try:
        numbers = reproduce(args, argv)
    except SvkitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    training = numbers["training"]
    print(f"trained {training['steps']} steps ({training['epochs']:.2f} epochs, {training['stories_seen']:,} stories) "
          f"in {training['seconds'] / 60:.1f} min, {training['stories_per_second']:.1f} stories/s; scored "
          f"{len(numbers['points'])} checkpoints in {numbers['evaluation']['seconds']:.0f} s; wrote "
          f"{args.out / 'reproduction.json'}, curve.png, samples.png")


if __name__ == "__main__":
    main()
