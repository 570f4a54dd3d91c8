"""`sv-data export`: each format read back by its importer (or by `datasets`) gives the shards' stories."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from shard_factory import synthetic_batch, synthetic_spec, write_shard

from cli.data import main as sv_data
from sv_data.pororo.builder import PororoOptions, build_pororo
from sv_data.pororo.toy import write_toy_show
from sv_data.shards import ShardReader, ShardWriter, label_frequencies

SIZE = 16


def invoke(*args) -> str:
    result = CliRunner().invoke(sv_data, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def read_all(path: Path):
    with ShardReader(path) as reader:
        return reader.read_stories(range(len(reader)))


@pytest.fixture(scope="module")
def pororo_build(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("toy")
    videos, table = write_toy_show(root)
    build_pororo(PororoOptions(videos=videos, descriptions=table, out=root / "toy-sv", image_size=SIZE,
                               progress=False))
    return root / "toy-sv"


def test_pororo_release_export_imports_back_to_the_same_stories(pororo_build, tmp_path):
    shards = sorted(pororo_build.glob("*.h5"))
    line = invoke("export", *shards, "--to", "pororo-sv-release", "--out", tmp_path / "release", "--no-progress")
    assert line.startswith("exported ") and f"next: sv-data import-storygan-pororo --root {tmp_path / 'release'}" in line
    invoke("import-storygan-pororo", "--root", tmp_path / "release", "--out", tmp_path / "back", "--image-size", SIZE,
           "--workers", 1, "--no-progress")
    assert {p.name for p in (tmp_path / "back").glob("*.h5")} == {p.name for p in shards}
    for shard in shards:
        built, back = read_all(shard), read_all(tmp_path / "back" / shard.name)
        assert back.story_ids == built.story_ids
        assert back.texts == built.texts
        np.testing.assert_array_equal(back.images, built.images)
        np.testing.assert_array_equal(back.labels, built.labels)


def test_pororo_release_files_read_as_the_published_loaders_read_them(pororo_build, tmp_path):
    invoke("export", *sorted(pororo_build.glob("*.h5")), "--to", "pororo-sv-release", "--out", tmp_path / "r",
           "--no-progress")
    load = lambda name: np.load(tmp_path / "r" / name, allow_pickle=True, encoding="latin1")
    firsts, followings = load("img_cache4.npy"), load("following_cache4.npy")
    train, val, test = load("train_seen_unseen_ids.npy")
    built = {s: read_all(pororo_build / f"{s}.h5") for s in ("train", "val", "test")}
    assert followings.shape == (len(firsts), 4)
    assert [len(train), len(val), len(test)] == [len(built[s]) for s in ("train", "val", "test")]
    path = str(firsts[test[0]])[2:-1]  # how the loaders turn the cached bytes into a path
    assert path == f"{built['test'].story_ids[0]}.png" and (tmp_path / "r" / path).is_file()
    frame_id = str(followings[train[1]][0])[2:-1].replace(".png", "")
    descriptions, labels = load("descriptions.npy").item(), load("labels.npy").item()
    assert descriptions[frame_id][0] == built["train"].texts[1][1]
    np.testing.assert_array_equal(labels[frame_id], built["train"].labels[1][1])
    rows = (tmp_path / "r" / "descriptions.csv").read_text().splitlines()
    assert rows[0].count(",") >= 2 and not rows[0].startswith("episode")


def test_storygan_clevr_export_imports_back_to_the_same_stories(tiny_clevr, tmp_path):
    line = invoke("export", tiny_clevr / "train.h5", tiny_clevr / "test.h5", "--to", "storygan-clevr", "--out",
                  tmp_path / "clevr", "--no-progress")
    command = line.split("next: ")[1].split()
    assert command[:2] == ["sv-data", "import-storygan-clevr"] and "--train" in command and "--test" in command
    invoke(*command[1:], "--out", tmp_path / "back", "--quiet")
    loaded = np.load(tmp_path / "clevr" / "CLEVR_dict.npy", allow_pickle=True, encoding="latin1").item()
    assert type(loaded) is dict and loaded["CLEVR_new_000100_1.png"].shape == (75,)
    for split in ("train", "test"):
        built, back = read_all(tiny_clevr / f"{split}.h5"), read_all(tmp_path / "back" / f"{split}.h5")
        assert len(back) == len(built)
        np.testing.assert_array_equal(back.images, built.images)
        np.testing.assert_array_equal(back.conditions, built.conditions)
        np.testing.assert_array_equal(back.labels, built.labels)
        for name in ("shape", "color", "material", "size"):  # the same objects, story by story, in order
            np.testing.assert_array_equal(back.extra[name], built.extra[name])


def test_hf_export_loads_as_images_with_a_dataset_card(tmp_path):
    shards = [write_shard(tmp_path / "train.h5", stories=5), write_shard(tmp_path / "test.h5", stories=3,
                                                                          split="test")]
    invoke("export", *shards, "--to", "hf", "--out", tmp_path / "hf", "--no-progress")
    files = sorted((tmp_path / "hf" / "data").glob("*.parquet"))
    assert [f.name for f in files] == ["test-00000-of-00001.parquet", "train-00000-of-00001.parquet"]
    features = json.loads(pq.read_schema(files[1]).metadata[b"huggingface"])["info"]["features"]
    assert features["images"]["feature"] == {"_type": "Image"}
    loaded = datasets.load_dataset("parquet", data_files={"train": str(files[1]), "test": str(files[0])},
                                   cache_dir=str(tmp_path / "cache"))
    built = read_all(shards[0])
    story = loaded["train"][2]
    assert story["story_id"] == built.story_ids[2] and story["texts"] == built.texts[2]
    np.testing.assert_array_equal(np.stack([np.asarray(im) for im in story["images"]]), built.images[2])
    np.testing.assert_array_equal(story["labels"], built.labels[2])
    np.testing.assert_array_equal(np.asarray(story["conditions"], np.float32), built.conditions[2])
    by_card = datasets.load_dataset(str(tmp_path / "hf"), cache_dir=str(tmp_path / "cache2"))
    assert {s: len(d) for s, d in by_card.items()} == {"train": 5, "test": 3}
    card = (tmp_path / "hf" / "README.md").read_text()
    pixels = hashlib.sha256(np.ascontiguousarray(built.images).tobytes()).hexdigest()
    assert f"| train | 5 | 20 | `{pixels}` |" in card and "| test | 3 | 12 | `" in card
    red = label_frequencies(shards[0])["red"]
    assert f"| red | {red:.1%} |" in card and '"maker": "tests"' in card and "belong to their owners" in card


def test_an_export_that_fails_half_way_leaves_nothing_that_looks_finished(tmp_path):
    train = write_shard(tmp_path / "train.h5", stories=4)
    spec = synthetic_spec(split="test")
    clash = synthetic_batch(spec, 0, 4, seed=1)
    clash.story_ids = [f"train-{i:05d}" for i in range(4)]  # the train stories' names, other frames
    with ShardWriter(tmp_path / "test.h5", spec) as writer:
        writer.append(clash)
    result = CliRunner().invoke(sv_data, ["export", str(train), str(tmp_path / "test.h5"), "--to",
                                          "pororo-sv-release", "--out", str(tmp_path / "out"), "--no-progress"])
    last = result.output.splitlines()[-1]  # after a note that the labels are not Pororo-SV's 9
    assert result.exit_code == 2 and last.startswith("error: ") and "differs from an earlier story's frame" in last
    assert not (tmp_path / "out").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_bad_outputs_and_inputs_are_one_line_errors(tmp_path):
    shard = write_shard(tmp_path / "train.h5", stories=2)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").touch()
    for args, message in (
        (["--to", "hf", "--out", tmp_path / "full"], "--out exists and is not an empty folder"),
        (["--to", "storygan-clevr", "--out", tmp_path / "c"], "6-d conditions; the StoryGAN CLEVR layout holds 4"),
    ):
        result = CliRunner().invoke(sv_data, ["export", str(shard), *map(str, args)])
        assert result.exit_code == 2 and message in result.output and result.output.count("\n") == 1
    result = CliRunner().invoke(sv_data, ["export", str(shard), str(shard), "--to", "hf", "--out", str(tmp_path / "d")])
    assert result.exit_code == 2 and "a second train shard" in result.output
