"""The shard format, version 1: the one contract between ``sv_data`` and ``sv_model``.

This module is the only code that knows how a shard is laid out in HDF5 (``docs/format.md`` is the same
knowledge in prose). Builders write through :class:`ShardWriter`, readers go through :class:`ShardReader`;
nobody else opens a shard with h5py.

A shard holds N stories of T frames:

- ``images``      uint8   (N, T, H, W, 3)   one story per chunk, LZF-compressed
- ``texts``       utf-8   (N, T)            one sentence per frame
- ``story_ids``   utf-8   (N,)              unique within the file
- ``labels``      uint8   (N, T, L)         multi-hot, names in the ``label_names`` attribute
- ``conditions``  float32 (N, T, D)         the per-frame conditioning vector
- ``extra/NAME``  any     (N, ...)          dataset-specific per-story arrays, each with a ``description``
"""
from __future__ import annotations

import json
import os
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import h5py
import numpy as np

from sv_data.errors import SvkitError
from sv_data.files import replace_durably

FORMAT_NAME = "sv-shard"
FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
REQUIRED_DATASETS = ("images", "texts", "story_ids", "labels", "conditions")
# clevr-objects: StoryGAN's 75-d CLEVR object slots, which fix the frame (pixel metrics and the attribute evaluator
# apply); sentence-embedding: svkit's sentence encoder applied to the frame's text (new stories can be drawn from
# sentences); other: anything else.
CONDITION_KINDS = ("clevr-objects", "sentence-embedding", "other")
# Files written before these attributes existed: what their dataset names meant.
_LEGACY_CONDITION_KINDS = {"clevr-sv": "clevr-objects", "pororo-sv": "sentence-embedding"}
_STRING = h5py.string_dtype("utf-8")


