"""Per-frame SSIM and PSNR between generated and real frames.

SSIM is pytorch-msssim 1.0.0 (pinned in setup.cfg): Gaussian window 11, sigma 1.5, K1=0.01, K2=0.03, computed on
each RGB channel of uint8-range images (data range 255) over the valid region of the window, then averaged over
channels and pixels. Papers rarely name their SSIM code; this one is named so that figures can be reproduced.
"""
from __future__ import annotations

import torch

SSIM_IMPLEMENTATION = "pytorch-msssim 1.0.0, gaussian window 11, sigma 1.5, per channel, data range 255"


def _as_float(images: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) uint8 or float in 0..255 -> (n, 3, H, W) float32."""
    return images.reshape(-1, *images.shape[-3:]).float()


def ssim_per_frame(generated: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """SSIM of each frame pair, for images (..., 3, H, W) in 0..255 (uint8 or float); returns shape (...)."""
    if generated.shape != real.shape:
        raise ValueError(f"shapes differ: {tuple(generated.shape)} vs {tuple(real.shape)}")
    # Imported here: training and evaluation that compute no SSIM run where pytorch-msssim is not installed (the
    # reproduction run on a lent GPU machine, benchmarks/reproduce_clevr.py).
    from pytorch_msssim import ssim as _msssim_ssim

    values = _msssim_ssim(_as_float(generated), _as_float(real), data_range=255, size_average=False, win_size=11, win_sigma=1.5)
    return values.reshape(generated.shape[:-3])


def psnr_per_frame(generated: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of each frame pair, for images (..., 3, H, W) in 0..255; identical frames give +inf."""
    if generated.shape != real.shape:
        raise ValueError(f"shapes differ: {tuple(generated.shape)} vs {tuple(real.shape)}")
    mse = (_as_float(generated) - _as_float(real)).pow(2).mean(dim=(1, 2, 3))
    return (10 * torch.log10(255.0**2 / mse)).reshape(generated.shape[:-3])
