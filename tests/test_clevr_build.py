"""CLEVR-SV built for real (Cycles at 64x64, few samples): content, determinism, resume, validation, errors."""
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from cli.data import main as sv_data
from sv_data.clevr.job import build_clevr
from sv_data.clevr.seams import seam_ratio
from sv_data.clevr.scene import CONDITION_DIM, LABEL_NAMES, SLOT_SIZE, min_visible_pixels
from sv_data.shards import ShardReader, read_info, validate

SV_DATA = str(Path(sys.executable).with_name("sv-data"))
# StoryGAN's CLEVR-SV frames, squashed to 64x64: mean grey level, and the mean standard deviation within a frame.
STORYGAN_MEAN_GREY = 122.5
STORYGAN_GREY_SPREAD = 18.9
# Written into the first sentence of a part finished before an interruption: it reaches the joined split file only
# if the resumed build reuses that part instead of rendering its stories again.
KEPT = "This part was finished before the interruption and is not rendered again."
# Stories of the builds that the tests interrupt with Ctrl-C: enough that the build is still rendering when the
# signal lands, and no more than tiny_clevr's training split, which the resumed build must equal.
INTERRUPTED_STORIES = 24


def read_all(path):
    with ShardReader(path) as shard:
        return shard.read_stories(range(len(shard)))


def assert_same_stories(a, b):
    """Equal in everything, the images byte for byte."""
    assert a.story_ids == b.story_ids and a.texts == b.texts
    np.testing.assert_array_equal(a.images, b.images)
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
    # tiny_clevr: one worker (so two Cycles threads), chunks of 16; here two workers of one thread, chunks of 2.
    files = build_clevr(tmp_path, {"train": 4}, seed=0, samples=4, workers=2, chunk_size=2, progress=False)
    assert_same_stories(read_all(files["train"]), first(read_all(tiny_clevr / "train.h5"), 4))


def test_build_json_records_the_checksum_of_each_splits_frames(tiny_clevr):
    recorded = json.loads((tiny_clevr / "build.json").read_text())["images_sha256"]
    for split in ("train", "test"):
        with ShardReader(tiny_clevr / f"{split}.h5") as shard:
            pixels = shard.read_images(range(len(shard)))
        assert recorded[split] == hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest()
    assert recorded["train"] != recorded["test"]


def test_frames_made_from_the_next_show_no_seams(tiny_clevr):
    # With each region denoised on its own, the rectangles showed plainly at 4 samples (ratio 1.11 at 12).
    with ShardReader(tiny_clevr / "train.h5") as shard:
        ratio = seam_ratio(shard.read_images(range(len(shard))))
    assert ratio <= 1.03


def build_command(out, n_train, *options):
    return [SV_DATA, "build-clevr", "--out", str(out), "--n-train", str(n_train), "--n-test", "0", "--samples", "4",
            "--quiet", *options]


def pool_workers(pid):
    """The multiprocessing workers that process ``pid`` has spawned (Linux: read from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            if ppid == pid and b"spawn_main" in (stat.parent / "cmdline").read_bytes():
                found.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            pass  # a process that ended while we looked
    return found


def interrupt(command, out, sig, group=False, when="first part"):
    """Start a build, wait for its first part file, send it ``sig`` (to its whole process group with ``group``,
    as Ctrl-C in a terminal does); returns the exit status, stderr and the finished parts.

    ``when="workers"`` instead waits for its two pool workers and sends ``sig`` to them first, while they are
    still importing Blender, then to the group: a terminal delivers Ctrl-C to every process of the group in no
    fixed order, so a worker may well handle it before the parent has stopped the pool."""
    # A shell starts a background job with SIGINT ignored, and a child keeps an ignored signal: give the build a
    # live Ctrl-C however this test run was started.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
    finally:
        signal.signal(signal.SIGINT, previous)
    deadline = time.monotonic() + 180

    def ready():
        if when == "workers":
            return len(pool_workers(proc.pid)) == 2
        return bool(list((out / "parts").glob("train-*.h5")))

    while not ready() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if when == "workers":
        for worker in pool_workers(proc.pid):
            os.kill(worker, sig)
        time.sleep(0.5)
    if group:
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    return proc.returncode, stderr, sorted((out / "parts").glob("train-*.h5"))


def mark_as_kept(parts):
    """Overwrite the first sentence of each finished part with KEPT; returns the story ids marked."""
    marked = []
    for part in parts:
        with h5py.File(part, "r+") as f:
            f["texts"][0, 0] = KEPT
            story_id = f["story_ids"][0]
            marked.append(story_id.decode() if isinstance(story_id, bytes) else story_id)
    return marked


def assert_resumed(out, marked, reference):
    """The resumed build kept the marked parts (their KEPT sentence is there) and equals the reference."""
    joined = read_all(out / "train.h5")
    for story_id in marked:
        i = joined.story_ids.index(story_id)
        assert joined.texts[i][0] == KEPT, f"{story_id} was rendered again"
        joined.texts[i][0] = reference.texts[i][0]
    assert_same_stories(joined, reference)
    assert not (out / "parts").exists()


def test_killed_build_resumes_without_rendering_finished_parts_again(tiny_clevr, tmp_path):
    out = tmp_path / "out"
    command = build_command(out, 6, "--workers", "1", "--chunk-size", "2")
    _, _, parts = interrupt(command, out, signal.SIGKILL)
    assert 1 <= len(parts) < 3 and not (out / "train.h5").exists()
    marked = mark_as_kept(parts)
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert_resumed(out, marked, first(read_all(tiny_clevr / "train.h5"), 6))


def test_ctrl_c_with_two_workers_stops_cleanly_and_resumes(tiny_clevr, tmp_path):
    """Ctrl-C while the workers start Blender, then while they render: each time the build stops with status 130
    and one line, no worker's traceback, and the finished parts kept; the same command then finishes."""
    out, n = tmp_path / "out", INTERRUPTED_STORIES
    command = build_command(out, n, "--workers", "2", "--chunk-size", "1")
    for when in ("workers", "first part"):
        status, stderr, parts = interrupt(command, out, signal.SIGINT, group=True, when=when)
        assert status == 130, stderr
        assert "Traceback" not in stderr and stderr.strip().endswith("interrupted: finished work is kept; "
                                                                     "re-run the same command to resume"), stderr
        assert len(parts) < n and not (out / "train.h5").exists()
    assert parts
    marked = mark_as_kept(parts)
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert_resumed(out, marked, first(read_all(tiny_clevr / "train.h5"), n))


