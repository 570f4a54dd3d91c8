"""StoryGAN's networks (Li et al., CVPR 2019), sized from the shard they are trained on.

- :class:`StoryEncoder`: a story's frame conditions -> mean and log-variance of the initial story state h0.
- :class:`ContextEncoder`: a GRU over (condition_t, noise_t) gives i_t; the :class:`Text2Gist` cell updates the
  story state h_t from i_t and outputs the gist o_t, a per-sample 1-D convolution of h_t with a filter computed
  from i_t.
- :class:`Generator`: (gist o_t, condition_t, noise_t) -> 4x4 features -> upsampling blocks -> RGB in [-1, 1].
- :class:`ImageDiscriminator`: (frame, its condition, the story code) -> real/fake logit, plus logits of the
  shard's labels (the auxiliary multi-label classifier). The story code is the story encoder's mean, detached as
  the official code detaches its discriminators' conditions: the discriminator judges a frame in the light of its
  story (the official one sees the frame's condition alone), and its gradient does not reach the story encoder.
- :class:`StoryDiscriminator`: logit w^T (E_img(X) * E_txt(S)) + b over all frames of a story.

``model="imagegan"`` is the paper's ImageGAN baseline: no story encoder, no context encoder, no story
discriminator; each frame is drawn from its own condition and noise alone.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from sv_data.shards import legacy_condition_kind

MODELS = ("storygan", "imagegan")
EMBEDDING_DIM = 128  # the discriminators' embeddings of conditions (and the story discriminator's of frames)
LEGACY_STORY_DIM = 128  # the story state of checkpoints from before its size was a setting
GIST_CHANNELS = 4  # output channels of the Text2Gist convolution
GIST_KERNEL = 15  # length of the Text2Gist filter, applied along h_t with zero padding


@dataclass(frozen=True)
class ModelConfig:
    """Everything that fixes the networks' shapes; stored in checkpoints as plain values."""

    model: str
    dataset: str
    frames: int
    condition_dim: int  # D of the shard's conditions
    label_names: tuple[str, ...]
    labels_in_condition: bool  # Pororo-SV: the frame's character labels are appended to its condition
    image_size: int  # the networks draw and judge image_size x image_size frames
    noise_dim: int = 100
    g_width: int = 64
    d_width: int = 64
    condition_kind: str = "other"  # the training shard's (sv_data.shards.CONDITION_KINDS): what its conditions are
    # h0, h_t and i_t; None: input_dim, as the official code's GRUs are as large as its text (TEXT.DIMENSION)
    story_dim: int | None = None

    def __post_init__(self):
        if self.story_dim is None:
            object.__setattr__(self, "story_dim", self.input_dim)  # a frozen dataclass, completed once
        if self.story_dim < 1:
            raise ValueError("the story state takes its size from the frame condition, which is empty here: "
                             "give --story-dim")
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {', '.join(MODELS)}, got {self.model!r}")
        if self.image_size < 8 or self.image_size & (self.image_size - 1):
            raise ValueError(f"image size must be a power of two >= 8, got {self.image_size}")
        if min(self.g_width, self.d_width) < 2:
            raise ValueError("network widths must be >= 2")

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    @property
    def input_dim(self) -> int:
        """Size of the per-frame condition the networks see."""
        return self.condition_dim + (self.num_labels if self.labels_in_condition else 0)

    @property
    def story_context(self) -> bool:
        return self.model == "storygan"

    @property
    def resolution_steps(self) -> int:
        """Number of 2x up- (generator) or down-sampling (discriminators) blocks between 4x4 and the image size."""
        return int(math.log2(self.image_size // 4))

    def to_dict(self) -> dict:
        values = asdict(self)
        values["label_names"] = list(self.label_names)
        return values

    @classmethod
    def from_dict(cls, values: dict) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in values.items() if k in known}
        kwargs["label_names"] = tuple(kwargs["label_names"])
        # Checkpoints from before the shards said what their conditions are: as sv_data reads such old shards.
        kwargs.setdefault("condition_kind", legacy_condition_kind(kwargs["dataset"]))
        kwargs.setdefault("story_dim", LEGACY_STORY_DIM)
        return cls(**kwargs)


def story_conditions(conditions: torch.Tensor, labels: torch.Tensor, config: ModelConfig) -> torch.Tensor:
    """The per-frame condition the networks see: the shard's (..., D) conditions, with the (..., L) labels
    appended when the model was configured so."""
    conditions = conditions.float()
    if config.labels_in_condition:
        return torch.cat([conditions, labels.to(conditions.dtype)], dim=-1)
    return conditions


class StoryEncoder(nn.Module):
    """All T frame conditions of a story -> (mu, logvar) of the initial story state."""

    def __init__(self, frames: int, input_dim: int, story_dim: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(frames * input_dim, 2 * story_dim), nn.LeakyReLU(0.2), nn.Linear(2 * story_dim, 2 * story_dim)
        )

    def forward(self, conditions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.net(conditions.flatten(1)).chunk(2, dim=1)
        return mu, logvar


class Text2Gist(nn.Module):
    """One step of the Text2Gist cell.

    The story state is updated like a GRU's: h_t = (1 - z) h_{t-1} + z tanh(W i_t + U (r * h_{t-1})). The gist
    o_t is a true 1-D convolution of h_t (a signal of length ``state_dim``) with ``channels`` filters of length
    ``kernel`` that are computed from i_t, so each sample of the batch is convolved with its own filters.
    """

    def __init__(self, input_dim: int, state_dim: int, channels: int = GIST_CHANNELS, kernel: int = GIST_KERNEL):
        super().__init__()
        self.state_dim, self.channels, self.kernel = state_dim, channels, kernel
        self.gates = nn.Linear(input_dim + state_dim, 2 * state_dim)
        self.candidate_input = nn.Linear(input_dim, state_dim)
        self.candidate_state = nn.Linear(state_dim, state_dim, bias=False)
        self.filters = nn.Linear(input_dim, channels * kernel)

    @property
    def output_dim(self) -> int:
        return self.channels * self.state_dim

    def forward(self, i_t: torch.Tensor, h_prev: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        update, reset = torch.sigmoid(self.gates(torch.cat([i_t, h_prev], dim=1))).chunk(2, dim=1)
        candidate = torch.tanh(self.candidate_input(i_t) + self.candidate_state(reset * h_prev))
        h_t = (1 - update) * h_prev + update * candidate
        return self.convolve(h_t, self.filters(i_t)), h_t

    def convolve(self, h_t: torch.Tensor, filters: torch.Tensor) -> torch.Tensor:
        """(B, S) states and (B, channels * kernel) filters -> (B, channels * S): sample b's state convolved with
        sample b's filters (a grouped convolution with one group per sample)."""
        batch = h_t.shape[0]
        weight = filters.reshape(batch * self.channels, 1, self.kernel)
        out = F.conv1d(h_t.reshape(1, batch, self.state_dim), weight, padding=self.kernel // 2, groups=batch)
        return out.reshape(batch, self.output_dim)


class ContextEncoder(nn.Module):
    """(conditions, noise) of a story and its initial state h0 -> the gists o_1..o_T."""

    def __init__(self, input_dim: int, noise_dim: int, story_dim: int):
        super().__init__()
        self.gru = nn.GRU(input_dim + noise_dim, story_dim, batch_first=True)
        self.cell = Text2Gist(story_dim, story_dim)

    @property
    def output_dim(self) -> int:
        return self.cell.output_dim

    def forward(self, conditions: torch.Tensor, noise: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
        inputs, _ = self.gru(torch.cat([conditions, noise], dim=2))
        h, gists = h0, []
        for t in range(inputs.shape[1]):
            o_t, h = self.cell(inputs[:, t], h)
            gists.append(o_t)
        return torch.stack(gists, dim=1)


def _up_block(channels_in: int, channels_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="nearest"),
        nn.Conv2d(channels_in, channels_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(channels_out),
        nn.ReLU(inplace=True),
    )


@dataclass
class StoryNoise:
    """The generator's randomness for a batch of stories, drawn by the caller so that it can be seeded."""

    frames: torch.Tensor  # (B, T, noise_dim), the per-frame noise eps_t
    story: torch.Tensor  # (B, story_dim), the reparameterisation noise of h0

    @classmethod
    def draw(cls, batch: int, config: ModelConfig, device, generator: torch.Generator | None = None) -> "StoryNoise":
        """From ``generator`` (on its own device, then moved) or else from the global RNG of ``device`` itself,
        so that training draws its noise on the GPU without a copy per step."""
        where = generator.device if generator is not None else device
        frames = torch.randn(batch, config.frames, config.noise_dim, generator=generator, device=where)
        story = torch.randn(batch, config.story_dim, generator=generator, device=where)
        return cls(frames.to(device), story.to(device))


class Generator(nn.Module):
    """Draws stories (StoryGAN) or independent frames (ImageGAN) from conditions and noise."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        c, g = config.input_dim, config.g_width
        decoder_input = c + config.noise_dim
        if config.story_context:
            self.story_encoder = StoryEncoder(config.frames, c, config.story_dim)
            self.context = ContextEncoder(c, config.noise_dim, config.story_dim)
            decoder_input += self.context.output_dim
        self.base_channels = g * 8
        self.project = nn.Sequential(
            nn.Linear(decoder_input, self.base_channels * 16, bias=False),
            nn.BatchNorm1d(self.base_channels * 16),
            nn.ReLU(inplace=True),
        )
        channels = [max(self.base_channels >> k, 4) for k in range(config.resolution_steps + 1)]
        self.blocks = nn.Sequential(*(_up_block(a, b) for a, b in zip(channels, channels[1:])))
        self.to_rgb = nn.Sequential(nn.Conv2d(channels[-1], 3, 3, padding=1), nn.Tanh())

    def gists(self, conditions: torch.Tensor, noise: StoryNoise):
        """(B, T, C) conditions -> (gists (B, T, G) or None for ImageGAN, mu, logvar of h0 or None)."""
        if not self.config.story_context:
            return None, None, None
        mu, logvar = self.story_encoder(conditions)
        h0 = mu + torch.exp(0.5 * logvar) * noise.story
        return self.context(conditions, noise.frames, h0), mu, logvar

    def decode(self, gists: torch.Tensor | None, conditions: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """One frame per row: (n, G), (n, C), (n, noise_dim) -> (n, 3, S, S) in [-1, 1]."""
        parts = [conditions, noise] if gists is None else [gists, conditions, noise]
        x = self.project(torch.cat(parts, dim=1)).reshape(-1, self.base_channels, 4, 4)
        return self.to_rgb(self.blocks(x))

    def forward(self, conditions: torch.Tensor, noise: StoryNoise):
        """Whole stories: (B, T, C) -> (images (B, T, 3, S, S), mu, logvar)."""
        gists, mu, logvar = self.gists(conditions, noise)
        b, t = conditions.shape[:2]
        images = self.decode(
            None if gists is None else gists.flatten(0, 1), conditions.flatten(0, 1), noise.frames.flatten(0, 1)
        )
        return images.reshape(b, t, *images.shape[1:]), mu, logvar

    def frames(self, conditions: torch.Tensor, noise: StoryNoise, frame: torch.Tensor):
        """Frame ``frame[b]`` of story b only: the context runs over the whole story (it is cheap), the image
        decoder over the chosen frames alone. Returns (images (B, 3, S, S), mu, logvar)."""
        gists, mu, logvar = self.gists(conditions, noise)
        rows = torch.arange(conditions.shape[0], device=conditions.device)
        picked = None if gists is None else gists[rows, frame]
        return self.decode(picked, conditions[rows, frame], noise.frames[rows, frame]), mu, logvar


def _image_encoder(config: ModelConfig) -> tuple[nn.Sequential, int]:
    """Strided convolutions from image_size down to 4x4; returns the encoder and its output channels."""
    d = config.d_width
    layers: list[nn.Module] = [nn.Conv2d(3, d, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
    channels = d
    for _ in range(config.resolution_steps - 1):
        out = min(channels * 2, d * 8)
        layers += [nn.Conv2d(channels, out, 4, 2, 1, bias=False), nn.BatchNorm2d(out), nn.LeakyReLU(0.2, inplace=True)]
        channels = out
    return nn.Sequential(*layers), channels


class ImageDiscriminator(nn.Module):
    """(frame, condition_t, story code mu (or None for ImageGAN)) -> (real/fake logit (n,), label logits (n, L))."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.encoder, channels = _image_encoder(config)
        condition_input = config.input_dim + (config.story_dim if config.story_context else 0)
        self.embed_condition = nn.Sequential(
            nn.Linear(condition_input, EMBEDDING_DIM), nn.LeakyReLU(0.2, inplace=True)
        )
        self.joint = nn.Sequential(
            nn.Conv2d(channels + EMBEDDING_DIM, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(channels, 1, 4),
        )
        self.classifier = nn.Conv2d(channels, config.num_labels, 4) if config.num_labels else None

    def forward(self, images: torch.Tensor, conditions: torch.Tensor, story_code: torch.Tensor | None):
        features = self.encoder(images)
        parts = [conditions, story_code] if self.config.story_context else [conditions]
        code = self.embed_condition(torch.cat(parts, dim=1))
        code = code[:, :, None, None].expand(-1, -1, *features.shape[2:])
        logits = self.joint(torch.cat([features, code], dim=1)).flatten()
        labels = self.classifier(features).flatten(1) if self.classifier is not None else None
        return logits, labels


class StoryDiscriminator(nn.Module):
    """Stories (B, T, 3, S, S) with their conditions (B, T, C) -> logit w^T (E_img(X) * E_txt(S)) + b."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.encoder, channels = _image_encoder(config)
        self.embed_image = nn.Linear(channels * 16, EMBEDDING_DIM)
        self.embed_text = nn.Linear(config.input_dim, EMBEDDING_DIM)
        self.head = nn.Linear(config.frames * EMBEDDING_DIM, 1)

    def forward(self, stories: torch.Tensor, conditions: torch.Tensor) -> torch.Tensor:
        b, t = stories.shape[:2]
        images = self.embed_image(self.encoder(stories.flatten(0, 1)).flatten(1)).reshape(b, t, -1)
        texts = self.embed_text(conditions)
        return self.head((images * texts).flatten(1)).flatten()


def init_weights(module: nn.Module) -> None:
    """DCGAN's initialisation: N(0, 0.02) for convolutions and linear layers, N(1, 0.02) for batch-norm scales."""
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


@dataclass
class Networks:
    generator: Generator
    image_d: ImageDiscriminator
    story_d: StoryDiscriminator | None  # None for ImageGAN

    @classmethod
    def build(cls, config: ModelConfig) -> "Networks":
        nets = cls(
            Generator(config),
            ImageDiscriminator(config),
            StoryDiscriminator(config) if config.story_context else None,
        )
        for net in nets.modules().values():
            net.apply(init_weights)
        return nets

    def modules(self) -> dict[str, nn.Module]:
        named = {"generator": self.generator, "image_d": self.image_d, "story_d": self.story_d}
        return {name: net for name, net in named.items() if net is not None}

    def to(self, device) -> "Networks":
        for net in self.modules().values():
            net.to(device)
        return self
