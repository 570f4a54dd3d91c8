"""The shard format v1: writing, reading, joining, validating."""
import dataclasses
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from shard_factory import synthetic_batch, synthetic_spec, write_shard

from sv_data.shards import (
    COLUMNS,
    FORMAT_VERSION,
    ShardError,
    ShardReader,
    ShardWriter,
    join_parts,
    label_frequencies,
    read_info,
    repack,
    validate,
)
from sv_data.torch_data import FrameDataset, StoryDataset


def test_round_trip_keeps_every_array(tmp_path):
    spec = synthetic_spec()
    path = tmp_path / "train.h5"
    with ShardWriter(path, spec) as writer:
        writer.append(synthetic_batch(spec, 0, 3))
        writer.append(synthetic_batch(spec, 3, 7))
    expected = synthetic_batch(spec, 0, 7)
    info = read_info(path)
    assert info.num_stories == 7 and info.spec == spec
    with ShardReader(path) as reader:
        got = reader.read_stories(range(7))
    np.testing.assert_array_equal(got.images, expected.images)
    np.testing.assert_array_equal(got.labels, expected.labels)
    np.testing.assert_array_equal(got.conditions, expected.conditions)
    np.testing.assert_array_equal(got.extra["frame_number"], expected.extra["frame_number"])
    assert got.texts == expected.texts and got.story_ids == expected.story_ids
    with h5py.File(path) as f:
        assert f["images"].chunks == (1, 4, 16, 16, 3)
        assert (f["images"].compression, f["images"].compression_opts) == ("gzip", 6)
        assert f.attrs["sv_format_version"] == FORMAT_VERSION


def test_reader_returns_stories_in_the_order_asked(tmp_path):
    path = write_shard(tmp_path / "train.h5", stories=10)
    with ShardReader(path) as reader:
        got = reader.read_stories([7, 2, 2, 9])
        assert got.story_ids == ["train-00007", "train-00002", "train-00002", "train-00009"]
        frames = reader.read_images([3, 1], frames=[2, 0])
        np.testing.assert_array_equal(frames[0], reader.read("images", [3])[0, 2])
        with pytest.raises(IndexError):
            reader.read("labels", [10])


def test_a_crash_while_writing_leaves_no_file(tmp_path):
    spec = synthetic_spec()
    path = tmp_path / "train.h5"
    with pytest.raises(RuntimeError):
        with ShardWriter(path, spec) as writer:
            writer.append(synthetic_batch(spec, 0, 2))
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_a_batch_of_the_wrong_shape_is_refused(tmp_path):
    spec = synthetic_spec()
    other = synthetic_spec(size=(8, 8))
    with pytest.raises(ShardError, match="images has shape"):
        with ShardWriter(tmp_path / "x.h5", spec) as writer:
            writer.append(synthetic_batch(other, 0, 2))


def test_join_parts_equals_one_file(tmp_path):
    spec = synthetic_spec()
    parts = []
    for start, stop in [(0, 4), (4, 9)]:
        with ShardWriter(tmp_path / f"part{start}.h5", spec, story_range=(start, stop)) as writer:
            writer.append(synthetic_batch(spec, start, stop))
        parts.append(tmp_path / f"part{start}.h5")
    joined = join_parts(parts, tmp_path / "train.h5")
    with ShardReader(joined) as reader:
        got = reader.read_stories(range(9))
        assert reader.info.story_range is None
    np.testing.assert_array_equal(got.images, synthetic_batch(spec, 0, 9).images)
    assert validate(joined) == []


def _part(folder, name, story_range, stories=None, **spec_options):
    """A part file claiming ``story_range`` and holding ``stories`` (by default: those of its range)."""
    spec = synthetic_spec(**spec_options)
    with ShardWriter(folder / f"{name}.h5", spec, story_range=story_range) as writer:
        writer.append(synthetic_batch(spec, *(stories or story_range)))
    return folder / f"{name}.h5"


