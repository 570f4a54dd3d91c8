"""Options that every dataset build shares: where the work runs and how it is cut into chunks."""
from __future__ import annotations

import functools
from pathlib import Path

import click

from sv_data.workers import default_workers


WORKERS_HELP = "Worker processes on this machine (or Ray actors with --ray)."
RAY_HELP = ("Run the chunks on a Ray cluster at ADDRESS ('auto' for the one this node belongs to; 'local' starts one "
            "here). The output folder must be on storage all nodes share.")
SHARD_HELP = ("Build only this job's share of the chunks (a Slurm array task: $SLURM_ARRAY_TASK_ID); join them "
              "afterwards with `sv-data merge`.")


def build_options(default_chunk: int, workers_help: str = WORKERS_HELP, ray_help: str = RAY_HELP,
                  shard_help: str = SHARD_HELP):
    """Add --workers, --chunk-size, --ray, --shard-index and --num-shards; the command receives them as one
    dict ``run`` of keyword arguments for :func:`sv_data.build.build`, which checks them
    (:func:`sv_data.build.check_run_options`). A builder whose work is more than chunks of stories says so in its
    own help texts."""

    def decorate(command):
        # Plain ints: the builders check them, in the words of the command line ("--workers must be >= 1, got 0").
        @click.option("--workers", type=int, default=default_workers(), show_default="all cores", help=workers_help)
        @click.option("--chunk-size", type=int, default=default_chunk, show_default=True,
                      help="Stories per part file: the unit of work, of resuming and of retries.")
        @click.option("--ray", "ray_address", metavar="ADDRESS", help=ray_help)
        @click.option("--shard-index", type=int, help=shard_help)
        @click.option("--num-shards", type=int, help="Number of jobs sharing the build.")
        @functools.wraps(command)
        def wrapper(*args, workers, chunk_size, ray_address, shard_index, num_shards, **kwargs):
            shard = None if shard_index is None and num_shards is None else (shard_index, num_shards)
            run = dict(workers=workers, chunk_size=chunk_size, ray_address=ray_address, shard=shard)
            return command(*args, run=run, **kwargs)

        return wrapper

    return decorate


def report_outputs(targets: dict, out_dir) -> None:
    """The closing lines of a build: the split files made, or how to finish an array build."""
    if not targets:
        click.echo(f"this job's parts are in {out_dir}/parts; when every job is done: sv-data merge {out_dir}")
    for split, path in targets.items():
        click.echo(f"{split}: {path}")
    echo_next_step(out_dir)


def echo_next_step(out_dir) -> None:
    """What a user does with a finished build (nothing is said while an array build still has jobs to run)."""
    train = Path(out_dir) / "train.h5"
    if train.exists():
        click.echo(f"next: sv-model train {train}")
