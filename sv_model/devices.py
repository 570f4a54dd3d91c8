"""Which device a command runs on, and the precision it computes in."""
from __future__ import annotations

from contextlib import nullcontext

import torch

from sv_data.errors import SvkitError

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> torch.device:
    """``auto`` -> the GPU when CUDA has one, else the CPU; ``cuda`` without a GPU is an error, not a fallback."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SvkitError(f"--device {name}: not a device (use {', '.join(DEVICE_CHOICES)})") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "built without CUDA"
            raise SvkitError(f"--device {name}: CUDA is not available on this machine (torch {torch.__version__}, {build})")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise SvkitError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type != "cpu":
        raise SvkitError(f"--device {name}: unsupported device type (use {', '.join(DEVICE_CHOICES)})")
    return device


def autocast(device: torch.device):
    """bf16 autocast on CUDA; full precision elsewhere."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()