@pytest.mark.parametrize(
    "parts, message",
    [
        pytest.param([("a", (0, 3)), ("b", (0, 3))], r"story range \(0, 3\) does not follow a.h5's \(0, 3\)",
                     id="overlap"),
        pytest.param([("a", (0, 3)), ("b", (4, 6))], "does not follow", id="gap"),
        pytest.param([("b", (3, 6)), ("a", (0, 3))], "does not follow", id="out-of-order"),  # copied as given
        pytest.param([("a", (0, 3)), ("b", (3, 6), (3, 5))], "promises 3 stories, the part holds 2", id="short"),
        pytest.param([("a", (0, 3)), ("b", (3, 6), (0, 3))], "appears in more than one part", id="same-ids"),
        pytest.param([("a", (0, 3)), ("small", None, (0, 2), {"size": (8, 8)})], "image_size differs",
                     id="mismatch"),
    ],
)
def test_a_refused_join_leaves_no_file(tmp_path, parts, message):
    (tmp_path / "parts").mkdir()
    (tmp_path / "out").mkdir()
    paths = [_part(tmp_path / "parts", *part[:3], **(part[3] if len(part) > 3 else {})) for part in parts]
    with pytest.raises(ShardError, match=message):
        join_parts(paths, tmp_path / "out" / "train.h5")
    assert list((tmp_path / "out").iterdir()) == []  # neither train.h5 nor its temporary file


def test_the_writer_syncs_the_file_before_renaming_it_and_the_folder_after(tmp_path, monkeypatch):
    import os
    import stat

    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file",
                       (tmp_path / "train.h5").exists()))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", Path(dst) == tmp_path / "train.h5"))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    write_shard(tmp_path / "train.h5", stories=2)
    assert events == [("fsync file", False), ("replace", True), ("fsync folder", True)]
    assert read_info(tmp_path / "train.h5").num_stories == 2


def test_validate_accepts_a_good_shard_and_names_each_violation(tmp_path):
    good = write_shard(tmp_path / "good.h5", stories=5)
    assert validate(good) == []
    bad = write_shard(tmp_path / "bad.h5", stories=5)
    with h5py.File(bad, "r+") as f:
        f["labels"][1, 0, 0] = 3
        f["story_ids"][4] = f["story_ids"][0]
        texts = f["texts"][2]
        texts[1] = "  "
        f["texts"][2] = texts
        f["images"][3, 2] = 7
        f["conditions"][0, 0, 0] = np.nan
    problems = validate(bad)
    assert len(problems) == 5, problems
    joined = "\n".join(problems)
    for expected in ("not unique", "other than 0 and 1", "NaN", "empty text", "all one value"):
        assert expected in joined
    assert all(p.startswith(str(bad)) for p in problems)


def test_validate_reports_shape_disagreement(tmp_path):
    path = write_shard(tmp_path / "x.h5", stories=4)
    with h5py.File(path, "r+") as f:
        f["labels"].resize(3, axis=0)
    assert any("labels has shape (3, 4, 3), expected (4, 4, 3)" in p for p in validate(path))


def test_every_declared_column_round_trips_with_its_dtype_and_shape(tmp_path):
    spec = synthetic_spec(frames=3, size=(8, 12), condition_dim=5)
    written = synthetic_batch(spec, 0, 4)
    path = tmp_path / "x.h5"
    with ShardWriter(path, spec) as writer:
        writer.append(written)
    with ShardReader(path) as reader:
        read = reader.read_stories([3, 0, 2])
    sizes = {"T": 3, "H": 8, "W": 12, "L": len(spec.label_names), "D": 5}
    with h5py.File(path) as f:
        for column in COLUMNS:
            want = (4, *(sizes[d] if isinstance(d, str) else d for d in column.per_story))
            assert f[column.name].shape == want, column.name
            assert (h5py.check_string_dtype(f[column.name].dtype) is not None) == column.text, column.name
            expected, got = getattr(written, column.name), getattr(read, column.name)
            if column.text:
                assert got == [expected[i] for i in (3, 0, 2)], column.name
            else:
                assert got.dtype == np.dtype(column.dtype), column.name
                np.testing.assert_array_equal(got, expected[[3, 0, 2]], err_msg=column.name)


