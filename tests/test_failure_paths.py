"""Every command's failure paths, run as a user would: one line `error: ...` naming the file and the problem, exit
status 2, before any long work, with the inputs left as they were and nothing left under an output's name."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
from click.testing import CliRunner
from shard_factory import write_shard
from test_clevr_importer import write_release

from cli.data import main as sv_data
from cli.model import main as sv_model

TINY = ["--image-size", "16", "--g-width", "4", "--d-width", "4", "--story-batch", "4", "--image-batch", "8",
        "--workers", "0", "--no-progress"]


def invoke(cli, *args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def error_line(result) -> str:
    """The one line of a refused command (CliRunner's result or a finished subprocess)."""
    code = getattr(result, "exit_code", getattr(result, "returncode", None))
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, result.stderr)
    return lines[0]


def snapshot(*paths) -> dict:
    return {path: Path(path).read_bytes() for path in paths}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A synthetic shard and the checkpoint of one training step on it."""
    folder = tmp_path_factory.mktemp("trained")
    shard = write_shard(folder / "train.h5")
    result = invoke(sv_model, "train", shard, "--out", folder / "run", "--max-steps", 1, *TINY)
    assert result.exit_code == 0, result.output
    return shard, folder / "run" / "checkpoints" / "step_000001.pt"


@pytest.fixture
def read_only(tmp_path):
    """An empty folder that refuses new files: a read-only mount for root (whom permission bits do not stop),
    permission bits for anyone else."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    if shutil.which("mount") is None:
        pytest.skip("root needs mount(8) to make a read-only folder, and it is not installed")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro", "tmpfs", str(folder)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot make a read-only mount here (mount -t tmpfs -o ro): {done.stderr.strip()}")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


@pytest.mark.parametrize("command", ["preview", "generate", "evaluate-checkpoint", "evaluate-data"])
def test_an_output_on_an_input_is_refused_and_the_input_kept(trained, tmp_path, command):
    shard, checkpoint = (shutil.copy(path, tmp_path) for path in trained)
    before = snapshot(shard, checkpoint)
    *args, input_option = {
        "preview": (sv_data, "preview", shard, "--out", shard, "SHARD"),
        "generate": (sv_model, "generate", "-c", checkpoint, "--data", shard, "--index", 0, "--out", shard, "--data"),
        "evaluate-checkpoint": (sv_model, "evaluate", "-c", checkpoint, "--data", shard, "--out", checkpoint,
                                "--checkpoint"),
        "evaluate-data": (sv_model, "evaluate", "-c", checkpoint, "--data", shard, "--out", shard, "--data"),
    }[command]
    assert error_line(invoke(*args)) == (f"error: --out {args[-1]} is also the input {input_option}: choose another "
                                         "name, so that the input is kept")
    assert snapshot(shard, checkpoint) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted({Path(shard).name, Path(checkpoint).name})


def test_evaluate_refuses_a_report_name_that_its_table_would_take(trained, tmp_path):
    shard, checkpoint = trained
    table = tmp_path / "rep.txt"
    line = error_line(invoke(sv_model, "evaluate", "-c", checkpoint, "--data", shard, "--out", table))
    assert line == f"error: --out and its .txt table would both be written to {table}: choose another name"
    table.mkdir()  # and a folder where the table of rep.json goes
    line = error_line(invoke(sv_model, "evaluate", "-c", checkpoint, "--data", shard, "--out", tmp_path / "rep.json"))
    assert line == f"error: its .txt table {table}: is a folder, but a file is meant here"
    assert [p.name for p in tmp_path.iterdir()] == ["rep.txt"]


@pytest.mark.parametrize("command", ["preview", "merge", "repack", "build-clevr", "import-storygan-clevr",
                                     "build-pororo", "import-storygan-pororo", "train", "generate", "train-evaluator",
                                     "evaluate"])
def test_a_read_only_output_folder_is_one_line_before_any_work(trained, tmp_path, read_only, command):
    shard, checkpoint = trained
    (tmp_path / "release").mkdir()
    images, dict_path, _ = write_release(tmp_path / "release", range(1))
    (tmp_path / "descriptions.csv").write_text("episode,clip,video,description\n")
    out = read_only / "out"
    args = {
        "preview": (sv_data, "preview", shard, "--out", out),
        "merge": (sv_data, "merge", read_only),
        "repack": (sv_data, "repack", shard, out),
        "build-clevr": (sv_data, "build-clevr", "--out", out, "--n-train", 1, "--n-test", 0, "--samples", 1),
        "import-storygan-clevr": (sv_data, "import-storygan-clevr", "--images", images, "--dict", dict_path,
                                  "--out", out, "--train", "0:1", "--test", "0:0"),
        "build-pororo": (sv_data, "build-pororo", "--videos", tmp_path, "--descriptions",
                         tmp_path / "descriptions.csv", "--out", out),
        "import-storygan-pororo": (sv_data, "import-storygan-pororo", "--root", tmp_path, "--out", out),
        "train": (sv_model, "train", shard, "--out", out, "--max-steps", 1, *TINY),
        "generate": (sv_model, "generate", "-c", checkpoint, "--data", shard, "--index", 0, "--out", out),
        "train-evaluator": (sv_model, "train-evaluator", shard, "--out", out),
        "evaluate": (sv_model, "evaluate", "-c", checkpoint, "--data", shard, "--out", out),
    }[command]
    line = error_line(invoke(*args))
    assert f"cannot write in {read_only}: " in line and ("Read-only file system" in line or "Permission denied" in line)
    assert list(read_only.iterdir()) == []


