"""``sv-data validate``: every rule of the format, checked over a whole shard."""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import h5py
import numpy as np

from sv_data.shards.header import damaged, info_from, open_shard, shape_problems
from sv_data.shards.layout import EXTRA_GROUP, SPLITS, ShardError, ShardSpec
from sv_data.shards.reader import iter_blocks


def validate(path: os.PathLike | str, block: int = 256) -> list[str]:
    """Every violation of the format rules, one line each; an empty list means the shard is valid.

    A file that cannot be read as a shard at all, or whose data cannot be read, gives one line saying so.
    """
    path = Path(path)
    try:
        f, spec = open_shard(path)
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
            problems.append(str(damaged(path, exc, "data")))
    return problems


def _check_rules(f: h5py.File, path: Path, spec: ShardSpec, bad, block: int) -> None:
    """The rules beyond the header (which :func:`open_shard` has checked), each violation passed to ``bad``."""
    info = info_from(f, path, spec)
    n = info.num_stories
    if spec.split not in SPLITS:
        bad(f"split {spec.split!r} is not one of {', '.join(SPLITS)}")
    if "num_stories" in f.attrs and int(f.attrs["num_stories"]) != n:
        bad(f"attribute num_stories={int(f.attrs['num_stories'])} but story_ids has {n} rows")
    if info.story_range is not None and info.story_range[1] - info.story_range[0] != n:
        bad(f"attribute story_range={info.story_range} but story_ids has {n} rows")
    for name, extra in spec.extras.items():
        if not extra.description:
            bad(f"{EXTRA_GROUP}/{name} has no description attribute")
    problems = shape_problems(f, spec)
    for problem in problems:
        bad(problem)
    if problems:
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
