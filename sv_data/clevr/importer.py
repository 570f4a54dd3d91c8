"""Import the CLEVR-SV data of the official StoryGAN release into shards.

The release is a folder of 320x240 RGBA frames named ``CLEVR_new_<story:06d>_<frame 1-4>.png`` and
``CLEVR_dict.npy``: ``np.save`` of a dict from frame file name to its 75-d float64 vector, written by Python 2
(so a pickle of protocol 2, wrapped in the NPY format). Pickles can run code when loaded; this one is read with an
unpickler that admits only what such a dict is made of: dicts, strings and numpy arrays.
"""
from __future__ import annotations

import ast
import io
import os
import pickle
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np

from sv_data.clevr.descriptions import describe
from sv_data.clevr.job import DATASET, TEXT_STREAM, object_extras, one_story
from sv_data.clevr.scene import (
    COLORS,
    CONDITION_DIM,
    LABEL_NAMES,
    MATERIALS,
    NUM_OBJECTS,
    SHAPES,
    SIZES,
    SLOT_SIZE,
    Scene,
    SceneObject,
    Studio,
    story_rng,
)
from sv_data.errors import SvkitError
from sv_data.shards import ExtraSpec, ShardSpec, StoryBatch

FRAME_NAME = "CLEVR_new_{index:06d}_{frame}.png"
PAPER_RANGES = {"train": (100, 10100), "test": (10100, 13100)}

# What a pickled dict of numpy arrays needs, under its Python 2 and Python 3 names, and nothing else.
_ADMITTED = {
    ("numpy.core.multiarray", "_reconstruct"): np.core.multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): np.core.multiarray._reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): __import__("codecs").encode,  # how Python 3 writes bytes at protocol 2
}


class UnsafePickleError(SvkitError):
    """The file asks the unpickler for something a data file never needs (a function that runs code)."""


class _DataOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        try:
            return _ADMITTED[module, name]
        except KeyError:
            raise UnsafePickleError(f"{module}.{name}") from None


def parse_range(option: str, text: str) -> tuple[int, int]:
    """'100:10100' -> (100, 10100)."""
    try:
        start, stop = (int(part) for part in text.split(":"))
    except ValueError:
        raise SvkitError(f"{option} must be START:STOP with whole numbers, got {text!r}") from None
    if not 0 <= start <= stop:
        raise SvkitError(f"{option} must have 0 <= START <= STOP, got {text!r}")
    return start, stop


def _npy_payload(path: Path, data: bytes) -> bytes:
    """The pickle inside an NPY file of one Python object (or the whole file, if it is a bare pickle)."""
    if not data.startswith(b"\x93NUMPY"):
        return data
    major = data[6]
    if major == 1:
        (length,), start = struct.unpack("<H", data[8:10]), 10
    else:
        (length,), start = struct.unpack("<I", data[8:12]), 12
    try:
        header = ast.literal_eval(data[start : start + length].decode("latin1"))
    except (ValueError, SyntaxError):
        raise SvkitError(f"{path}: damaged NPY header") from None
    if not isinstance(header, dict) or header.get("descr") != "|O":
        raise SvkitError(f"{path}: holds a plain array ({header.get('descr') if isinstance(header, dict) else '?'}), "
                         "not the pickled dict of the StoryGAN release")
    return data[start + length :]


def load_release_vectors(path: os.PathLike | str) -> dict[str, np.ndarray]:
    """``CLEVR_dict.npy`` -> {frame name without folder or extension: float64 (75,)}, loaded without running code."""
    path = Path(path)
    if not path.is_file():
        raise SvkitError(f"{path}: no such file")
    payload = _npy_payload(path, path.read_bytes())
    try:
        obj = _DataOnlyUnpickler(io.BytesIO(payload), encoding="latin1").load()
    except UnsafePickleError as exc:
        raise UnsafePickleError(
            f"{path}: refused: the pickle asks for {exc}, which could run code; only dicts, strings and numpy "
            "arrays are admitted"
        ) from None
    except Exception as exc:  # a damaged pickle can fail in many ways; all of them mean "not the release file"
        raise SvkitError(f"{path}: not a readable pickle ({type(exc).__name__}: {exc})") from None
    if isinstance(obj, np.ndarray) and obj.dtype == object and obj.shape == ():
        obj = obj.item()
    if not isinstance(obj, dict):
        raise SvkitError(f"{path}: holds a {type(obj).__name__}, not a dict of frame name -> vector")
    vectors = {}
    for key, value in obj.items():
        name = key.decode("latin1") if isinstance(key, bytes) else key
        if not isinstance(name, str) or not isinstance(value, np.ndarray):
            raise SvkitError(f"{path}: entry {key!r} is not a frame name with a numpy vector")
        vector = np.asarray(value, dtype=np.float64).reshape(-1)
        if vector.shape != (CONDITION_DIM,):
            raise SvkitError(f"{path}: vector of {name} has {vector.size} numbers, expected {CONDITION_DIM}")
        vectors[_frame_key(name)] = vector
    return vectors


