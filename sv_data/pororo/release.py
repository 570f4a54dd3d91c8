"""``sv-data import-storygan-pororo``: the Pororo-SV release that StoryGAN's successors circulate, into shards.

The release (``--root``) holds episode folders (``<season>/<episode>/``, or one level in some copies) of
``<n>.png`` images, each a vertical strip of k square frames of one clip, and these numpy files:

- ``descriptions.npy``: dict frame id (an image's path without ``.png``) -> list of captions;
- ``labels.npy``: dict frame id -> 9 zeros and ones (the characters of :data:`PORORO_CHARACTERS`, in order);
- ``img_cache4.npy``: the first image of every story; ``following_cache4.npy``: (N, 4) the images that follow;
- ``train_seen_unseen_ids.npy`` (train, val, test) or ``train_test_ids.npy`` (train, test): index arrays into
  that story list.

The story list is in the order of torchvision's ImageFolder over ``--root``: class folders sorted by name, then
paths sorted as strings, so ``1.png, 10.png, 100.png, 11.png, ...``. The caches are in that order already; where
they are missing, the list is rebuilt in the same order, never numerically, or every split index would point at
the wrong story.
"""
from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Sequence

import numpy as np

from sv_data.build import build, check_run_options
from sv_data.errors import SvkitError, require_at_least
from sv_data.pororo.characters import PORORO_CHARACTERS
from sv_data.pororo.encoder import ENCODER_NAME, encode_cached
from sv_data.pororo.report import REPORT_NAME, Problem, count_kinds, write_report
from sv_data.pororo.resume import claim_work_dir, finished_build
from sv_data.pororo.safe_npy import load_npy
from sv_data.pororo.sampling import clip_seed
from sv_data.pororo.shard_job import CHUNK_SIZE, DATASET, MIN_IMAGE_SIZE, EncodedStoryJob
from sv_data.shards import ExtraSpec, ShardSpec, StoryBatch

SPLIT_FILES = (
    ("train_seen_unseen_ids.npy", ("train", "val", "test")),
    ("train_test_ids.npy", ("train", "test")),
)
FrameKey = tuple[str, str]  # (episode folder, image name without .png): how paths and ids of any copy are matched


@dataclass(frozen=True)
class ImportOptions:
    root: Path
    out: Path
    image_size: int = 64
    seed: int = 0
    workers: int = 1
    progress: bool = True


@dataclass
class ImportSummary:
    out: Path
    report: Path
    stories: dict[str, int]
    problems: list[Problem] = field(default_factory=list)
    story_list: str = ""
    already_built: bool = False

    def line(self) -> str:
        splits = ", ".join(f"{s} {n}" for s, n in self.stories.items())
        if self.already_built:
            return f"{self.out}: already imported with these options ({splits}); report {self.report}"
        skipped = f"skipped {len(self.problems)} stories ({count_kinds(self.problems)})" if self.problems else \
            "skipped nothing"
        return f"{DATASET} (StoryGAN release): {splits} stories; story list {self.story_list}; {skipped}; " \
               f"report {self.report}"


def frame_key(path: str) -> FrameKey:
    """The last two parts of an image path or frame id, without ``.png``: the same in every copy's layout."""
    parts = PurePosixPath(path.replace("\\", "/")).parts
    name = parts[-1].removesuffix(".png") if parts else ""
    return (parts[-2] if len(parts) > 1 else "", name)


def image_folder_order(root: Path) -> list[str]:
    """Every .png under ``root``'s class folders, relative to ``root``, in torchvision ImageFolder's order."""
    images = []
    classes = sorted(entry.name for entry in os.scandir(root) if entry.is_dir())
    for name in classes:
        for dirpath, _, filenames in sorted(os.walk(root / name, followlinks=True)):
            for filename in sorted(filenames):
                if filename.lower().endswith(".png"):
                    images.append((Path(dirpath) / filename).relative_to(root).as_posix())
    return images


def rebuild_story_list(images: Sequence[str], length: int) -> list[list[str]]:
    """Stories as the original loaders made them, for a copy without caches: every image ``<n>.png`` whose next
    ``length - 1`` images ``<n+1>.png``... exist in its folder starts one, in the order of ``images``."""
    present = set(images)
    stories = []
    for image in images:
        path = PurePosixPath(image)
        if not path.stem.isdigit():
            continue
        following = [str(path.with_name(f"{int(path.stem) + i}.png")) for i in range(1, length)]
        if all(f in present for f in following):
            stories.append([image, *following])
    return stories


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _story_list(root: Path, images: list[str]) -> tuple[list[list[str]], str]:
    first_path, following_path = root / "img_cache4.npy", root / "following_cache4.npy"
    if first_path.exists() and following_path.exists():
        firsts = np.asarray(load_npy(first_path)).reshape(-1)
        followings = np.asarray(load_npy(following_path))
        if followings.ndim != 2 or len(followings) != len(firsts):
            raise SvkitError(f"{following_path}: expected ({len(firsts)}, 4) paths, found shape {followings.shape}")
        stories = [[_text(f), *map(_text, rest)] for f, rest in zip(firsts, followings)]
        return stories, f"{first_path.name} + {following_path.name} ({len(stories)} stories)"
    stories = rebuild_story_list(images, 5)
    return stories, f"rebuilt in ImageFolder order ({len(stories)} stories; no img_cache4.npy/following_cache4.npy)"


