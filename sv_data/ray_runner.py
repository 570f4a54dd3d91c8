"""Running a build's work on a Ray cluster: the same functions as local workers, as Ray actors.

Each actor is one worker process that sets the work up once (one Blender session, say) and then runs item after
item: chunks of stories into part files, or (Pororo-SV) videos into frame caches, under the build folder, which
must therefore be on storage that every node sees. An item whose actor dies is retried on another; finished items
are files, so an interrupted Ray build resumes like a local one.
"""
from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Protocol, Sequence

from sv_data.build import BuildError, Chunk, StoryJob, run_chunk

RETRIES = 3
CONNECT_TIMEOUT = 5  # seconds to reach a --ray HOST:PORT
INSTALL_HINT = "Ray is not installed; install svkit's Ray extra: pip install 'svkit[ray]' (or pip install ray)"


def _import_ray():
    try:
        import ray
    except ImportError:
        raise BuildError(INSTALL_HINT) from None
    return ray


class WorkOnActors(Protocol):
    """Work items run by long-lived actors: pickled to each actor, set up once there, then run item after item."""

    def setup(self) -> None:
        """Heavy per-process state, made once in each actor."""

    def run(self, item, report: Callable[[int], None]):
        """Do one item; ``report(n)`` feeds the progress bar. The return value goes back to the driver."""

    def name(self, item) -> str:
        """The item, for an error message."""


class _Actor:
    def __init__(self, work: WorkOnActors, progress):
        work.setup()
        self.work, self.progress = work, progress

    def can_see(self, path: str) -> bool:
        return Path(path).exists()

    def run(self, item, attempt: int):
        # Progress is tagged with the attempt, so that the driver can take back what a failed attempt reported.
        return self.work.run(item, lambda n: self.progress.put((attempt, n)))


@dataclass(frozen=True)
class _ChunkWork:
    job: StoryJob
    parts_dir: str

    def setup(self) -> None:
        self.job.setup()

    def run(self, chunk: Chunk, report: Callable[[int], None]) -> Chunk:
        run_chunk(self.job, chunk, Path(self.parts_dir), report)
        return chunk

    def name(self, chunk: Chunk) -> str:
        return f"chunk {chunk.part_name}"