def _frame_key(name: str) -> str:
    """'some/folder/CLEVR_new_000100_1.png' -> 'CLEVR_new_000100_1'."""
    return os.path.splitext(os.path.basename(name.replace("\\", "/")))[0]


def decode_objects(vector: np.ndarray, where: str) -> tuple[SceneObject, ...]:
    """The objects a (last-frame) StoryGAN vector describes, slot by slot; a zero slot ends the list."""
    groups = np.cumsum([0, len(SHAPES), len(COLORS), len(MATERIALS), len(SIZES)])
    objects = []
    for k in range(NUM_OBJECTS):
        slot = vector[k * SLOT_SIZE : (k + 1) * SLOT_SIZE]
        if not slot.any():
            break
        values = []
        for lo, hi in zip(groups[:-1], groups[1:]):
            hot = np.flatnonzero(slot[lo:hi] > 0.5)
            if len(hot) != 1:
                raise SvkitError(f"{where}: slot {k} is not one-hot in positions {lo}..{hi - 1}")
            values.append(int(hot[0]))
        x, y, _ = slot[-3:]
        objects.append(SceneObject(*values, x=float(x), y=float(y), yaw=0.0))
    return tuple(objects)


def studio_facing(right: np.ndarray) -> Studio:
    """A studio whose camera has this ground-plane right direction (enough to tell left, right, front, behind)."""
    front = np.array([right[1], -right[0]])
    camera = (float(10 * front[0]), float(10 * front[1]), 5.0)
    return Studio(camera=camera, lights=())


def import_extras() -> dict[str, ExtraSpec]:
    n = NUM_OBJECTS
    return {
        **object_extras(),
        "position": ExtraSpec((n, 3), "float32", "x, y, z of object k as the release's vector gives them"),
        "source_index": ExtraSpec((), "int32", "story index in the release's file names (CLEVR_new_<index>_<frame>)"),
    }


@dataclass
class ReleaseImportJob:
    """A StoryJob over the release: story i of a split is release story ``ranges[split][0] + i``."""

    images: str
    dict_path: str
    ranges: Mapping[str, tuple[int, int]]
    image_size: int = 64
    _vectors: dict = field(default=None, init=False, repr=False, compare=False)

    def config(self) -> dict:
        return {"dataset": DATASET, "source": "storygan-release", "images": self.images, "dict": self.dict_path,
                "ranges": {s: list(r) for s, r in self.ranges.items()}, "image_size": self.image_size}

    def spec(self, split: str) -> ShardSpec:
        return ShardSpec(dataset=DATASET, split=split, frames_per_story=NUM_OBJECTS,
                         image_size=(self.image_size, self.image_size), label_names=LABEL_NAMES,
                         condition_dim=CONDITION_DIM, build_config=self.config(), extras=import_extras(),
                         condition_kind="clevr-objects")

    def setup(self) -> None:
        if self._vectors is None:
            self._vectors = load_release_vectors(self.dict_path)

    def __getstate__(self):
        return {**self.__dict__, "_vectors": None}

    def frame_path(self, index: int, frame: int) -> Path:
        return Path(self.images) / FRAME_NAME.format(index=index, frame=frame)

    def stories(self, split: str, start: int, stop: int) -> Iterator[StoryBatch]:
        self.setup()
        first = self.ranges[split][0]
        for i in range(start, stop):
            yield self.story(split, first + i)

    def story(self, split: str, index: int) -> StoryBatch:
        frames, vectors = [], []
        for frame in range(1, NUM_OBJECTS + 1):
            path = self.frame_path(index, frame)
            frames.append(_read_frame(path, self.image_size))
            try:
                vectors.append(self._vectors[path.stem])
            except KeyError:
                raise SvkitError(f"{self.dict_path}: no vector for {path.name}") from None
        conditions = np.asarray(vectors, np.float32)
        where = f"{self.dict_path} ({FRAME_NAME.format(index=index, frame=NUM_OBJECTS)})"
        objects = decode_objects(vectors[-1], where)
        if len(objects) != NUM_OBJECTS:
            raise SvkitError(f"{where}: describes {len(objects)} objects, expected {NUM_OBJECTS}")
        slots = conditions[:, : NUM_OBJECTS * SLOT_SIZE].reshape(NUM_OBJECTS, NUM_OBJECTS, SLOT_SIZE)
        labels = slots[:, :, : len(LABEL_NAMES)].max(axis=1) > 0.5  # frame t: attributes of every object so far
        scene = Scene(studio=studio_facing(vectors[-1][-3:]), objects=objects)
        texts, _, _ = describe(scene, story_rng(0, split, index, TEXT_STREAM))
        extra = {
            "position": [vectors[-1][k * SLOT_SIZE + SLOT_SIZE - 3 : (k + 1) * SLOT_SIZE] for k in range(NUM_OBJECTS)],
            "source_index": index,
        }
        return one_story(split, index, objects, np.stack(frames), texts, labels.astype(np.uint8), conditions,
                         extra, import_extras())


