"""Chunked, resumable, parallel builds of shard splits.

A build is a :class:`StoryJob` (what a story is) run over chunks (ranges of story indices of one split). Each
chunk becomes one self-describing part file under ``OUT/parts/``, written atomically; a finished part is never
built again, so re-running an interrupted build finishes only what is missing. When every part of a split is
there, they are joined into ``OUT/<split>.h5`` and removed.

Story ``i`` of a split must depend only on the job's options, the split and ``i``: then the output does not
depend on the number of workers, on the chunk size, or on where a build was interrupted.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Mapping, Protocol

from tqdm.auto import tqdm

from sv_data.errors import BuildError, SvkitError, require_at_least
from sv_data.files import write_json
from sv_data.shards import SPLITS, ShardInfo, ShardSpec, ShardWriter, StoryBatch, images_sha256, join_parts, read_info
from sv_data.workers import check_workers, run_work

BUILD_RECORD = "build.json"
# What build.json says of the finished splits, beside the options: not compared when a build resumes.
CHECKSUMS = "images_sha256"


class StoryJob(Protocol):
    """What a builder provides. It is pickled to each worker process, so keep it to plain options."""

    def spec(self, split: str) -> ShardSpec:
        """The header of this job's shards for ``split``."""

    def config(self) -> dict:
        """Every option that changes the output, as JSON-able values (compared when a build resumes)."""

    def setup(self) -> None:
        """Heavy per-process state (a Blender session, a model), made once in each worker."""

    def stories(self, split: str, start: int, stop: int) -> Iterator[StoryBatch]:
        """Stories start..stop-1 of ``split``, in order, in one or more batches."""


@dataclass(frozen=True, order=True)
class Chunk:
    split: str
    start: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start

    @property
    def part_name(self) -> str:
        return f"{self.split}-{self.start:09d}-{self.stop:09d}.h5"


def plan_chunks(split_sizes: Mapping[str, int], chunk_size: int) -> list[Chunk]:
    require_at_least("--chunk-size", chunk_size, 1)
    chunks = []
    for split in SPLITS:
        n = split_sizes.get(split, 0)
        chunks += [Chunk(split, s, min(s + chunk_size, n)) for s in range(0, n, chunk_size)]
    return chunks


def run_chunk(job: StoryJob, chunk: Chunk, parts_dir: Path, report: Callable[[int], None] = lambda n: None) -> Path:
    """Build one chunk into its part file (atomically); ``report(n)`` is called as stories are finished."""
    out = parts_dir / chunk.part_name
    spec = job.spec(chunk.split)
    with ShardWriter(out, spec, story_range=(chunk.start, chunk.stop)) as writer:
        for batch in job.stories(chunk.split, chunk.start, chunk.stop):
            writer.append(batch)
            report(len(batch))
        if len(writer) != chunk.size:
            raise BuildError(f"{out}: the job made {len(writer)} stories for a chunk of {chunk.size}")
    return out


@dataclass(frozen=True)
class ChunkWork:
    """Chunks of stories as :class:`sv_data.workers.Work`: each worker sets the job up once."""

    job: StoryJob
    parts_dir: str

    def setup(self) -> None:
        self.job.setup()

    def run(self, chunk: Chunk, report: Callable[[int], None]) -> Chunk:
        run_chunk(self.job, chunk, Path(self.parts_dir), report)
        return chunk

    def name(self, chunk: Chunk) -> str:
        return f"chunk {chunk.part_name}"


def run_chunks(job: StoryJob, todo: list[Chunk], parts_dir: Path, workers: int, update: Callable[[int], None],
               ray_address: str | None = None) -> None:
    """Build the chunks ``todo`` into part files: here, in ``workers`` processes, or on ``workers`` Ray actors;
    ``update(n)`` follows the stories finished."""
    work = ChunkWork(job, str(parts_dir.resolve()))
    if workers > 1 or ray_address is not None:  # one process here works in plan order
        # Large chunks first so that the last worker does not finish long after the others.
        todo = sorted(todo, key=lambda c: -c.size)
    for _ in run_work(work, todo, workers, update, ray_address=ray_address, shared_dir=parts_dir, pin_cores=True):
        pass


def check_run_options(workers: int, chunk_size: int, shard: tuple[int | None, int | None] | None) -> None:
    """Where a build runs and how it is cut, checked before anything is written; the messages name the options of
    the command line. ``shard`` is (index, count), either None when only one of the two was given."""
    check_workers(workers)
    require_at_least("--chunk-size", chunk_size, 1)
    if shard is None:
        return
    index, count = shard
    if (index is None) != (count is None):
        raise SvkitError("--shard-index and --num-shards go together")
    require_at_least("--shard-index", index, 0)
    require_at_least("--num-shards", count, 1)
    if index >= count:
        raise SvkitError(f"--shard-index must be below --num-shards ({count}), got {index}")


