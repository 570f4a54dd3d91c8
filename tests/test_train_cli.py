"""`sv-model train` and `sv-model generate` from the command line, and the generation API."""
import json

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from shard_factory import write_shard
from test_model_data import COLOUR_NAMES, empty_shard, one_cpu_thread, squares_shard  # noqa: F401 (autouse fixture)

from cli.model import main
from sv_data.errors import SvkitError
from sv_data.pororo.characters import PORORO_CHARACTERS
from sv_data.pororo.encoder import CONDITION_DIM
from sv_data.shards import ShardReader, ShardSpec, ShardWriter, StoryBatch, read_info
from sv_model import checkpoint
from sv_model.generate import IncompatibleShardError, load_generator
from sv_model.networks import LEGACY_STORY_DIM, Generator, ModelConfig
from sv_model.options import TrainOptions

TINY = ["--image-size", "16", "--g-width", "4", "--d-width", "4", "--story-batch", "4", "--image-batch", "8",
        "--workers", "0", "--no-progress"]


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run of two steps on 16x16 squares: its folder and its training shard."""
    folder = tmp_path_factory.mktemp("trained")
    shard = squares_shard(folder / "train.h5", stories=6, size=16)
    torch.set_num_threads(1)
    code, output = run("train", shard, "--out", folder / "run", "--max-steps", 2, *TINY)
    assert code == 0, output
    return folder / "run", shard


def test_help_describes_the_commands():
    for command, option in (("train", "--image-size"), ("generate", "--checkpoint")):
        code, output = run(command, "--help")
        assert code == 0 and option in output


def test_train_writes_a_run_folder(trained):
    run_dir, _ = trained
    assert (run_dir / "config.json").is_file() and (run_dir / "checkpoints" / "step_000002.pt").is_file()
    assert (run_dir / "samples" / "step_000002.png").is_file()


def test_generate_writes_real_and_generated_frames_side_by_side(trained, tmp_path):
    run_dir, shard = trained
    out = tmp_path / "story.png"
    code, output = run("generate", "--checkpoint", run_dir / "checkpoints" / "step_000002.pt", "--data", shard,
                       "--index", 0, "--index", 3, "--out", out, "--device", "cpu")
    assert code == 0, output
    image = np.asarray(Image.open(out))
    gap = 2  # max(2, 16 // 8)
    assert image.shape == (2 * 16 + gap, 2 * 4 * 16 + gap, 3)
    with ShardReader(shard) as reader:  # the left half holds the real frames of story 3
        real = reader.read("images", [3])[0]
    np.testing.assert_array_equal(image[16 + gap :, : 4 * 16], np.concatenate(list(real), axis=1))


def test_generation_api_is_deterministic_per_seed_and_checks_the_shard(trained, tmp_path):
    run_dir, shard = trained
    generator = load_generator(run_dir / "checkpoints" / "step_000002.pt", device="cpu")
    info = read_info(shard)
    generator.check_compatible(info)
    assert (generator.dataset, generator.frames_per_story, generator.image_size) == ("squares", 4, (16, 16))
    assert (generator.condition_dim, generator.label_names) == (6, COLOUR_NAMES)
    with ShardReader(shard) as reader:
        conditions, labels = reader.read("conditions", range(5)), reader.read("labels", range(5))
    a = generator.generate(conditions, labels, seed=7, batch_size=2)
    assert a.shape == (5, 4, 16, 16, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, generator.generate(conditions, labels, seed=7))
    assert not np.array_equal(a, generator.generate(conditions, labels, seed=8))
    other = read_info(squares_shard(tmp_path / "other.h5", stories=1, size=16, dataset="clevr-sv"))
    with pytest.raises(IncompatibleShardError, match="dataset is clevr-sv in the shard, squares in the model"):
        generator.check_compatible(other)


def test_a_preset_sets_the_sizes_and_the_options_given_override_it():
    official = TrainOptions("train.h5", "run")
    assert (official.g_width, official.d_width, official.story_batch, official.image_batch) == (192, 96, 24, 24)
    assert official.recipe(story_state=75) == (
        "recipe: official StoryGAN CLEVR-SV configuration: widths G 192 / D 96, noise 100, story state 75, batches "
        "24 stories + 24 frames, label-loss weights D 1 / G 0.4, KL weight 2, lr 0.0002 halved every 20 epochs, "
        "2 G updates per D update")
    small = TrainOptions("train.h5", "run", preset="small", d_width=8, kl_weight=1.0)
    assert (small.g_width, small.d_width, small.story_batch, small.image_batch) == (32, 8, 8, 16)
    assert small.recipe(story_state=6).startswith(
        "recipe: small preset for CPU runs and the demo (not the official sizes) with --d-width 8 --kl-weight 1.0: "
        "widths G 32 / D 8,")
    with pytest.raises(SvkitError, match="--preset large: must be one of official, small"):
        TrainOptions("train.h5", "run", preset="large")


def test_the_first_line_says_which_recipe_trains(tmp_path):
    shard = squares_shard(tmp_path / "train.h5", stories=6, size=16)
    code, output = run("train", shard, "--out", tmp_path / "run", "--preset", "small", "--image-batch", 8,
                       "--max-steps", 1, "--image-size", 16, "--workers", 0, "--no-progress")
    assert code == 0, output
    lines = output.splitlines()
    assert lines[0].startswith("recipe: small preset for CPU runs and the demo (not the official sizes) with "
                               "--image-batch 8: widths G 32 / D 32, noise 100, story state 6, batches 8 stories + "
                               "8 frames")
    assert lines[1] == f"run folder: {tmp_path / 'run'} (new; resume it with --out {tmp_path / 'run'})"
    assert lines[2].startswith("training storygan on ") and lines[2].endswith(" on cpu, eager")  # --compile: GPUs
    options = json.loads((tmp_path / "run" / "config.json").read_text())["options"]
    assert (options["preset"], options["g_width"], options["story_batch"], options["image_batch"]) == (
        "small", 32, 8, 8)


def test_a_checkpoint_from_before_the_story_state_was_a_setting_loads_with_its_128_d_state(tmp_path):
    config = ModelConfig("storygan", "squares", 4, 6, COLOUR_NAMES, False, 16, g_width=4, d_width=4,
                         story_dim=LEGACY_STORY_DIM)
    old_model = config.to_dict()
    del old_model["story_dim"]  # as such checkpoints recorded the model
    torch.manual_seed(0)
    payload = {"format": checkpoint.FORMAT, "version": checkpoint.VERSION, "step": 3, "model": old_model,
               "networks": {"generator": Generator(config).state_dict()}}
    generator = load_generator(checkpoint.save_atomically(payload, tmp_path / "old.pt"), device="cpu")
    assert generator.config.story_dim == 128
    frames = generator.generate(np.zeros((1, 4, 6), np.float32), np.zeros((1, 4, 4), np.uint8), seed=0)
    assert frames.shape == (1, 4, 16, 16, 3)


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")  # the empty condition's layers
def test_a_shard_whose_frames_have_no_condition_needs_story_dim(tmp_path):
    shard = write_shard(tmp_path / "bare.h5", stories=4, size=(16, 16), condition_dim=0)
    code, output = run("train", shard, "--out", tmp_path / "run", "--max-steps", 1, *TINY)
    assert code == 2 and output == (f"error: {shard}: the story state takes its size from the frame condition, "
                                    "which is empty here: give --story-dim\n")
    code, output = run("train", shard, "--out", tmp_path / "run", "--max-steps", 1, "--story-dim", 3, *TINY)
    assert code == 0, output


def test_bad_inputs_end_with_one_line_and_status_2(trained, tmp_path):
    run_dir, shard = trained
    (tmp_path / "notes.h5").write_text("not a shard")
    code, output = run("train", tmp_path / "notes.h5", "--out", tmp_path / "a")
    assert code == 2 and output.strip() == f"error: {tmp_path / 'notes.h5'}: not an HDF5 file"
    code, output = run("train", empty_shard(tmp_path / "empty.h5", size=16), "--out", tmp_path / "b", *TINY)
    assert code == 2 and "holds no stories" in output
    code, output = run("train", shard, "--out", tmp_path / "c", "--max-steps", 1)
    assert code == 2 and "frames are 16x16 but the model draws 64x64; pass --image-size" in output
    code, output = run("train", shard, "--out", tmp_path / "d", "--epochs", 1, "--max-steps", 1, *TINY)
    assert code == 2 and "not both" in output
    code, output = run("generate", "--checkpoint", shard, "--data", shard, "--index", 0, "--out", tmp_path / "x.png")
    assert code == 2 and "not a readable checkpoint" in output
    checkpoint = run_dir / "checkpoints" / "step_000002.pt"
    code, output = run("generate", "-c", checkpoint, "--data", shard, "--index", 99, "--out", tmp_path / "x.png")
    assert code == 2 and "story index 99 is out of range 0..5" in output
    code, output = run("generate", "-c", checkpoint, "--texts", "a", "b", "--out", tmp_path / "x.png")
    assert code == 2 and "whose conditions are not sentence embeddings" in output
    assert len(output.strip().splitlines()) == 1
    code, output = run("generate", "-c", checkpoint, "--texts", "--out", tmp_path / "x.png")
    assert code == 2 and "--texts needs the story's sentences" in output
    code, output = run("generate", "-c", checkpoint, "--texts", "--index", 0, "a", "b", "--out", tmp_path / "x.png")
    assert code == 2 and "--index picks a story of --data" in output
    code, output = run("train", shard, "--out", tmp_path / "e", *TINY, "--story-batch", 1)
    assert code == 2 and "--story-batch 1: must be at least 2" in output
    code, output = run("train", shard, "--out", tmp_path / "e", *TINY, "--max-minutes", 0)
    assert code == 2 and output == "error: --max-minutes 0.0: must be a number > 0\n"
    lonely = squares_shard(tmp_path / "lonely.h5", stories=1, size=16)
    code, output = run("train", lonely, "--out", tmp_path / "f", "--max-steps", 1, *TINY)
    assert code == 2 and "1 stories are too few" in output and len(output.strip().splitlines()) == 1


def test_device_cuda_trains_on_the_gpu_or_says_there_is_none(trained, tmp_path):
    _, shard = trained
    code, output = run("train", shard, "--out", tmp_path / "gpu", "--max-steps", 1, "--device", "cuda", *TINY)
    if torch.cuda.is_available():
        assert code == 0, output
    else:
        assert code == 2 and "--device cuda: CUDA is not available on this machine" in output


def test_imagegan_baseline_trains_and_generates(tmp_path):
    shard = squares_shard(tmp_path / "train.h5", stories=6, size=16)
    code, output = run("train", shard, "--out", tmp_path / "run", "--max-steps", 2, "--model", "imagegan", *TINY)
    assert code == 0, output
    generator = load_generator(tmp_path / "run" / "checkpoints" / "step_000002.pt", device="cpu")
    assert generator.model == "imagegan"
    assert generator.generate(np.zeros((1, 4, 6), np.float32), np.zeros((1, 4, 4), np.uint8), 0).shape == (1, 4, 16, 16, 3)


def pororo_like_shard(path, stories=6, size=16):
    """A shard shaped like Pororo-SV: sentence-embedding conditions, the nine characters as labels."""
    spec = ShardSpec("pororo-sv", "train", 4, (size, size), PORORO_CHARACTERS, CONDITION_DIM,
                     condition_kind="sentence-embedding", labels_in_condition=True)
    rng = np.random.default_rng(0)
    with ShardWriter(path, spec) as writer:
        writer.append(StoryBatch(
            rng.integers(0, 256, (stories, 4, size, size, 3), dtype=np.uint8),
            [["Pororo runs."] * 4] * stories,
            [f"p{i}" for i in range(stories)],
            rng.integers(0, 2, (stories, 4, len(PORORO_CHARACTERS))),
            rng.standard_normal((stories, 4, CONDITION_DIM)).astype(np.float32),
        ))
    return path


def test_texts_draw_a_new_pororo_story_with_the_builders_encoder(tmp_path):
    shard = pororo_like_shard(tmp_path / "train.h5")
    code, output = run("train", shard, "--out", tmp_path / "run", "--max-steps", 1, *TINY)
    assert code == 0, output
    generator = load_generator(tmp_path / "run" / "checkpoints" / "step_000001.pt", device="cpu")
    assert generator.config.labels_in_condition and generator.config.input_dim == CONDITION_DIM + 9
    texts = ["Pororo is skiing.", "Crong follows Pororo.", "Eddy waves.", "They all laugh."]
    out = tmp_path / "new.png"
    code, output = run("generate", "-c", tmp_path / "run" / "checkpoints" / "step_000001.pt",
                       "--out", out, "--device", "cpu", "--texts", *texts)
    assert code == 0, output
    assert Image.open(out).size == (4 * 16, 16)
    code, output = run("generate", "-c", tmp_path / "run" / "checkpoints" / "step_000001.pt", "--texts", "One.",
                       "--out", out)
    assert code == 2 and "stories of 4 frames, got 1 texts" in output


def error_line(output: str) -> str:
    """The one ``error: ...`` line of a refused command (what it logged before is on stdout, not an error)."""
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in output, output
    return errors[0]


def test_a_refused_training_start_leaves_no_run_folder(trained, tmp_path):
    run_dir, shard = trained
    for option, value, problem in (("--lr", -1, "--lr -1.0: must be a number > 0"),
                                   ("--workers", -1, "--workers -1: must be at least 0"),
                                   ("--g-width", 0, "--g-width 0: must be at least 2")):
        code, output = run("train", shard, "--out", tmp_path / "new", "--max-steps", 1, *TINY, option, value)
        assert code == 2 and error_line(output) == f"error: {problem}"
        assert not (tmp_path / "new").exists()
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    code, output = run("train", shard, "--out", run_dir, "--max-steps", 3, *TINY, "--lr", -1)
    assert code == 2 and "--lr -1.0" in error_line(output)
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before  # an existing run as it was
    code, output = run("train", shard, "--out", tmp_path / "new", "--max-steps", 1, *TINY)
    assert code == 0, output  # the corrected command is not refused


def test_a_shard_with_nan_conditions_is_refused_before_training(tmp_path):
    shard = squares_shard(tmp_path / "nan.h5", stories=6, size=16)
    with h5py.File(shard, "a") as f:
        f["conditions"][2, 1, 0] = np.nan
    code, output = run("train", shard, "--out", tmp_path / "run", "--max-steps", 1, *TINY)
    assert code == 2
    assert error_line(output) == (f"error: {shard}: the conditions of story 2 hold NaN or infinite values; the shard "
                                  "cannot be used for training")
    assert not (tmp_path / "run").exists()


def test_training_stops_when_a_loss_turns_non_finite_and_keeps_the_last_good_checkpoint(tmp_path):
    shard = squares_shard(tmp_path / "train.h5", stories=6, size=16)
    run_dir = tmp_path / "run"
    # A learning rate this large throws the weights far enough in one step that the next one overflows.
    code, output = run("train", shard, "--out", run_dir, "--max-steps", 10, "--checkpoint-every", 1, "--log-every", 1,
                       *TINY, "--lr", 1000, "--g-updates", 1)
    assert code == 2
    line = error_line(output)
    assert "training diverged" in line and "is nan" in line and "step_000001.pt" in line
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step_000001.pt"]
    kept = torch.load(run_dir / "checkpoints" / "step_000001.pt", weights_only=True)
    assert all(torch.isfinite(w).all() for w in kept["networks"]["generator"].values() if w.is_floating_point())


@pytest.mark.parametrize("damage", ["truncated", "random bytes"])
def test_generate_calls_a_damaged_checkpoint_what_it_is(trained, tmp_path, damage):
    run_dir, shard = trained
    whole = (run_dir / "checkpoints" / "step_000002.pt").read_bytes()
    broken = tmp_path / "broken.pt"
    broken.write_bytes(whole[: len(whole) // 2] if damage == "truncated" else np.random.default_rng(0).bytes(4096))
    out = tmp_path / "story.png"
    code, output = run("generate", "-c", broken, "--data", shard, "--index", 0, "--out", out, "--device", "cpu")
    assert code == 2
    assert error_line(output) == f"error: {broken}: not a readable checkpoint (truncated or damaged?)"
    assert not out.exists()