class ShardError(SvkitError):
    """A shard that cannot be read or written; the message is one line that names the file."""

    def __init__(self, path: os.PathLike | str, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"svkit {version('svkit')}"
    except PackageNotFoundError:
        return "svkit (not installed)"


@dataclass(frozen=True)
class ExtraSpec:
    """One per-story array under ``extra/``: the shape of one story's entry, its dtype and what it means."""

    shape: tuple[int, ...]
    dtype: str  # a numpy dtype name, or "str" for UTF-8 text
    description: str

    def h5_dtype(self):
        return _STRING if self.dtype == "str" else np.dtype(self.dtype)


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
    """A block of n consecutive stories in memory, as written to or read from a shard."""

    def __init__(self, images, texts, story_ids, labels, conditions, extra=None):
        self.images = np.asarray(images, dtype=np.uint8)
        self.texts = [list(map(str, row)) for row in texts]
        self.story_ids = [str(s) for s in story_ids]
        self.labels = np.asarray(labels, dtype=np.uint8)
        self.conditions = np.asarray(conditions, dtype=np.float32)
        self.extra = {name: np.asarray(value) for name, value in (extra or {}).items()}

    def __len__(self) -> int:
        return len(self.story_ids)

    @classmethod
    def concatenate(cls, batches: Sequence["StoryBatch"]) -> "StoryBatch":
        return cls(
            images=np.concatenate([b.images for b in batches]),
            texts=[row for b in batches for row in b.texts],
            story_ids=[s for b in batches for s in b.story_ids],
            labels=np.concatenate([b.labels for b in batches]),
            conditions=np.concatenate([b.conditions for b in batches]),
            extra={k: np.concatenate([b.extra[k] for b in batches]) for k in batches[0].extra},
        )

    def check_against(self, spec: ShardSpec, where: Path) -> None:
        n, t = len(self), spec.frames_per_story
        h, w = spec.image_size
        expected = {
            "images": (self.images.shape, (n, t, h, w, 3)),
            "texts": ((len(self.texts), *{len(r) for r in self.texts}) if self.texts else (0, t), (n, t)),
            "labels": (self.labels.shape, (n, t, len(spec.label_names))),
            "conditions": (self.conditions.shape, (n, t, spec.condition_dim)),
        }
        for name, extra_spec in spec.extras.items():
            if name not in self.extra:
                raise ShardError(where, f"batch lacks extra/{name}")
            expected[f"extra/{name}"] = (self.extra[name].shape, (n, *extra_spec.shape))
        for name in self.extra.keys() - spec.extras.keys():
            raise ShardError(where, f"batch has extra/{name}, which the shard's spec does not declare")
        for name, (got, want) in expected.items():
            if tuple(got) != tuple(want):
                raise ShardError(where, f"{name} has shape {tuple(got)}, expected {tuple(want)}")


class ShardWriter:
    """Appends stories to a new shard; the file appears at ``path`` only when :meth:`close` completes.

    Until then everything goes to a hidden temporary file beside ``path``, so that a crash or Ctrl-C never leaves
    a file that looks finished. Used as a context manager, an exception discards the temporary file.
    """

    def __init__(self, path: os.PathLike | str, spec: ShardSpec, story_range: tuple[int, int] | None = None):
        self.path = Path(path)
        self.spec = spec
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex[:8]}.tmp")
        self._file = h5py.File(self._tmp, "w")
        self._count = 0
        self._create_layout(story_range)

    def _create_layout(self, story_range):
        spec, f = self.spec, self._file
        t, (h, w) = spec.frames_per_story, spec.image_size
        f.attrs.update(
            sv_format=FORMAT_NAME,
            sv_format_version=FORMAT_VERSION,
            dataset=spec.dataset,
            split=spec.split,
            frames_per_story=t,
            image_size=np.asarray(spec.image_size, dtype=np.int64),
            label_names=json.dumps(list(spec.label_names)),
            created_by=_package_version(),
            build_config=json.dumps(dict(spec.build_config), sort_keys=True),
            condition_kind=spec.condition_kind,
            labels_in_condition=int(spec.labels_in_condition),
        )
        if story_range is not None:
            f.attrs["story_range"] = np.asarray(story_range, dtype=np.int64)

        def grow(name, per_story, dtype, compress=False):
            return f.create_dataset(
                name,
                shape=(0, *per_story),
                maxshape=(None, *per_story),
                dtype=dtype,
                chunks=(1, *per_story) if compress else True,
                compression="lzf" if compress else None,
            )

        grow("images", (t, h, w, 3), np.uint8, compress=True)
        grow("texts", (t,), _STRING)
        grow("story_ids", (), _STRING)
        grow("labels", (t, len(spec.label_names)), np.uint8)
        grow("conditions", (t, spec.condition_dim), np.float32)
        extra = f.create_group("extra")
        for name, es in spec.extras.items():
            ds = grow(f"extra/{name}", es.shape, es.h5_dtype(), compress=es.dtype == "uint8" and len(es.shape) >= 2)
            ds.attrs["description"] = es.description
        del extra

    def __len__(self) -> int:
        return self._count

    def append(self, batch: StoryBatch) -> None:
        batch.check_against(self.spec, self.path)
        n = len(batch)
        if n == 0:
            return
        start, stop = self._count, self._count + n
        f = self._file
        columns = {
            "images": batch.images,
            "texts": np.asarray(batch.texts, dtype=object),
            "story_ids": np.asarray(batch.story_ids, dtype=object),
            "labels": batch.labels,
            "conditions": batch.conditions,
            **{f"extra/{k}": v for k, v in batch.extra.items()},
        }
        for name, values in columns.items():
            ds = f[name]
            ds.resize(stop, axis=0)
            ds[start:stop] = values
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


def _open(path: os.PathLike | str) -> tuple[h5py.File, ShardSpec]:
    """Open a shard for reading and check its header: the file, and the spec it declares."""
    path = Path(path)
    if not path.exists():
        raise ShardError(path, "no such file")
    if path.is_dir():
        raise ShardError(path, "is a folder, not a shard file")
    if not h5py.is_hdf5(path):
        raise ShardError(path, "not an HDF5 file")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:  # truncated or damaged: the signature is there but the structure is not
        raise ShardError(path, f"damaged or truncated HDF5 file ({_h5_reason(exc)})") from None
    try:
        spec = _read_header(f, path)
    except OSError as exc:  # the superblock opened, but the objects under it cannot be read
        f.close()
        raise ShardError(path, f"damaged or truncated HDF5 file ({_h5_reason(exc)})") from None
    except BaseException:
        f.close()
        raise
    return f, spec


