"""``sv-model train`` and ``sv-model generate``: thin click wrappers over sv_model.training_loop and
sv_model.generate. The options' defaults are TrainOptions' (sv_model.options, which imports no PyTorch)."""
from __future__ import annotations

import os
from pathlib import Path

import click

from cli.common import CommandError, evaluator_option
from cli.defaults import ENV_PREFIX
from sv_model.options import COMPILE_MODE, DEFAULT_EPOCHS, DEFAULT_IMAGE_SIZE, PRESETS, TrainOptions

DEVICES = click.Choice(["auto", "cpu", "cuda"])
SHARD = click.Path(path_type=Path, dir_okay=False)


def _preset_defaults(option: str) -> str:
    values = ", ".join(f"{getattr(preset, option)} ({name})" for name, preset in PRESETS.items())
    return f"[default: the preset's: {values}]"


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.argument("train_shard", type=SHARD)
@click.option("--out", "-o", type=click.Path(path_type=Path, file_okay=False),
              help="Run folder: config.json, checkpoints/, samples/, tensorboard/, metrics.jsonl. "
                   "An existing run folder is resumed from its newest checkpoint. [default: a new folder "
                   "runs/<date-time>-<random>]")
@click.option("--val", type=SHARD,
              help="Validation shard: the evaluator's F1 on its stories (or, without an evaluator, their mean SSIM) "
                   "picks checkpoints/best.pt. [default: val.h5 beside TRAIN_SHARD if there is one; never test.h5]")
@evaluator_option("Scores the --val stories: its F1 (object F1 on CLEVR-SV, character F1 otherwise) is logged "
                  "with its other scores and picks best.pt instead of SSIM.")
@click.option("--epochs", type=int,
              help=f"Epochs of the story stream (default {DEFAULT_EPOCHS} unless --max-steps is given).")
@click.option("--max-steps", type=int, help="Train for this many steps in all instead of --epochs.")
@click.option("--max-minutes", type=float,
              help="Stop, with a checkpoint, once training has run this long (the same command goes on from there).")
@click.option("--device", type=DEVICES, default=TrainOptions.device,
              help="auto: the GPU if CUDA has one, else the CPU.")
@click.option("--compile/--no-compile", default=TrainOptions.compile,
              help=f"Run the training step through torch.compile (mode {COMPILE_MODE}); its first steps compile it. "
                   "[default: on a GPU yes, on a CPU no]")
@click.option("--model", type=click.Choice(["storygan", "imagegan"]), default=TrainOptions.model,
              help="imagegan: the paper's baseline without story encoder, context encoder and story discriminator.")
@click.option("--image-size", type=int,
              help="Frame size the model draws (a power of two >= 8); shard frames of another size are resized "
                   f"to it. Without it the model draws {DEFAULT_IMAGE_SIZE}x{DEFAULT_IMAGE_SIZE} and the shard "
                   "must hold frames of that size.")
@click.option("--preset", type=click.Choice(list(PRESETS)), default=TrainOptions.preset,
              help="official: the official StoryGAN code's CLEVR-SV sizes; small: narrow networks and small "
                   "batches for CPU runs and the demo. Sets the four options below; each one given overrides it.")
@click.option("--g-width", type=int,
              help="Generator width: 8 x it channels at 4x4, as the official GF_DIM. " + _preset_defaults("g_width"))
@click.option("--d-width", type=int,
              help="Discriminators' width: channels of their first layer, doubling to 8 x it at 4x4 from 64x64 "
                   "frames, as the official DF_DIM. " + _preset_defaults("d_width"))
@click.option("--story-batch", type=int,
              help="Stories per batch (story discriminator stream). " + _preset_defaults("story_batch"))
@click.option("--image-batch", type=int,
              help="Single frames per batch (image discriminator stream). " + _preset_defaults("image_batch"))
@click.option("--noise-dim", type=int, default=TrainOptions.noise_dim, help="Size of the per-frame noise.")
@click.option("--story-dim", type=int,
              help="Size of the story state (h0, h_t, i_t). [default: the size of the frame condition the networks "
                   "see, as the official code's TEXT.DIMENSION: 75 on CLEVR-SV]")
