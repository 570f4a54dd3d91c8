"""``--to storygan-clevr``: the CLEVR layout of the official StoryGAN release, the inverse of
``sv-data import-storygan-clevr`` (layout: docs/clevr.md).

``images/CLEVR_new_<story:06d>_<frame 1-4>.png`` and ``CLEVR_dict.npy``, a dict from each frame's file name to its
75-d float64 vector. Stories are numbered from 100 as in the release: train, then test, then val, so that a build
of 10,000 train and 3,000 test stories lands on the paper's ranges (100:10100 and 10100:13100). Frames keep the
shard's size (the release's are 320x240; StoryGAN's loader resizes them either way).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from sv_data.clevr.importer import FRAME_NAME
from sv_data.clevr.scene import CONDITION_DIM, NUM_OBJECTS
from sv_data.errors import SvkitError
from sv_data.export.common import ExportSummary, export_folder, png_bytes, shards_in_split_order, split_sizes, \
    story_blocks

FIRST_INDEX = 100  # the release's stories 0..99 are in no split
NUMBERING_ORDER = ("train", "test", "val")


def export(paths: Sequence[os.PathLike | str], out: os.PathLike | str, progress: bool = True) -> ExportSummary:
    infos = shards_in_split_order(paths)
    for info in infos:
        if info.frames_per_story != NUM_OBJECTS or info.spec.condition_dim != CONDITION_DIM:
            raise SvkitError(f"{info.path}: stories of {info.frames_per_story} frames with {info.spec.condition_dim}"
                             f"-d conditions; the StoryGAN CLEVR layout holds {NUM_OBJECTS} frames with "
                             f"StoryGAN's {CONDITION_DIM}-d object vectors (a CLEVR-SV shard)")
    infos.sort(key=lambda info: NUMBERING_ORDER.index(info.spec.split))
    first = FIRST_INDEX + np.cumsum([0] + [info.num_stories for info in infos])
    ranges = {info.spec.split: (int(a), int(b)) for info, a, b in zip(infos, first[:-1], first[1:])}
    vectors: dict[str, np.ndarray] = {}
    with export_folder(out) as work:
        images = work / "images"
        images.mkdir()
        for info, start, block in story_blocks(infos, ["images", "conditions"], progress):
            base = ranges[info.spec.split][0] + start
            for i, (frames, conditions) in enumerate(zip(block["images"], block["conditions"])):
                for k in range(NUM_OBJECTS):
                    name = FRAME_NAME.format(index=base + i, frame=k + 1)
                    (images / name).write_bytes(png_bytes(frames[k]))
                    vectors[name] = conditions[k].astype(np.float64)
        # A 0-d object array holding one plain dict of str -> float64 array: all the importer's unpickler admits.
        np.save(work / "CLEVR_dict.npy", np.array(vectors, dtype=object), allow_pickle=True)
    out = Path(out)
    command = f"sv-data import-storygan-clevr --images {out / 'images'} --dict {out / 'CLEVR_dict.npy'}"
    for split in ("train", "test"):
        if split in ranges:
            command += f" --{split} {ranges[split][0]}:{ranges[split][1]}"
    return ExportSummary(out, split_sizes(infos), command)