def _read_frame(path: Path, size: int) -> np.ndarray:
    """A release frame as uint8 RGB (size, size, 3): resized from 320x240 with area interpolation."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise SvkitError(f"{path}: missing or not an image")
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    rgb = cv2.cvtColor(image[..., :3], cv2.COLOR_BGR2RGB)
    return cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)


def _frame_problem(path: Path) -> str | None:
    """Why a release frame cannot be used, or None. PIL's verify reads every chunk and checks its CRC without
    decoding pixels: a truncated or overwritten file fails, at a fraction of the cost of decoding."""
    from PIL import Image, UnidentifiedImageError

    if not path.exists():
        return "missing"
    try:
        with Image.open(path) as image:
            image.verify()
    except (OSError, SyntaxError, UnidentifiedImageError):  # PIL reports a broken PNG chunk as a SyntaxError
        return "not a readable image"
    return None


def _check_frames(job: ReleaseImportJob, ranges: Mapping[str, tuple[int, int]]) -> None:
    """Every frame of the chosen ranges exists, reads as an image and has its vector, before a part is written."""
    problems = []
    for start, stop in ranges.values():
        for index in range(start, stop):
            for frame in range(1, NUM_OBJECTS + 1):
                path = job.frame_path(index, frame)
                problem = _frame_problem(path)
                if problem is None and path.stem not in job._vectors:
                    problem = f"no vector in {job.dict_path}"
                if problem:
                    problems.append((path, problem))
    if problems:
        path, problem = problems[0]
        raise SvkitError(f"{path}: {problem} ({len(problems)} frames of the chosen ranges are missing or unusable)")


def import_storygan_clevr(images: os.PathLike | str, dict_path: os.PathLike | str, out_dir: os.PathLike | str,
                          ranges: Mapping[str, tuple[int, int]] = PAPER_RANGES, *, image_size: int = 64,
                          workers: int = 1, chunk_size: int = 200, progress: bool = True) -> dict[str, Path]:
    """Convert the release into ``out_dir``/<split>.h5 (resumable, like a build). Checks every input first."""
    from sv_data.build import build

    images, dict_path = Path(images).resolve(), Path(dict_path).resolve()
    if image_size < 8:
        raise SvkitError(f"--image-size must be >= 8, got {image_size}")
    if not images.is_dir():
        raise SvkitError(f"{images}: no such folder")
    job = ReleaseImportJob(str(images), str(dict_path), dict(ranges), image_size)
    job.setup()  # refuses an unsafe or malformed pickle before anything is written
    _check_frames(job, ranges)
    sizes = {split: stop - start for split, (start, stop) in ranges.items()}
    if not any(sizes.values()):
        raise SvkitError("nothing to import: every range is empty")
    return build(job, out_dir, sizes, workers=workers, chunk_size=chunk_size, progress=progress,
                 desc="StoryGAN CLEVR-SV stories")
