"""sv-data inspect / validate / preview, run as a user would."""
import json
import subprocess
import sys

import h5py
import pytest
from click.testing import CliRunner
from PIL import Image
from shard_factory import write_shard
from test_shards import DAMAGES, damaged_shard

from cli.data import main


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_inspect_reports_header_labels_and_texts(tmp_path):
    path = write_shard(tmp_path / "train.h5", stories=5)
    result = run("inspect", path, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["stories"] == 5 and summary["frames_per_story"] == 4 and summary["image_size"] == [16, 16]
    assert summary["dataset"] == "synthetic" and summary["split"] == "train"
    assert set(summary["label_frequencies"]) == {"red", "green", "blue"}
    assert summary["text_words"]["mean"] == 4.0
    assert summary["build_config"]["maker"] == "tests"
    table = run("inspect", path)
    assert "5 x 4 frames of 16x16" in table.output and "frame_number" in table.output


def test_validate_passes_a_good_shard_and_lists_violations(tmp_path):
    good = write_shard(tmp_path / "good.h5")
    assert run("validate", good).exit_code == 0
    bad = write_shard(tmp_path / "bad.h5")
    with h5py.File(bad, "r+") as f:
        f["labels"][0, 0, 0] = 2
        f["images"][1, 1] = 0
    result = run("validate", good, bad)
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.startswith(str(bad))]
    assert len(lines) == 2


def test_preview_draws_one_row_per_story(tmp_path):
    path = write_shard(tmp_path / "train.h5", stories=12)
    out = tmp_path / "sheet.png"
    assert run("preview", path, "--out", out, "--stories", 3, "--seed", 1).exit_code == 0
    with Image.open(out) as sheet:
        three = sheet.size
    run("preview", path, "--out", out, "--stories", 6)
    with Image.open(out) as sheet:
        six = sheet.size
    assert three[0] == six[0] and six[1] == 2 * three[1]


def command_line(command, path, tmp_path):
    return [command, path, *(["--out", tmp_path / "sheet.png"] if command == "preview" else [])]


# A folder is refused by click itself (dir_okay=False), with its usage message: read_info's own test covers it.
@pytest.mark.parametrize("damage", [d for d in DAMAGES if d != "folder"])
@pytest.mark.parametrize("command", ["inspect", "validate", "preview"])
def test_bad_input_exits_2_with_one_line_naming_the_file(tmp_path, command, damage):
    path, message = damaged_shard(tmp_path, damage)
    result = run(*command_line(command, path, tmp_path))
    assert result.exit_code == 2, (result.output, result.exception)
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith(f"error: {path}: ") and message in line
    assert not (tmp_path / "sheet.png").exists()


@pytest.mark.parametrize("command", ["inspect", "preview"])
def test_readers_refuse_datasets_that_disagree_and_validate_lists_them(tmp_path, command):
    path = write_shard(tmp_path / "x.h5", stories=4)
    with h5py.File(path, "r+") as f:
        f["conditions"].resize(3, axis=0)
    result = run(*command_line(command, path, tmp_path))
    assert result.exit_code == 2 and result.stderr.splitlines() == [
        f"error: {path}: conditions has shape (3, 4, 6), expected (4, 4, 6)"]
    listed = run("validate", path)
    assert listed.exit_code == 1 and listed.stderr.splitlines() == [
        f"{path}: conditions has shape (3, 4, 6), expected (4, 4, 6)"]


@pytest.mark.parametrize("command", ["inspect", "validate", "preview"])
def test_bad_input_exits_2_with_one_line(tmp_path, command):
    path = tmp_path / "video.h5"
    path.write_bytes(b"not hdf5 at all")
    extra = ["--out", str(tmp_path / "x.png")] if command == "preview" else []
    result = subprocess.run([sys.executable, "-m", "cli.data", command, str(path), *extra],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {path}: not an HDF5 file"


def test_every_command_has_help():
    from cli.data import COMMANDS

    for name in ["--help", *COMMANDS]:
        args = [name] if name == "--help" else [name, "--help"]
        result = run(*args)
        assert result.exit_code == 0 and "Usage:" in result.output, (name, result.output)


@pytest.mark.parametrize(
    "program, args, needle",
    [
        ("cli.data", ["inspect", "{tmp}"], "is a directory"),
        ("cli.data", ["preview", "{tmp}/a.h5", "--out", "x.png", "--stories", "many"], "'many' is not a valid integer"),
        ("cli.data", ["no-such-command"], "No such command 'no-such-command'"),
        ("cli.model", ["train", "{tmp}/a.h5", "--out", "{tmp}/run", "--epochs", "abc"], "'abc' is not a valid integer"),
    ],
)
def test_usage_errors_are_one_line_too(tmp_path, program, args, needle):
    """click's own errors (a folder for a file, a word for a number) follow the one-line rule of svkit's errors."""
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = subprocess.run([sys.executable, "-m", program, *args], capture_output=True, text=True)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], result.stderr
    assert "--help" in lines[0]
