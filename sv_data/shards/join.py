"""Joining part files into one shard."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from sv_data.shards.layout import ShardError, ShardInfo
from sv_data.shards.reader import ShardReader, iter_blocks, read_info
from sv_data.shards.writer import ShardWriter

# The parts of one shard agree on these; the joined file takes the build_config of the first part.
_SAME_IN_EVERY_PART = ("dataset", "split", "frames_per_story", "image_size", "label_names", "condition_dim", "extras")


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
        for attr in _SAME_IN_EVERY_PART:
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
