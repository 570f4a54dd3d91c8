"""``sv-data inspect``, ``validate`` and ``preview``: look at a shard."""
import json
import sys

import click

SHARD = click.Path(dir_okay=False, path_type=str)


@click.command()
@click.argument("shard", type=SHARD)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON instead of a table.")
def inspect(shard, as_json):
    """Show what a shard holds: format version, dataset, split, size, labels, text lengths, build config."""
    from sv_data.summary import format_summary, summarize

    summary = summarize(shard)
    click.echo(json.dumps(summary, indent=2) if as_json else format_summary(summary))


@click.command()
@click.argument("shards", type=SHARD, nargs=-1, required=True)
def validate(shards):
    """Check every rule of the shard format; print one line per violation and exit 1 if there is any.

    Rules: the format version is known, shapes agree, story ids are unique, labels are 0/1, conditions are finite,
    no text is empty and no image is all one value. A file that cannot be read as a shard at all exits with 2.
    """
    from sv_data.shards import read_info, validate as find_violations

    infos = [read_info(shard) for shard in shards]
    failed = False
    for info in infos:
        problems = find_violations(info.path)
        for problem in problems:
            click.echo(problem, err=True)
        failed = failed or bool(problems)
        if not problems:
            click.echo(f"{info.path}: valid ({info.num_stories} stories)")
    sys.exit(1 if failed else 0)


@click.command()
@click.argument("shard", type=SHARD)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="PNG file to write.")
@click.option("--stories", default=8, show_default=True, type=int, help="Stories to show.")
@click.option("--seed", default=0, show_default=True, type=int, help="Which stories are drawn.")
def preview(shard, out, stories, seed):
    """Draw a contact sheet: one row per story, each frame with its sentence under it."""
    from sv_data.preview import write_preview

    click.echo(f"wrote {write_preview(shard, out, stories, seed)}")


@click.command()
@click.argument("out_dir", type=click.Path(file_okay=False, exists=True))
def merge(out_dir):
    """Join the finished part files of a build folder into its split files.

    For builds run as several jobs (--shard-index/--num-shards, e.g. a Slurm array) or by another scheduler. The
    folder's build.json, when there is one, says which parts make each split. Without it, each part describes
    itself: parts are grouped by split and ordered by story range, which must run from 0 without gaps or
    overlaps, and must all come from one build (docs/scaling.md). Safe to run again after it was killed.
    """
    from sv_data.build import merge as join_finished_parts

    for split, path in join_finished_parts(out_dir).items():
        click.echo(f"{split}: {path}")
