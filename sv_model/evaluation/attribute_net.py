"""The CLEVR-SV attribute evaluator's network: a small fully convolutional encoder-decoder that marks each object
with a peak in a heat map (CenterNet-style) and classifies shape, colour, material and size at every cell.

A frame's objects are read off the peaks: each peak above a threshold is one object, whose attributes are the
classes predicted around the peak's cell (see ``read_objects``). The attributes are predicted separately, so the
network needs to see each value often, not each of the 96 combinations.
"""
from __future__ import annotations

from collections import Counter

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sv_model.evaluation.clevr_objects import ATTRIBUTE_SIZES, IGNORE, INPUT_SIZE
from sv_model.evaluation.scores import ObjectSet


def _conv(in_channels: int, out_channels: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class AttributeNet(nn.Module):
    """uint8-range frames (n, 3, 64, 64) -> heat-map logits (n, 1, 64, 64) and attribute logits (n, 15, 64, 64);
    ``features`` gives the pooled bottleneck (n, 4 * width), the space of svkit's cheap Fréchet distance."""

    def __init__(self, width: int = 32):
        super().__init__()
        w = width
        self.stages = nn.ModuleList(
            [
                _conv(3, w // 2),  # 64x64: a small object is a few pixels wide
                nn.Sequential(_conv(w // 2, w, stride=2), _conv(w, w)),  # 32x32
                nn.Sequential(_conv(w, 2 * w, stride=2), _conv(2 * w, 2 * w)),  # 16x16
                nn.Sequential(_conv(2 * w, 4 * w, stride=2), _conv(4 * w, 4 * w, dilation=2), _conv(4 * w, 4 * w)),
            ]
        )  # the 8x8 bottleneck's cells see the whole frame
        self.lateral = nn.ModuleList([nn.Conv2d(4 * w, 2 * w, 1), nn.Conv2d(2 * w, w, 1), nn.Conv2d(w, w // 2, 1)])
        self.up = nn.ModuleList([_conv(2 * w, 2 * w), nn.Sequential(_conv(w, w), _conv(w, w)), _conv(w // 2, w // 2)])
        self.heads = nn.Conv2d(w // 2, 1 + sum(ATTRIBUTE_SIZES), 1)
        nn.init.constant_(self.heads.bias[:1], -4.0)  # start from "no object anywhere", as CenterNet does

    @staticmethod
    def _normalise(pixels: torch.Tensor) -> torch.Tensor:
        return (pixels.float() - 127.5) / 64.0

    def _encode(self, pixels: torch.Tensor) -> list[torch.Tensor]:
        levels, x = [], self._normalise(pixels)
        for stage in self.stages:
            x = stage(x)
            levels.append(x)
        return levels

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        *skips, y = self._encode(pixels)
        for lateral, up, skip in zip(self.lateral, self.up, reversed(skips)):
            y = up(skip + F.interpolate(lateral(y), scale_factor=2, mode="nearest"))
        out = self.heads(y)
        return out[:, :1], out[:, 1:]

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        return self._encode(pixels)[-1].mean(dim=(2, 3))


def focal_heat_loss(logits: torch.Tensor, heat: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss (alpha 2, beta 4), per object."""
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    peak = heat >= 1.0
    positive = ((1 - p) ** 2 * torch.log(p))[peak].sum()
    negative = ((1 - heat) ** 4 * p**2 * torch.log(1 - p))[~peak].sum()
    return -(positive + negative) / peak.sum().clamp(min=1)


def attribute_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of the four attribute heads over the cells that an object covers."""
    losses = [
        F.cross_entropy(part, labels[:, i].long(), ignore_index=IGNORE)
        for i, part in enumerate(torch.split(logits, ATTRIBUTE_SIZES, dim=1))
    ]
    return torch.stack(losses).mean()


def loss(model: AttributeNet, pixels: torch.Tensor, heat: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    heat_logits, attribute_logits = model(pixels)
    return focal_heat_loss(heat_logits[:, 0], heat) + attribute_loss(attribute_logits, labels)


def resize_frames(frames: np.ndarray) -> np.ndarray:
    """uint8 frames (n, H, W, 3) -> uint8 (n, 64, 64, 3), area-averaged when they are of another size."""
    frames = np.asarray(frames, np.uint8)
    if frames.shape[1:3] == (INPUT_SIZE, INPUT_SIZE):
        return frames
    pixels = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    small = F.interpolate(pixels, size=(INPUT_SIZE, INPUT_SIZE), mode="area").round().to(torch.uint8)
    return small.permute(0, 2, 3, 1).numpy()


def to_input(frames: np.ndarray) -> torch.Tensor:
    """uint8 frames (n, H, W, 3) -> the network's input (n, 3, 64, 64), floats in 0..255."""
    return torch.from_numpy(resize_frames(frames)).permute(0, 3, 1, 2).float()


# A peak of the heat map counts as an object above this probability. Measured on 800 held-out real frames with the
# evaluator of docs/benchmarks.md: at 0.5, 89.5 % of the frames got their object count right; at 0.3, 96.3 %.
PEAK_THRESHOLD = 0.3


@torch.no_grad()
def read_objects(model: AttributeNet, pixels: torch.Tensor, threshold: float = PEAK_THRESHOLD) -> list[ObjectSet]:
    """The multiset of objects in each frame: one per local maximum (3x3) of the heat map above ``threshold``,
    with the attributes most probable over the 3x3 cells around it, weighted by the heat (one cell alone is
    noisier: 1 point of exact-match accuracy less). Heat and attribute probabilities are the mean of the frame's
    and its mirror image's (2.4 points more exact matches on the held-out frames of docs/benchmarks.md)."""
    heat_logits, attribute_logits = model(torch.cat([pixels, pixels.flip(-1)]))
    heat_logits, attribute_logits = _mean_with_mirror(heat_logits), _mean_with_mirror(attribute_logits)
    heat = torch.sigmoid(heat_logits)
    peaks = (heat == F.max_pool2d(heat, 3, stride=1, padding=1)) & (heat > threshold)
    weighted = [F.avg_pool2d(part.softmax(dim=1) * heat, 3, stride=1, padding=1)
                for part in torch.split(attribute_logits, ATTRIBUTE_SIZES, dim=1)]
    classes = torch.stack([part.argmax(dim=1) for part in weighted], 1)
    frames: list[ObjectSet] = [Counter() for _ in range(len(pixels))]
    for n, _, y, x in peaks.nonzero().tolist():
        frames[n][tuple(classes[n, :, y, x].tolist())] += 1
    return frames


def _mean_with_mirror(outputs: torch.Tensor) -> torch.Tensor:
    """Outputs of the frames followed by those of their mirror images (2n, ...) -> their mean, per frame (n, ...)."""
    direct, mirrored = outputs.chunk(2)
    return (direct + mirrored.flip(-1)) / 2