def _h5_reason(exc: BaseException) -> str:
    """The first line of an h5py error, without HDF5's parenthesised error stack."""
    return str(exc).splitlines()[0].split("(")[0].strip() if str(exc) else type(exc).__name__


# What every reader needs in order to read a shard at all: the rank and dtype of each dataset ("str": UTF-8 text).
_LAYOUT = {
    "images": (5, np.dtype(np.uint8)),
    "texts": (2, "str"),
    "story_ids": (1, "str"),
    "labels": (3, np.dtype(np.uint8)),
    "conditions": (3, np.dtype(np.float32)),
}


def _text_attr(f: h5py.File, path: Path, name: str) -> str:
    value = f.attrs[name]
    if isinstance(value, bytes):  # fixed-length strings come back as numpy bytes
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise ShardError(path, f"root attribute {name} is not UTF-8 text") from None
    if not isinstance(value, str):
        raise ShardError(path, f"root attribute {name} should be text, found {_describe(value)}")
    return value


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _int_attr(f: h5py.File, path: Path, name: str, minimum: int | None = None) -> int:
    value = f.attrs[name]
    if not _is_int(value):
        raise ShardError(path, f"root attribute {name} should be an integer, found {_describe(value)}")
    if minimum is not None and value < minimum:
        raise ShardError(path, f"root attribute {name} is {int(value)}, should be at least {minimum}")
    return int(value)


def _int_pair_attr(f: h5py.File, path: Path, name: str, minimum: int) -> tuple[int, int]:
    value = np.asarray(f.attrs[name])
    if value.shape != (2,) or value.dtype.kind not in "iu":
        raise ShardError(path, f"root attribute {name} should be two integers, found {_describe(f.attrs[name])}")
    if value.min() < minimum:
        raise ShardError(path, f"root attribute {name} is {tuple(int(v) for v in value)}, "
                               f"each should be at least {minimum}")
    return int(value[0]), int(value[1])


def _json_attr(f: h5py.File, path: Path, name: str, kind: type):
    text = _text_attr(f, path, name)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ShardError(path, f"root attribute {name} is not valid JSON ({exc.msg} at character {exc.pos})") from None
    if not isinstance(value, kind):
        want = "a JSON list" if kind is list else "a JSON object"
        raise ShardError(path, f"root attribute {name} should be {want}, found {type(value).__name__}")
    return value


def _describe(value) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    text = repr(value.item() if isinstance(value, np.generic) else value)
    return f"{type(value).__name__} {text[:40]}{'...' if len(text) > 40 else ''}"


