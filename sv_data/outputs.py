"""Output paths checked before any work: a command that would overwrite its own input, write two outputs to one
name, find a file where it makes a folder (or the other way round), or find its folder read-only, says so in one
line at once, not after an hour of rendering or training."""
from __future__ import annotations

import os
from itertools import combinations
from pathlib import Path
from typing import Mapping, Optional

from sv_data.errors import SvkitError
from sv_data.files import temporary_name

PathArg = Optional[os.PathLike | str]


def check_outputs(files: Mapping[str, PathArg] = {}, folders: Mapping[str, PathArg] = {},
                  inputs: Mapping[str, PathArg] = {}) -> None:
    """Raise :class:`SvkitError` naming the option and path when an output cannot be written as meant.

    Each mapping goes from the option (or argument) name the user typed to its path; ``None`` paths (options not
    given) are skipped. ``files`` are outputs written as one file, ``folders`` outputs written as a folder."""
    outputs = [(name, Path(path), False) for name, path in files.items() if path is not None]
    outputs += [(name, Path(path), True) for name, path in folders.items() if path is not None]
    given_inputs = [(name, Path(path)) for name, path in inputs.items() if path is not None]
    for name, path, is_folder in outputs:
        _check_kind(name, path, is_folder)
        for input_name, input_path in given_inputs:
            if _same_file(path, input_path):
                raise SvkitError(f"{name} {path} is also the input {input_name}: choose another name, so that the "
                                 "input is kept")
        _check_writable(name, path, is_folder)
    for (name, path, _), (other_name, other_path, _) in combinations(outputs, 2):
        if _same_file(path, other_path):
            raise SvkitError(f"{name} and {other_name} would both be written to {path}: choose another name")


def _same_file(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def _check_kind(name: str, path: Path, is_folder: bool) -> None:
    if is_folder and path.exists() and not path.is_dir():
        raise SvkitError(f"{name} {path}: is a file, but a folder is meant here")
    if not is_folder and path.is_dir():
        raise SvkitError(f"{name} {path}: is a folder, but a file is meant here")
    if not is_folder and path.exists() and not path.is_file():  # replacing /dev/null or a pipe breaks the system
        raise SvkitError(f"{name} {path}: is a device or pipe, not a regular file")


def _check_writable(name: str, path: Path, is_folder: bool) -> None:
    """The nearest existing folder on the way to the output must take new files. A probe file is made and removed
    there rather than asking ``os.access``, so that the answer (a read-only mount, a missing permission) is the
    file system's own, in its own words. Where a file's own folder exists, the probe has the temporary name the
    file is written under first, so that a name too long for the file system is found too."""
    folder = (path if is_folder else path.parent).absolute()
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise SvkitError(f"{name} {path}: {existing} is a file, not a folder")
    probe = temporary_name(existing / (path.name if existing == folder and not is_folder else "svkit-probe"))
    try:
        probe.touch(exist_ok=False)
    except OSError as exc:
        raise SvkitError(f"{name} {path}: cannot write in {existing}: {exc.strerror}") from None
    probe.unlink()
