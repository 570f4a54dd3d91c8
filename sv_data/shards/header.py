"""A shard's root attributes and the checks that every reader relies on before it reads a row."""
from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np

from sv_data.shards.layout import (
    COLUMN_NAMES,
    COLUMNS,
    CONDITION_KINDS,
    EXTRA_GROUP,
    FORMAT_NAME,
    FORMAT_VERSION,
    ROWS,
    ExtraSpec,
    ShardError,
    ShardInfo,
    ShardSpec,
)

# Files written before these attributes existed: what their dataset names meant.
_LEGACY_CONDITION_KINDS = {"clevr-sv": "clevr-objects", "pororo-sv": "sentence-embedding"}


def legacy_condition_kind(dataset: str) -> str:
    """The condition kind of a file (shard, checkpoint, evaluator) written before kinds were recorded, by what its
    dataset name meant then."""
    return _LEGACY_CONDITION_KINDS.get(dataset, "other")
_REQUIRED_ATTRS = ("dataset", "split", "frames_per_story", "image_size", "label_names", "build_config")


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"svkit {version('svkit')}"
    except PackageNotFoundError:
        return "svkit (not installed)"


def write_header(f: h5py.File, spec: ShardSpec, story_range: tuple[int, int] | None) -> None:
    """The root attributes of a new shard (``num_stories`` is added when it is closed)."""
    f.attrs.update(
        sv_format=FORMAT_NAME,
        sv_format_version=FORMAT_VERSION,
        dataset=spec.dataset,
        split=spec.split,
        frames_per_story=spec.frames_per_story,
        image_size=np.asarray(spec.image_size, dtype=np.int64),
        label_names=json.dumps(list(spec.label_names)),
        created_by=_package_version(),
        build_config=json.dumps(dict(spec.build_config), sort_keys=True),
        condition_kind=spec.condition_kind,
        labels_in_condition=int(spec.labels_in_condition),
    )
    if story_range is not None:
        f.attrs["story_range"] = np.asarray(story_range, dtype=np.int64)


def open_shard(path: os.PathLike | str) -> tuple[h5py.File, ShardSpec]:
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
        raise damaged(path, exc) from None
    try:
        spec = _read_header(f, path)
    except OSError as exc:  # the superblock opened, but the objects under it cannot be read
        f.close()
        raise damaged(path, exc) from None
    except BaseException:
        f.close()
        raise
    return f, spec


def h5_reason(exc: BaseException) -> str:
    """The first line of an h5py error, without HDF5's parenthesised error stack."""
    return str(exc).splitlines()[0].split("(")[0].strip() if str(exc) else type(exc).__name__


def damaged(path: Path, exc: OSError, what: str = "HDF5 file") -> ShardError:
    return ShardError(path, f"damaged or truncated {what} ({h5_reason(exc)})")


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


def _check_format(f: h5py.File, path: Path) -> None:
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


def _check_columns(f: h5py.File, path: Path) -> None:
    """Every column of :data:`COLUMNS` is there, with its rank and dtype."""
    missing = [name for name in (*COLUMN_NAMES, EXTRA_GROUP) if name not in f]
    if missing:
        raise ShardError(path, f"shard is missing {', '.join(missing)}")
    for attr in _REQUIRED_ATTRS:
        if attr not in f.attrs:
            raise ShardError(path, f"shard is missing the root attribute {attr}")
    for column in COLUMNS:
        ds = f[column.name]
        if not isinstance(ds, h5py.Dataset):
            raise ShardError(path, f"{column.name} is a group, expected a dataset")
        if ds.ndim != column.rank:
            raise ShardError(path, f"{column.name} is {ds.ndim}-D with shape {ds.shape}, expected {column.rank}-D")
        if column.text:
            if h5py.check_string_dtype(ds.dtype) is None:
                raise ShardError(path, f"{column.name} is not UTF-8 text (dtype {ds.dtype})")
        elif ds.dtype != column.h5_dtype():
            raise ShardError(path, f"{column.name} has dtype {ds.dtype}, expected {column.h5_dtype()}")
    if not isinstance(f[EXTRA_GROUP], h5py.Group):
        raise ShardError(path, f"{EXTRA_GROUP} is a dataset, expected a group")


def _read_extras(f: h5py.File, path: Path) -> dict[str, ExtraSpec]:
    extras = {}
    for name, ds in f[EXTRA_GROUP].items():
        if not isinstance(ds, h5py.Dataset) or ds.ndim < 1:
            raise ShardError(path, f"{EXTRA_GROUP}/{name} should be an array with one row per story")
        description = ds.attrs.get("description", "")
        description = description.decode("utf-8", "replace") if isinstance(description, bytes) else description
        extras[name] = ExtraSpec(
            shape=tuple(ds.shape[1:]),
            dtype="str" if h5py.check_string_dtype(ds.dtype) else ds.dtype.name,
            description=description if isinstance(description, str) else "",  # validate reports it missing
        )
    return extras


def _read_header(f: h5py.File, path: Path) -> ShardSpec:
    """Check everything a reader relies on and return the shard's spec; any hole raises :class:`ShardError`.

    Whether the datasets' shapes agree with one another is not checked here (see :func:`shape_problems`).
    """
    _check_format(f, path)
    _check_columns(f, path)
    extras = _read_extras(f, path)
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
        condition_kind = legacy_condition_kind(dataset)
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


def info_from(f: h5py.File, path: Path, spec: ShardSpec) -> ShardInfo:
    return ShardInfo(
        path=path,
        spec=spec,
        num_stories=int(f[ROWS].shape[0]),
        created_by=_text_attr(f, path, "created_by") if "created_by" in f.attrs else "",
        story_range=_story_range(f, path),
    )


def shape_problems(f: h5py.File, spec: ShardSpec) -> list[str]:
    """How the columns' shapes disagree with N (the rows of story_ids), T, (H, W), L and D; empty if they agree."""
    n = f[ROWS].shape[0]
    problems = []
    for column in COLUMNS:
        want = (n, *column.story_shape(spec))
        if f[column.name].shape != want:
            problems.append(f"{column.name} has shape {f[column.name].shape}, expected {want}")
    problems += [f"{EXTRA_GROUP}/{name} has {ds.shape[0]} rows, expected {n}"
                 for name, ds in f[EXTRA_GROUP].items() if ds.shape[0] != n]
    return problems
