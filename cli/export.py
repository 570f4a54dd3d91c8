"""``sv-data export``: shards into the layouts other story-visualization code reads."""
from __future__ import annotations

import importlib
from pathlib import Path

import click

from sv_data.export import FORMATS


@click.command(context_settings={"show_default": True})
@click.argument("shards", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--to", "format_name", type=click.Choice(list(FORMATS)), required=True,
              help="pororo-sv-release: the folder Pororo-SV circulates as (StoryViz, VLC-StoryGAN, StoryDALL-E, "
                   "CP-CSV); storygan-clevr: the official StoryGAN CLEVR layout; hf: Parquet for Hugging Face "
                   "datasets, with a dataset card.")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="Folder to create (it must not exist, or be empty); it appears only once complete.")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar.")
def export(shards, format_name, out, progress):
    """Write SHARDS (one per split: train.h5, val.h5, test.h5 of one build) in another layout (docs/export.md).

    \b
      sv-data export pororo-sv/*.h5 --to pororo-sv-release --out pororo-sv-png
      sv-data export data/clevr-sv/train.h5 data/clevr-sv/test.h5 --to storygan-clevr --out clevr-storygan
      sv-data export pororo-sv/*.h5 --to hf --out pororo-sv-hf
    """
    exporter = importlib.import_module(FORMATS[format_name])
    click.echo(exporter.export(shards, out, progress=progress).line())
