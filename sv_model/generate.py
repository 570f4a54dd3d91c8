"""Drawing stories with a trained generator: the API that evaluation code and ``sv-model generate`` use.

    generator = load_generator("runs/clevr/checkpoints/best.pt")
    generator.check_compatible(sv_data.shards.read_info("test.h5"))
    frames = generator.generate(conditions, labels, seed=0)   # uint8 (n, T, H, W, 3)
"""
from __future__ import annotations

import os
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from sv_data.errors import SvkitError
from sv_data.shards import ShardInfo
from sv_model import checkpoint
from sv_model.devices import resolve_device
from sv_model.networks import Generator, ModelConfig, StoryNoise, story_conditions


class IncompatibleShardError(SvkitError):
    """A shard whose stories the model cannot draw (another dataset, frame count, condition size or labels)."""


def autocast(device: torch.device):
    """bf16 autocast on CUDA; full precision elsewhere."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Generator output in [-1, 1] -> uint8 in 0..255, same layout."""
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


@torch.no_grad()
def draw_stories(
    generator: Generator,
    conditions: torch.Tensor,
    labels: torch.Tensor,
    seed: int,
    device: torch.device,
    batch_size: int = 64,
) -> torch.Tensor:
    """Stories for (n, T, D) conditions and (n, T, L) labels -> uint8 (n, T, 3, S, S) on ``device``.

    All noise is drawn up front from a generator seeded with ``seed``, so the result depends on the seed alone,
    not on the batch size, and no global random state is touched. The generator runs in eval mode.
    """
    config = generator.config
    noise = StoryNoise.draw(len(conditions), config, "cpu", torch.Generator().manual_seed(seed))
    was_training = generator.training
    generator.eval()
    try:
        out = []
        for start in range(0, len(conditions), batch_size):
            rows = slice(start, start + batch_size)
            c = story_conditions(conditions[rows].to(device), labels[rows].to(device), config)
            part = StoryNoise(noise.frames[rows].to(device), noise.story[rows].to(device))
            with autocast(device):
                images, _, _ = generator(c, part)
            out.append(to_uint8(images))
        size = config.image_size
        return torch.cat(out) if out else torch.empty((0, config.frames, 3, size, size), dtype=torch.uint8)
    finally:
        generator.train(was_training)


class StoryGenerator:
    """A trained generator, ready to draw stories for a shard's conditions.

    Attributes: ``dataset``, ``frames_per_story`` (T), ``image_size`` ((H, W) of the frames it draws),
    ``condition_dim`` (D of the shard's conditions), ``label_names``, ``model`` ("storygan" or "imagegan"),
    ``step`` (training steps of the checkpoint), ``checkpoint`` (its path) and ``device``.
    """

    def __init__(self, network: Generator, device: torch.device, checkpoint_path: Path, step: int):
        self.network = network.eval()
        self.config: ModelConfig = network.config
        self.device = device
        self.checkpoint = checkpoint_path
        self.step = step
        self.dataset = self.config.dataset
        self.model = self.config.model
        self.frames_per_story = self.config.frames
        self.image_size = (self.config.image_size, self.config.image_size)
        self.condition_dim = self.config.condition_dim
        self.label_names = self.config.label_names

    def check_compatible(self, info: ShardInfo) -> None:
        """Raise :class:`IncompatibleShardError` if the shard's stories are not what the model was trained on.
        Frames of another size are allowed: compare them to generated frames after resizing."""
        spec = info.spec
        differences = [
            (what, theirs, ours)
            for what, theirs, ours in (
                ("dataset", spec.dataset, self.dataset),
                ("frames per story", spec.frames_per_story, self.frames_per_story),
                ("condition size", spec.condition_dim, self.condition_dim),
                ("labels", list(spec.label_names), list(self.label_names)),
            )
            if theirs != ours
        ]
        if differences:
            what, theirs, ours = differences[0]
            raise IncompatibleShardError(
                f"{info.path}: does not fit the model in {self.checkpoint}: {what} is {theirs} in the shard, "
                f"{ours} in the model"
            )

    def generate(self, conditions: np.ndarray, labels: np.ndarray, seed: int, batch_size: int = 64) -> np.ndarray:
        """(n, T, D) float32 conditions and (n, T, L) uint8 labels -> uint8 frames (n, T, H, W, 3).

        Deterministic for a seed (on a given device), batched internally, in eval mode without gradients."""
        conditions = np.asarray(conditions, dtype=np.float32)
        labels = np.asarray(labels, dtype=np.uint8)
        t, d, nl = self.frames_per_story, self.condition_dim, len(self.label_names)
        if conditions.ndim != 3 or conditions.shape[1:] != (t, d):
            raise ValueError(f"conditions must have shape (n, {t}, {d}), got {conditions.shape}")
        if labels.shape != (conditions.shape[0], t, nl):
            raise ValueError(f"labels must have shape ({conditions.shape[0]}, {t}, {nl}), got {labels.shape}")
        images = draw_stories(
            self.network, torch.from_numpy(conditions), torch.from_numpy(labels), seed, self.device, batch_size
        )
        return images.permute(0, 1, 3, 4, 2).cpu().numpy()


def load_generator(checkpoint_path: os.PathLike | str, device: str = "auto") -> StoryGenerator:
    """The generator of a training checkpoint (``RUN/checkpoints/best.pt`` or ``step_XXXXXX.pt``), in eval mode
    on ``device`` ("auto", "cpu", "cuda" or "cuda:N")."""
    path = Path(checkpoint_path)
    payload = checkpoint.load(path)
    target = resolve_device(device)
    network = Generator(ModelConfig.from_dict(payload["model"]))
    network.load_state_dict(payload["networks"]["generator"])
    return StoryGenerator(network.to(target), target, path, int(payload["step"]))
