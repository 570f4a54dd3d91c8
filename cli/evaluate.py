"""``sv-model train-evaluator`` and ``sv-model evaluate``: thin click wrappers over sv_model.evaluation."""
from __future__ import annotations

from pathlib import Path

import click

from cli.common import evaluator_option, progress_option

DEVICES = click.Choice(["auto", "cpu", "cuda"])
SHARD = click.Path(path_type=Path, dir_okay=False)
CONTEXT = {"help_option_names": ["-h", "--help"], "show_default": True}


@click.command(context_settings=CONTEXT)
@click.argument("train_shard", type=SHARD)
@click.option("--out", "-o", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="Evaluator folder to write (evaluator.pt, evaluator.json). An unfinished one is resumed.")
@click.option("--val", type=SHARD,
              help="Shard of held-out real stories to score the evaluator on [default: the last --held-out "
                   "fraction of TRAIN_SHARD, then left out of training].")
@click.option("--held-out", type=float, default=0.1,
              help="Fraction of TRAIN_SHARD's stories (the last ones) held out when --val is not given.")
@click.option("--epochs", type=int,
              help="Training epochs [default: 14 for the CLEVR-SV attribute evaluator, 10 for a character classifier].")
@click.option("--batch-size", type=int, default=64, help="Frames per training batch.")
@click.option("--lr", "learning_rate", type=float,
              help="Peak learning rate of the one-cycle schedule [default: 2e-3 attributes, 1e-3 characters].")
@click.option("--input-size", type=int,
              help="Character classifier only: frames are resized to this size for EfficientNet-Lite0 [default: 128].")
@click.option("--width", type=int,
              help="CLEVR-SV attribute evaluator only: its channels at 32x32; the other stages scale with it "
                   "[default: 48].")
@click.option("--max-stories", type=int, help="Use only the first N stories of TRAIN_SHARD.")
@click.option("--max-shift", type=int,
              help="Training frames move by up to this many pixels each way, their targets with them [default: 3 "
                   "for the CLEVR-SV attribute evaluator, 0 for a character classifier].")
@click.option("--seed", type=int, default=0, help="Seed of initialisation, data order, flips and shifts.")
@click.option("--device", type=DEVICES, default="auto", help="auto: the GPU if CUDA has one, else the CPU.")
@progress_option
def train_evaluator(train_shard: Path, out: Path, **options):
    """Train svkit's evaluator on the real frames of TRAIN_SHARD and score it on held-out real stories.

    CLEVR-SV: an attribute evaluator that finds every object with its shape, colour, material and size (it learns
    from the instance masks and attributes that sv-data build-clevr stores). Other shards with labels (Pororo-SV):
    a multi-label character classifier (EfficientNet-Lite0, ImageNet initialisation shipped with svkit's
    dependencies). Ctrl-C keeps finished epochs; the same command resumes.
    """
    from sv_data.outputs import check_outputs
    from sv_model.evaluation.evaluators import train_evaluator as run

    check_outputs(folders={"--out": out}, inputs={"TRAIN_SHARD": train_shard, "--val": options["val"]})
    info = run(train_shard, out, **options)
    click.echo(f"evaluator: {out} ({info['kind']}, trained on {info['trained_on']['frames']} frames)")
    held_out = info.get("held_out")
    if held_out:
        scores = ", ".join(f"{k} {v:.4f}" for k, v in held_out.items() if isinstance(v, float))
        click.echo(f"held-out real frames ({held_out['frames']}, {held_out['source']}): {scores}")


def _metric_list(ctx, param, values: tuple[str, ...]) -> list[str] | None:
    """--metrics a,b --metrics c -> [a, b, c]; unknown names are the library's one-line error."""
    return [name.strip() for value in values for name in value.split(",") if name.strip()] or None


@click.command(context_settings=CONTEXT)
@click.option("--checkpoint", "-c", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="A training checkpoint (RUN/checkpoints/best.pt or step_XXXXXX.pt).")
@click.option("--data", type=SHARD, required=True, help="Test shard: every story is drawn and scored.")
@click.option("--out", "-o", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="Report to write (JSON); the same table as printed goes beside it with the suffix .txt.")
@evaluator_option("Reads the drawn frames for the attribute or character scores and evaluator-fd.")
@click.option("--metrics", multiple=True, callback=_metric_list, metavar="NAME[,NAME...]",
              help="Metrics to compute, of ssim, psnr, attributes, characters, fid, evaluator-fd [default: all that "
                   "apply to the dataset and the options given].")
@click.option("--samples", "-k", type=int, default=1,
              help="Noise draws per story: the report gives the mean and standard deviation over them.")
@click.option("--seed", type=int, default=0, help="Seed of the noise draws.")
@click.option("--batch-size", "block_size", type=int, default=64,
              help="Stories drawn and scored at a time (part of the protocol: the noise depends on it).")
@click.option("--max-stories", type=int, help="Score only the first N test stories.")
@click.option("--device", type=DEVICES, default="auto", help="auto: the GPU if CUDA has one, else the CPU.")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar.")
def evaluate(checkpoint: Path, data: Path, out: Path, evaluator: str | None, metrics, device: str, **options):
    """Draw every story of the test shard with the model of CHECKPOINT and score the drawings, each score next to
    the same measure on the real test frames (its ceiling): SSIM and PSNR (CLEVR-SV), the attribute evaluator's
    object scores (CLEVR-SV) or character F1 and frame accuracy (Pororo-SV), FID and svkit's evaluator Fréchet
    distance. Definitions: docs/evaluation.md."""
    from sv_data.outputs import check_outputs
    from sv_data.shards import read_info
    from sv_model.devices import resolve_device
    from sv_model.evaluation.evaluate import evaluate as run
    from sv_model.evaluation.packaged import choose_evaluator
    from sv_model.evaluation.report import format_table, table_path, write_report
    from sv_model.generate import load_generator

    check_outputs(files={"--out": out, "its .txt table": table_path(out)},
                  inputs={"--checkpoint": checkpoint, "--data": data})
    target = resolve_device(device)
    generator = load_generator(checkpoint, device=str(target))
    scorer = choose_evaluator(evaluator, read_info(data), device=str(target))
    report = run(generator, data, evaluator=scorer, metrics=metrics, device=target, **options)
    table = write_report(report, out)
    click.echo(format_table(report))
    click.echo(f"wrote {out} and {table}")