def _read_header(f: h5py.File, path: Path) -> ShardSpec:
    """Check everything a reader relies on and return the shard's spec; any hole raises :class:`ShardError`.

    Whether the datasets' shapes agree with one another is not checked here (see :func:`_shape_problems`).
    """
    if "sv_format" not in f.attrs:
        raise ShardError(path, "HDF5 file, but not an sv-shard (attribute sv_format is missing)")
    name = f.attrs["sv_format"]
    name = name.decode("utf-8", "replace") if isinstance(name, bytes) else name
    if not (isinstance(name, str) and name == FORMAT_NAME):
        raise ShardError(path, f"HDF5 file, but not an sv-shard (attribute sv_format is {_describe(name)}, "
                               f"not {FORMAT_NAME!r})")
    if "sv_format_version" not in f.attrs:
        raise ShardError(path, "shard is missing the root attribute sv_format_version")
    version = _int_attr(f, path, "sv_format_version")
    if version > FORMAT_VERSION:
        raise ShardError(
            path, f"shard format version {version} is newer than this svkit understands ({FORMAT_VERSION}): upgrade svkit"
        )
    if version != FORMAT_VERSION:
        raise ShardError(path, f"unknown shard format version {version} (this svkit reads version {FORMAT_VERSION})")
    missing = [name for name in (*REQUIRED_DATASETS, "extra") if name not in f]
    if missing:
        raise ShardError(path, f"shard is missing {', '.join(missing)}")
    for attr in ("dataset", "split", "frames_per_story", "image_size", "label_names", "build_config"):
        if attr not in f.attrs:
            raise ShardError(path, f"shard is missing the root attribute {attr}")
    for name, (rank, dtype) in _LAYOUT.items():
        ds = f[name]
        if not isinstance(ds, h5py.Dataset):
            raise ShardError(path, f"{name} is a group, expected a dataset")
        if ds.ndim != rank:
            raise ShardError(path, f"{name} is {ds.ndim}-D with shape {ds.shape}, expected {rank}-D")
        if dtype == "str":
            if h5py.check_string_dtype(ds.dtype) is None:
                raise ShardError(path, f"{name} is not UTF-8 text (dtype {ds.dtype})")
        elif ds.dtype != dtype:
            raise ShardError(path, f"{name} has dtype {ds.dtype}, expected {dtype}")
    if not isinstance(f["extra"], h5py.Group):
        raise ShardError(path, "extra is a dataset, expected a group")
    extras = {}
    for name, ds in f["extra"].items():
        if not isinstance(ds, h5py.Dataset) or ds.ndim < 1:
            raise ShardError(path, f"extra/{name} should be an array with one row per story")
        description = ds.attrs.get("description", "")
        description = description.decode("utf-8", "replace") if isinstance(description, bytes) else description
        extras[name] = ExtraSpec(
            shape=tuple(ds.shape[1:]),
            dtype="str" if h5py.check_string_dtype(ds.dtype) else ds.dtype.name,
            description=description if isinstance(description, str) else "",  # validate reports it missing
        )
    label_names = _json_attr(f, path, "label_names", list)
    if not all(isinstance(name, str) for name in label_names):
        raise ShardError(path, "root attribute label_names should be a JSON list of strings")
    if "num_stories" in f.attrs:
        _int_attr(f, path, "num_stories", minimum=0)
    dataset = _text_attr(f, path, "dataset")
    build_config = _json_attr(f, path, "build_config", dict)
    if "condition_kind" in f.attrs:
        condition_kind = _text_attr(f, path, "condition_kind")
        if condition_kind not in CONDITION_KINDS:
            raise ShardError(path, f"root attribute condition_kind is {condition_kind!r}, "
                                   f"not one of {', '.join(CONDITION_KINDS)}")
    else:
        condition_kind = _LEGACY_CONDITION_KINDS.get(dataset, "other")
    if "labels_in_condition" in f.attrs:
        labels_in_condition = bool(_int_attr(f, path, "labels_in_condition", minimum=0))
    else:
        labels_in_condition = dataset == "pororo-sv" or bool(build_config.get("labels_in_condition"))
    try:
        return ShardSpec(
            dataset=dataset,
            split=_text_attr(f, path, "split"),
            frames_per_story=_int_attr(f, path, "frames_per_story", minimum=1),
            image_size=_int_pair_attr(f, path, "image_size", minimum=1),
            label_names=tuple(label_names),
            condition_dim=int(f["conditions"].shape[2]),
            build_config=build_config,
            extras=extras,
            condition_kind=condition_kind,
            labels_in_condition=labels_in_condition,
        )
    except ValueError as exc:  # ShardSpec's own checks: a backstop, the ones above should say it first
        raise ShardError(path, str(exc)) from None


def _story_range(f: h5py.File, path: Path) -> tuple[int, int] | None:
    if "story_range" not in f.attrs:
        return None
    start, stop = _int_pair_attr(f, path, "story_range", minimum=0)
    if start > stop:
        raise ShardError(path, f"root attribute story_range is ({start}, {stop}): start after stop")
    return start, stop


def _info_from(f: h5py.File, path: Path, spec: ShardSpec) -> ShardInfo:
    return ShardInfo(
        path=path,
        spec=spec,
        num_stories=int(f["story_ids"].shape[0]),
        created_by=_text_attr(f, path, "created_by") if "created_by" in f.attrs else "",
        story_range=_story_range(f, path),
    )