def _split_ids(root: Path, stories: int) -> dict[str, np.ndarray]:
    for name, splits in SPLIT_FILES:
        path = root / name
        if not path.exists():
            continue
        value = load_npy(path)
        parts = list(value) if isinstance(value, (list, tuple, np.ndarray)) else []
        if len(parts) != len(splits):
            raise SvkitError(f"{path}: expected {len(splits)} index arrays ({', '.join(splits)}), found {len(parts)}")
        ids = {}
        for split, part in zip(splits, parts):
            indices = np.sort(np.asarray(part, dtype=np.int64).reshape(-1))
            if indices.size and (indices[0] < 0 or indices[-1] >= stories):
                raise SvkitError(f"{path}: {split} index {indices[-1] if indices[-1] >= stories else indices[0]} is "
                                 f"out of range for a story list of {stories}")
            ids[split] = indices
        return ids
    raise SvkitError(f"{root}: no {' or '.join(n for n, _ in SPLIT_FILES)}: the split of the stories is unknown")


def _by_key(mapping, path: Path) -> dict[FrameKey, object]:
    if not isinstance(mapping, dict):
        raise SvkitError(f"{path}: expected a dict of frame id -> value, found {type(mapping).__name__}")
    return {frame_key(_text(k)): v for k, v in mapping.items()}


@dataclass(frozen=True)
class ReleaseFrame:
    id: str  # as the release names it: the image path without .png
    path: str  # the image, relative to --root
    captions: tuple[str, ...]
    labels: tuple[int, ...]
    strip: int  # frames in its strip


def import_storygan_pororo(options: ImportOptions) -> ImportSummary:
    root, out = Path(options.root), Path(options.out)
    if not root.is_dir():
        raise SvkitError(f"{root}: no such folder (--root)")
    require_at_least("--image-size", options.image_size, MIN_IMAGE_SIZE)
    check_run_options(options.workers, CHUNK_SIZE, None)
    descriptions = _by_key(load_npy(root / "descriptions.npy"), root / "descriptions.npy")
    labels = _by_key(load_npy(root / "labels.npy"), root / "labels.npy")
    images = image_folder_order(root)
    stories, story_list = _story_list(root, images)
    split_ids = _split_ids(root, len(stories))
    config = {
        "dataset": DATASET,
        "source": "storygan-release",
        "release_sha256": _fingerprint(root),
        "image_size": options.image_size,
        "seed": options.seed,
        "encoder": ENCODER_NAME,
    }
    report = out / REPORT_NAME
    finished = finished_build(out, config)
    if finished is not None:
        return ImportSummary(out, report, finished, already_built=True)
    work = claim_work_dir(out, config)

    image_of = {frame_key(p): p for p in images}
    frames: dict[FrameKey, ReleaseFrame] = {}
    problems: list[Problem] = []
    chosen: dict[str, list[tuple[int, list[FrameKey]]]] = {}
    for split, ids in split_ids.items():
        chosen[split] = []
        for index in ids.tolist():
            keys = [frame_key(p) for p in stories[index]]
            reason = None
            for key, path in zip(keys, stories[index]):
                reason = _add_frame(root, key, path, image_of, descriptions, labels, frames)
                if reason:
                    problems.append(Problem(reason, episode=key[0], video=path, skipped="story",
                                            clip=int(key[1]) if key[1].isdigit() else None))
                    break
            if reason is None:
                chosen[split].append((index, keys))
    used = sorted({k for split in chosen.values() for _, keys in split for k in keys})
    if not used:
        write_report(report, problems)
        raise SvkitError(f"{root}: nothing usable is left: every story lacks an image, caption or label; see {report}")

    conditions = encode_cached([frames[k].captions[0] for k in used], work, options.progress)
    row = {k: i for i, k in enumerate(used)}
    by_split = {s: [(index, tuple(row[k] for k in keys)) for index, keys in c] for s, c in chosen.items() if c}
    job = ReleaseStoryJob(config, str(root), [frames[k] for k in used], by_split, str(conditions))
    sizes = {s: len(c) for s, c in by_split.items()}
    build(job, out, sizes, workers=options.workers, chunk_size=CHUNK_SIZE, progress=options.progress,
          desc="stories")
    summary = ImportSummary(out, report, sizes, problems, story_list)
    write_report(report, problems, [summary.line()])
    shutil.rmtree(work, ignore_errors=True)
    return summary


