"""Repacking a shard: the same file, stored as svkit stores shards now (:meth:`Column.storage`), e.g. an LZF shard
of an older svkit into a deflated one; or its first stories alone, a smaller shard of the same build."""
from __future__ import annotations

import os
from pathlib import Path

import h5py
from tqdm.auto import tqdm

from sv_data.files import atomic_path
from sv_data.shards.header import damaged, open_shard, shape_problems
from sv_data.shards.layout import EXTRA_GROUP, ROWS, ShardError
from sv_data.shards.reader import iter_blocks
from sv_data.shards.writer import create_columns

BLOCK = 64  # stories copied at a time: a few MB of frames


def repack(
    source: os.PathLike | str, out: os.PathLike | str, stories: int | None = None, progress: bool = True
) -> Path:
    """Write ``source`` again at ``out`` (atomically), which must not exist: every dataset, attribute and value the
    same, only the storage of the datasets (chunks, compression) is the format's current one. With ``stories``,
    only the first that many stories are written (and ``num_stories`` says so)."""
    source, out = Path(source), Path(out)
    if out.exists():
        raise ShardError(out, "exists already: repack writes a new file, choose another name")
    f, spec = open_shard(source)
    with f:
        problems = shape_problems(f, spec)
        if problems:  # rows that do not belong together: a copy would hide it
            raise ShardError(source, f"{problems[0]} (see sv-data validate)")
        n = f[ROWS].shape[0]
        if stories is not None:
            if not 1 <= stories <= n:
                raise ShardError(source, f"holds {n} stories, so the first {stories} cannot be written")
            n = stories
        columns = [column.name for column in spec.columns()]
        with atomic_path(out) as tmp, h5py.File(tmp, "w") as copy:
            create_columns(copy, spec)
            for name in ("/", EXTRA_GROUP, *columns):
                _copy_attributes(f[name], copy[name])
            if "num_stories" in f.attrs:
                copy.attrs.create("num_stories", n, dtype=f.attrs.get_id("num_stories").dtype)
            for name in columns:
                copy[name].resize(n, axis=0)
            with tqdm(total=n, unit="story", desc="stories repacked", disable=not progress) as bar:
                for start, stop in iter_blocks(n, BLOCK):
                    for name in columns:
                        copy[name][start:stop] = _rows(f, source, name, start, stop)
                    bar.update(stop - start)
            for name in f.keys() - {EXTRA_GROUP, *columns}:
                f.copy(f[name], copy, name)  # not the format's: kept as it is
    return out


def _rows(f: h5py.File, path: Path, name: str, start: int, stop: int):
    try:
        return f[name][start:stop]
    except OSError as exc:  # a chunk that cannot be read or decompressed
        raise damaged(path, exc, f"data in {name}") from None


def _copy_attributes(source: h5py.HLObject, target: h5py.HLObject) -> None:
    """Every attribute, with its own HDF5 type (a fixed-length string stays one)."""
    for name in source.attrs:
        target.attrs.create(name, source.attrs[name], dtype=source.attrs.get_id(name).dtype)