@pytest.mark.parametrize("column", [c.name for c in COLUMNS])
def test_validate_and_readers_name_a_missing_column(tmp_path, column):
    path = write_shard(tmp_path / "x.h5", stories=3)
    with h5py.File(path, "r+") as f:
        del f[column]
    assert validate(path) == [f"{path}: shard is missing {column}"]
    with pytest.raises(ShardError, match=f"shard is missing {column}$"):
        ShardReader(path)


@pytest.mark.parametrize("column", [c.name for c in COLUMNS])
def test_a_batch_lacking_rows_of_any_column_is_refused_by_name(tmp_path, column):
    spec = synthetic_spec()
    batch = synthetic_batch(spec, 0, 3)
    # Short story_ids make a batch of 2 stories, which every other column then disagrees with.
    setattr(batch, column, getattr(batch, column)[:2])
    with ShardWriter(tmp_path / "x.h5", spec) as writer, pytest.raises(ShardError, match="has shape"):
        writer.append(batch)


def test_label_frequencies(tmp_path):
    path = write_shard(tmp_path / "x.h5", stories=6)
    with ShardReader(path) as reader:
        labels = reader.read("labels", range(6))
    freqs = label_frequencies(path)
    assert freqs["green"] == pytest.approx(labels[..., 1].mean())


def _edit(*changes):
    """A damage: write a good 20-story shard, then apply ``changes`` (functions of the open h5py.File)."""

    def damage(path):
        write_shard(path, stories=20)
        with h5py.File(path, "r+") as f:
            for change in changes:
                change(f)

    return damage


def _set_attr(name, value):
    return lambda f: f.attrs.__setitem__(name, value)


def _del_attr(name):
    return lambda f: f.attrs.__delitem__(name)


def _delete(name):
    return lambda f: f.__delitem__(name)


def _create(name, data=None, group=False):
    return lambda f: f.create_group(name) if group else f.create_dataset(name, data=data)


def _truncate(path):
    write_shard(path, stories=20)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


