"""Shared fixtures. ``tiny_clevr`` is a real CLEVR-SV build, made once per test session for every test that needs
CLEVR-SV shards (the builder's own tests, model training and evaluation)."""
import subprocess
import sys
from pathlib import Path

import pytest

TINY_CLEVR = {"train": 24, "test": 8}


@pytest.fixture(scope="session")
def tiny_clevr(tmp_path_factory) -> Path:
    """A folder holding train.h5 (24 stories) and test.h5 (8 stories) of CLEVR-SV at 64x64, rendered with the
    real builder (4 samples, denoised, one worker, seed 0). It runs as a command in its own process, so that
    Blender's libraries never share the test process with PyTorch's."""
    out = tmp_path_factory.mktemp("tiny-clevr")
    command = [sys.executable, "-m", "cli.data", "build-clevr", "--out", str(out), "--seed", "0",
               "--n-train", str(TINY_CLEVR["train"]), "--n-test", str(TINY_CLEVR["test"]), "--image-size", "64",
               "--samples", "4", "--workers", "1", "--chunk-size", "16", "--quiet"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"building tiny_clevr failed ({done.returncode}): {done.stderr[-2000:]}")
    return out
