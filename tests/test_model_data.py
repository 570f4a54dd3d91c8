"""Training data for sv_model: shard checks, the resumable batch order, and the Pororo-style conditions.

Also home of ``squares_shard``, a small shard whose frames are drawn from their conditions (a coloured square
per frame on a grey floor, accumulating over the story like CLEVR-SV's objects), for the model tests that do not
need real CLEVR-SV renders.
"""
from pathlib import Path

import numpy as np
import pytest
import torch

from sv_data.errors import SvkitError
from sv_data.shards import ShardSpec, ShardWriter, StoryBatch, read_info
from sv_model.data import (
    FRAME_STREAM,
    STORY_STREAM,
    open_training_shard,
    stream_batch,
    stream_loader,
    to_device,
)
from sv_model.networks import ModelConfig, story_conditions
from sv_model.training_loop import TrainOptions, train

COLOURS = np.array([[220, 40, 40], [40, 200, 60], [40, 80, 230], [230, 210, 40]], np.uint8)
COLOUR_NAMES = ("red", "green", "blue", "yellow")


@pytest.fixture(autouse=True)
def one_cpu_thread():
    """Tiny networks run fastest on one thread, and on a busy machine far faster (no spinning OpenMP barriers)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def squares_shard(path: Path, stories: int = 12, size: int = 32, frames: int = 4, seed: int = 0,
                  dataset: str = "squares", build_config: dict | None = None, **kinds) -> Path:
    """Frame k of a story shows the squares of frames 0..k; its condition is (colour one-hot, x, y) of square k
    and its labels the colours visible. ``kinds``: the spec's condition_kind and labels_in_condition."""
    spec = ShardSpec(dataset, "train", frames, (size, size), COLOUR_NAMES, len(COLOURS) + 2,
                     build_config=build_config or {"maker": "tests"}, **kinds)
    rng = np.random.default_rng(seed)
    images = np.empty((stories, frames, size, size, 3), np.uint8)
    labels = np.zeros((stories, frames, len(COLOURS)), np.uint8)
    conditions = np.zeros((stories, frames, len(COLOURS) + 2), np.float32)
    side = max(2, size // 4)
    for i in range(stories):
        canvas = np.full((size, size, 3), 120, np.uint8)
        canvas[size // 2 :] = 100  # the floor's horizon, a structure every frame shares
        seen = np.zeros(len(COLOURS), np.uint8)
        for k in range(frames):
            colour = rng.integers(len(COLOURS))
            x, y = rng.integers(0, size - side, 2)
            canvas[y : y + side, x : x + side] = COLOURS[colour]
            seen[colour] = 1
            images[i, k], labels[i, k] = canvas, seen
            conditions[i, k, colour] = 1
            conditions[i, k, -2:] = (x / size, y / size)
    with ShardWriter(path, spec) as writer:
        writer.append(StoryBatch(images, [[f"square {k}" for k in range(frames)]] * stories,
                                 [f"s{i:04d}" for i in range(stories)], labels, conditions))
    return path


def empty_shard(path: Path, size: int = 32) -> Path:
    spec = ShardSpec("squares", "train", 4, (size, size), COLOUR_NAMES, len(COLOURS) + 2)
    with ShardWriter(path, spec):
        pass
    return path


def test_each_epoch_is_a_permutation_and_batches_depend_only_on_their_number():
    size, batch = 10, 3
    epoch0 = np.concatenate([stream_batch(size, batch, seed=5, stream=STORY_STREAM, k=k) for k in range(3)])
    epoch1 = np.concatenate([stream_batch(size, batch, seed=5, stream=STORY_STREAM, k=k) for k in range(3, 6)])
    assert len(set(epoch0)) == 9 and len(set(epoch1)) == 9  # the last partial batch is dropped
    assert not np.array_equal(epoch0, epoch1)
    assert np.array_equal(stream_batch(size, batch, 5, STORY_STREAM, 4), stream_batch(size, batch, 5, STORY_STREAM, 4))
    assert not np.array_equal(stream_batch(size, batch, 5, FRAME_STREAM, 0), stream_batch(size, batch, 5, STORY_STREAM, 0))


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_started_at_batch_k_reads_what_a_loader_from_zero_reads_at_k(tmp_path, workers):
    path = squares_shard(tmp_path / "train.h5", stories=7)
    common = dict(seed=3, workers=workers, pin=False, pool_frames=False)
    full = iter(stream_loader(path, FRAME_STREAM, 5, start=0, **common))
    from_zero = [next(full) for _ in range(8)]
    later = iter(stream_loader(path, FRAME_STREAM, 5, start=6, **common))
    for expected in from_zero[6:]:
        got = next(later)
        assert torch.equal(got["images"], expected["images"]) and torch.equal(got["frame"], expected["frame"])
    first = from_zero[0]
    assert first["images"].shape == (5, 3, 32, 32) and first["images"].dtype == torch.uint8
    assert first["conditions"].shape == (5, 4, 6) and first["labels"].shape == (5, 4, 4)


def test_frames_come_with_their_whole_story(tmp_path):
    path = squares_shard(tmp_path / "train.h5", stories=5)
    batch = next(iter(stream_loader(path, FRAME_STREAM, 6, seed=0, start=0, workers=0, pin=False,
                                    pool_frames=False)))
    stories = next(iter(stream_loader(path, STORY_STREAM, 5, seed=0, start=0, workers=0, pin=False,
                                      pool_frames=False)))
    by_condition = {stories["conditions"][i].numpy().tobytes(): stories["images"][i] for i in range(5)}
    for image, frame, conditions in zip(batch["images"], batch["frame"], batch["conditions"]):
        assert torch.equal(by_condition[conditions.numpy().tobytes()][frame], image)


def test_device_batch_is_float_in_minus_one_to_one_at_the_model_size(tmp_path):
    path = squares_shard(tmp_path / "train.h5", stories=4)
    batch = next(iter(stream_loader(path, STORY_STREAM, 2, seed=0, start=0, workers=0, pin=False,
                                    pool_frames=False)))
    moved = to_device(batch, torch.device("cpu"), image_size=16)
    assert moved.images.shape == (2, 4, 3, 16, 16) and moved.images.dtype == torch.float32
    assert -1 <= moved.images.min() < moved.images.max() <= 1


def test_shards_that_say_so_append_the_labels_to_the_condition(tmp_path):
    """The shard's labels_in_condition decides, whatever its dataset is called; the model records its condition
    kind."""
    flagged = squares_shard(tmp_path / "f.h5", stories=2, size=16, labels_in_condition=True)
    plain = squares_shard(tmp_path / "p.h5", stories=2, size=16, dataset="pororo-sv")
    for shard, appended in ((flagged, True), (plain, False)):
        result = train(TrainOptions(train=str(shard), out=str(tmp_path / shard.stem), max_steps=1, device="cpu",
                                    image_size=16, g_width=4, d_width=4, story_batch=2, image_batch=2, workers=0,
                                    progress=False), log=lambda message: None)
        model = torch.load(result.checkpoint, weights_only=True)["model"]
        assert model["labels_in_condition"] is appended and model["condition_kind"] == "other"
    config = ModelConfig("storygan", "pororo-sv", 4, 6, COLOUR_NAMES, True, 32)
    conditions, labels = torch.zeros(1, 4, 6), torch.ones(1, 4, 4, dtype=torch.uint8)
    joined = story_conditions(conditions, labels, config)
    assert joined.shape == (1, 4, 10) and torch.equal(joined[..., 6:], torch.ones(1, 4, 4))


def test_checkpoints_without_a_condition_kind_take_it_from_their_dataset_name():
    """Older checkpoints recorded no condition kind: it is derived from the dataset name as for older shards."""
    for dataset, kind in (("pororo-sv", "sentence-embedding"), ("clevr-sv", "clevr-objects"), ("squares", "other")):
        stored = ModelConfig("storygan", dataset, 4, 6, COLOUR_NAMES, False, 32).to_dict()
        del stored["condition_kind"]
        assert ModelConfig.from_dict(stored).condition_kind == kind


def test_shards_the_model_cannot_use_are_refused_with_one_line(tmp_path):
    with pytest.raises(SvkitError, match="holds no stories"):
        open_training_shard(empty_shard(tmp_path / "empty.h5"), image_size=32)
    with pytest.raises(SvkitError, match=r"frames are 32x32 but the model draws 64x64; pass --image-size"):
        open_training_shard(squares_shard(tmp_path / "small.h5", stories=2), image_size=None)
    (tmp_path / "text.h5").write_text("not a shard")
    with pytest.raises(SvkitError, match="not an HDF5 file"):
        open_training_shard(tmp_path / "text.h5", image_size=None)
