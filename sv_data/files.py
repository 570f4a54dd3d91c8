"""Durable, atomic output files: every svkit writer goes through here.

A file appears under its final name only complete: it is written to a hidden temporary name beside the target,
flushed to disk, renamed into place, and the rename itself is flushed (the folder). A crash, Ctrl-C or power loss
leaves the old file or nothing, never half a file.
"""
from __future__ import annotations

import json
import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator


def temporary_name(path: os.PathLike | str) -> Path:
    """A hidden, unique name beside ``path`` (same folder, so the final rename never crosses file systems)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")


def replace_durably(tmp: os.PathLike | str, final: os.PathLike | str) -> None:
    """``os.replace(tmp, final)``, with ``tmp`` flushed to disk before and the folder's entry after."""
    tmp, final = Path(tmp), Path(final)
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, final)
    try:
        fd = os.open(final.parent, os.O_RDONLY)
    except OSError:  # a platform (Windows) where folders cannot be opened: the rename is as durable as it gets
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a folder
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: os.PathLike | str) -> Iterator[Path]:
    """Yield a temporary path for a library that writes by file name (h5py, PIL, numpy); on success it replaces
    ``path`` durably, on any exception it is removed. The parent folder is created if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        yield tmp
        replace_durably(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_file(path: os.PathLike | str, mode: str = "wb", **open_args) -> Iterator[IO]:
    """``open(path, mode)`` that is atomic and durable: the file object writes to a temporary name."""
    with atomic_path(path) as tmp:
        with open(tmp, mode, **open_args) as f:
            yield f


def write_text(path: os.PathLike | str, text: str) -> Path:
    with atomic_file(path, "w", encoding="utf-8") as f:
        f.write(text)
    return Path(path)


def write_json(path: os.PathLike | str, value, **dump_args) -> Path:
    """JSON, indented, one trailing newline; ``dump_args`` go to :func:`json.dumps` (``sort_keys``, ...)."""
    return write_text(path, json.dumps(value, indent=2, **dump_args) + "\n")


def file_sha256(path: os.PathLike | str) -> str:
    """'sha256:<hex>' of a file's bytes, read in 1 MiB pieces."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for piece in iter(lambda: f.read(1 << 20), b""):
            digest.update(piece)
    return "sha256:" + digest.hexdigest()