def test_a_ray_build_interrupted_and_resumed_equals_the_local_build(tiny_clevr, tmp_path):
    """`--ray local`: two Ray actors render the chunks; Ctrl-C stops it, the same command resumes it."""
    out, n = tmp_path / "ray", INTERRUPTED_STORIES
    command = build_command(out, n, "--ray", "local", "--workers", "2", "--chunk-size", "1")
    status, stderr, parts = interrupt(command, out, signal.SIGINT, group=True)
    assert status == 130 and "Traceback" not in stderr, stderr
    assert 1 <= len(parts) < n and not (out / "train.h5").exists()
    marked = mark_as_kept(parts)
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert_resumed(out, marked, first(read_all(tiny_clevr / "train.h5"), n))


def test_array_jobs_then_merge_equal_the_local_build(tiny_clevr, tmp_path):
    out = tmp_path / "array"
    for index in (1, 0):  # any order, as a scheduler would run them
        command = build_command(out, 3, "--workers", "1", "--chunk-size", "1", "--shard-index", str(index),
                                "--num-shards", "2")
        done = subprocess.run(command, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert done.stdout == f"this job's parts are in {out}/parts; when every job is done: sv-data merge {out}\n"
        assert not (out / "train.h5").exists()
    assert len(list((out / "parts").glob("train-*.h5"))) == 3
    result = CliRunner().invoke(sv_data, ["merge", str(out)])
    assert result.exit_code == 0 and result.output == f"train: {out / 'train.h5'}\n", result.output
    assert_same_stories(read_all(out / "train.h5"), first(read_all(tiny_clevr / "train.h5"), 3))


@pytest.mark.parametrize(
    "options, message",
    [
        (["--n-train", "-1"], "--n-train must be >= 0, got -1"),
        (["--n-test", "-5"], "--n-test must be >= 0, got -5"),
        (["--image-size", "0"], "--image-size must be >= 8, got 0"),
        (["--samples", "0"], "--samples must be >= 1, got 0"),
        (["--device", "tpu"], "--device must be one of cpu, gpu, got 'tpu'"),
        (["--workers", "0"], "--workers must be >= 1, got 0"),
        (["--chunk-size", "0"], "--chunk-size must be >= 1, got 0"),
        (["--shard-index", "2", "--num-shards", "2"], "--shard-index must be below --num-shards (2), got 2"),
        (["--num-shards", "2"], "--shard-index and --num-shards go together"),
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
    # In a process of its own, as a user would run it (and to keep Blender out of the test process). Tiny counts:
    # where Cycles does find a GPU, this builds one small story and there is nothing to check.
    done = subprocess.run([SV_DATA, "build-clevr", "--out", str(tmp_path / "o"), "--device", "gpu", "--n-train", "1",
                           "--n-test", "0", "--image-size", "8", "--samples", "1", "--workers", "1", "--quiet"],
                          capture_output=True, text=True)
    if done.returncode == 0:
        pytest.skip("Cycles found a GPU here")
    assert done.returncode == 2
    assert done.stderr.startswith("error: --device gpu: Cycles found no GPU") and done.stderr.count("\n") == 1