def _shape_problems(f: h5py.File, spec: ShardSpec) -> list[str]:
    """How the datasets' shapes disagree with N (the rows of story_ids), T, (H, W), L and D; empty if they agree."""
    n = f["story_ids"].shape[0]
    t, (h, w) = spec.frames_per_story, spec.image_size
    shapes = {
        "images": (n, t, h, w, 3),
        "texts": (n, t),
        "story_ids": (n,),
        "labels": (n, t, len(spec.label_names)),
        "conditions": (n, t, spec.condition_dim),
    }
    problems = [f"{name} has shape {f[name].shape}, expected {want}"
                for name, want in shapes.items() if f[name].shape != want]
    problems += [f"extra/{name} has {ds.shape[0]} rows, expected {n}"
                 for name, ds in f["extra"].items() if ds.shape[0] != n]
    return problems


def read_info(path: os.PathLike | str) -> ShardInfo:
    """Open a shard just to read and check its header; raises :class:`ShardError` (one line) if it cannot."""
    path = Path(path)
    f, spec = _open(path)
    with f:
        try:
            return _info_from(f, path, spec)
        except OSError as exc:
            raise ShardError(path, f"damaged or truncated HDF5 file ({_h5_reason(exc)})") from None


class ShardReader:
    """Random access to the stories of a shard.

    The HDF5 file is opened on first use in each process, so that a reader can be handed to DataLoader workers
    (each of which then holds its own handle) without sharing one across ``fork``.
    """

    def __init__(self, path: os.PathLike | str):
        self.path = Path(path)
        f, spec = _open(self.path)
        with f:
            try:
                self.info = _info_from(f, self.path, spec)
                problems = _shape_problems(f, spec)
            except OSError as exc:
                raise ShardError(self.path, f"damaged or truncated HDF5 file ({_h5_reason(exc)})") from None
        if problems:  # reading would return rows that do not belong together
            more = f" (and {len(problems) - 1} more; see sv-data validate)" if len(problems) > 1 else ""
            raise ShardError(self.path, f"{problems[0]}{more}")
        self._file: h5py.File | None = None
        self._pid: int | None = None

    def __len__(self) -> int:
        return self.info.num_stories

    def __getstate__(self):
        return {"path": self.path, "info": self.info, "_file": None, "_pid": None}

    @property
    def file(self) -> h5py.File:
        if self._file is None or self._pid != os.getpid():
            self._file, _ = _open(self.path)
            self._pid = os.getpid()
        return self._file

    def close(self) -> None:
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = None

    def read(self, name: str, indices) -> np.ndarray:
        """Rows ``indices`` of one array (``images``, ``labels``, ``extra/...``), in the order asked for.

        The rows are read as runs of consecutive indices, one slice each: h5py's own fancy indexing is two orders
        of magnitude slower on chunked, compressed arrays.
        """
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if indices.size and (indices.min() < 0 or indices.max() >= len(self)):
            raise IndexError(f"{self.path}: story index out of range 0..{len(self) - 1}")
        ds = self.file[name]
        text = h5py.check_string_dtype(ds.dtype) is not None
        unique, inverse = np.unique(indices, return_inverse=True)
        runs = np.split(unique, np.flatnonzero(np.diff(unique) != 1) + 1) if unique.size else []
        try:
            data = self._text_runs(ds, runs) if text else self._numeric_runs(ds, runs)
        except OSError as exc:  # a chunk that cannot be read or decompressed
            raise ShardError(self.path, f"damaged data in {name} ({_h5_reason(exc)})") from None
        return data if np.array_equal(unique, indices) else data[inverse]

    @staticmethod
    def _text_runs(ds: h5py.Dataset, runs: list[np.ndarray]) -> np.ndarray:
        parts = [ds.asstr()[int(run[0]) : int(run[-1]) + 1] for run in runs]
        return np.concatenate(parts) if parts else np.empty((0, *ds.shape[1:]), dtype=object)

    @staticmethod
    def _numeric_runs(ds: h5py.Dataset, runs: list[np.ndarray]) -> np.ndarray:
        """Each run straight into one output array through HDF5's own selections: h5py's slicing costs about as
        much again per call as decompressing a 64x64 story, and a training batch is many short runs."""
        rest = ds.shape[1:]
        data = np.empty((sum(run.size for run in runs), *rest), ds.dtype)
        file_space = ds.id.get_space()
        memory_spaces: dict[int, h5py.h5s.SpaceID] = {}
        done = 0
        for run in runs:
            n = run.size
            file_space.select_hyperslab((int(run[0]), *(0,) * len(rest)), (n, *rest))
            # A memory space of the run's own shape: HDF5 then writes into the view without a selection to walk.
            if n not in memory_spaces:
                memory_spaces[n] = h5py.h5s.create_simple((n, *rest))
            ds.id.read(memory_spaces[n], file_space, data[done : done + n])
            done += n
        return data

    def read_images(self, indices, frames=None, block: int = 64) -> np.ndarray:
        """uint8 (n, T, H, W, 3), or (n, H, W, 3) for one frame per story when ``frames`` gives it.

        With ``frames``, each story asked for is read once (its chunk is decompressed once, however many of its
        frames are wanted), ``block`` distinct stories at a time, with :meth:`read`'s contiguous slices.
        """
        if frames is None:
            return self.read("images", indices)
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        frames = np.asarray(frames, dtype=np.int64).reshape(-1)
        if frames.shape != indices.shape:
            raise ValueError(f"{self.path}: {indices.size} story indices but {frames.size} frame indices")
        t, (h, w) = self.info.frames_per_story, self.info.image_size
        if frames.size and (frames.min() < 0 or frames.max() >= t):
            raise IndexError(f"{self.path}: frame index out of range 0..{t - 1}")
        out = np.empty((indices.size, h, w, 3), np.uint8)
        unique, inverse = np.unique(indices, return_inverse=True)
        for start, stop in iter_blocks(unique.size, block):
            stories = self.read("images", unique[start:stop])  # (stop - start, T, H, W, 3)
            wanted = (inverse >= start) & (inverse < stop)
            out[wanted] = stories[inverse[wanted] - start, frames[wanted]]
        return out

    def read_stories(self, indices) -> StoryBatch:
        return StoryBatch(
            images=self.read("images", indices),
            texts=self.read("texts", indices),
            story_ids=self.read("story_ids", indices),
            labels=self.read("labels", indices),
            conditions=self.read("conditions", indices),
            extra={name: self.read(f"extra/{name}", indices) for name in self.info.spec.extras},
        )

    def extra_names(self) -> list[str]:
        return list(self.info.spec.extras)

    def __enter__(self) -> "ShardReader":
        return self

    def __exit__(self, *exc):
        self.close()


