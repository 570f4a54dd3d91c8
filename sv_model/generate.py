"""Drawing stories with a trained generator: the API that evaluation code and ``sv-model generate`` use.

    generator = load_generator("runs/clevr/checkpoints/best.pt")
    generator.check_compatible(sv_data.shards.read_info("test.h5"))
    frames = generator.generate(conditions, labels, seed=0)   # uint8 (n, T, H, W, 3)
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from sv_data.errors import SvkitError
from sv_data.files import atomic_path
from sv_data.shards import ShardInfo
from sv_model import checkpoint
from sv_model.data import check_same_kind, resize, story_kind
from sv_model.devices import autocast, resolve_device
from sv_model.networks import Generator, ModelConfig, StoryNoise, story_conditions


SENTENCE_EMBEDDING = "sentence-embedding"  # the condition kind of shards whose conditions svkit's encoder gives


class IncompatibleShardError(SvkitError):
    """A shard whose stories the model cannot draw (another dataset, frame count, condition size or labels)."""


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
        c = self.config
        expected = story_kind(c.dataset, c.condition_kind, c.frames, c.condition_dim, c.label_names)
        check_same_kind(info, expected, f"the model in {self.checkpoint}", IncompatibleShardError)

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


def story_sheet(generated: np.ndarray, real: np.ndarray | None = None) -> np.ndarray:
    """One row per story: its real frames (when given), a white gap, then its generated frames.

    ``generated`` and ``real`` are uint8 (n, T, H, W, 3); the sheet is uint8 (n*H + (n-1)*gap, width, 3) with
    width T*W, or 2*T*W + gap with the real frames, where gap = max(2, W // 8)."""
    n, t, h, w, _ = generated.shape
    gap = max(2, w // 8)
    strips = [generated.transpose(0, 2, 1, 3, 4).reshape(n, h, t * w, 3)]
    if real is not None:
        if real.shape != generated.shape:
            raise ValueError(f"real frames {real.shape} and generated frames {generated.shape} differ in shape")
        white = np.full((n, h, gap, 3), 255, np.uint8)
        strips = [real.transpose(0, 2, 1, 3, 4).reshape(n, h, t * w, 3), white, strips[0]]
    rows = np.concatenate(strips, axis=2)
    sheet = np.full((n * h + (n - 1) * gap, rows.shape[2], 3), 255, np.uint8)
    for i, row in enumerate(rows):
        sheet[i * (h + gap) : i * (h + gap) + h] = row
    return sheet


def save_story_sheet(path: os.PathLike | str, generated: np.ndarray, real: np.ndarray | None = None) -> Path:
    """Write :func:`story_sheet` as a PNG, atomically and durably."""
    from PIL import Image

    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(story_sheet(generated, real)).save(tmp, format="PNG")
    return path


def generate_from_shard(
    generator: StoryGenerator, shard: os.PathLike | str, indices: list[int], out: os.PathLike | str, seed: int = 0
) -> Path:
    """Draw stories ``indices`` of a shard and write them beside their real frames (resized to the model's size
    where the shard's differ) as a PNG sheet."""
    from sv_data.shards import ShardReader

    with ShardReader(shard) as reader:
        generator.check_compatible(reader.info)
        bad = [i for i in indices if not 0 <= i < len(reader)]
        if bad:
            raise SvkitError(f"{shard}: story index {bad[0]} is out of range 0..{len(reader) - 1}")
        real = reader.read("images", indices)
        frames = generator.generate(reader.read("conditions", indices), reader.read("labels", indices), seed)
    size = generator.image_size[0]
    real = resize(torch.from_numpy(real).permute(0, 1, 4, 2, 3).float(), size).round().clamp(0, 255)
    return save_story_sheet(out, frames, real.to(torch.uint8).permute(0, 1, 3, 4, 2).numpy())


def generate_from_texts(generator: StoryGenerator, texts: list[str], seed: int = 0) -> np.ndarray:
    """A new story from one sentence per frame, for models whose conditions are sentence embeddings (Pororo-SV):
    the texts go through the builder's encoder, and a frame's labels are the characters its sentence names.
    Returns uint8 (1, T, H, W, 3)."""
    if generator.config.condition_kind != SENTENCE_EMBEDDING:
        raise SvkitError(
            f"{generator.checkpoint}: the model was trained on {generator.dataset!r}, whose conditions are not "
            f"sentence embeddings; --texts works for models of shards whose condition kind is {SENTENCE_EMBEDDING} "
            "(Pororo-SV; use --data)"
        )
    if len(texts) != generator.frames_per_story:
        raise SvkitError(f"--texts: the model draws stories of {generator.frames_per_story} frames, got {len(texts)} texts")
    from sv_data.pororo.characters import CharacterDetector
    from sv_data.pororo.encoder import encode_texts

    conditions = encode_texts(texts, progress=False)
    if conditions.shape[1] != generator.condition_dim:
        raise SvkitError(
            f"{generator.checkpoint}: the model's conditions have {generator.condition_dim} values, the sentence "
            f"encoder gives {conditions.shape[1]}"
        )
    detector = CharacterDetector(generator.label_names)
    labels = np.stack([detector.detect([text]) for text in texts])
    return generator.generate(conditions[None], labels[None], seed)