def _flatten(record: dict) -> dict:
    """{"config": {"seed": 1}, "splits": {"train": 5}, ...} -> {"seed": 1, "train stories": 5, ...}"""
    flat = {k: v for k, v in record.items() if k not in ("config", "splits")}
    return {**flat, **record.get("config", {}), **{f"{s} stories": n for s, n in record.get("splits", {}).items()}}


def read_record(path: Path) -> dict:
    """An options record (``build.json``, or a builder's own), as JSON."""
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        raise BuildError(f"{path}: not valid JSON; delete it or use another --out") from None


def _read_record(out_dir: Path) -> dict:
    path = out_dir / BUILD_RECORD
    if not path.exists():
        raise BuildError(f"{out_dir}: no {BUILD_RECORD} here, so this is not a build folder")
    return read_record(path)


def check_same_options(out_dir: Path, record: dict, previous: dict) -> None:
    """Refuse to resume, in ``out_dir``, a build that ``previous`` records with other options than ``record``."""
    previous = {k: v for k, v in previous.items() if k != CHECKSUMS}
    if previous == record:
        return
    now, before = _flatten(record), _flatten(previous)
    changed = sorted(k for k in now.keys() | before.keys() if now.get(k) != before.get(k))
    # A folder given on the command line is recorded resolved: the one difference that no option's value shows.
    source = f", it was made from --videos {before['videos']}" if "videos" in changed and before.get("videos") else ""
    raise BuildError(
        f"{out_dir}: holds a build with other options ({', '.join(changed)} differ{source}); "
        "re-run with the same options to resume, or choose another --out"
    )


def _check_record(out_dir: Path, record: dict) -> None:
    """Refuse to mix two different builds in one folder; otherwise note what this build is."""
    if (out_dir / BUILD_RECORD).exists():
        check_same_options(out_dir, record, _read_record(out_dir))
        return
    # Several array jobs may write this at once: each writes the same text through its own temporary file.
    write_json(out_dir / BUILD_RECORD, record, sort_keys=True)


def build(
    job: StoryJob,
    out_dir: os.PathLike | str,
    split_sizes: Mapping[str, int],
    workers: int = 1,
    chunk_size: int = 50,
    progress: bool = True,
    desc: str = "stories",
    ray_address: str | None = None,
    shard: tuple[int, int] | None = None,
) -> dict[str, Path]:
    """Build every split of ``split_sizes`` into ``out_dir``, resuming whatever an earlier run finished.

    ``ray_address`` runs the chunks as tasks of a Ray cluster (``"local"`` starts one here). ``shard=(i, n)``
    builds only every n-th chunk starting at i, for one job of a batch-scheduler array, and leaves the joining
    to :func:`merge`. Returns the split files that exist when it is done.
    """
    check_run_options(workers, chunk_size, shard)
    out_dir = Path(out_dir)
    parts_dir = out_dir / "parts"
    parts_dir.mkdir(parents=True, exist_ok=True)
    if shard is None:
        for stale in parts_dir.glob(".*.tmp"):  # left by a worker that was killed mid-chunk
            stale.unlink(missing_ok=True)
    sizes = {s: int(n) for s, n in split_sizes.items() if n}
    _check_record(out_dir, {"config": job.config(), "splits": sizes, "chunk_size": chunk_size})

    chunks = [c for c in plan_chunks(sizes, chunk_size) if not (out_dir / f"{c.split}.h5").exists()]
    mine = chunks if shard is None else chunks[shard[0] :: shard[1]]
    todo = [c for c in mine if not (parts_dir / c.part_name).exists()]
    total = sum(c.size for c in mine)
    bar = tqdm(total=total, initial=total - sum(c.size for c in todo), unit="story", desc=desc,
               disable=not progress, dynamic_ncols=True)
    try:
        run_chunks(job, todo, parts_dir, workers, bar.update, ray_address)
    finally:
        bar.close()
    return merge(out_dir) if shard is None else _finished(out_dir, sizes)


