"""`sv-data import-storygan-pororo` on a small release written by the test in exactly the circulated layout."""
from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from test_pororo_media import coded_frame, read_code
from torchvision.datasets import ImageFolder

from cli.data import main as sv_data
from sv_data.pororo.release import ImportOptions, image_folder_order, import_storygan_pororo, rebuild_story_list
from sv_data.pororo.safe_npy import UnsafePickleError, load_npy
from sv_data.shards import ShardReader, validate

# (season, episode, images, frames per strip); the first episode has 15 images, so "10.png" sorts before "2.png"
EPISODES = [
    ("Pororo_ENGLISH1_1", "Pororo_ENGLISH1_1_ep1", 15, 3),
    ("Pororo_ENGLISH1_1", "Pororo_ENGLISH1_1_ep2", 7, 2),
    ("Pororo_Rescue", "Pororo_Rescue_ep1", 6, 4),
]
SIZE = 32


def strip(episode: int, image: int, frames: int) -> np.ndarray:
    """A vertical strip of 128x128 frames; frame m of image n of episode e carries the code (e + 1, 4n + m)."""
    squares = []
    for m in range(frames):
        frame = coded_frame(4 * image + m, video=episode + 1)
        side = frame.shape[0]
        left = (frame.shape[1] - side) // 2
        squares.append(cv2.resize(frame[:, left:left + side], (128, 128), interpolation=cv2.INTER_NEAREST))
    return np.concatenate(squares, axis=0)


def caption(episode: str, image: int) -> str:
    return f"Pororo and Crong in {episode}, image {image}." if image % 2 else f"Eddy alone in {episode}, {image}."


def write_release(root: Path, one_level: bool = False) -> dict:
    """The layout as circulated: strips, the pickled dicts, caches in ImageFolder order and the split ids.
    ``one_level``: episode folders right under the root, as in some copies (the dicts keep the season)."""
    descriptions, labels = {}, {}
    for e, (season, episode, images, frames) in enumerate(EPISODES):
        folder = root / episode if one_level else root / season / episode
        folder.mkdir(parents=True)
        for n in range(images):
            cv2.imwrite(str(folder / f"{n}.png"), strip(e, n, frames))
            descriptions[f"{season}/{episode}/{n}"] = [caption(episode, n), f"Another caption of {n}."]
            # labels.npy names frames without the season folder in some copies: both must be understood
            labels[f"{episode}/{n}"] = np.array([1.0, 0, 1 if n % 2 else 0, 0 if n % 2 else 1, 0, 0, 0, 0, 0])
    np.save(root / "descriptions.npy", descriptions, allow_pickle=True)
    np.save(root / "labels.npy", labels, allow_pickle=True)
    # The story list the original loaders made: ImageFolder's order, every image with 4 images after it.
    ordered = [Path(p).relative_to(root).as_posix() for p, _ in ImageFolder(str(root)).imgs]
    stories = []
    for path in ordered:
        folder, n = path.rsplit("/", 1)[0], int(Path(path).stem)
        following = [f"{folder}/{n + i}.png" for i in range(1, 5)]
        if all(f in ordered for f in following):
            stories.append((path, following))
    np.save(root / "img_cache4.npy", np.array([s.encode() for s, _ in stories]))
    np.save(root / "following_cache4.npy", np.array([[f.encode() for f in fs] for _, fs in stories]))
    # 16 stories: 0-10 start in ENGLISH1_1_ep1, 11-13 in ENGLISH1_1_ep2, 14-15 in Rescue_ep1
    ids = (np.array([0, 2, 3, 7, 9, 14]), np.array([1, 4, 10]), np.array([5, 11, 15]))
    np.save(root / "train_seen_unseen_ids.npy", np.array(ids, dtype=object), allow_pickle=True)
    return {"stories": stories, "ids": ids, "labels": labels}


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    root = tmp_path_factory.mktemp("pororo_png")
    return root, write_release(root)


def test_the_story_list_is_in_image_folder_order(release):
    root, written = release
    images = image_folder_order(root)
    assert images == [Path(p).relative_to(root).as_posix() for p, _ in ImageFolder(str(root)).imgs]
    first = [Path(p).name for p in images if "_ep1/" in p and "ENGLISH" in p]
    assert first[:5] == ["0.png", "1.png", "10.png", "11.png", "12.png"]
    stories = rebuild_story_list(images, 5)
    assert [s[0] for s in stories] == [s for s, _ in written["stories"]]
    # Numeric order would put ep1/2.png third; the release's index 2 is ep1/10.png.
    assert stories[2][0].endswith("Pororo_ENGLISH1_1_ep1/10.png")
    assert stories[2][1:] == [f"Pororo_ENGLISH1_1/Pororo_ENGLISH1_1_ep1/{n}.png" for n in (11, 12, 13, 14)]


