"""``sv-data inspect``, ``validate``, ``preview``, ``merge`` and ``repack``: look at shards, join and store them."""
import json
import sys

import click

from cli.common import progress_option

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
    """Check every rule of the shard format; print one line per violation. Every file gets its verdict: "valid",
    its violations, or why it cannot be read as a shard at all.

    Rules: the format version is known, shapes agree, story ids are unique, labels are 0/1, conditions are finite,
    no text is empty and no image is all one value. Exit status: 0 when all are valid, 1 when a file breaks a rule,
    2 when a file cannot be read as a shard.
    """
    from sv_data.errors import SvkitError
    from sv_data.shards import read_info, validate as find_violations

    status = 0
    for shard in shards:
        try:
            info = read_info(shard)
        except SvkitError as exc:
            click.echo(f"error: {exc}", err=True)
            status = 2
            continue
        problems = find_violations(info.path)
        for problem in problems:
            click.echo(problem, err=True)
        if problems:
            status = max(status, 1)
        else:
            click.echo(f"{info.path}: valid ({info.num_stories} stories)")
    sys.exit(status)


@click.command()
@click.argument("shard", type=SHARD)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="PNG file to write.")
@click.option("--stories", default=8, show_default=True, type=int, help="Stories to show.")
@click.option("--seed", default=0, show_default=True, type=int, help="Which stories are drawn.")
def preview(shard, out, stories, seed):
    """Draw a contact sheet: one row per story, each frame with its sentence under it."""
    from sv_data.outputs import check_outputs
    from sv_data.preview import write_preview

    check_outputs(files={"--out": out}, inputs={"SHARD": shard})
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
    from sv_data.outputs import check_outputs

    check_outputs(folders={"OUT_DIR": out_dir})
    for split, path in join_finished_parts(out_dir).items():
        click.echo(f"{split}: {path}")


@click.command()
@click.argument("source", metavar="IN", type=SHARD)
@click.argument("out", metavar="OUT", type=SHARD)
@click.option("--stories", type=click.IntRange(min=1), default=None, metavar="N",
              help="Write only the first N stories: a smaller shard of the same build (one that fits a transfer "
                   "limit, say).")
@progress_option
def repack(source, out, stories, progress):
    """Write the shard IN again as OUT, stored as svkit stores shards now: every dataset, attribute and value stays
    the same, only the chunks and compression change (docs/format.md). OUT must not exist.

    Earlier svkit stored images LZF-compressed; repacked, they take about a third of the space and read faster.
    Such shards remain readable as they are.

    \b
        sv-data repack old/train.h5 train.h5
        sv-data repack clevr-sv/train.h5 train-4000.h5 --stories 4000
    """
    from sv_data.outputs import check_outputs
    from sv_data.shards import repack as store_anew

    check_outputs(files={"OUT": out}, inputs={"IN": source})
    click.echo(f"wrote {store_anew(source, out, stories=stories, progress=progress)}")