def join_parts(parts: Sequence[os.PathLike | str], out: os.PathLike | str, block: int = 256) -> Path:
    """Copy part files, in the order given, into one shard at ``out`` (written atomically).

    Parts must agree on dataset, split, frame count, image size, labels, condition size and extras; the joined
    file takes the build_config of the first part.
    """
    if not parts:
        raise ShardError(out, "no parts to join")
    infos = [read_info(p) for p in parts]
    first = infos[0].spec
    for info in infos[1:]:
        for attr in ("dataset", "split", "frames_per_story", "image_size", "label_names", "condition_dim", "extras"):
            if getattr(info.spec, attr) != getattr(first, attr):
                raise ShardError(info.path, f"{attr} differs from {infos[0].path.name}; cannot join them")
    if all(info.story_range is not None for info in infos):
        _check_contiguous(infos)  # before anything is written: a refused join leaves no file behind
    seen: set[str] = set()
    with ShardWriter(out, first) as writer:
        for info in infos:
            with ShardReader(info.path) as reader:
                for start, stop in iter_blocks(len(reader), block):
                    batch = reader.read_stories(range(start, stop))
                    dupes = seen.intersection(batch.story_ids)
                    if dupes:
                        raise ShardError(info.path, f"story id {sorted(dupes)[0]!r} appears in more than one part")
                    seen.update(batch.story_ids)
                    writer.append(batch)
    return Path(out)


def _check_contiguous(infos: Sequence[ShardInfo]) -> None:
    """Parts, in the order they are to be copied, must hold the story ranges they claim, each following the last."""
    for info in infos:
        start, stop = info.story_range
        if stop - start != info.num_stories:
            raise ShardError(info.path, f"story range {info.story_range} promises {stop - start} stories, "
                                        f"the part holds {info.num_stories}")
    for prev, cur in zip(infos, infos[1:]):
        if prev.story_range[1] != cur.story_range[0]:
            raise ShardError(cur.path, f"story range {cur.story_range} does not follow "
                                       f"{prev.path.name}'s {prev.story_range}")