def test_import_keeps_the_release_splits_frames_and_labels(release, tmp_path):
    root, written = release
    out = tmp_path / "out"
    summary = import_storygan_pororo(ImportOptions(root, out, image_size=SIZE, progress=False))
    assert summary.stories == {"train": 6, "val": 3, "test": 3}
    episodes = {episode: e for e, (_, episode, _, _) in enumerate(EPISODES)}
    for split, ids in zip(("train", "val", "test"), written["ids"]):
        path = out / f"{split}.h5"
        assert validate(path) == []
        with ShardReader(path) as reader:
            batch = reader.read_stories(range(len(reader)))
        assert batch.extra["story_index"].tolist() == sorted(ids.tolist())
        for i, index in enumerate(batch.extra["story_index"]):
            start, following = written["stories"][index]
            paths = [start, *following]
            assert batch.story_ids[i] == start.removesuffix(".png")
            assert batch.extra["frame_id"][i].tolist() == [p.removesuffix(".png") for p in paths]
            for t, image_path in enumerate(paths):
                episode, n = image_path.split("/")[-2], int(Path(image_path).stem)
                frames = EPISODES[episodes[episode]][3]
                code = (episodes[episode] + 1, 4 * n + batch.extra["strip_frame"][i, t])
                assert read_code(batch.images[i, t]) == code
                assert batch.extra["frame_count"][i, t] == frames
                pool = [read_code(im) for im in batch.extra["frame_pool"][i, t]]
                assert pool == [(episodes[episode] + 1, 4 * n + m % frames) for m in range(4)]  # 4: the longest
                assert batch.texts[i][t] == caption(episode, n)
                assert list(batch.extra["descriptions"][i, t]) == [caption(episode, n), f"Another caption of {n}."]
                assert batch.labels[i, t].tolist() == written["labels"][f"{episode}/{n}"].astype(int).tolist()
    assert not (out / "work").exists()


def test_a_one_level_copy_gives_the_same_stories(release, tmp_path):
    root, written = release
    flat = tmp_path / "flat"
    flat_written = write_release(flat, one_level=True)
    # ImageFolder's classes are now the episodes; their order, and so the story list, is unchanged here
    assert [Path(s).name for s, _ in flat_written["stories"]] == [Path(s).name for s, _ in written["stories"]]
    summary = import_storygan_pororo(ImportOptions(flat, tmp_path / "out", image_size=SIZE, progress=False))
    assert summary.stories == {"train": 6, "val": 3, "test": 3} and not summary.problems
    with ShardReader(tmp_path / "out" / "val.h5") as reader:
        assert reader.read("extra/frame_id", [0])[0][0] == "Pororo_ENGLISH1_1_ep1/1"


def test_without_caches_the_same_shards_are_made(release, tmp_path):
    root, _ = release
    bare = tmp_path / "bare"
    shutil.copytree(root, bare)
    (bare / "img_cache4.npy").unlink()
    (bare / "following_cache4.npy").unlink()
    first = import_storygan_pororo(ImportOptions(root, tmp_path / "a", image_size=SIZE, progress=False))
    second = import_storygan_pororo(ImportOptions(bare, tmp_path / "b", image_size=SIZE, progress=False))
    assert "rebuilt in ImageFolder order" in second.story_list
    for split in first.stories:
        with ShardReader(tmp_path / "a" / f"{split}.h5") as a, ShardReader(tmp_path / "b" / f"{split}.h5") as b:
            x, y = a.read_stories(range(len(a))), b.read_stories(range(len(b)))
            assert x.story_ids == y.story_ids
            np.testing.assert_array_equal(x.images, y.images)
            np.testing.assert_array_equal(x.extra["story_index"], y.extra["story_index"])


def test_train_test_ids_missing_images_and_captions(tmp_path):
    root = tmp_path / "release"
    write_release(root)
    os.remove(root / "train_seen_unseen_ids.npy")
    np.save(root / "train_test_ids.npy", np.array([[*range(0, 8), 15], np.arange(8, 15)], dtype=object),
            allow_pickle=True)
    (root / "Pororo_Rescue" / "Pororo_Rescue_ep1" / "5.png").unlink()
    descriptions = load_npy(root / "descriptions.npy")
    descriptions["Pororo_ENGLISH1_1/Pororo_ENGLISH1_1_ep2/3"] = ["  "]
    np.save(root / "descriptions.npy", descriptions, allow_pickle=True)
    summary = import_storygan_pororo(ImportOptions(root, tmp_path / "out", image_size=SIZE, workers=2,
                                                   progress=False))
    # story 15 (Rescue images 1-5) needs 5.png; ep2's stories 11-13 all hold its image 3
    assert summary.stories == {"train": 8, "test": 4}
    reasons = sorted(p.reason.split(":")[0] for p in summary.problems)
    assert reasons == ["image not found"] + ["no caption"] * 3
    report = (tmp_path / "out" / "report.tsv").read_text()
    assert "Pororo_Rescue_ep1/5.png" in report and report.count("no caption") == 3 + 1  # 3 rows and the summary


def test_a_malicious_pickle_is_refused(release, tmp_path):
    root, _ = release
    evil = tmp_path / "evil"
    shutil.copytree(root, evil)
    victim = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {victim}",))

    array = np.empty((), dtype=object)
    array[()] = {"Pororo_ENGLISH1_1_ep1/0": Payload()}
    np.save(evil / "labels.npy", array, allow_pickle=True)
    with pytest.raises(UnsafePickleError, match=r"labels.npy: refused: the pickle asks for posix.system"):
        load_npy(evil / "labels.npy")
    with open(evil / "descriptions.npy", "wb") as f:  # a bare pickle, not even a .npy
        pickle.dump({"x": Payload()}, f)
    result = CliRunner().invoke(sv_data, ["import-storygan-pororo", "--root", str(evil), "--out",
                                          str(tmp_path / "out"), "--no-progress"])
    assert result.exit_code == 2
    assert "descriptions.npy: refused" in result.output
    assert not victim.exists()


@pytest.mark.parametrize(
    "option, message",
    [(["--workers", "0"], "--workers must be >= 1, got 0"), (["--image-size", "4"], "--image-size must be >= 8, got 4")],
)
def test_bad_numbers_are_one_line_errors_in_the_words_of_the_other_builders(tmp_path, option, message):
    result = CliRunner().invoke(sv_data, ["import-storygan-pororo", "--root", str(tmp_path), "--out",
                                          str(tmp_path / "o"), "--no-progress", *option])
    assert (result.exit_code, result.output) == (2, f"error: {message}\n")
    assert not (tmp_path / "o").exists()