# Bad input, each with words its one-line message must hold. Shared with tests/test_shard_commands.py.
DAMAGES = {
    "missing": (lambda path: None, "no such file"),
    "folder": (lambda path: path.mkdir(), "is a folder"),
    "not_hdf5": (lambda path: path.write_text("hello"), "not an HDF5 file"),
    "truncated": (_truncate, "damaged or truncated"),
    "not_sv": (_edit(_del_attr("sv_format")), "not an sv-shard"),
    "other_format": (_edit(_set_attr("sv_format", "zarr")), "not an sv-shard"),
    "newer_version": (_edit(_set_attr("sv_format_version", 2)), "version 2 is newer"),
    "older_version": (_edit(_set_attr("sv_format_version", 0)), "unknown shard format version 0"),
    "no_version": (_edit(_del_attr("sv_format_version")), "missing the root attribute sv_format_version"),
    "text_version": (_edit(_set_attr("sv_format_version", "one")), "sv_format_version should be an integer"),
    "float_version": (_edit(_set_attr("sv_format_version", 1.5)), "sv_format_version should be an integer"),
    "no_labels": (_edit(_delete("labels")), "missing labels"),
    "no_split": (_edit(_del_attr("split")), "missing the root attribute split"),
    "labels_not_json": (_edit(_set_attr("label_names", "red, green")), "label_names is not valid JSON"),
    "labels_not_list": (_edit(_set_attr("label_names", '{"red": 1}')), "label_names should be a JSON list"),
    "labels_not_text": (_edit(_set_attr("label_names", [1, 2, 3])), "label_names should be text"),
    "config_not_json": (_edit(_set_attr("build_config", "{seed: 0")), "build_config is not valid JSON"),
    "config_not_object": (_edit(_set_attr("build_config", "[1, 2]")), "build_config should be a JSON object"),
    "size_scalar": (_edit(_set_attr("image_size", 16)), "image_size should be two integers"),
    "no_frames": (_edit(_set_attr("frames_per_story", 0)), "frames_per_story is 0, should be at least 1"),
    "conditions_2d": (_edit(_delete("conditions"), _create("conditions", np.zeros((20, 4), np.float32))),
                      "conditions is 2-D with shape (20, 4), expected 3-D"),
    "images_4d": (_edit(_delete("images"), _create("images", np.zeros((20, 4, 16, 16), np.uint8))),
                  "images is 4-D"),
    "images_float": (_edit(_delete("images"), _create("images", np.zeros((20, 4, 16, 16, 3), np.float32))),
                     "images has dtype float32, expected uint8"),
    "texts_numbers": (_edit(_delete("texts"), _create("texts", np.zeros((20, 4), np.int32))),
                      "texts is not UTF-8 text"),
    "labels_group": (_edit(_delete("labels"), _create("labels", group=True)), "labels is a group"),
    "extra_dataset": (_edit(_delete("extra"), _create("extra", np.zeros(3))), "extra is a dataset"),
    "extra_scalar": (_edit(_create("extra/flag", np.float32(1))), "extra/flag should be an array"),
    "bad_story_range": (_edit(_set_attr("story_range", 5)), "story_range should be two integers"),
}


def damaged_shard(tmp_path, damage):
    """A path holding the bad input ``damage`` (a key of DAMAGES), and the words its message must hold."""
    make, message = DAMAGES[damage]
    path = tmp_path / "x.h5"
    make(path)
    return path, message


@pytest.mark.parametrize("damage", DAMAGES)
def test_bad_files_give_one_line_naming_the_file(tmp_path, damage):
    path, message = damaged_shard(tmp_path, damage)
    for attempt in (read_info, ShardReader):
        with pytest.raises(ShardError) as caught:
            attempt(path)
        assert message in str(caught.value)
        assert str(caught.value).startswith(f"{path}: ") and "\n" not in str(caught.value)
    assert validate(path) == [str(caught.value)]


def test_a_reader_refuses_datasets_that_disagree_which_validate_lists(tmp_path):
    path = write_shard(tmp_path / "x.h5", stories=4)
    with h5py.File(path, "r+") as f:
        f["labels"].resize(3, axis=0)
        f["texts"].resize(2, axis=0)
    assert read_info(path).num_stories == 4  # the header is fine
    with pytest.raises(ShardError, match=r"texts has shape \(2, 4\), expected \(4, 4\) \(and 1 more"):
        ShardReader(path)
    assert len(validate(path)) == 2


def _compressible_shard(path, stories=4):
    spec = synthetic_spec()
    batch = synthetic_batch(spec, 0, stories)
    batch.images[:] = (np.arange(16, dtype=np.uint8) * 8)[None, None, :, None, None]  # deflate shrinks it
    with ShardWriter(path, spec) as writer:
        writer.append(batch)
    return path