def _connect(ray, address: str, workers: int) -> None:
    if ray.is_initialized():
        return
    options = dict(logging_level=logging.WARNING, log_to_driver=False, include_dashboard=False)
    if address == "local":
        # Workers on this machine import what this process imports, from the same places.
        runtime_env = {"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}}
        ray.init(num_cpus=workers, runtime_env=runtime_env, **options)
    else:
        _check_reachable(address)
        try:
            ray.init(address=address, **options)
        except ConnectionError:
            hint = "start one with `ray start --head` or use --ray local"
            raise BuildError(f"no Ray cluster at {address}: {hint}") from None


def _check_reachable(address: str) -> None:
    """Fail in seconds on an address where nothing listens: Ray itself retries such an address for a minute or
    more, printing a warning every few seconds. 'auto' is Ray's own lookup of the cluster of this node."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise BuildError(f"--ray {address}: expected auto, local or HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT).close()
    except OSError as exc:
        reason = "unknown host" if isinstance(exc, socket.gaierror) else exc.strerror or "no answer"
        raise BuildError(f"no Ray cluster at {address}: {reason}") from None


def _check_shared_storage(ray, actors, parts_dir: Path) -> None:
    """Every actor must see a file that this process has just written under the build folder."""
    probe = parts_dir / f".ray-probe-{uuid.uuid4().hex[:8]}"
    probe.write_text(os.uname().nodename)
    try:
        seen = ray.get([actor.can_see.remote(str(probe)) for actor in actors])
    except ray.exceptions.RayActorError as exc:
        raise BuildError(f"Ray workers could not start: {str(exc.__cause__ or exc).splitlines()[-1]}") from None
    finally:
        probe.unlink()
    if not all(seen):
        raise BuildError(
            f"{parts_dir.parent}: not visible from every Ray node; a Ray build needs an output folder on storage "
            "that all nodes share (NFS, Lustre, ...), at the same path"
        )


def run_on_ray(job: StoryJob, todo: list[Chunk], parts_dir: Path, address: str, workers: int,
               update: Callable[[int], None]) -> None:
    """Build the chunks ``todo`` with ``workers`` Ray actors; ``update(n)`` follows finished stories."""
    work = _ChunkWork(job, str(parts_dir.resolve()))
    # Large chunks first so that the last actor does not finish long after the others.
    for _ in run_on_actors(work, sorted(todo, key=lambda c: -c.size), parts_dir, address, workers, update):
        pass


def run_on_actors(work: WorkOnActors, items: Sequence, shared_dir: Path, address: str, workers: int,
                  update: Callable[[int], None]) -> Iterator:
    """Run ``items``, in this order, on ``workers`` Ray actors, each set up once; yields their results as they
    finish. An item whose actor fails or dies is retried, :data:`RETRIES` times at most, and what the failed attempt
    had reported is taken off the progress bar. An actor that died more often than Ray restarts it is dead for
    good and leaves the pool. ``shared_dir``, where the actors write, must be visible to all of them (checked
    first)."""
    if not items:
        return
    ray = _import_ray()
    from ray.util.queue import Empty, Queue

    _connect(ray, address, workers)
    progress = Queue()
    actor_class = ray.remote(num_cpus=1, max_restarts=RETRIES)(_Actor)
    actors = [actor_class.remote(work, progress) for _ in range(min(workers, len(items)))]
    tally = _Tally(update)
    stop = threading.Event()

    def pump():
        while not stop.is_set():
            try:
                tally.add(*progress.get(timeout=0.2))
            except Empty:
                pass

    pumper = threading.Thread(target=pump, daemon=True)
    try:
        _check_shared_storage(ray, actors, shared_dir.resolve())
        pumper.start()
        attempts = [0] * len(items)
        deaths = dict.fromkeys(actors, 0)
        waiting = list(range(len(items)))
        running = {}
        idle = list(actors)
        serial = 0
        while waiting or running:
            while waiting and idle:
                actor, index = idle.pop(), waiting.pop(0)
                serial += 1
                running[actor.run.remote(items[index], serial)] = (actor, index, serial)
            if not running:
                raise BuildError(f"every Ray worker died more than {RETRIES} times; "
                                 f"{len(waiting)} of {len(items)} items are not done")
            done, _ = ray.wait(list(running), num_returns=1)
            actor, index, attempt = running.pop(done[0])
            try:
                result = ray.get(done[0])
            except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError) as exc:
                tally.cancel(attempt)
                if isinstance(exc, ray.exceptions.RayActorError):
                    deaths[actor] += 1
                if deaths[actor] <= RETRIES:  # Ray restarts a dead actor RETRIES times, then it stays dead
                    idle.append(actor)
                attempts[index] += 1
                if attempts[index] > RETRIES:
                    raise BuildError(f"{work.name(items[index])} failed {attempts[index]} times: {exc}") from None
                waiting.append(index)
                continue
            idle.append(actor)
            yield result
    finally:
        stop.set()
        if pumper.is_alive():
            pumper.join()
        while not progress.empty():
            tally.add(*progress.get_nowait())
        for actor in actors:
            ray.kill(actor)


class _Tally:
    """Progress per attempt: what a failed attempt reported is taken back, and what it reports later is dropped,
    so that a retried item is counted once."""

    def __init__(self, update: Callable[[int], None]):
        self.update = update
        self.counts: dict[int, int] = {}
        self.cancelled: set[int] = set()
        self.lock = threading.Lock()

    def add(self, attempt: int, n: int) -> None:
        with self.lock:
            if attempt not in self.cancelled:
                self.counts[attempt] = self.counts.get(attempt, 0) + n
                self.update(n)

    def cancel(self, attempt: int) -> None:
        with self.lock:
            self.cancelled.add(attempt)
            taken = self.counts.pop(attempt, 0)
            if taken:
                self.update(-taken)
