"""The chunked build driver: parts, joins, resume, and independence from the number of workers."""
import dataclasses
import os
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from shard_factory import SyntheticJob

from cli.data import main as sv_data
from sv_data.build import BuildError, Chunk, build, merge, plan_chunks, run_chunk, run_chunks
from sv_data.errors import SvkitError
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
    with pytest.raises(SvkitError, match="--chunk-size must be >= 1, got 0"):
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
    build(SyntheticJob(), tmp_path / "straight", SIZES, chunk_size=4, progress=False)
    out = tmp_path / "array"
    for index in (1, 0):  # any order, as a scheduler would run them
        done = build(SyntheticJob(), out, SIZES, chunk_size=4, progress=False, shard=(index, 2))
        assert done == {}
    assert len(list((out / "parts").glob("*.h5"))) == 5
    merge(out)
    assert_same_build(tmp_path / "straight", out)


def test_merge_says_what_is_missing(tmp_path):
    build(SyntheticJob(), tmp_path, SIZES, chunk_size=4, progress=False, shard=(0, 3))
    with pytest.raises(BuildError, match=r"2 of 3 parts of train are not built yet"):
        merge(tmp_path)


class OtherBuildJob(SyntheticJob):
    """Stories of another build: the same layout, another build config."""

    def spec(self, split):
        return dataclasses.replace(super().spec(split), build_config={"seed": 1, "maker": "elsewhere"})


def write_parts(parts_dir, ranges, job=None):
    """Part files as another scheduler would leave them: run_chunk for each (split, start, stop), any order."""
    for split, start, stop in ranges:
        run_chunk(job or SyntheticJob(), Chunk(split, start, stop), parts_dir)


# Uneven chunks, written out of order, and no build.json: nothing but the parts themselves says what they hold.
FOREIGN_PARTS = [("test", 2, 5), ("train", 7, 11), ("train", 0, 3), ("test", 0, 2), ("train", 3, 7)]


def test_merge_without_build_json_joins_self_describing_parts(tmp_path):
    build(SyntheticJob(), tmp_path / "straight", SIZES, chunk_size=4, progress=False)
    out = tmp_path / "foreign"
    write_parts(out / "parts", FOREIGN_PARTS)
    assert merge(out) == {"train": out / "train.h5", "test": out / "test.h5"}
    assert_same_build(tmp_path / "straight", out)
    assert sorted(p.name for p in out.iterdir()) == ["test.h5", "train.h5"]


@pytest.mark.parametrize(
    "ranges, message",
    [
        ([("train", 0, 3), ("train", 5, 8)], r"stories 3\.\.4 of train are missing \(after train-0+-0+3\.h5\)"),
        ([("train", 2, 4)], r"stories 0\.\.1 of train are missing \(before it\)"),
        ([("train", 0, 4), ("train", 3, 6)], r"its stories 3\.\.5 overlap train-0+-0+4\.h5's 0\.\.3"),
    ],
)
def test_merge_without_build_json_refuses_gaps_and_overlaps(tmp_path, ranges, message):
    write_parts(tmp_path / "parts", ranges)
    with pytest.raises(BuildError, match=message):
        merge(tmp_path)
    assert not (tmp_path / "train.h5").exists() and len(list((tmp_path / "parts").glob("*.h5"))) == len(ranges)


def test_merge_without_build_json_refuses_parts_of_two_builds(tmp_path):
    write_parts(tmp_path / "parts", [("train", 0, 3)])
    write_parts(tmp_path / "parts", [("test", 0, 2)], job=OtherBuildJob())
    with pytest.raises(BuildError, match="build_config differs from .*; these parts come from two different builds"):
        merge(tmp_path)


