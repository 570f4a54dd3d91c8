"""``sv-data build-clevr`` and ``sv-data import-storygan-clevr``."""
import click

from cli.build_options import build_options, report_outputs
from cli.common import progress_option
from sv_data.clevr import CHUNK_SIZE, DEFAULT_SAMPLES


@click.command()
@click.option("--out", default="data/clevr-sv", show_default=True, type=click.Path(file_okay=False),
              help="Build folder: train.h5, test.h5 (and val.h5) appear here when complete.")
@click.option("--n-train", default=10000, show_default=True, type=int, help="Training stories.")
@click.option("--n-test", default=3000, show_default=True, type=int, help="Test stories.")
@click.option("--n-val", default=0, show_default=True, type=int, help="Validation stories.")
@click.option("--seed", default=0, show_default=True, type=int,
              help="Story i of a split depends only on (seed, split, i).")
@click.option("--image-size", default=64, show_default=True, type=int,
              help="Side of the square frames, which show CLEVR's 4:3 view squashed as StoryGAN did (64 = "
                   "StoryGAN's 320x240 -> 64x64); e.g. 128 or 256 for larger masters.")
@click.option("--samples", default=DEFAULT_SAMPLES, show_default=True, type=int, help="Cycles samples per pixel.")
@click.option("--denoise/--no-denoise", default=True, show_default=True,
              help="OpenImageDenoise with an albedo guide, over each whole frame.")
@click.option("--device", default="cpu", show_default=True, type=str,
              help="Cycles device: cpu, or gpu (the first of OptiX, CUDA, HIP, oneAPI, Metal that has a device).")
@click.option("--clevr-assets", default=None, type=click.Path(file_okay=False),
              help="Render the original shapes and materials of a clevr-dataset-gen checkout (its "
                   "image_generation/data folder, or the checkout itself) instead of svkit's own, which are made "
                   "in code to match them.")
@build_options(
    default_chunk=CHUNK_SIZE,
    workers_help="Rendering processes, each holding one Blender session with cores / workers Cycles threads (or "
                 "Ray actors with --ray, one CPU and one Cycles thread each).",
)
@progress_option
def build_clevr(out, n_train, n_test, n_val, seed, image_size, samples, denoise, device, clevr_assets, run, progress):
    """Render CLEVR-SV (StoryGAN's 4-frame CLEVR stories) into shards with Blender's Cycles.

    Every story adds one object per frame to a jittered CLEVR studio; frames come with sentences, StoryGAN's
    75-d condition vectors, attribute labels and, under extra/, every object attribute, position, box and
    instance mask (docs/clevr.md). Interrupt it at any time: re-running the same command resumes.
    """
    from sv_data.clevr.job import build_clevr as build
    from sv_data.outputs import check_outputs

    check_outputs(folders={"--out": out})
    files = build(out, {"train": n_train, "val": n_val, "test": n_test}, seed=seed, image_size=image_size,
                  samples=samples, denoise=denoise, device=device.lower(), clevr_assets=clevr_assets,
                  progress=progress, **run)
    report_outputs(files, out)


@click.command()
@click.option("--images", required=True, type=click.Path(file_okay=False),
              help="Folder of the release's frames, CLEVR_new_<story:06d>_<frame 1-4>.png (320x240 RGBA).")
@click.option("--dict", "dict_path", required=True, type=click.Path(dir_okay=False),
              help="The release's CLEVR_dict.npy: a Python 2 pickle of file name -> 75-d vector.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for train.h5 and test.h5.")
@click.option("--train", "train_range", default="100:10100", show_default=True,
              help="Story indices of the training split, START:STOP (STOP excluded), as in the paper.")
@click.option("--test", "test_range", default="10100:13100", show_default=True,
              help="Story indices of the test split, START:STOP (STOP excluded), as in the paper.")
@click.option("--image-size", default=64, show_default=True, type=int,
              help="Frames are resized (area interpolation) from 320x240 to this square size, as StoryGAN did.")
@progress_option
def import_storygan_clevr(images, dict_path, out, train_range, test_range, image_size, progress):
    """Convert the CLEVR-SV data of the official StoryGAN release into shards.

    The pickle is read with a restricted unpickler that admits only dicts, strings and numpy arrays: a file that
    tries to run code is refused.
    """
    from sv_data.clevr.importer import import_storygan_clevr as run, parse_range
    from sv_data.outputs import check_outputs

    check_outputs(folders={"--out": out}, inputs={"--images": images, "--dict": dict_path})
    ranges = {"train": parse_range("--train", train_range), "test": parse_range("--test", test_range)}
    files = run(images, dict_path, out, ranges, image_size=image_size, progress=progress)
    for split, path in files.items():
        click.echo(f"{split}: {path}")
