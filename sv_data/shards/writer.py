"""Writing a shard: :class:`ShardWriter` creates every column of the spec and appends batches of stories."""
from __future__ import annotations

import os
from pathlib import Path

import h5py

from sv_data.files import replace_durably, temporary_name
from sv_data.shards.header import write_header
from sv_data.shards.layout import EXTRA_GROUP, ShardSpec, StoryBatch


def create_columns(f: h5py.File, spec: ShardSpec) -> None:
    """Every column of ``spec`` as an empty dataset that grows by rows, stored as :meth:`Column.storage` says."""
    f.create_group(EXTRA_GROUP)
    for column in spec.columns():
        per_story = column.story_shape(spec)
        f.create_dataset(column.name, shape=(0, *per_story), maxshape=(None, *per_story), dtype=column.h5_dtype(),
                         **column.storage(spec))


class ShardWriter:
    """Appends stories to a new shard; the file appears at ``path`` only when :meth:`close` completes.

    Until then everything goes to a hidden temporary file beside ``path``, so that a crash or Ctrl-C never leaves
    a file that looks finished. Used as a context manager, an exception discards the temporary file.
    """

    def __init__(self, path: os.PathLike | str, spec: ShardSpec, story_range: tuple[int, int] | None = None):
        self.path = Path(path)
        self.spec = spec
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = temporary_name(self.path)
        self._file = h5py.File(self._tmp, "w")
        self._count = 0
        write_header(self._file, spec, story_range)
        create_columns(self._file, spec)
        for name, extra in spec.extras.items():
            self._file[EXTRA_GROUP][name].attrs["description"] = extra.description

    def __len__(self) -> int:
        return self._count

    def append(self, batch: StoryBatch) -> None:
        batch.check_against(self.spec, self.path)
        n = len(batch)
        if n == 0:
            return
        start, stop = self._count, self._count + n
        arrays = batch.arrays()
        for column in self.spec.columns():
            ds = self._file[column.name]
            ds.resize(stop, axis=0)
            ds[start:stop] = column.for_hdf5(arrays[column.name])
        self._count = stop

    def close(self) -> Path:
        """Finish the file and move it into place atomically and durably; returns its final path.

        The temporary file's data reach the disk (fsync) before the rename, and the rename reaches it (fsync of the
        folder) before this returns: after a power loss the final name holds the complete file or nothing.
        """
        try:
            self._file.attrs["num_stories"] = self._count
            self._file.close()
            replace_durably(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise
        return self.path

    def abort(self) -> None:
        try:
            if self._file.id.valid:
                self._file.close()
        finally:
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()