def _add_frame(root, key, path, image_of, descriptions, labels, frames) -> str | None:
    """Check one frame of a story and note it in ``frames``; the reason the story cannot be used, or None."""
    if key in frames:
        return None
    image = image_of.get(key)
    if image is None:
        return f"image not found: {path}"
    captions = descriptions.get(key)
    if isinstance(captions, (str, bytes)):
        captions = [captions]
    captions = tuple(c for c in (_text(c).strip() for c in (captions or [])) if c)
    if not captions:
        return f"no caption: descriptions.npy has none for {'/'.join(key)}"
    label = labels.get(key)
    values = np.asarray(label if label is not None else [], dtype=np.float64).reshape(-1)
    if values.size != len(PORORO_CHARACTERS):
        return f"bad labels: labels.npy has {values.size} values for {'/'.join(key)}, not {len(PORORO_CHARACTERS)}"
    from PIL import Image

    try:
        with Image.open(root / image) as im:
            width, height = im.size
    except OSError:
        return f"damaged image: {image}"
    if height < width or height % width:
        return f"not a strip of square frames: {image} is {width}x{height}"
    frames[key] = ReleaseFrame(str(PurePosixPath(image).with_suffix("")), image, captions,
                               tuple(int(v > 0.5) for v in values), height // width)
    return None


def _fingerprint(root: Path) -> str:
    digest = hashlib.sha256()
    for name in ("descriptions.npy", "labels.npy", "img_cache4.npy", "following_cache4.npy",
                 *(n for n, _ in SPLIT_FILES)):
        path = root / name
        if path.exists():
            digest.update(name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


class ReleaseStoryJob(EncodedStoryJob):
    """The :class:`sv_data.build.StoryJob` of the importer: reads the strips of each story's images. A story is
    (its index in the release's story list, the rows of ``frames`` of its images)."""

    def __init__(self, config: dict, root: str, frames: list[ReleaseFrame],
                 stories: dict[str, list[tuple[int, tuple[int, ...]]]], conditions: str):
        super().__init__(config, stories, conditions)
        self.root = root
        self.frames = frames
        self.frames_per_story = len(next(iter(stories.values()))[0][1])
        self.pool = max(f.strip for f in frames)
        self.max_captions = max(len(f.captions) for f in frames)

    def spec(self, split: str) -> ShardSpec:
        size = self._config["image_size"]
        t, k = self.frames_per_story, self.pool
        return self.shard_spec(split, t, PORORO_CHARACTERS, {
            "story_index": ExtraSpec((), "int64", "index of the story in the release's story list (img_cache4)"),
            "frame_id": ExtraSpec((t,), "str", "image of each frame: its path under the release root, without .png"),
            "descriptions": ExtraSpec((t, self.max_captions), "str",
                                      "every caption of each frame, padded with empty strings; texts holds the first"),
            "frame_pool": ExtraSpec((t, k, size, size, 3), "uint8",
                                    "all frames of each image's strip, in strip order; a strip of fewer than "
                                    f"{k} frames repeats its frames (see frame_count)"),
            "frame_count": ExtraSpec((t,), "int64", "frames in each image's strip"),
            "strip_frame": ExtraSpec((t,), "int64",
                                     "which strip frame (from 0) images holds: a seeded draw among those that are "
                                     "not one flat colour"),
        })

    def batch(self, stories: Sequence[tuple[int, tuple[int, ...]]]) -> StoryBatch:
        import cv2

        from sv_data.pororo.video import square_resize

        n, t, k, size = len(stories), self.frames_per_story, self.pool, self._config["image_size"]
        pool = np.zeros((n, t, k, size, size, 3), dtype=np.uint8)
        picked = np.zeros((n, t), dtype=np.int64)
        for i, (_, rows) in enumerate(stories):
            for j, r in enumerate(rows):
                frame = self.frames[r]
                strip = cv2.imread(str(Path(self.root) / frame.path), cv2.IMREAD_COLOR)
                if strip is None:
                    raise SvkitError(f"{Path(self.root) / frame.path}: cannot be read as an image")
                side = strip.shape[1]
                cut = [square_resize(strip[m * side:(m + 1) * side], size) for m in range(frame.strip)]
                pool[i, j] = [cut[m % frame.strip] for m in range(k)]
                drawable = [m for m, im in enumerate(cut) if im.min() != im.max()] or list(range(frame.strip))
                draw = np.random.default_rng(clip_seed(self._config["seed"], frame.id)).integers(len(drawable))
                picked[i, j] = drawable[draw]
        frames = [[self.frames[r] for r in rows] for _, rows in stories]
        descriptions = np.full((n, t, self.max_captions), "", dtype=object)
        for i, fs in enumerate(frames):
            for j, f in enumerate(fs):
                descriptions[i, j, :len(f.captions)] = f.captions
        return StoryBatch(
            images=pool[np.arange(n)[:, None], np.arange(t)[None, :], picked],
            texts=[[f.captions[0] for f in fs] for fs in frames],
            story_ids=[fs[0].id for fs in frames],
            labels=np.array([[f.labels for f in fs] for fs in frames], dtype=np.uint8),
            conditions=self.conditions_of([rows for _, rows in stories]),
            extra={
                "story_index": np.array([index for index, _ in stories], dtype=np.int64),
                "frame_id": np.array([[f.id for f in fs] for fs in frames], dtype=object),
                "descriptions": descriptions,
                "frame_pool": pool,
                "frame_count": np.array([[f.strip for f in fs] for fs in frames], dtype=np.int64),
                "strip_frame": picked,
            },
        )
