"""Where ``sv-model train`` puts a run and finds validation stories when the user names neither."""
from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

RUNS_ROOT = Path("runs")
VAL_SHARD = "val.h5"


def new_run_dir(root: os.PathLike | str = RUNS_ROOT) -> Path:
    """Create and return ``root/<YYYYmmdd-HHMMSS>-<6 hex>``: sortable by start time, and created with
    ``exist_ok=False`` so that two runs started in the same second (or on two machines sharing ``root``) never
    get the same folder."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    while True:
        candidate = root / f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate


def val_shard_beside(train: os.PathLike | str) -> Path | None:
    """``val.h5`` in the training shard's folder, if there is one (and it is not the training shard itself).
    Never ``test.h5``: checkpoints picked on the test stories would make every test score optimistic."""
    train = Path(train)
    candidate = train.parent / VAL_SHARD
    if candidate.is_file() and candidate.resolve() != train.resolve():
        return candidate
    return None
