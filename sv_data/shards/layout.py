"""The shard format, version 1: what a shard holds. :data:`COLUMNS` is the one declaration of its per-story
arrays; creating, appending, checking, reading and validating them all follow from it."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import h5py
import numpy as np

from sv_data.errors import SvkitError

FORMAT_NAME = "sv-shard"
FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
# clevr-objects: StoryGAN's 75-d CLEVR object slots, which fix the frame (pixel metrics and the attribute evaluator
# apply); sentence-embedding: svkit's sentence encoder applied to the frame's text (new stories can be drawn from
# sentences); other: anything else.
CONDITION_KINDS = ("clevr-objects", "sentence-embedding", "other")
STRING = h5py.string_dtype("utf-8")
EXTRA_GROUP = "extra"
# Images, and image-like extras, are deflated (HDF5's gzip filter) one story per chunk: every HDF5 library reads
# deflate without a plugin, and a story's frames repeat one another, which deflate finds only within one chunk.
# Level 6 against LZF, other levels and other chunk shapes: docs/benchmarks.md. Shards stored otherwise (LZF, as
# svkit wrote them before) read the same: HDF5 finds the filter in the file.
IMAGE_COMPRESSION, IMAGE_COMPRESSION_LEVEL = "gzip", 6


class ShardError(SvkitError):
    """A shard that cannot be read or written; the message is one line that names the file."""

    def __init__(self, path: os.PathLike | str, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


@dataclass(frozen=True)
class Column:
    """One per-story array of a shard: ``N`` rows, each of shape ``per_story``, whose entries are ints or the
    letters of the spec's sizes (T frames per story, H x W pixels, L labels, D condition values)."""

    name: str  # the HDF5 path
    dtype: str  # a numpy dtype name, or "str" for UTF-8 text
    per_story: tuple[int | str, ...]
    meaning: str
    compress: bool = False  # stored one story per chunk, compressed (:meth:`storage`)

    @property
    def rank(self) -> int:
        return 1 + len(self.per_story)

    @property
    def text(self) -> bool:
        return self.dtype == "str"

    def h5_dtype(self):
        return STRING if self.text else np.dtype(self.dtype)

    def story_shape(self, spec: "ShardSpec") -> tuple[int, ...]:
        sizes = spec.sizes()
        return tuple(sizes[d] if isinstance(d, str) else d for d in self.per_story)

    def storage(self, spec: "ShardSpec") -> dict:
        """How the column's dataset is stored: h5py's ``create_dataset`` arguments for its chunks and filters."""
        if not self.compress:
            return {"chunks": True}
        return {"chunks": (1, *self.story_shape(spec)), "compression": IMAGE_COMPRESSION,
                "compression_opts": IMAGE_COMPRESSION_LEVEL}

    def coerce(self, values):
        """Values as a :class:`StoryBatch` holds them: nested lists of str for text, numpy arrays otherwise."""
        return _str_lists(values, self.rank) if self.text else np.asarray(values, dtype=self.dtype)

    def for_hdf5(self, values) -> np.ndarray:
        return np.asarray(values, dtype=object) if self.text else values


COLUMNS = (
    Column("images", "uint8", ("T", "H", "W", 3), "RGB frames", compress=True),
    Column("texts", "str", ("T",), "one sentence per frame"),
    Column("story_ids", "str", (), "unique within the file"),
    Column("labels", "uint8", ("T", "L"), "multi-hot, names in the label_names attribute"),
    Column("conditions", "float32", ("T", "D"), "the per-frame conditioning vector"),
)
COLUMN_NAMES = tuple(c.name for c in COLUMNS)
ROWS = "story_ids"  # the column whose length is the shard's number of stories


def _str_lists(values, rank: int):
    if rank == 1:
        return [str(v) for v in values]
    return [_str_lists(row, rank - 1) for row in values]


@dataclass(frozen=True)
class ExtraSpec:
    """One per-story array under ``extra/``: the shape of one story's entry, its dtype and what it means."""

    shape: tuple[int, ...]
    dtype: str  # a numpy dtype name, or "str" for UTF-8 text
    description: str

    def h5_dtype(self):
        return self.column("").h5_dtype()

    def column(self, name: str) -> Column:
        # Large images (frame pools, masks) are stored like ``images``: one story per compressed chunk.
        return Column(f"{EXTRA_GROUP}/{name}", self.dtype, tuple(self.shape), self.description,
                      compress=self.dtype == "uint8" and len(self.shape) >= 2)


