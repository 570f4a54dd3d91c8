"""The three commands as a new user types them, run as console scripts at their defaults; only the sizes are made
tiny, through the SVKIT_<COMMAND>_<OPTION> environment variables (cli/defaults.py), so the code path is the
user's."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from shard_factory import write_shard

from sv_data.errors import SvkitError
from sv_data.pororo.descriptions import find_descriptions
from sv_data.pororo.toy import write_toy_show
from sv_model.run_paths import new_run_dir, val_shard_beside

BIN = Path(sys.executable).parent
TINY = {
    "SVKIT_BUILD_CLEVR_N_TEST": "1", "SVKIT_BUILD_CLEVR_IMAGE_SIZE": "32", "SVKIT_BUILD_CLEVR_SAMPLES": "1",
    "SVKIT_BUILD_CLEVR_WORKERS": "1",
    "SVKIT_BUILD_PORORO_IMAGE_SIZE": "16", "SVKIT_BUILD_PORORO_WORKERS": "1",
    "SVKIT_TRAIN_MAX_STEPS": "2", "SVKIT_TRAIN_IMAGE_SIZE": "16", "SVKIT_TRAIN_G_WIDTH": "4",
    "SVKIT_TRAIN_D_WIDTH": "4", "SVKIT_TRAIN_STORY_BATCH": "2", "SVKIT_TRAIN_IMAGE_BATCH": "4",
    "SVKIT_TRAIN_WORKERS": "0", "SVKIT_TRAIN_VAL_STORIES": "2", "SVKIT_TRAIN_DEVICE": "cpu",
}


def user_runs(cwd: Path, command: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **TINY, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([str(BIN / command), *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def test_build_clevr_as_written(tmp_path):
    done = user_runs(tmp_path, "sv-data", "build-clevr", "--n-train", "2")
    assert "%|" in done.stderr  # the progress bar
    assert last_line(done.stdout) == "next: sv-model train data/clevr-sv/train.h5"
    assert (tmp_path / "data/clevr-sv/train.h5").is_file() and (tmp_path / "data/clevr-sv/test.h5").is_file()


@pytest.fixture(scope="module")
def pororo_release_layout(tmp_path_factory) -> Path:
    """A show laid out as PororoQA is: the videos folder, and descriptions.csv beside it (not inside)."""
    root = tmp_path_factory.mktemp("pororoqa")
    _, table = write_toy_show(root)
    shutil.move(table, root / "descriptions.csv")
    return root


@pytest.fixture(scope="module")
def built_pororo(pororo_release_layout) -> tuple[Path, subprocess.CompletedProcess]:
    return pororo_release_layout, user_runs(pororo_release_layout, "sv-data", "build-pororo", "--videos", "videos")


def test_build_pororo_as_written_finds_descriptions_beside_the_videos(built_pororo):
    root, done = built_pororo
    assert f"descriptions: {root / 'descriptions.csv'}" in done.stderr
    assert "%|" in done.stderr
    assert last_line(done.stdout) == "next: sv-model train pororo-sv/train.h5"
    assert {p.name for p in (root / "pororo-sv").glob("*.h5")} == {"train.h5", "val.h5", "test.h5"}


def test_train_as_written_makes_a_new_run_folder_and_validates_on_val_beside(built_pororo):
    root, _ = built_pororo
    done = user_runs(root, "sv-model", "train", "pororo-sv/train.h5")
    recipe, named = done.stdout.splitlines()[:2]
    # The official recipe, with the sizes that TINY's variables change, as any option given changes it.
    assert recipe.startswith("recipe: official StoryGAN CLEVR-SV configuration with --g-width 4 --d-width 4 "
                             "--story-batch 2 --image-batch 4: ")
    assert named.startswith("run folder: runs/")
    run = root / named.split()[2]
    assert "pororo-sv/train.h5: using val.h5 beside it for validation" in done.stderr
    assert "%|" in done.stderr
    best = run.relative_to(root) / "checkpoints" / "best.pt"
    assert last_line(done.stdout).endswith(f"next: sv-model generate -c {best} --data pororo-sv/val.h5 --index 0 "
                                           f"--out {run.relative_to(root)}/story.png")
    assert (root / best).is_file()
    again = user_runs(root, "sv-model", "train", "pororo-sv/train.h5")
    assert again.stdout.splitlines()[1] != named


def test_descriptions_are_looked_for_in_the_videos_folder_first(tmp_path):
    (tmp_path / "videos").mkdir()
    with pytest.raises(SvkitError, match=r"no descriptions.csv in .*videos or beside it .*--descriptions FILE"):
        find_descriptions(tmp_path / "videos")
    (tmp_path / "descriptions.csv").write_text("beside")
    assert find_descriptions(tmp_path / "videos") == tmp_path / "descriptions.csv"
    (tmp_path / "videos" / "descriptions.csv").write_text("inside")
    assert find_descriptions(tmp_path / "videos") == tmp_path / "videos" / "descriptions.csv"


def test_run_folders_never_collide_and_validation_is_never_the_test_split(tmp_path):
    runs = {new_run_dir(tmp_path / "runs") for _ in range(20)}
    assert len(runs) == 20 and not any(r.exists() for r in runs)
    taken = new_run_dir(tmp_path / "runs")
    taken.mkdir(parents=True)
    assert all(new_run_dir(tmp_path / "runs") != taken for _ in range(20))
    (tmp_path / "train.h5").touch()
    (tmp_path / "test.h5").touch()
    assert val_shard_beside(tmp_path / "train.h5") is None
    (tmp_path / "val.h5").touch()
    assert val_shard_beside(tmp_path / "train.h5") == tmp_path / "val.h5"
    assert val_shard_beside(tmp_path / "val.h5") is None


def test_without_the_defaults_files_the_commands_stop_with_one_line(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from cli.data import main as sv_data
    from cli.model import main as sv_model

    monkeypatch.chdir(tmp_path)
    (tmp_path / "videos").mkdir()
    result = CliRunner().invoke(sv_data, ["build-pororo", "--videos", "videos"])
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert result.output.startswith("error: no descriptions.csv in videos or beside it")
    (tmp_path / "notes.h5").write_text("not a shard")
    result = CliRunner().invoke(sv_model, ["train", "notes.h5"])
    assert result.exit_code == 2 and result.output == "error: notes.h5: not an HDF5 file\n"
    assert not (tmp_path / "runs").exists()  # no empty run folder for a run that never started
    shard = write_shard(tmp_path / "squares.h5", stories=4)
    result = CliRunner().invoke(sv_model, ["train", str(shard), "--image-size", "16", "--lr", "-1"])
    assert result.exit_code == 2 and result.output.startswith("error: --lr -1.0")
    assert not (tmp_path / "runs").exists()