def validate(path: os.PathLike | str, block: int = 256) -> list[str]:
    """Every violation of the format rules, one line each; an empty list means the shard is valid.

    A file that cannot be read as a shard at all, or whose data cannot be read, gives one line saying so.
    """
    path = Path(path)
    try:
        f, spec = _open(path)
    except ShardError as exc:
        return [str(exc)]
    problems: list[str] = []

    def bad(msg: str):
        problems.append(f"{path}: {msg}")

    with f:
        try:
            _check_rules(f, path, spec, bad, block)
        except ShardError as exc:
            problems.append(str(exc))
        except OSError as exc:  # a chunk that cannot be read or decompressed
            problems.append(str(ShardError(path, f"damaged or truncated data ({_h5_reason(exc)})")))
    return problems


def _check_rules(f: h5py.File, path: Path, spec: ShardSpec, bad, block: int) -> None:
    """The rules beyond the header (which :func:`_open` has checked), each violation passed to ``bad``."""
    info = _info_from(f, path, spec)
    n = info.num_stories
    if spec.split not in SPLITS:
        bad(f"split {spec.split!r} is not one of {', '.join(SPLITS)}")
    if "num_stories" in f.attrs and int(f.attrs["num_stories"]) != n:
        bad(f"attribute num_stories={int(f.attrs['num_stories'])} but story_ids has {n} rows")
    if info.story_range is not None and info.story_range[1] - info.story_range[0] != n:
        bad(f"attribute story_range={info.story_range} but story_ids has {n} rows")
    for name, extra in spec.extras.items():
        if not extra.description:
            bad(f"extra/{name} has no description attribute")
    shape_problems = _shape_problems(f, spec)
    for problem in shape_problems:
        bad(problem)
    if shape_problems:
        return  # shapes disagree: the content checks below would only repeat it
    if len(spec.label_names) != len(set(spec.label_names)):
        bad("label_names has duplicates")
    ids = f["story_ids"].asstr()[:]
    duplicates = [s for s, c in Counter(ids).items() if c > 1]
    if duplicates:
        bad(f"{len(duplicates)} story ids are not unique, e.g. {duplicates[0]!r}")
    if any(not s for s in ids):
        bad("empty story id")
    for start, stop in iter_blocks(n, block):
        labels = f["labels"][start:stop]
        if labels.size and labels.max() > 1:
            bad(f"labels of stories {start}..{stop - 1} hold values other than 0 and 1")
        conditions = f["conditions"][start:stop]
        if not np.isfinite(conditions).all():
            bad(f"conditions of stories {start}..{stop - 1} hold NaN or infinity")
        texts = f["texts"].asstr()[start:stop]
        for i, row in enumerate(texts):
            for k, text in enumerate(row):
                if not text.strip():
                    bad(f"story {start + i} ({ids[start + i]}) frame {k}: empty text")
        images = f["images"][start:stop]
        for i, story in enumerate(images):
            for k, frame in enumerate(story):
                if frame.min() == frame.max():
                    bad(f"story {start + i} ({ids[start + i]}) frame {k}: image is all one value ({frame.min()})")


def label_frequencies(path: os.PathLike | str, block: int = 1024) -> dict[str, float]:
    """Fraction of frames on which each label is on."""
    with ShardReader(path) as reader:
        n = len(reader)
        totals = np.zeros(len(reader.info.spec.label_names), dtype=np.int64)
        for start, stop in iter_blocks(n, block):
            totals += reader.read("labels", range(start, stop)).sum(axis=(0, 1), dtype=np.int64)
        frames = max(n * reader.info.frames_per_story, 1)
        return {name: float(c) / frames for name, c in zip(reader.info.spec.label_names, totals)}


def iter_blocks(n: int, block: int) -> Iterable[tuple[int, int]]:
    """(start, stop) of consecutive blocks of at most ``block`` items covering range(n)."""
    for start in range(0, n, block):
        yield start, min(start + block, n)
