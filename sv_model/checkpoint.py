"""Checkpoints of a training run: tensors and plain values only, written atomically, loadable with
``torch.load(weights_only=True)``.

A checkpoint is a dict:

- ``format`` / ``version``: ``"svkit-storygan"``, 1
- ``model``: the :class:`~sv_model.networks.ModelConfig` as a dict; ``options``: the training options
- ``step``: finished training steps; ``metric``: the validation SSIM at this step, or None
- ``networks``, ``optimizers``, ``schedulers``: state dicts by name
- ``rng``: the python, numpy, torch and CUDA random states at the end of step ``step``; ``rank_rng`` (only from
  data-parallel runs): those of every rank, in rank order (``rng`` is rank 0's)
- ``shard``: what the training shard was (dataset, image size, number of stories, path)

A run keeps ``checkpoints/step_XXXXXX.pt`` (the last few) and ``checkpoints/best.pt`` (highest validation SSIM).
"""
from __future__ import annotations

import os
import random
import re
from pathlib import Path

import numpy as np
import torch

from sv_data.errors import SvkitError
from sv_data.files import atomic_file

FORMAT = "svkit-storygan"
VERSION = 1
BEST = "best.pt"
_STEP_FILE = re.compile(r"^step_(\d{6,})\.pt$")


class CheckpointError(SvkitError):
    """A checkpoint that cannot be used; the message names the file."""


def save_atomically(payload: dict, path: Path) -> Path:
    """torch.save, atomically and durably (sv_data.files)."""
    with atomic_file(path) as f:
        torch.save(payload, f)
    return Path(path)


def load(path: os.PathLike | str, map_location="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception:  # truncated file, not a torch file, or pickled objects beyond plain values
        # torch's own message would suggest weights_only=False: never the advice for a file from elsewhere.
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or damaged?)") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an svkit StoryGAN checkpoint")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {payload.get('version')} (this svkit reads {VERSION})")
    return payload


def capture_rng() -> dict:
    """Every random state a training step draws from, as tensors and plain values."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def restore_rng(state: dict) -> None:
    random.setstate(_as_tuples(state["python"]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuples(value):
    """random.setstate wants the nested tuples that random.getstate gave, which a round trip may turn to lists."""
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


class CheckpointFolder:
    """``RUN/checkpoints``: numbered checkpoints, of which the newest ``keep`` stay, and ``best.pt``."""

    def __init__(self, folder: Path, keep: int = 3):
        self.folder = Path(folder)
        self.keep = max(1, keep)

    def path_for(self, step: int) -> Path:
        return self.folder / f"step_{step:06d}.pt"

    @property
    def best(self) -> Path:
        return self.folder / BEST

    def numbered(self) -> list[tuple[int, Path]]:
        if not self.folder.is_dir():
            return []
        found = ((_STEP_FILE.match(p.name), p) for p in self.folder.iterdir())
        return sorted((int(m.group(1)), p) for m, p in found if m)

    def latest(self) -> Path | None:
        numbered = self.numbered()
        return numbered[-1][1] if numbered else None

    def save(self, payload: dict, best: bool = False) -> Path:
        path = save_atomically(payload, self.path_for(payload["step"]))
        if best:
            save_atomically(payload, self.best)
        for _, old in self.numbered()[: -self.keep]:
            old.unlink(missing_ok=True)
        return path
