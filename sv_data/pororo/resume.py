"""Resuming Pororo builds: the options record, the work folder for intermediate results, and the finished check.

The intermediate results of a build (sampled frames, encoded texts) live in ``OUT/work/`` until the build is
complete. ``OUT/work/config.json`` notes the options they were made with, so that they are never reused by a
build with other options; ``OUT/build.json`` (written by :func:`sv_data.build.build`) does the same for the parts.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from sv_data.build import BUILD_RECORD, BuildError
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
        if not record_path.exists():
            continue
        try:
            previous = json.loads(record_path.read_text())
        except json.JSONDecodeError:
            raise BuildError(f"{record_path}: not valid JSON; delete it or use another --out") from None
        previous = (previous.get(key) if key else previous) or {}
        if previous != config:
            changed = sorted(k for k in config.keys() | previous.keys() if config.get(k) != previous.get(k))
            # The videos folder is the one difference that no option's value on the command line shows.
            source = f", it was made from --videos {previous['videos']}" if "videos" in changed and \
                previous.get("videos") else ""
            raise BuildError(
                f"{out}: holds a build with other options ({', '.join(changed)} differ{source}); re-run with the "
                "same options to resume, or choose another --out"
            )
    work.mkdir(parents=True, exist_ok=True)
    marker = work / "config.json"
    if not marker.exists():
        tmp = marker.with_name(f".config.json.{os.getpid()}.tmp")  # array jobs may get here at the same time
        tmp.write_text(json.dumps(config, indent=2, sort_keys=True))
        os.replace(tmp, marker)
    return work