def test_a_damaged_chunk_gives_one_line(tmp_path):
    path = _compressible_shard(tmp_path / "x.h5")
    with h5py.File(path) as f:
        chunk = f["images"].id.get_chunk_info(1)
    assert chunk.filter_mask == 0  # stored compressed, so that garbage cannot be decompressed
    data = bytearray(path.read_bytes())
    data[chunk.byte_offset : chunk.byte_offset + chunk.size] = b"\xff" * chunk.size
    path.write_bytes(bytes(data))
    with ShardReader(path) as reader:
        reader.read("images", [0])
        with pytest.raises(ShardError, match="damaged data in images") as caught:
            reader.read("images", [1])
    assert str(caught.value).startswith(f"{path}: ") and "\n" not in str(caught.value)
    problems = validate(path)
    assert len(problems) == 1 and "damaged" in problems[0] and problems[0].startswith(str(path))
    with pytest.raises(ShardError, match="damaged or truncated data in images") as caught:
        repack(path, tmp_path / "repacked.h5", progress=False)
    assert str(caught.value).startswith(f"{path}: ") and "\n" not in str(caught.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.h5"]  # nothing half-written left behind


def test_story_and_frame_datasets_batch_reads(tmp_path):
    path = write_shard(tmp_path / "x.h5", stories=6)
    stories = StoryDataset(path)
    with ShardReader(path) as reader:
        images = reader.read("images", range(6))
        conditions = reader.read("conditions", range(6))
    items = stories.__getitems__([4, 1])
    assert items[0]["images"].dtype == torch.uint8 and items[0]["images"].shape == (4, 3, 16, 16)
    batch = stories.batch([4, 1])
    assert batch["images"].shape == (2, 4, 3, 16, 16) and batch["index"].tolist() == [4, 1]
    for key in ("images", "conditions", "labels"):
        assert torch.equal(batch[key], torch.stack([item[key] for item in items])), key
    np.testing.assert_array_equal(items[0]["images"].permute(0, 2, 3, 1).numpy(), images[4])
    assert items[1]["index"] == 1
    frames = FrameDataset(path, indices=[5, 2])
    assert len(frames) == 8
    item = frames[6]  # story 2, frame 2
    assert (item["index"], item["frame"]) == (2, 2)
    np.testing.assert_array_equal(item["image"].permute(1, 2, 0).numpy(), images[2, 2])
    np.testing.assert_array_equal(item["story_conditions"].numpy(), conditions[2])
    loader = torch.utils.data.DataLoader(stories, batch_size=4, num_workers=2, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    seen = torch.cat([batch["index"] for batch in loader])
    assert sorted(seen.tolist()) == list(range(6))


@pytest.mark.parametrize("limit", [0, 64 << 20])
def test_conditions_and_labels_are_the_same_in_memory_or_read_per_batch(tmp_path, monkeypatch, limit):
    import sv_data.torch_data as torch_data

    monkeypatch.setattr(torch_data, "IN_MEMORY_LIMIT", limit)
    path = write_shard(tmp_path / "x.h5", stories=7)
    stories = StoryDataset(path, indices=[6, 0, 3, 5])
    assert (stories._in_memory is not None) == (limit > 0)
    with ShardReader(path) as reader:
        conditions, labels = reader.read("conditions", range(7)), reader.read("labels", range(7))
    for item in stories.__getitems__([2, 0, 3, 2]):
        np.testing.assert_array_equal(item["conditions"].numpy(), conditions[item["index"]])
        np.testing.assert_array_equal(item["labels"].numpy(), labels[item["index"]])
    frames = FrameDataset(path)
    for item in frames.__getitems__([27, 1, 14]):
        np.testing.assert_array_equal(item["story_conditions"].numpy(), conditions[item["index"]])
        np.testing.assert_array_equal(item["label"].numpy(), labels[item["index"], item["frame"]])


def test_frame_batches_read_each_story_once_and_agree_with_single_reads(tmp_path, monkeypatch):
    path = write_shard(tmp_path / "x.h5", stories=6)
    frames = FrameDataset(path, indices=[5, 2, 0])
    items = [7, 0, 3, 7, 11, 4, 1]  # out of order, repeated, several frames of one story
    singles = [frames[i] for i in items]
    calls = []
    real_read = ShardReader.read

    def read(self, name, indices):
        calls.append((name, sorted(np.asarray(indices).tolist())))
        return real_read(self, name, indices)

    monkeypatch.setattr(ShardReader, "read", read)
    batch = frames.__getitems__(items)
    assert [rows for name, rows in calls if name == "images"] == [[0, 2, 5]]  # one read, each story once
    with h5py.File(path) as f:
        for item, one, many in zip(items, singles, batch):
            row, frame = [5, 2, 0][item // 4], item % 4
            assert (many["index"], many["frame"]) == (one["index"], one["frame"]) == (row, frame)
            np.testing.assert_array_equal(many["image"].permute(1, 2, 0).numpy(), f["images"][row, frame])
            for key in ("image", "condition", "label", "story_conditions"):
                assert many[key].dtype == one[key].dtype and torch.equal(many[key], one[key]), key
    with ShardReader(path) as reader:  # blocks of distinct stories give the same frames
        np.testing.assert_array_equal(reader.read_images([4, 1, 4, 0], [3, 0, 1, 2], block=2),
                                      reader.read("images", [4, 1, 4, 0])[np.arange(4), [3, 0, 1, 2]])
        assert reader.read_images([], []).shape == (0, 16, 16, 3)
        with pytest.raises(IndexError, match="frame index"):
            reader.read_images([0], [4])


def test_random_pool_frame_draws_each_frame_from_its_own_pool(tmp_path):
    from sv_data.shards import ExtraSpec, ShardSpec, StoryBatch

    t, k, n = 3, 4, 2
    spec = ShardSpec("synthetic", "train", t, (4, 4), ("a",), 1,
                     extras={"frame_pool": ExtraSpec((t, k, 4, 4, 3), "uint8", "candidate frames")})
    # Candidate j of frame f of story i is filled with the value 100*i + 10*f + j: each draw says where it came from.
    pool = np.zeros((n, t, k, 4, 4, 3), np.uint8)
    for i, f, j in np.ndindex(n, t, k):
        pool[i, f, j] = 100 * i + 10 * f + j
    with ShardWriter(tmp_path / "p.h5", spec) as writer:
        writer.append(StoryBatch(pool[:, :, 0], [["x"] * t] * n, ["s0", "s1"], np.zeros((n, t, 1)),
                                 np.zeros((n, t, 1)), {"frame_pool": pool}))
    dataset = StoryDataset(tmp_path / "p.h5", random_pool_frame=True)
    drawn = set()
    for _ in range(30):
        images = dataset[1]["images"]  # (T, 3, H, W)
        for f in range(t):
            value = int(images[f, 0, 0, 0])
            assert value // 10 == 10 + f  # story 1, frame f
            drawn.add(value % 10)
    assert drawn == set(range(k))
    with pytest.raises(ValueError, match="frame_pool"):
        StoryDataset(write_shard(tmp_path / "plain.h5"), random_pool_frame=True)


def test_condition_kind_and_labels_in_condition_round_trip_with_defaults_for_older_files(tmp_path):
    spec = dataclasses.replace(synthetic_spec(), condition_kind="sentence-embedding", labels_in_condition=True)
    with ShardWriter(tmp_path / "new.h5", spec) as writer:
        writer.append(synthetic_batch(spec, 0, 2))
    got = read_info(tmp_path / "new.h5").spec
    assert (got.condition_kind, got.labels_in_condition) == ("sentence-embedding", True)

    # A file written before the attributes existed is read by what its dataset name meant.
    for dataset, kind, labels in (("clevr-sv", "clevr-objects", False), ("pororo-sv", "sentence-embedding", True),
                                  ("mine", "other", False)):
        path = write_shard(tmp_path / f"{dataset}.h5", stories=2)
        with h5py.File(path, "r+") as f:
            del f.attrs["condition_kind"], f.attrs["labels_in_condition"]
            f.attrs["dataset"] = dataset
        got = read_info(path).spec
        assert (got.condition_kind, got.labels_in_condition) == (kind, labels), dataset

    with h5py.File(path, "r+") as f:
        f.attrs["condition_kind"] = "pixels"
    with pytest.raises(ShardError, match="condition_kind is 'pixels'"):
        read_info(path)