def merge(out_dir: os.PathLike | str) -> dict[str, Path]:
    """Join the finished parts of every split of a build folder into its split file.

    With the folder's ``build.json`` (any svkit build), it says which parts make a split, and a split with missing
    parts is an error that says how many are missing. Without it (parts made by another scheduler), the parts are
    self-describing: they are grouped by their ``split`` attribute and ordered by their ``story_range``, which must
    run from 0 without gaps or overlaps, and all must come from one build (same dataset and build config).
    """
    out_dir = Path(out_dir)
    parts_dir = out_dir / "parts"
    for split in SPLITS:  # left by a join that was killed before it could rename its file into place
        for stale in out_dir.glob(f".{split}.h5.*.tmp"):
            stale.unlink(missing_ok=True)
    if not (out_dir / BUILD_RECORD).exists():
        finished = _merge_self_described(out_dir, parts_dir)
    else:
        record = _read_record(out_dir)
        sizes = record["splits"]
        chunks = plan_chunks(sizes, record["chunk_size"])
        for split in (s for s in SPLITS if s in sizes):
            parts = [parts_dir / c.part_name for c in chunks if c.split == split]
            target = out_dir / f"{split}.h5"
            if not target.exists():
                missing = [p.name for p in parts if not p.exists()]
                if missing:
                    raise BuildError(
                        f"{out_dir}: {len(missing)} of {len(parts)} parts of {split} are not built yet "
                        f"(e.g. {missing[0]}); finish the build first"
                    )
                join_parts(parts, target)
            for part in parts:  # also those of a join that was killed before it could remove them
                part.unlink(missing_ok=True)
        finished = _finished(out_dir, sizes)
        _record_checksums(out_dir, record, finished)
    if parts_dir.exists() and not any(parts_dir.iterdir()):
        parts_dir.rmdir()
    return finished


def _record_checksums(out_dir: Path, record: dict, finished: Mapping[str, Path]) -> None:
    """Add the SHA-256 of each finished split's frames to build.json: two builds with the same options give the
    same pixels, so a checksum tells a user that their build is the one described."""
    known = record.get(CHECKSUMS, {})
    missing = {split: path for split, path in finished.items() if split not in known}
    if missing:
        checksums = {**known, **{split: images_sha256(path) for split, path in missing.items()}}
        write_json(out_dir / BUILD_RECORD, {**record, CHECKSUMS: checksums}, sort_keys=True)


_SAME_BUILD = ("dataset", "build_config")  # join_parts checks the rest of the spec itself


def _merge_self_described(out_dir: Path, parts_dir: Path) -> dict[str, Path]:
    """Join parts that no build.json describes, from what each part says about itself."""
    files = sorted(parts_dir.glob("[!.]*.h5")) if parts_dir.is_dir() else []
    if not files:
        raise BuildError(f"{out_dir}: no {BUILD_RECORD} and no part files in {parts_dir}; nothing to merge")
    infos = [read_info(path) for path in files]
    first = infos[0]
    for info in infos:
        if info.story_range is None:
            raise BuildError(f"{info.path}: not a part file (it has no story_range); move it out of {parts_dir}")
        for attr in _SAME_BUILD:
            if getattr(info.spec, attr) != getattr(first.spec, attr):
                raise BuildError(f"{info.path}: its {attr} differs from {first.path.name}'s; these parts come from "
                                 "two different builds")
        start, stop = info.story_range
        if info.num_stories != stop - start:
            raise BuildError(f"{info.path}: holds {info.num_stories} stories for its story range {start}..{stop}")
    finished = {}
    for split in sorted({i.spec.split for i in infos}, key=lambda s: (SPLITS + (s,)).index(s)):
        group = sorted((i for i in infos if i.spec.split == split), key=lambda i: i.story_range)
        _check_run_from_zero(split, group)
        target = out_dir / f"{split}.h5"
        if target.exists():
            _check_already_joined(target, group)
        else:
            join_parts([i.path for i in group], target)
        for info in group:
            info.path.unlink(missing_ok=True)
        finished[split] = target
    return finished


def _check_run_from_zero(split: str, group: list[ShardInfo]) -> None:
    expected, previous = 0, None
    for info in group:
        start, stop = info.story_range
        if start > expected:
            after = f"after {previous.path.name}" if previous else "before it"
            raise BuildError(f"{info.path}: stories {expected}..{start - 1} of {split} are missing ({after}); "
                             "build those parts first")
        if start < expected:
            raise BuildError(f"{info.path}: its stories {start}..{stop - 1} overlap {previous.path.name}'s "
                             f"{previous.story_range[0]}..{previous.story_range[1] - 1}; remove one of them")
        expected, previous = stop, info


def _check_already_joined(target: Path, group: list[ShardInfo]) -> None:
    """Parts left beside their split file by a join that was killed before removing them."""
    info = read_info(target)
    if (info.num_stories != group[-1].story_range[1]
            or any(getattr(info.spec, attr) != getattr(group[0].spec, attr) for attr in _SAME_BUILD)):
        raise BuildError(f"{target}: exists but does not hold the parts of {group[0].spec.split} in "
                         f"{group[0].path.parent}; move one or the other away")


def _finished(out_dir: Path, sizes: Mapping[str, int]) -> dict[str, Path]:
    return {s: out_dir / f"{s}.h5" for s in sizes if (out_dir / f"{s}.h5").exists()}
