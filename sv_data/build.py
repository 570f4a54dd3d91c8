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
import multiprocessing as mp
import os
import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Mapping, Protocol

from tqdm.auto import tqdm

from sv_data.errors import SvkitError
from sv_data.shards import SPLITS, ShardSpec, ShardWriter, StoryBatch, join_parts

BUILD_RECORD = "build.json"


class BuildError(SvkitError):
    """A build that cannot start or finish; the message is one line for the user."""


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
    if chunk_size < 1:
        raise BuildError(f"chunk size must be >= 1, got {chunk_size}")
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


# Worker-process state, set once by _init_worker: spawn-started processes share nothing with the parent.
_WORKER: dict = {}


def _init_worker(job: StoryJob, progress: "mp.Queue", parts_dir: Path) -> None:
    job.setup()
    _WORKER.update(job=job, progress=progress, parts_dir=parts_dir)


def _work(chunk: Chunk) -> Chunk:
    run_chunk(_WORKER["job"], chunk, _WORKER["parts_dir"], _WORKER["progress"].put)
    return chunk


def _flatten(record: dict) -> dict:
    """{"config": {"seed": 1}, "splits": {"train": 5}} -> {"seed": 1, "train stories": 5}"""
    return {**record.get("config", {}), **{f"{s} stories": n for s, n in record.get("splits", {}).items()}}


def _check_record(out_dir: Path, record: dict) -> None:
    """Refuse to mix two different builds in one folder; otherwise note what this build is."""
    path = out_dir / BUILD_RECORD
    if path.exists():
        try:
            previous = json.loads(path.read_text())
        except json.JSONDecodeError:
            raise BuildError(f"{path}: not valid JSON; delete it or use another --out") from None
        if previous != record:
            now, before = _flatten(record), _flatten(previous)
            changed = sorted(k for k in now.keys() | before.keys() if now.get(k) != before.get(k))
            raise BuildError(
                f"{out_dir}: holds a build with other options ({', '.join(changed)} differ); "
                "re-run with the same options to resume, or choose another --out"
            )
        return
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True))
    os.replace(tmp, path)


def build(
    job: StoryJob,
    out_dir: os.PathLike | str,
    split_sizes: Mapping[str, int],
    workers: int = 1,
    chunk_size: int = 50,
    progress: bool = True,
    desc: str = "stories",
) -> dict[str, Path]:
    """Build every split of ``split_sizes`` into ``out_dir``, resuming whatever an earlier run finished."""
    out_dir = Path(out_dir)
    parts_dir = out_dir / "parts"
    parts_dir.mkdir(parents=True, exist_ok=True)
    for stale in parts_dir.glob(".*.tmp"):  # left by a worker that was killed mid-chunk
        stale.unlink()
    record = {"config": job.config(), "splits": {s: int(n) for s, n in split_sizes.items() if n}}
    _check_record(out_dir, record)

    targets = {s: out_dir / f"{s}.h5" for s, n in split_sizes.items() if n}
    chunks = [c for c in plan_chunks(split_sizes, chunk_size) if not targets[c.split].exists()]
    todo = [c for c in chunks if not (parts_dir / c.part_name).exists()]
    total = sum(n for s, n in split_sizes.items() if n)
    done = total - sum(c.size for c in todo)

    bar = tqdm(total=total, initial=done, unit="story", desc=desc, disable=not progress, dynamic_ncols=True)
    try:
        if todo:
            _run(job, todo, parts_dir, workers, bar.update)
    finally:
        bar.close()
    for split, target in targets.items():
        if target.exists():
            continue
        parts = [parts_dir / c.part_name for c in chunks if c.split == split]
        join_parts(parts, target)
        for part in parts:
            part.unlink()
    if parts_dir.exists() and not any(parts_dir.iterdir()):
        parts_dir.rmdir()
    return targets


def _run(job: StoryJob, todo: list[Chunk], parts_dir: Path, workers: int, update: Callable[[int], None]) -> None:
    if workers < 1:
        raise BuildError(f"workers must be >= 1, got {workers}")
    if workers == 1:
        job.setup()
        for chunk in todo:
            run_chunk(job, chunk, parts_dir, update)
        return
    ctx = mp.get_context("spawn")  # Blender and torch are not fork-safe
    progress = ctx.Queue()
    stop = threading.Event()

    def pump():
        while not stop.is_set():
            try:
                update(progress.get(timeout=0.2))
            except queue.Empty:
                pass

    pumper = threading.Thread(target=pump, daemon=True)
    pumper.start()
    pool = ctx.Pool(min(workers, len(todo)), initializer=_init_worker, initargs=(job, progress, parts_dir))
    try:
        # Large chunks first so that the last worker does not finish long after the others.
        for _ in pool.imap_unordered(_work, sorted(todo, key=lambda c: -c.size)):
            pass
        pool.close()
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()
        stop.set()
        pumper.join()
        while True:
            try:
                update(progress.get_nowait())
            except queue.Empty:
                break
