"""Where ``sv-model train`` puts a run and finds validation stories when the user names neither."""
from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

RUNS_ROOT = Path("runs")
VAL_SHARD = "val.h5"


def new_run_dir(root: os.PathLike | str = RUNS_ROOT) -> Path:
    """A new name ``root/<YYYYmmdd-HHMMSS>-<6 hex>``, not yet taken: sortable by start time, and with 16.7 million
    names per second, two runs started at once (or on two machines sharing ``root``) do not meet. The folder itself
    is made by the training loop once every option and shard has been checked, so a refused start leaves none."""
    root = Path(root)
    while True:
        candidate = root / f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        if not candidate.exists():
            return candidate


def val_shard_beside(train: os.PathLike | str) -> Path | None:
    """``val.h5`` in the training shard's folder, if there is one (and it is not the training shard itself).
    Never ``test.h5``: checkpoints picked on the test stories would make every test score optimistic."""
    train = Path(train)
    candidate = train.parent / VAL_SHARD
    if candidate.is_file() and candidate.resolve() != train.resolve():
        return candidate
    return None
