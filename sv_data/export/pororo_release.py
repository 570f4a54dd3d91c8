"""``--to pororo-sv-release``: the folder layout in which Pororo-SV circulates among StoryGAN's successors, the
inverse of ``sv-data import-storygan-pororo`` (layout: docs/pororo.md).

Each frame becomes ``<episode>/<n>.png`` (a strip of one square frame), named as the release names its clips, so
that the overlapping stories of one episode share their images as in the release: for a Pororo-SV build ``n`` is
the clip number, for an imported release the frame's own id; other shards get one folder per story. The story
list (``img_cache4.npy``, ``following_cache4.npy``) holds the train stories, then val, then test, in shard order,
and ``train_seen_unseen_ids.npy`` their index ranges, so that an import gives back the shards' story order.
"""
from __future__ import annotations

import csv
import hashlib
import os
import sys
from pathlib import Path, PurePosixPath
from typing import Sequence

import numpy as np

from sv_data.errors import SvkitError
from sv_data.export.common import ExportSummary, export_folder, png_bytes, shards_in_split_order, split_sizes, \
    story_blocks
from sv_data.pororo.characters import PORORO_CHARACTERS
from sv_data.shards import SPLITS, ShardInfo

SPLIT_IDS = "train_seen_unseen_ids.npy"


def _folder_name(text: str) -> str:
    """An episode or story id as one path component: separators become '_'."""
    name = str(text).replace("/", "_").replace("\\", "_").strip()
    return name if name not in ("", ".", "..") else f"_{name}"


def frame_names(info: ShardInfo, story_ids, extra: dict[str, np.ndarray]) -> list[list[str]]:
    """``<folder>/<n>`` (the frame id: its image path without .png) of each frame of each story of a block."""
    t = info.frames_per_story
    if "extra/episode" in extra and "extra/clip" in extra:  # a build: episode and clip numbers
        return [[f"{_folder_name(episode)}/{int(clip)}" for clip in clips]
                for episode, clips in zip(extra["extra/episode"], extra["extra/clip"])]
    if "extra/frame_id" in extra:  # an imported release: keep its ids (episode folder and image number)
        return [["/".join(_folder_name(p) for p in PurePosixPath(str(f).replace("\\", "/")).parts[-2:])
                 for f in ids] for ids in extra["extra/frame_id"]]
    return [[f"{_folder_name(story)}/{k}" for k in range(t)] for story in story_ids]


def export(paths: Sequence[os.PathLike | str], out: os.PathLike | str, progress: bool = True) -> ExportSummary:
    infos = shards_in_split_order(paths)
    label_count = len(infos[0].spec.label_names)
    if label_count != len(PORORO_CHARACTERS):
        print(f"note: the labels have {label_count} columns ({', '.join(infos[0].spec.label_names)}), not "
              f"Pororo-SV's {len(PORORO_CHARACTERS)}; code that fixes 9 labels needs that number changed",
              file=sys.stderr)
    starts = np.cumsum([0] + [info.num_stories for info in infos])
    ranges = {info.spec.split: (int(a), int(b)) for info, a, b in zip(infos, starts[:-1], starts[1:])}
    names = ["images", "texts", "labels", "story_ids", "extra/episode", "extra/clip", "extra/frame_id",
             "extra/descriptions"]
    with export_folder(out) as work:
        frames = _Frames(work)
        stories: list[list[str]] = []
        for info, _, block in story_blocks(infos, names, progress):
            for i, ids in enumerate(frame_names(info, block["story_ids"], block)):
                for k, frame_id in enumerate(ids):
                    where = f"{info.path}: story {block['story_ids'][i]} frame {k} ({frame_id})"
                    frames.add(frame_id, block["images"][i, k], _captions(block, i, k), block["labels"][i, k], where)
                stories.append([f"{frame_id}.png" for frame_id in ids])
        _write_story_files(work, stories, ranges, frames.descriptions, frames.labels, infos[0].spec.label_names)
    return ExportSummary(Path(out), split_sizes(infos), f"sv-data import-storygan-pororo --root {out}, or point "
                                                        "a Pororo-SV codebase's data folder at it")


class _Frames:
    """The frames written so far, by id: a frame that overlapping stories share is written once."""

    def __init__(self, root: Path):
        self.root = root
        self.digests: dict[str, str] = {}
        self.descriptions: dict[str, list[str]] = {}
        self.labels: dict[str, np.ndarray] = {}

    def add(self, frame_id: str, image: np.ndarray, captions: list[str], labels: np.ndarray, where: str) -> None:
        digest = hashlib.sha256(image.tobytes() + "\0".join(captions).encode() + labels.tobytes()).hexdigest()
        if frame_id in self.digests:
            if self.digests[frame_id] != digest:
                raise SvkitError(f"{where}: differs from an earlier story's frame of that name; export shards of "
                                 "different builds into separate folders")
            return
        self.digests[frame_id] = digest
        path = self.root / f"{frame_id}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png_bytes(image))
        self.descriptions[frame_id] = captions
        self.labels[frame_id] = labels.astype(np.float64)


def _captions(block: dict[str, np.ndarray], i: int, k: int) -> list[str]:
    """Every description of frame k of story i, the frame's text first."""
    text = str(block["texts"][i, k])
    more = [str(d) for d in block["extra/descriptions"][i, k]] if "extra/descriptions" in block else []
    return [text, *(d for d in more if d and d != text)]


def _write_story_files(work: Path, stories: list[list[str]], ranges: dict[str, tuple[int, int]],
                       descriptions: dict[str, list[str]], labels: dict[str, np.ndarray],
                       label_names: Sequence[str]) -> None:
    # The caches are byte strings, as the release's are: its loaders strip the b'' of str(path).
    paths = np.array([[p.encode("utf-8") for p in story] for story in stories], dtype=bytes)
    np.save(work / "img_cache4.npy", paths[:, 0])
    np.save(work / "following_cache4.npy", paths[:, 1:])
    split_ids = np.empty(len(SPLITS), dtype=object)  # three index arrays of different lengths, as released
    split_ids[:] = [np.arange(*ranges.get(split, (0, 0)), dtype=np.int64) for split in SPLITS]
    np.save(work / SPLIT_IDS, split_ids, allow_pickle=True)
    np.save(work / "descriptions.npy", np.array(descriptions, dtype=object), allow_pickle=True)
    np.save(work / "labels.npy", np.array(labels, dtype=object), allow_pickle=True)
    with open(work / "descriptions.csv", "w", newline="", encoding="utf-8") as f:  # PororoQA's layout, no header
        writer = csv.writer(f)
        for frame_id, captions in descriptions.items():
            folder, n = frame_id.rsplit("/", 1)
            writer.writerows((folder, n, caption) for caption in captions)
    # Not part of the circulated layout, which fixes the 9 Pororo characters: the column names of labels.npy.
    (work / "label_names.txt").write_text("".join(f"{name}\n" for name in label_names), encoding="utf-8")
