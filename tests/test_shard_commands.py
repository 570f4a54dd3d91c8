"""sv-data inspect / validate / preview / repack, run as a user would."""
import dataclasses
import json
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from shard_factory import synthetic_batch, synthetic_spec, write_shard
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


def earlier_svkit_shard(path, monkeypatch, stories=12):
    """A shard as svkit wrote them before deflate: images and the image-like extra LZF-compressed; frames of a
    gradient with a little noise, which compress as rendered frames do; the header of a file from before condition
    kinds, its dataset name a fixed-length string; and an object outside the format."""
    import sv_data.shards.layout as layout
    from sv_data.shards import ExtraSpec, ShardWriter

    spec = dataclasses.replace(synthetic_spec(size=(32, 32)), extras={
        **synthetic_spec().extras, "masks": ExtraSpec((4, 32, 32), "uint8", "one object mask per frame")})
    batch = synthetic_batch(spec, 0, stories)
    rng = np.random.default_rng(0)
    batch.images[:] = np.arange(32, dtype=np.uint8)[:, None, None] * 6 + (rng.random(batch.images.shape) < 0.1)
    batch.extra["masks"] = (rng.random((stories, 4, 32, 32)) < 0.1).astype(np.uint8)
    with monkeypatch.context() as old:
        old.setattr(layout, "IMAGE_COMPRESSION", "lzf")
        old.setattr(layout, "IMAGE_COMPRESSION_LEVEL", None)
        with ShardWriter(path, spec) as writer:
            writer.append(batch)
    with h5py.File(path, "r+") as f:
        del f.attrs["condition_kind"], f.attrs["labels_in_condition"]
        f.attrs["dataset"] = np.bytes_("synthetic")
        f["provenance"] = np.arange(3)
        f["provenance"].attrs["note"] = "kept by repack"
    return path


def contents(path) -> dict:
    """Every object of an HDF5 file with its attributes (values and HDF5 types) and values, storage aside."""
    found = {}

    def note(name, obj):
        attributes = {key: (repr(obj.attrs[key]), obj.attrs.get_id(key).dtype) for key in obj.attrs}
        values = (obj.dtype, obj.shape, obj[()].tolist()) if isinstance(obj, h5py.Dataset) else None
        found[name] = attributes, values

    with h5py.File(path) as f:
        note("/", f)
        f.visititems(note)
    return found


def test_repack_stores_an_lzf_shard_anew_with_every_value_and_attribute_kept(tmp_path, monkeypatch):
    from sv_data.torch_data import StoryDataset

    old, new = earlier_svkit_shard(tmp_path / "old.h5", monkeypatch), tmp_path / "new.h5"
    before = old.read_bytes()
    result = run("repack", old, new, "--no-progress")
    assert result.exit_code == 0 and result.output == f"wrote {new}\n", result.output
    assert old.read_bytes() == before
    assert contents(new) == contents(old)
    with h5py.File(old) as f, h5py.File(new) as g:
        for name in ("images", "extra/masks"):
            assert f[name].compression == "lzf" and g[name].compression == "gzip", name
            assert g[name].chunks == (1, *g[name].shape[1:]), name
            assert g[name].id.get_storage_size() < 0.6 * f[name].id.get_storage_size(), name
    assert new.stat().st_size < old.stat().st_size
    assert run("validate", new).output == f"{new}: valid (12 stories)\n"
    stories_then, stories_now = StoryDataset(old), StoryDataset(new)  # LZF shards read as they are
    for then, now in zip(stories_then.__getitems__([5, 0, 11]), stories_now.__getitems__([5, 0, 11])):
        assert then.keys() == now.keys() and all(torch.equal(then[k], now[k]) for k in ("images", "conditions"))


def test_repack_with_stories_writes_the_first_stories_of_the_shard_as_a_valid_smaller_shard(tmp_path):
    shard, first = write_shard(tmp_path / "all.h5", stories=10), tmp_path / "first.h5"
    result = run("repack", shard, first, "--stories", "4", "--no-progress")
    assert result.exit_code == 0 and result.output == f"wrote {first}\n", result.output
    assert run("validate", first).output == f"{first}: valid (4 stories)\n"
    with h5py.File(shard) as f, h5py.File(first) as g:
        assert int(g.attrs["num_stories"]) == 4 and int(f.attrs["num_stories"]) == 10
        assert {k: v for k, v in g.attrs.items() if k != "num_stories"}.keys() == f.attrs.keys() - {"num_stories"}
        for name in ("images", "conditions", "labels", "story_ids", "texts"):
            assert np.array_equal(g[name][()], f[name][:4]), name


def test_repack_refuses_more_stories_than_the_shard_holds(tmp_path):
    shard = write_shard(tmp_path / "a.h5", stories=3)
    result = run("repack", shard, tmp_path / "b.h5", "--stories", "5", "--no-progress")
    assert result.exit_code == 2
    assert result.stderr == f"error: {shard}: holds 3 stories, so the first 5 cannot be written\n"
    assert run("repack", shard, tmp_path / "b.h5", "--stories", "0").exit_code == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.h5"]


def test_repack_refuses_its_input_or_an_existing_file_as_output(tmp_path):
    shard, other = write_shard(tmp_path / "a.h5"), write_shard(tmp_path / "b.h5", stories=3)
    before = {path: path.read_bytes() for path in (shard, other)}
    same = run("repack", shard, tmp_path / "." / "a.h5")
    assert same.exit_code == 2 and same.stderr == (f"error: OUT {tmp_path / '.' / 'a.h5'} is also the input IN: "
                                                    "choose another name, so that the input is kept\n")
    taken = run("repack", shard, other)
    assert taken.exit_code == 2 and taken.stderr == (f"error: {other}: exists already: repack writes a new file, "
                                                     "choose another name\n")
    assert {path: path.read_bytes() for path in (shard, other)} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.h5", "b.h5"]
