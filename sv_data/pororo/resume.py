"""Resuming Pororo builds: the options record, the work folder for intermediate results, and the finished check.

The intermediate results of a build (sampled frames, encoded texts) live in ``OUT/work/`` until the build is
complete. ``OUT/work/config.json`` notes the options they were made with, so that they are never reused by a
build with other options; ``OUT/build.json`` (written by :func:`sv_data.build.build`) does the same for the parts.
"""
from __future__ import annotations

import json
from pathlib import Path

from sv_data.build import BUILD_RECORD, check_same_options, read_record
from sv_data.files import write_json
from sv_data.pororo.report import REPORT_NAME

WORK_DIR = "work"


def finished_build(out: Path, config: dict) -> dict[str, int] | None:
    """The split sizes when ``out`` already holds this very build, complete."""
    try:
        record = json.loads((out / BUILD_RECORD).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    splits = record.get("splits") or {}
    if record.get("config") != config or not splits:
        return None
    if all((out / f"{s}.h5").exists() for s in splits) and (out / REPORT_NAME).exists():
        return splits
    return None


def claim_work_dir(out: Path, config: dict) -> Path:
    """Refuse to resume from, or into, a build with other options; note this build's options in the work folder."""
    work = out / WORK_DIR
    for record_path, key in ((out / BUILD_RECORD, "config"), (work / "config.json", None)):
        if record_path.exists():
            previous = read_record(record_path)
            check_same_options(out, config, (previous.get(key) if key else previous) or {})
    marker = work / "config.json"
    if not marker.exists():  # array jobs may get here at the same time: each writes through its own temporary name
        write_json(marker, config, sort_keys=True)
    return work
