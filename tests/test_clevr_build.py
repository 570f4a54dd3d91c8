"""CLEVR-SV built for real (Cycles at 64x64, few samples): content, determinism, resume, validation, errors."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cli.data import main as sv_data
from sv_data.clevr.job import build_clevr
from sv_data.clevr.scene import CONDITION_DIM, LABEL_NAMES, SLOT_SIZE, min_visible_pixels
from sv_data.shards import ShardReader, read_info, validate

SV_DATA = str(Path(sys.executable).with_name("sv-data"))
# StoryGAN's CLEVR-SV frames, squashed to 64x64: mean grey level, and the mean standard deviation within a frame.
STORYGAN_MEAN_GREY = 122.5
STORYGAN_GREY_SPREAD = 18.9


def read_all(path):
    with ShardReader(path) as shard:
        return shard.read_stories(range(len(shard)))


def assert_same_stories(a, b):
    """Equal in everything; the images up to Cycles' run-to-run float noise, which the denoiser turns into an
    occasional difference of one level (about one value in 50,000)."""
    assert a.story_ids == b.story_ids and a.texts == b.texts
    differ = a.images != b.images
    assert np.abs(a.images.astype(int) - b.images).max() <= 1 and differ.mean() < 1e-4
    np.testing.assert_array_equal(a.conditions, b.conditions)
    np.testing.assert_array_equal(a.labels, b.labels)
    for name in a.extra:
        np.testing.assert_array_equal(a.extra[name], b.extra[name])


def first(batch, n):
    from sv_data.shards import StoryBatch

    return StoryBatch(batch.images[:n], batch.texts[:n], batch.story_ids[:n], batch.labels[:n],
                      batch.conditions[:n], {k: v[:n] for k, v in batch.extra.items()})


def test_tiny_build_is_valid(tiny_clevr):
    result = CliRunner().invoke(sv_data, ["validate", str(tiny_clevr / "train.h5"), str(tiny_clevr / "test.h5")])
    assert result.exit_code == 0, result.output
    assert validate(tiny_clevr / "train.h5") == []
    info = read_info(tiny_clevr / "train.h5")
    assert (info.num_stories, info.frames_per_story, info.image_size) == (24, 4, (64, 64))
    assert info.spec.label_names == LABEL_NAMES and info.spec.condition_dim == CONDITION_DIM
    assert info.spec.build_config["seed"] == 0 and info.spec.build_config["samples"] == 4


def test_frame_k_shows_exactly_k_objects(tiny_clevr):
    stories = read_all(tiny_clevr / "train.h5")
    need = min_visible_pixels((64, 64))
    for masks, counts, boxes in zip(stories.extra["masks"], stories.extra["pixel_counts"], stories.extra["boxes"]):
        for t, mask in enumerate(masks):
            assert set(np.unique(mask)) == set(range(t + 2))  # background and objects 1..t+1
            for k in range(4):
                present = mask == k + 1
                assert counts[t, k] == present.sum()
                if k <= t:
                    assert counts[t, k] >= need
                    ys, xs = np.nonzero(present)
                    assert tuple(boxes[t, k]) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
                else:
                    assert (boxes[t, k] == -1).all()


def test_conditions_and_labels_are_cumulative_and_match_objects(tiny_clevr):
    s = read_all(tiny_clevr / "test.h5")
    x = s.extra
    for i in range(len(s)):
        for t in range(4):
            want = np.zeros(len(LABEL_NAMES), np.uint8)
            for k in range(4):
                slot = s.conditions[i, t, k * SLOT_SIZE : (k + 1) * SLOT_SIZE]
                if k > t:
                    assert not slot.any()
                    continue
                hot = [x["shape"][i, k], 3 + x["color"][i, k], 11 + x["material"][i, k], 13 + x["size"][i, k]]
                assert np.flatnonzero(slot[:15]).tolist() == hot
                np.testing.assert_allclose(slot[15:], x["position"][i, k], rtol=1e-6)
                want[hot] = 1
            np.testing.assert_array_equal(s.labels[i, t], want)
            np.testing.assert_allclose(s.conditions[i, t, -3:], x["camera_right"][i], rtol=1e-6)
    assert (np.diff(s.labels.astype(int), axis=1) >= 0).all()


def test_projected_centres_fall_on_their_objects(tiny_clevr):
    s = read_all(tiny_clevr / "train.h5")
    hits = total = 0
    for masks, coords in zip(s.extra["masks"], s.extra["pixel_coords"]):
        for k in range(4):
            x, y, depth = coords[0, k] if k == 0 else coords[3, k]
            assert 0 <= x < 64 and 0 <= y < 64 and depth > 0
            total += 1
            hits += masks[k][int(y), int(x)] == k + 1  # the centre is on the object unless a later one hides it
        assert (coords[0, 1:] == -1).all()
    assert hits >= 0.8 * total


def test_brightness_matches_storygan(tiny_clevr):
    images = read_all(tiny_clevr / "train.h5").images
    grey = images.astype(np.float64).mean(axis=-1)
    assert abs(grey.mean() - STORYGAN_MEAN_GREY) < 3
    assert abs(grey.reshape(-1, 64 * 64).std(axis=1).mean() - STORYGAN_GREY_SPREAD) < 3


def test_texts_describe_the_new_object(tiny_clevr):
    from sv_data.clevr.scene import COLOR_NAMES, MATERIALS, SHAPES, SIZE_NAMES

    s = read_all(tiny_clevr / "train.h5")
    for i, texts in enumerate(s.texts):
        for t, text in enumerate(texts):
            x = s.extra
            words = (SIZE_NAMES[x["size"][i, t]], COLOR_NAMES[x["color"][i, t]], MATERIALS[x["material"][i, t]],
                     SHAPES[x["shape"][i, t]])
            assert " ".join(words) in text


def test_same_stories_with_two_workers_and_other_chunks(tiny_clevr, tmp_path):
    files = build_clevr(tmp_path, {"train": 4}, seed=0, samples=4, workers=2, chunk_size=2, progress=False)
    assert_same_stories(read_all(files["train"]), first(read_all(tiny_clevr / "train.h5"), 4))


def test_killed_build_resumes_to_the_same_stories(tiny_clevr, tmp_path):
    out = tmp_path / "out"
    command = [SV_DATA, "build-clevr", "--out", str(out), "--n-train", "6", "--n-test", "0", "--samples", "4",
               "--workers", "1", "--chunk-size", "2", "--quiet"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list((out / "parts").glob("train-*.h5")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    parts = list((out / "parts").glob("train-*.h5"))
    assert 1 <= len(parts) < 3 and not (out / "train.h5").exists()
    finished = parts[0].stat().st_mtime_ns
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert_same_stories(read_all(out / "train.h5"), first(read_all(tiny_clevr / "train.h5"), 6))
    assert not (out / "parts").exists()
    del finished


@pytest.mark.parametrize(
    "options, message",
    [
        (["--n-train", "-1"], "--n-train must be >= 0, got -1"),
        (["--n-test", "-5"], "--n-test must be >= 0, got -5"),
        (["--image-size", "0"], "--image-size must be >= 8, got 0"),
        (["--samples", "0"], "--samples must be >= 1, got 0"),
        (["--device", "tpu"], "--device must be one of cpu, gpu, got 'tpu'"),
        (["--workers", "0"], "--workers must be >= 1, got 0"),
        (["--n-train", "0", "--n-test", "0"], "nothing to build"),
    ],
)
def test_bad_options_give_one_line_errors(tmp_path, options, message):
    result = CliRunner().invoke(sv_data, ["build-clevr", "--out", str(tmp_path / "o"), *options])
    assert result.exit_code == 2
    assert result.output.startswith("error: ") and message in result.output
    assert result.output.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_gpu_without_a_gpu_is_a_clear_error(tmp_path):
    # In a process of its own, as a user would run it (and to keep Blender out of the test process).
    done = subprocess.run([SV_DATA, "build-clevr", "--out", str(tmp_path / "o"), "--device", "gpu"],
                          capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.startswith("error: --device gpu: Cycles found no GPU") and done.stderr.count("\n") == 1
