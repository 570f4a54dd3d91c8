"""Training data: the shard's stories as two endless streams of batches, in an order that resumes exactly.

StoryGAN trains on two streams at once: whole stories for the story discriminator and single frames (with their
story) for the image discriminator. Both read the shard through :class:`sv_data.torch_data.StoryDataset` in
DataLoader workers and come out as uint8 tensors, pinned when a GPU takes them; :func:`to_device` turns them into
floats on the device.

Batch k of a stream is a pure function of (seed, stream, k): epoch k // batches_per_epoch of the stream is a
permutation drawn from (seed, stream, epoch). A run that resumes at step k therefore reads exactly the batches
that an uninterrupted run reads from step k on, whatever the number of workers.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler

from sv_data.errors import SvkitError
from sv_data.shards import ShardInfo, ShardReader, iter_blocks, read_info
from sv_data.torch_data import FRAME_POOL, StoryDataset
from sv_model.options import DEFAULT_IMAGE_SIZE

STORY_STREAM, FRAME_STREAM = 0, 1
CONDITION_CHECK_BLOCK = 1024  # stories whose conditions are read at a time when a shard is checked for NaNs


def open_training_shard(path: os.PathLike | str, image_size: int | None, role: str = "training") -> ShardInfo:
    """Read and check a shard: format v1 (read_info checks it), not empty, frames the model can use, and finite
    conditions (one NaN would turn every loss into NaN)."""
    info = read_info(path)
    if info.num_stories == 0:
        raise SvkitError(f"{path}: the shard holds no stories, nothing to use for {role}")
    h, w = info.image_size
    if image_size is None and (h, w) != (DEFAULT_IMAGE_SIZE, DEFAULT_IMAGE_SIZE):
        raise SvkitError(
            f"{path}: frames are {h}x{w} but the model draws {DEFAULT_IMAGE_SIZE}x{DEFAULT_IMAGE_SIZE}; pass "
            f"--image-size N to train at N x N (frames are resized to it)"
        )
    with ShardReader(path) as reader:
        for start, stop in iter_blocks(info.num_stories, CONDITION_CHECK_BLOCK):
            finite = np.isfinite(reader.read("conditions", np.arange(start, stop)))
            if not finite.all():
                story = start + int(np.argwhere(~finite)[0][0])
                raise SvkitError(f"{path}: the conditions of story {story} hold NaN or infinite values; "
                                 f"the shard cannot be used for {role}")
    return info


def story_kind(dataset: str, condition_kind: str, frames: int, condition_dim: int, label_names) -> dict:
    """What must agree for a model to draw, or to be validated on, the stories of a shard."""
    return {"dataset": dataset, "condition kind": condition_kind, "frames per story": frames,
            "condition size": condition_dim, "labels": list(label_names)}


def shard_story_kind(info: ShardInfo) -> dict:
    spec = info.spec
    return story_kind(spec.dataset, spec.condition_kind, spec.frames_per_story, spec.condition_dim, spec.label_names)


def check_same_kind(info: ShardInfo, expected: dict, expected_in: str, error: type[SvkitError] = SvkitError) -> None:
    """Raise ``error`` unless the shard's stories are of the kind ``expected`` (:func:`story_kind`) of what
    ``expected_in`` names (the training shard, a model)."""
    theirs = shard_story_kind(info)
    for what, ours in expected.items():
        if theirs[what] != ours:
            raise error(f"{info.path}: does not fit {expected_in}: {what} is {theirs[what]} in the shard, {ours} in "
                        f"{expected_in}")


def stream_batch(size: int, batch_size: int, seed: int, stream: int, k: int) -> np.ndarray:
    """The item indices of batch k of a stream over ``size`` items (the last partial batch of an epoch is
    dropped, as StoryGAN's loaders did)."""
    per_epoch = size // batch_size
    epoch, position = divmod(k, per_epoch)
    order = np.random.default_rng([seed, stream, epoch]).permutation(size)
    return order[position * batch_size : (position + 1) * batch_size]


class StreamBatches(Sampler):
    """Batches start, start+1, ... of a stream, forever; each index comes with its batch number.

    With ``rank``/``world_size`` (data-parallel training), batch k of the stream holds ``batch_size * world_size``
    items and this rank takes its ``batch_size`` of them: the ranks together read the global batch that one process
    with that batch size reads."""

    def __init__(self, size: int, batch_size: int, seed: int, stream: int, start: int = 0, rank: int = 0,
                 world_size: int = 1):
        self.size, self.batch_size, self.seed, self.stream, self.start = size, batch_size, seed, stream, start
        self.rank, self.world_size = rank, world_size

    def __iter__(self):
        k, mine = self.start, slice(self.rank * self.batch_size, (self.rank + 1) * self.batch_size)
        while True:
            batch = stream_batch(self.size, self.batch_size * self.world_size, self.seed, self.stream, k)
            yield [(k, int(i)) for i in batch[mine]]
            k += 1


@contextmanager
def _numpy_seed(seed_words: list[int]):
    """StoryDataset draws pool frames from numpy's global generator: seed it per batch, then put it back."""
    saved = np.random.get_state()
    np.random.seed(np.random.SeedSequence(seed_words).generate_state(4))
    try:
        yield
    finally:
        np.random.set_state(saved)


class StreamDataset(Dataset):
    """Batches of a stream, already collated: ``images`` uint8 (B, T, 3, H, W) for stories, (B, 3, H, W) with
    ``frame`` (B,) for frames; ``conditions`` float32 (B, T, D) and ``labels`` uint8 (B, T, L) of whole stories."""

    def __init__(self, path: Path, stream: int, seed: int, pool_frames: bool, rank: int = 0):
        self.stories = StoryDataset(path, random_pool_frame=pool_frames)
        self.frames = self.stories.info.frames_per_story
        self.stream, self.seed, self.pool_frames = stream, seed, pool_frames
        # Each rank draws its own pool frames; rank 0 draws as a single process does.
        self.seed_words = [seed, stream] + ([rank] if rank else [])

    def __len__(self) -> int:
        return len(self.stories) * (self.frames if self.stream == FRAME_STREAM else 1)

    def __getitems__(self, keyed: list[tuple[int, int]]) -> dict:
        batch_number = keyed[0][0]
        items = np.asarray([i for _, i in keyed], dtype=np.int64)
        rows, frames = (items // self.frames, items % self.frames) if self.stream == FRAME_STREAM else (items, None)
        with _numpy_seed([*self.seed_words, batch_number]):
            batch = self.stories.batch(rows)
        del batch["index"]
        if frames is not None:
            frame = torch.from_numpy(frames)
            batch["images"] = batch["images"][torch.arange(len(frame)), frame]
            batch["frame"] = frame
        return batch


def _already_collated(batch: dict) -> dict:
    return batch


def stream_loader(
    path: Path, stream: int, batch_size: int, seed: int, start: int, workers: int, pin: bool, pool_frames: bool,
    rank: int = 0, world_size: int = 1,
) -> DataLoader:
    dataset = StreamDataset(path, stream, seed, pool_frames, rank)
    return DataLoader(
        dataset,
        batch_sampler=StreamBatches(len(dataset), batch_size, seed, stream, start, rank, world_size),
        collate_fn=_already_collated,
        num_workers=workers,
        pin_memory=pin,
        prefetch_factor=4 if workers else None,
        # Worker seeds come from this generator rather than from the global torch state, which belongs to training.
        generator=torch.Generator().manual_seed(seed * 1_000_003 + start),
    )


def uses_pool_frames(info: ShardInfo) -> bool:
    return FRAME_POOL in info.spec.extras


@dataclass
class DeviceBatch:
    """A stream batch on the device: images float in [-1, 1] at the model's size, conditions, labels float."""

    images: torch.Tensor
    conditions: torch.Tensor  # (B, T, D) as in the shard
    labels: torch.Tensor  # (B, T, L) in {0, 1}
    frame: torch.Tensor | None  # (B,) for the frame stream


def to_device(batch: dict, device: torch.device, image_size: int) -> DeviceBatch:
    images = batch["images"].to(device, non_blocking=True)
    images = resize(images.float().div_(127.5).sub_(1), image_size)
    frame = batch.get("frame")
    return DeviceBatch(
        images=images,
        conditions=batch["conditions"].to(device, non_blocking=True),
        labels=batch["labels"].to(device, non_blocking=True).float(),
        frame=None if frame is None else frame.to(device, non_blocking=True),
    )


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """(..., 3, H, W) float -> (..., 3, size, size), antialiased when shrinking; unchanged when already that size."""
    if images.shape[-2:] == (size, size):
        return images
    flat = images.reshape(-1, *images.shape[-3:])
    out = F.interpolate(flat, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return out.reshape(*images.shape[:-2], size, size)


def default_workers() -> int:
    """DataLoader workers per stream: a quarter of the cores, between 1 and 4."""
    return max(1, min(4, (os.cpu_count() or 1) // 4))