@click.option("--lr", type=float, default=TrainOptions.lr,
              help="Adam learning rate of all networks (betas 0.5, 0.999).")
@click.option("--lr-decay-epochs", type=int, default=TrainOptions.lr_decay_epochs,
              help="Halve the learning rate every this many epochs.")
@click.option("--g-updates", type=int, default=TrainOptions.g_updates,
              help="Generator updates per discriminator update.")
@click.option("--kl-weight", type=float, default=TrainOptions.kl_weight,
              help="Weight of the story code's KL term (the mean of the two streams' KL divergences).")
@click.option("--d-label-weight", type=float, default=TrainOptions.d_label_weight,
              help="Weight of the image discriminator's label classification loss on real frames.")
@click.option("--g-label-weight", type=float, default=TrainOptions.g_label_weight,
              help="Weight of the label classification loss of the generated frames in the generator's loss.")
@click.option("--labels-in-condition/--no-labels-in-condition", default=TrainOptions.labels_in_condition,
              help="Append each frame's labels to its condition [default: as the shard says; yes for Pororo-SV].")
@click.option("--seed", type=int, default=TrainOptions.seed, help="Seed of initialisation, noise and data order.")
@click.option("--workers", type=int, help="DataLoader workers per stream [default: a quarter of the cores, 1..4].")
@click.option("--checkpoint-every", type=int, default=TrainOptions.checkpoint_every,
              help="Steps between checkpoints (and validations).")
@click.option("--sample-every", type=int, default=TrainOptions.sample_every,
              help="Steps between samples/step_XXXXXX.png.")
@click.option("--log-every", type=int, default=TrainOptions.log_every,
              help="Steps between log lines (TensorBoard, metrics.jsonl).")
@click.option("--keep", type=int, default=TrainOptions.keep,
              help="Numbered checkpoints to keep (best.pt is kept besides).")
@click.option("--val-stories", type=int, default=TrainOptions.val_stories,
              help="Validation stories scored at each checkpoint.")
@click.option("--sample-stories", type=int, default=TrainOptions.sample_stories,
              help="Stories drawn in each samples/ sheet.")
@click.option("--progress/--no-progress", default=TrainOptions.progress, help="Show a progress bar.")
@click.option("--gpus", type=int, default=1,
              help="Train data-parallel on N GPUs of this machine: runs `python -m torch.distributed.run "
                   "--standalone --nproc-per-node N -m cli.model train` with the other options. Batch sizes are "
                   "per GPU. With --device cpu: N CPU processes (gloo).")
def train(train_shard: Path, out: Path | None, val: Path | None, evaluator: str | None, gpus: int, **options):
    """Train StoryGAN on TRAIN_SHARD (a shard of format v1: CLEVR-SV, Pororo-SV, ...).

    Runs on the GPU when there is one (bf16 autocast, compiled step), else on the CPU (eager). Ctrl-C saves a
    checkpoint and stops; running the same command again (with --out RUN) resumes exactly where it stopped.
    """
    from sv_data.outputs import check_outputs

    check_outputs(folders={"--out": out}, inputs={"TRAIN_SHARD": train_shard, "--val": val})
    val = _default_val(train_shard, val)
    paths = {"val": val, "evaluator": evaluator}
    settings = TrainOptions(train=str(train_shard), out=str(out),
                            **{k: None if v is None else str(v) for k, v in paths.items()}, **options)
    settings.check()  # a bad option stops here, before a run folder is named for it
    if out is None:
        out = _new_run_folder(train_shard)
        settings.out = str(out)
    click.get_current_context().params.update(out=out, val=val)  # the processes of --gpus N train the same run
    if gpus != 1:
        from sv_model import distributed

        os.environ.pop(f"{ENV_PREFIX}_TRAIN_GPUS", None)  # or each process it starts would launch its own N
        raise SystemExit(distributed.launch(gpus, options["device"], _arguments_without_gpus()))
    from sv_model.training_loop import train as run_training

    result = run_training(settings)
    best = result.run_dir / "checkpoints" / "best.pt"
    checkpoint = best if best.exists() else result.checkpoint
    click.echo(f"done: step {result.step} of {result.total_steps}, run folder {result.run_dir}; next: sv-model "
               f"generate -c {checkpoint} --data {val or train_shard} --index 0 --out {result.run_dir}/story.png")