def test_merge_command_gives_one_line_errors(tmp_path):
    result = CliRunner().invoke(sv_data, ["merge", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output == f"error: {tmp_path}: no build.json and no part files in {tmp_path / 'parts'}; nothing to merge\n"
    write_parts(tmp_path / "parts", [("train", 1, 3)])
    result = CliRunner().invoke(sv_data, ["merge", str(tmp_path)])
    assert result.exit_code == 2 and result.output.count("\n") == 1 and "of train are missing" in result.output


@pytest.mark.parametrize("with_record", [True, False])
def test_merge_cleans_up_after_a_join_that_was_killed(tmp_path, with_record):
    """Killed after renaming the split file into place but before removing its parts, or before the rename
    (its temporary file is left in OUT/): merging again finishes the job and leaves nothing behind."""
    out = tmp_path / "out"
    if with_record:
        build(SyntheticJob(), out, SIZES, chunk_size=4, progress=False)
        leftovers = [(c.split, c.start, c.stop) for c in plan_chunks(SIZES, 4) if c.split == "train"]
    else:
        write_parts(out / "parts", FOREIGN_PARTS)
        merge(out)
        leftovers = [r for r in FOREIGN_PARTS if r[0] == "train"]
    joined = (out / "train.h5").read_bytes()
    write_parts(out / "parts", leftovers)
    (out / ".test.h5.0123abcd.tmp").write_bytes(b"half a join")
    merge(out)
    assert not (out / "parts").exists() and not list(out.glob(".*.tmp"))
    assert (out / "train.h5").read_bytes() == joined


@pytest.fixture
def local_ray():
    """Ray started in this process by ``--ray local`` is shut down after the test, so that no cluster outlives it
    (a later ``--ray auto`` would find it)."""
    ray = pytest.importorskip("ray")
    yield
    ray.shutdown()


def test_a_ray_build_resumes_after_a_crash_and_equals_the_local_build(tmp_path, local_ray):
    build(SyntheticJob(), tmp_path / "local", SIZES, chunk_size=4, progress=False)
    out = tmp_path / "ray"
    with pytest.raises(BuildError, match="failed 4 times"):
        build(SyntheticJob(fail_at=9), out, SIZES, workers=2, chunk_size=4, progress=False, ray_address="local")
    assert (out / "parts" / "train-000000000-000000004.h5").exists()
    build(SyntheticJob(), out, SIZES, workers=2, chunk_size=4, progress=False, ray_address="local")
    assert_same_build(tmp_path / "local", out)


class CrashOnceJob(SyntheticJob):
    """Crashes at story ``fail_at`` the first time any process gets there (a file remembers it)."""

    def __init__(self, flag_dir, fail_at):
        super().__init__()
        self.flag, self.crash_at = str(flag_dir / "crashed"), fail_at

    def stories(self, split, start, stop):
        for index, batch in enumerate(super().stories(split, start, stop), start):
            if split == "train" and index == self.crash_at and not os.path.exists(self.flag):
                open(self.flag, "w").close()
                raise RuntimeError("simulated crash")
            yield batch


def test_a_retried_ray_chunk_is_counted_once_on_the_progress_bar(tmp_path, local_ray):
    parts = tmp_path / "parts"
    parts.mkdir()
    reported = []
    todo = plan_chunks(SIZES, 4)
    run_chunks(CrashOnceJob(tmp_path, fail_at=10), todo, parts, 2, reported.append, ray_address="local")
    assert (tmp_path / "crashed").exists()  # chunk train 8..11 reported stories 8 and 9, crashed, ran again
    assert sum(reported) == sum(SIZES.values()) and len(list(parts.glob("*.h5"))) == len(todo)


def test_ray_missing_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets where Ray is not installed
    with pytest.raises(BuildError, match=r"pip install 'svkit\[ray\]'"):
        build(SyntheticJob(), tmp_path, SIZES, chunk_size=4, progress=False, ray_address="local")


@pytest.mark.parametrize(
    "run, message",
    [
        (dict(workers=0), "--workers must be >= 1, got 0"),
        (dict(chunk_size=0), "--chunk-size must be >= 1, got 0"),
        (dict(shard=(None, 2)), "--shard-index and --num-shards go together"),
        (dict(shard=(-1, 2)), "--shard-index must be >= 0, got -1"),
        (dict(shard=(0, 0)), "--num-shards must be >= 1, got 0"),
        (dict(shard=(2, 2)), "--shard-index must be below --num-shards (2), got 2"),
    ],
)
def test_the_builder_checks_where_and_how_it_runs_before_writing_anything(tmp_path, run, message):
    options = {"workers": 1, "chunk_size": 4, **run}
    with pytest.raises(SvkitError) as caught:
        build(SyntheticJob(), tmp_path / "o", SIZES, progress=False, **options)
    assert str(caught.value) == message
    assert not (tmp_path / "o").exists()
