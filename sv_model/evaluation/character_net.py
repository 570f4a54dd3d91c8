"""The character classifier's network: EfficientNet-Lite0 (ImageNet initialisation, offline) and one logit per
label, trained with binary cross-entropy. Frames are resized to ``input_size`` before the backbone."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sv_model.evaluation.efficientnet_lite import FEATURE_DIM, EfficientNetLite0, imagenet_backbone


class CharacterNet(nn.Module):
    def __init__(self, num_labels: int, input_size: int, pretrained: bool = True):
        super().__init__()
        self.input_size = input_size
        self.backbone = imagenet_backbone() if pretrained else EfficientNetLite0()
        self.dropout = nn.Dropout(0.2)
        self.head = nn.Linear(FEATURE_DIM, num_labels)

    def resize(self, pixels: torch.Tensor) -> torch.Tensor:
        """(n, 3, H, W) 0..255 -> (n, 3, S, S) float, bilinear (antialiased when shrinking)."""
        pixels = pixels.float()
        if pixels.shape[-2:] == (self.input_size, self.input_size):
            return pixels
        return F.interpolate(pixels, size=(self.input_size, self.input_size), mode="bilinear", antialias=True)

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.resize(pixels))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(pixels)))


def loss(model: CharacterNet, pixels: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(model(pixels), labels.float())


def to_input(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 frames (n, H, W, 3) -> (n, 3, H, W) floats in 0..255."""
    return torch.as_tensor(np.asarray(frames)).permute(0, 3, 1, 2).float()
