"""What every exporter shares: the shards it reads (in split order), the output folder that appears only when
complete, the stories read block by block behind a progress bar, and the closing line."""
from __future__ import annotations

import io
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from tqdm.auto import tqdm

from sv_data.errors import SvkitError
from sv_data.files import replace_durably, temporary_name
from sv_data.shards import SPLITS, ShardInfo, ShardReader, iter_blocks, read_info

BLOCK = 64  # stories read at a time: a few MB of frames


@dataclass(frozen=True)
class ExportSummary:
    out: Path
    stories: dict[str, int]
    next_step: str

    def line(self) -> str:
        splits = ", ".join(f"{split} {n}" for split, n in self.stories.items())
        return f"exported {sum(self.stories.values())} stories ({splits}) to {self.out}; next: {self.next_step}"


def shards_in_split_order(paths: Sequence[os.PathLike | str]) -> list[ShardInfo]:
    """The shards' headers, train before val before test; one shard per split, all of one kind of story."""
    if not paths:
        raise SvkitError("no shard given: sv-data export SHARD... --to FORMAT --out DIR")
    infos = [read_info(path) for path in paths]
    by_split: dict[str, ShardInfo] = {}
    for info in infos:
        split = info.spec.split
        if split in by_split:
            raise SvkitError(f"{info.path}: a second {split} shard (the first is {by_split[split].path}); join them "
                             "first with sv-data merge, or export them into two folders")
        by_split[split] = info
    first = infos[0]
    for info in infos[1:]:
        for what in ("frames_per_story", "image_size", "label_names", "condition_dim"):
            mine, theirs = getattr(info.spec, what), getattr(first.spec, what)
            if mine != theirs:
                raise SvkitError(f"{info.path}: {what} is {mine}, but {first.path} has {theirs}: the splits of one "
                                 "export must hold the same kind of stories")
    if not any(info.num_stories for info in infos):
        raise SvkitError(f"{first.path}: nothing to export: the shards hold no stories")
    order = {split: i for i, split in enumerate(SPLITS)}
    return sorted(infos, key=lambda info: order.get(info.spec.split, len(order)))


@contextmanager
def export_folder(out: os.PathLike | str) -> Iterator[Path]:
    """A hidden folder beside ``out`` to write into; renamed to ``out`` only when the block ends without an error,
    so that a half-written export never looks finished. ``out`` must not exist, or be an empty folder."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SvkitError(f"{out}: --out exists and is not an empty folder; choose a new one")
    out.parent.mkdir(parents=True, exist_ok=True)
    work = temporary_name(out)
    work.mkdir()
    try:
        yield work
        if out.exists():
            out.rmdir()
        replace_durably(work, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def story_blocks(infos: Sequence[ShardInfo], names: Sequence[str], progress: bool,
                 desc: str = "stories exported") -> Iterator[tuple[ShardInfo, int, dict[str, np.ndarray]]]:
    """(shard, index of the block's first story, {name: rows}) for every block of stories of every shard, with
    one progress bar over all of them. ``names`` are shard datasets: ``images``, ``texts``, ``extra/episode``...;
    an ``extra/`` array that a shard lacks is left out of its blocks."""
    total = sum(info.num_stories for info in infos)
    with tqdm(total=total, unit="story", desc=desc, disable=not progress) as bar:
        for info in infos:
            present = [n for n in names if not n.startswith("extra/") or n.removeprefix("extra/") in info.spec.extras]
            with ShardReader(info.path) as reader:
                for start, stop in iter_blocks(info.num_stories, BLOCK):
                    yield info, start, {name: reader.read(name, range(start, stop)) for name in present}
                    bar.update(stop - start)


def png_bytes(image: np.ndarray) -> bytes:
    """A uint8 RGB frame as a PNG file's bytes (lossless: reading it back gives the same array)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def split_sizes(infos: Sequence[ShardInfo]) -> dict[str, int]:
    return {info.spec.split: info.num_stories for info in infos}
