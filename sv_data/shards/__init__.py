"""The shard format, version 1: the one contract between ``sv_data`` and ``sv_model``.

This package is the only code that knows how a shard is laid out in HDF5 (``docs/format.md`` is the same
knowledge in prose). Builders write through :class:`ShardWriter`, readers go through :class:`ShardReader`;
nobody else opens a shard with h5py.

A shard holds N stories of T frames: one array per column of :data:`COLUMNS` (images, texts, story_ids, labels,
conditions), each with one row per story, and ``extra/NAME``, dataset-specific per-story arrays, each with a
``description``. The parts:

- :mod:`.layout`: the column table, the spec, the in-memory batch;
- :mod:`.header`: the root attributes, and the checks every reader relies on;
- :mod:`.writer`, :mod:`.reader` (runs of hyperslabs), :mod:`.join` (parts into one file), :mod:`.rules`
  (every rule), :mod:`.stats` (figures over a whole shard).
"""
from sv_data.shards.header import legacy_condition_kind
from sv_data.shards.join import join_parts
from sv_data.shards.layout import (
    COLUMNS,
    CONDITION_KINDS,
    FORMAT_NAME,
    FORMAT_VERSION,
    SPLITS,
    Column,
    ExtraSpec,
    ShardError,
    ShardInfo,
    ShardSpec,
    StoryBatch,
)
from sv_data.shards.reader import ShardReader, iter_blocks, read_info
from sv_data.shards.repack import repack
from sv_data.shards.stats import images_sha256, label_frequencies
from sv_data.shards.rules import validate
from sv_data.shards.writer import ShardWriter

__all__ = [
    "COLUMNS", "CONDITION_KINDS", "FORMAT_NAME", "FORMAT_VERSION", "SPLITS", "Column", "ExtraSpec", "ShardError",
    "ShardInfo", "ShardReader", "ShardSpec", "ShardWriter", "StoryBatch", "images_sha256", "iter_blocks",
    "join_parts", "label_frequencies", "legacy_condition_kind", "read_info", "repack", "validate",
]
