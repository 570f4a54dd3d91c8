"""Shared fixtures. ``tiny_clevr`` is a real CLEVR-SV build, made once per test session for every test that needs
CLEVR-SV shards (the builder's own tests, model training and evaluation)."""
from pathlib import Path

import pytest

TINY_CLEVR = {"train": 24, "test": 8}


@pytest.fixture(scope="session")
def tiny_clevr(tmp_path_factory) -> Path:
    """A folder holding train.h5 (24 stories) and test.h5 (8 stories) of CLEVR-SV at 64x64, rendered with the
    real builder (4 samples, denoised, one worker, seed 0)."""
    from sv_data.clevr.job import build_clevr

    out = tmp_path_factory.mktemp("tiny-clevr")
    build_clevr(out, TINY_CLEVR, seed=0, image_size=64, samples=4, workers=1, chunk_size=16, progress=False)
    return out