def _default_val(train_shard: Path, val: Path | None) -> Path | None:
    """``val.h5`` beside the training shard when the user names no validation shard (said on stderr)."""
    from sv_model.run_paths import val_shard_beside

    if val is None:
        val = val_shard_beside(train_shard)
        if val is not None:
            click.echo(f"{train_shard}: using {val.name} beside it for validation (--val to choose another)", err=True)
    return val


def _new_run_folder(train_shard: Path) -> Path:
    """A new run folder's name (the training loop says it, with how to resume it)."""
    from sv_data.shards import read_info
    from sv_model.run_paths import new_run_dir

    read_info(train_shard)  # a file that is no shard stops here, before a run folder is named for it
    return new_run_dir()


def _arguments_without_gpus() -> list[str]:
    """The command line of this ``train`` call as parsed, for the processes that torchrun starts."""
    context = click.get_current_context()
    arguments = []
    for param in context.command.params:
        value = context.params[param.name]
        if param.name == "gpus" or value is None:
            continue
        if isinstance(param, click.Argument):
            arguments.insert(0, str(value))
        elif param.is_flag and param.secondary_opts:
            arguments.append(param.opts[0] if value else param.secondary_opts[0])
        else:
            arguments += [param.opts[0], str(value)]
    return arguments


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option("--checkpoint", "-c", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="A training checkpoint (RUN/checkpoints/best.pt or step_XXXXXX.pt).")
@click.option("--data", type=SHARD, help="Shard whose story --index is drawn, beside its real frames.")
@click.option("--index", "-i", type=int, multiple=True,
              help="Story index in --data (repeat for several stories, one row each).")
@click.option("--texts", "-t", "from_texts", is_flag=True,
              help="Draw a new story from the sentences given as arguments, one per frame. Only for models whose "
                   "shard conditions are sentence embeddings (Pororo-SV).")
@click.option("--out", "-o", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="PNG to write: one row per story, real frames (with --data) then generated frames.")
@click.option("--seed", type=int, default=0, help="Seed of the generator's noise.")
@click.option("--device", type=DEVICES, default="auto")
@click.argument("texts", nargs=-1)
def generate(checkpoint: Path, data: Path | None, index: tuple[int, ...], from_texts: bool, out: Path, seed: int,
             device: str, texts: tuple[str, ...]):
    """Draw stories with a trained generator: the stories --index of --data beside their real frames, or a new
    story from sentences:

    \b
        sv-model generate -c RUN/checkpoints/best.pt --data test.h5 --index 3 --out story.png
        sv-model generate -c RUN/checkpoints/best.pt --out new.png --texts "Pororo skis." "Crong follows." ...
    """
    from sv_data.outputs import check_outputs
    from sv_model import generate as gen

    if from_texts == bool(data):
        raise CommandError("give either --data with --index, or --texts with one sentence per frame")
    if texts and not from_texts:
        raise CommandError(f"unexpected argument {texts[0]!r} (sentences need --texts)")
    if from_texts and not texts:
        raise CommandError('--texts needs the story\'s sentences as arguments, one per frame: --texts "..." "..."')
    if from_texts and index:
        raise CommandError("--index picks a story of --data; with --texts the sentences are the story")
    if data and not index:
        raise CommandError("--data needs --index (the story to draw)")
    check_outputs(files={"--out": out}, inputs={"--checkpoint": checkpoint, "--data": data})
    generator = gen.load_generator(checkpoint, device)
    if from_texts:
        frames = gen.generate_from_texts(generator, list(texts), seed)
        path = gen.save_story_sheet(out, frames)
    else:
        path = gen.generate_from_shard(generator, data, list(index), out, seed)
    click.echo(f"wrote {path}")
