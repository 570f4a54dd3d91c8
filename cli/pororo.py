"""``sv-data build-pororo`` and ``sv-data import-storygan-pororo``."""
from __future__ import annotations

from pathlib import Path

import click

from cli.build_options import build_options, echo_next_step
from sv_data.pororo.characters import PORORO_CHARACTERS
from sv_data.pororo.shard_job import CHUNK_SIZE
from sv_data.workers import default_workers


@click.command("build-pororo")
@click.option("--videos", type=click.Path(path_type=Path), required=True,
              help="Folder of the videos: PororoQA's Scenes_Dialogues (<season>/<episode>/<n>.gif), or the folder "
                   "that the CSV's video paths are relative to.")
@click.option("--descriptions", type=click.Path(path_type=Path),
              help="The description CSV: PororoQA's descriptions.csv as released (no header: episode, clip, "
                   "description), or a table with a header episode,clip,video[,start,end],description[,characters]. "
                   "[default: descriptions.csv in --videos, else beside it]")
@click.option("--out", type=click.Path(path_type=Path), default=Path("pororo-sv"), show_default=True,
              help="Output folder: train.h5, val.h5, test.h5 and report.tsv.")
@click.option("--image-size", type=int, default=64, show_default=True,
              help="Side of the square frames (centre crop, then resize).")
@click.option("--frames-per-clip", type=int, default=1, show_default=True,
              help="Frames drawn from each clip; with K > 1 all K are kept in extra/frame_pool, so that a reader can "
                   "draw one per epoch.")
@click.option("--frames-per-story", type=int, default=5, show_default=True,
              help="Consecutive clips of one episode per story.")
@click.option("--stride", type=int, default=1, show_default=True,
              help="Clips between the starts of two stories of an episode.")
@click.option("--characters", default=",".join(PORORO_CHARACTERS), show_default=True,
              help="Comma-separated character names: the labels, found as whole words in the descriptions.")
@click.option("--split", "split_text", default="0.8,0.1,0.1", show_default=True,
              help="Fractions of episodes for train, val and test (an episode is never in two splits).")
@click.option("--balance-tolerance", type=float, default=0.05, show_default=True,
              help="Largest allowed difference of a character's frame frequency between two splits; episodes are "
                   "re-drawn until it holds, or the best draw is reported.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Decides the frames drawn (per clip) and the split.")
@build_options(
    default_chunk=CHUNK_SIZE,
    workers_help="Worker processes (or Ray actors with --ray): each reads whole videos (one decoder thread each), "
                 "then writes chunks of stories.",
    ray_help="Run the work on a Ray cluster at ADDRESS ('auto' for the one this node belongs to; 'local' starts one "
             "here): actors sample the videos, then write the chunks of stories. The videos and the output folder "
             "must be on storage all nodes share.",
    shard_help="Sample only this job's share of the videos (a Slurm array task: $SLURM_ARRAY_TASK_ID) into OUT/work "
               "and stop; when all jobs are done, the same command without --shard-index and --num-shards writes "
               "the stories from the sampled frames.",
)
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show progress bars.")
def build_pororo(videos, descriptions, out, image_size, frames_per_clip, frames_per_story, stride, characters,
                 split_text, balance_tolerance, seed, run, progress):
    """Build Pororo-SV (or the same for any cartoon) from video clips and their descriptions.

    One frame is drawn uniformly inside each clip (it depends only on --seed and the clip), stories are windows
    of consecutive clips of one episode, labels are the characters named in the descriptions, and conditions are
    all-MiniLM-L6-v2 embeddings of each frame's text. Clips that cannot be used (unreadable video, time range
    outside the video, empty description, ...) are skipped and listed with the reason in OUT/report.tsv.
    Re-run the same command to resume an interrupted build.

    \b
    Example, with the PororoQA release:
      sv-data build-pororo --videos Scenes_Dialogues      # finds descriptions.csv beside it
    """
    from sv_data.outputs import check_outputs
    from sv_data.pororo.builder import PororoOptions, build_pororo as build
    from sv_data.pororo.characters import parse_character_list
    from sv_data.pororo.descriptions import find_descriptions
    from sv_data.pororo.stories import parse_split

    if descriptions is None:
        descriptions = find_descriptions(videos)
        click.echo(f"descriptions: {descriptions} (found; --descriptions to choose another)", err=True)
    check_outputs(folders={"--out": out}, inputs={"--videos": videos, "--descriptions": descriptions})
    options = PororoOptions(
        videos=videos, descriptions=descriptions, out=out, image_size=image_size, frames_per_clip=frames_per_clip,
        frames_per_story=frames_per_story, stride=stride, characters=parse_character_list(characters),
        split=parse_split(split_text), seed=seed, balance_tolerance=balance_tolerance, progress=progress, **run,
    )
    click.echo(build(options).line())
    echo_next_step(out)


@click.command("import-storygan-pororo")
@click.option("--root", type=click.Path(path_type=Path), required=True,
              help="The release folder: episode folders of <n>.png strips, descriptions.npy, labels.npy, "
                   "img_cache4.npy, following_cache4.npy and train_seen_unseen_ids.npy (or train_test_ids.npy).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("pororo-sv-release"), show_default=True,
              help="Output folder: one shard per split of the release, and report.tsv.")
@click.option("--image-size", type=int, default=64, show_default=True,
              help="Side of the stored frames (the release's are 128).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Decides which frame of each strip goes into images (all of them go to extra/frame_pool).")
@click.option("--workers", type=int, default=default_workers(), show_default="all cores",
              help="Worker processes: each writes chunks of stories from the strips.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show progress bars.")
def import_storygan_pororo(root, out, image_size, seed, workers, progress):
    """Convert the Pororo-SV release that StoryGAN's successors circulate into shards, keeping its splits.

    The release's pickled .npy files are loaded with a restricted unpickler (dicts, lists, strings and numpy
    arrays only). Its split indices refer to the story list in torchvision ImageFolder order, which is kept.
    """
    from sv_data.outputs import check_outputs
    from sv_data.pororo.release import ImportOptions, import_storygan_pororo as run

    check_outputs(folders={"--out": out}, inputs={"--root": root})
    click.echo(run(ImportOptions(root=root, out=out, image_size=image_size, seed=seed, workers=workers,
                                 progress=progress)).line())