def test_a_file_where_a_folder_is_meant_and_the_other_way_round(trained, tmp_path):
    shard, checkpoint = trained
    notes = tmp_path / "afile.txt"
    notes.write_text("notes")
    line = error_line(invoke(sv_data, "build-pororo", "--videos", tmp_path, "--descriptions", notes, "--out", notes))
    assert line == f"error: --out {notes}: is a file, but a folder is meant here"
    line = error_line(invoke(sv_model, "train", shard, "--out", notes / "run", *TINY))
    assert line == f"error: --out {notes / 'run'}: {notes} is a file, not a folder"
    assert notes.read_text() == "notes"
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)  # writing the preview "into" it would replace the pipe (as root, /dev/null alike)
    line = error_line(invoke(sv_data, "preview", shard, "--out", pipe))
    assert line == f"error: --out {pipe}: is a device or pipe, not a regular file"
    assert not pipe.is_file()


def test_a_name_too_long_for_the_file_system_is_one_line(trained, tmp_path):
    out = tmp_path / ("a" * 245 + ".png")  # fits in 255 bytes, its temporary name does not
    line = error_line(invoke(sv_data, "preview", trained[0], "--out", out))
    assert line == f"error: --out {out}: cannot write in {tmp_path}: File name too long"


def test_an_os_error_on_a_path_the_user_gave_is_one_line(tmp_path):
    images, dict_path, _ = write_release(tmp_path, range(2))
    out = tmp_path / "out"
    out.mkdir()
    (out / "parts").write_text("not the parts folder")
    result = invoke(sv_data, "import-storygan-clevr", "--images", images, "--dict", dict_path, "--out", out,
                    "--train", "0:1", "--test", "1:2")
    assert error_line(result) == f"error: {out / 'parts'}: File exists"
    assert sorted(p.name for p in out.iterdir()) == ["parts"]


def sv_data_process(*args, timeout=120) -> subprocess.CompletedProcess:
    """sv-data in its own process (Ray and Blender stay out of the test process)."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return subprocess.run([sys.executable, "-m", "cli.data", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.mark.parametrize("address, problem", [
    ("auto", "no Ray cluster at auto: start one with `ray start --head` or use --ray local"),
    ("bogus:1", "no Ray cluster at bogus:1: unknown host"),
    ("127.0.0.1:1", "no Ray cluster at 127.0.0.1:1: Connection refused"),
])
def test_a_ray_address_without_a_cluster_fails_fast_in_one_line(tmp_path, address, problem):
    pytest.importorskip("ray")
    if address == "auto" and Path("/tmp/ray/ray_current_cluster").exists():
        pytest.skip("a Ray cluster runs on this machine, so --ray auto finds one")
    out = tmp_path / "clevr"
    done = sv_data_process("build-clevr", "--out", out, "--n-train", 2, "--n-test", 0, "--image-size", 8,
                           "--samples", 1, "--workers", 1, "--no-progress", "--ray", address, timeout=60)
    assert error_line(done) == f"error: {problem}"
    assert not (out / "train.h5").exists() and list((out / "parts").iterdir()) == []


def test_validate_gives_every_file_its_verdict(tmp_path):
    good, good2 = write_shard(tmp_path / "good.h5"), write_shard(tmp_path / "good2.h5", stories=3)
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not a shard")
    result = invoke(sv_data, "validate", good, bad, good2)
    assert error_line(result) == f"error: {bad}: not an HDF5 file"
    assert result.stdout.splitlines() == [f"{good}: valid (10 stories)", f"{good2}: valid (3 stories)"]


def test_import_storygan_clevr_checks_that_every_frame_decodes_before_writing(tmp_path):
    images, dict_path, _ = write_release(tmp_path, range(3))
    broken = images / "CLEVR_new_000002_3.png"
    broken.write_bytes(broken.read_bytes()[:200])  # a truncated download
    assert cv2.imread(str(broken)) is None
    out = tmp_path / "out"
    result = invoke(sv_data, "import-storygan-clevr", "--images", images, "--dict", dict_path, "--out", out,
                    "--train", "0:2", "--test", "2:3", "--no-progress")
    assert error_line(result) == (f"error: {broken}: not a readable image (1 frames of the chosen ranges are "
                                  "missing or unusable)")
    assert not out.exists()


def test_progress_is_one_switch_on_every_command_with_a_progress_bar(tmp_path):
    for cli, command in ((sv_data, "repack"), (sv_data, "build-clevr"), (sv_data, "import-storygan-clevr"),
                         (sv_data, "build-pororo"), (sv_data, "import-storygan-pororo"), (sv_model, "train"),
                         (sv_model, "evaluate"), (sv_model, "train-evaluator")):
        help_text = invoke(cli, command, "--help").stdout
        assert "--progress / --no-progress" in help_text and "--quiet" not in help_text, command
    images, dict_path, _ = write_release(tmp_path, range(1))
    for switch in ("--quiet", "--no-progress"):  # --quiet, the old spelling, still works
        result = invoke(sv_data, "import-storygan-clevr", "--images", images, "--dict", dict_path,
                        "--out", tmp_path / switch, "--train", "0:1", "--test", "0:0", switch)
        assert result.exit_code == 0 and result.stderr == "", result.output  # no progress bar on stderr
        assert (tmp_path / switch / "train.h5").is_file()