@dataclass(frozen=True)
class ShardSpec:
    """Everything about a shard that is fixed before its first story is written."""

    dataset: str
    split: str
    frames_per_story: int
    image_size: tuple[int, int]
    label_names: tuple[str, ...]
    condition_dim: int
    build_config: Mapping = field(default_factory=dict)
    extras: Mapping[str, ExtraSpec] = field(default_factory=dict)
    # What the conditions are, so that a model treats a user's own dataset by what it holds, not by its name.
    condition_kind: str = "other"  # one of CONDITION_KINDS
    labels_in_condition: bool = False  # models append each frame's labels to its condition

    def __post_init__(self):
        if self.condition_kind not in CONDITION_KINDS:
            raise ValueError(f"condition_kind must be one of {', '.join(CONDITION_KINDS)}, got {self.condition_kind!r}")
        if self.frames_per_story < 1:
            raise ValueError(f"frames_per_story must be >= 1, got {self.frames_per_story}")
        if len(self.image_size) != 2 or min(self.image_size) < 1:
            raise ValueError(f"image_size must be (H, W) with H, W >= 1, got {self.image_size}")
        if self.condition_dim < 0:
            raise ValueError(f"condition_dim must be >= 0, got {self.condition_dim}")

    def sizes(self) -> dict[str, int]:
        """The letters of :attr:`Column.per_story`."""
        h, w = self.image_size
        return {"T": self.frames_per_story, "H": h, "W": w, "L": len(self.label_names), "D": self.condition_dim}

    def columns(self) -> tuple[Column, ...]:
        """Every per-story array of a shard of this spec: :data:`COLUMNS`, then the extras."""
        return (*COLUMNS, *(extra.column(name) for name, extra in self.extras.items()))


@dataclass(frozen=True)
class ShardInfo:
    """The header of an existing shard, as :func:`read_info` finds it."""

    path: Path
    spec: ShardSpec
    num_stories: int
    created_by: str
    story_range: tuple[int, int] | None  # set on part files: the story indices [start, stop) of the split

    @property
    def frames_per_story(self) -> int:
        return self.spec.frames_per_story

    @property
    def image_size(self) -> tuple[int, int]:
        return self.spec.image_size


class StoryBatch:
    """A block of n consecutive stories in memory, as written to or read from a shard: one attribute per column
    of :data:`COLUMNS`, and ``extra``, name -> array."""

    def __init__(self, images, texts, story_ids, labels, conditions, extra=None):
        given = dict(images=images, texts=texts, story_ids=story_ids, labels=labels, conditions=conditions)
        for column in COLUMNS:
            setattr(self, column.name, column.coerce(given[column.name]))
        self.extra = {name: np.asarray(value) for name, value in (extra or {}).items()}

    def __len__(self) -> int:
        return len(getattr(self, ROWS))

    def arrays(self) -> dict[str, object]:
        """HDF5 path -> this batch's values of that array, every column and extra."""
        return {**{c.name: getattr(self, c.name) for c in COLUMNS},
                **{f"{EXTRA_GROUP}/{name}": value for name, value in self.extra.items()}}

    def check_against(self, spec: ShardSpec, where: Path) -> None:
        for name in spec.extras.keys() - self.extra.keys():
            raise ShardError(where, f"batch lacks {EXTRA_GROUP}/{name}")
        for name in self.extra.keys() - spec.extras.keys():
            raise ShardError(where, f"batch has {EXTRA_GROUP}/{name}, which the shard's spec does not declare")
        arrays = self.arrays()
        for column in spec.columns():
            want = (len(self), *column.story_shape(spec))
            got = _shape(arrays[column.name], want)
            if got != want:
                raise ShardError(where, f"{column.name} has shape {got}, expected {want}")


def _shape(values, want: tuple[int, ...]) -> tuple:
    """The shape of an array, or of nested lists (rows of different lengths give every length found)."""
    if isinstance(values, np.ndarray):
        return tuple(values.shape)
    if not values:
        return (0, *want[1:])
    if len(want) == 1:
        return (len(values),)
    inner = sorted({_shape(row, want[1:]) for row in values})
    return (len(values), *(inner[0] if len(inner) == 1 else tuple(s for shape in inner for s in shape)))
