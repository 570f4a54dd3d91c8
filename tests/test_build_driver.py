"""The chunked build driver: parts, joins, resume, and independence from the number of workers."""
import sys

import numpy as np
import pytest
from shard_factory import SyntheticJob

from sv_data.build import BuildError, build, plan_chunks
from sv_data.shards import ShardReader, validate

SIZES = {"train": 11, "test": 5}


def read_all(path):
    with ShardReader(path) as reader:
        return reader.read_stories(range(len(reader)))


def assert_same_build(a, b):
    for split in SIZES:
        x, y = read_all(a / f"{split}.h5"), read_all(b / f"{split}.h5")
        assert x.story_ids == y.story_ids and x.texts == y.texts
        np.testing.assert_array_equal(x.images, y.images)
        np.testing.assert_array_equal(x.conditions, y.conditions)
        np.testing.assert_array_equal(x.extra["frame_number"], y.extra["frame_number"])


def test_plan_chunks_covers_each_split_once():
    chunks = plan_chunks(SIZES, 4)
    assert [(c.split, c.start, c.stop) for c in chunks] == [
        ("train", 0, 4), ("train", 4, 8), ("train", 8, 11), ("test", 0, 4), ("test", 4, 5)]
    with pytest.raises(BuildError):
        plan_chunks(SIZES, 0)


def test_build_writes_valid_splits_and_removes_parts(tmp_path):
    targets = build(SyntheticJob(), tmp_path, SIZES, chunk_size=4, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["build.json", "test.h5", "train.h5"]
    for split, path in targets.items():
        assert validate(path) == []
        assert read_all(path).story_ids == [f"{split}-{i:05d}" for i in range(SIZES[split])]


def test_two_workers_and_other_chunks_give_the_same_dataset(tmp_path):
    build(SyntheticJob(), tmp_path / "one", SIZES, workers=1, chunk_size=4, progress=False)
    build(SyntheticJob(), tmp_path / "two", SIZES, workers=2, chunk_size=3, progress=False)
    assert_same_build(tmp_path / "one", tmp_path / "two")


def test_an_interrupted_build_resumes_to_the_same_dataset(tmp_path):
    build(SyntheticJob(), tmp_path / "straight", SIZES, chunk_size=4, progress=False)
    with pytest.raises(RuntimeError, match="simulated crash"):
        build(SyntheticJob(fail_at=9), tmp_path / "resumed", SIZES, chunk_size=4, progress=False)
    parts = sorted(p.name for p in (tmp_path / "resumed" / "parts").iterdir())
    assert parts == ["train-000000000-000000004.h5", "train-000000004-000000008.h5"]  # finished work is kept
    assert not (tmp_path / "resumed" / "train.h5").exists()
    build(SyntheticJob(), tmp_path / "resumed", SIZES, chunk_size=4, progress=False)
    assert_same_build(tmp_path / "straight", tmp_path / "resumed")


def test_resuming_with_other_options_is_refused(tmp_path):
    build(SyntheticJob(seed=1), tmp_path, {"train": 2}, progress=False)
    with pytest.raises(BuildError, match="seed differ"):
        build(SyntheticJob(seed=2), tmp_path, {"train": 2}, progress=False)


def test_array_jobs_build_their_shards_and_merge_joins_them(tmp_path):
    from sv_data.build import merge

    build(SyntheticJob(), tmp_path / "straight", SIZES, chunk_size=4, progress=False)
    out = tmp_path / "array"
    for index in (1, 0):  # any order, as a scheduler would run them
        done = build(SyntheticJob(), out, SIZES, chunk_size=4, progress=False, shard=(index, 2))
        assert done == {}
    assert len(list((out / "parts").glob("*.h5"))) == 5
    merge(out)
    assert_same_build(tmp_path / "straight", out)


def test_merge_says_what_is_missing(tmp_path):
    from sv_data.build import merge

    build(SyntheticJob(), tmp_path, SIZES, chunk_size=4, progress=False, shard=(0, 3))
    with pytest.raises(BuildError, match=r"2 of 3 parts of train are not built yet"):
        merge(tmp_path)


def test_a_ray_build_resumes_after_a_crash_and_equals_the_local_build(tmp_path):
    build(SyntheticJob(), tmp_path / "local", SIZES, chunk_size=4, progress=False)
    out = tmp_path / "ray"
    with pytest.raises(BuildError, match="failed 4 times"):
        build(SyntheticJob(fail_at=9), out, SIZES, workers=2, chunk_size=4, progress=False, ray_address="local")
    assert (out / "parts" / "train-000000000-000000004.h5").exists()
    build(SyntheticJob(), out, SIZES, workers=2, chunk_size=4, progress=False, ray_address="local")
    assert_same_build(tmp_path / "local", out)


def test_ray_missing_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets where Ray is not installed
    with pytest.raises(BuildError, match=r"pip install 'svkit\[ray\]'"):
        build(SyntheticJob(), tmp_path, SIZES, chunk_size=4, progress=False, ray_address="local")
