"""Worker pools for every builder: spawn-started processes on this machine, or actors of a Ray cluster.

A pool runs :class:`Work`: items of any kind, each worker setting the work up once (one Blender session, say) and
then running item after item. This module knows nothing of what an item is (a chunk of stories, a video); the
builders do. With Ray, the workers write under a folder that must be on storage every node sees; an item whose
actor dies is retried on another, and since finished items are files, an interrupted Ray build resumes like a local
one.
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue
import signal
import socket
import sys
import threading
import uuid
from pathlib import Path
from typing import Callable, Iterator, Protocol, Sequence

from sv_data.errors import BuildError, SvkitError

RETRIES = 3
CONNECT_TIMEOUT = 5  # seconds to reach a --ray HOST:PORT
INSTALL_HINT = "Ray is not installed; install svkit's Ray extra: pip install 'svkit[ray]' (or pip install ray)"


class Work(Protocol):
    """Items run by long-lived workers: pickled to each worker, set up once there, then run item after item."""

    def setup(self) -> None:
        """Heavy per-process state, made once in each worker."""

    def run(self, item, report: Callable[[int], None]):
        """Do one item; ``report(n)`` feeds the progress bar. The return value goes back to the driver."""

    def name(self, item) -> str:
        """The item, for an error message."""


def default_workers() -> int:
    """All cores of this machine: the number of workers unless told otherwise."""
    return os.cpu_count() or 1


def check_workers(workers: int) -> None:
    if workers < 1:
        raise SvkitError(f"--workers must be >= 1, got {workers}")


def run_work(work: Work, items: Sequence, workers: int, update: Callable[[int], None], *,
             ray_address: str | None = None, shared_dir: Path | None = None, pin_cores: bool = False,
             items_per_task: int = 1) -> Iterator:
    """Run ``items`` and yield their results as they finish: here when ``workers`` is 1, else in ``workers``
    processes, or on ``workers`` Ray actors with ``ray_address`` (``"local"`` starts Ray here), which write under
    ``shared_dir``. ``update(n)`` follows what the items report. ``pin_cores`` keeps each process on its own share of
    the cores (:func:`pin_to_share`); ``items_per_task`` items are sent to a process at a time."""
    check_workers(workers)
    if not items:
        return
    if ray_address is not None:
        yield from _run_on_actors(work, items, shared_dir, ray_address, workers, update)
    elif workers == 1:
        work.setup()
        for item in items:
            yield work.run(item, update)
    else:
        yield from _run_in_processes(work, items, workers, update, pin_cores, items_per_task)


# ------------------------------------------------------------------------------------------------ local processes

# Worker-process state, set once by _init_process: spawn-started processes share nothing with the parent.
_PROCESS: dict = {}


def _init_process(work: Work, progress: "mp.Queue", slots: "mp.Queue | None", processes: int) -> None:
    # Ctrl-C reaches every process of the terminal's group: the parent handles it (it terminates the pool and
    # keeps the finished items), so a worker must not die of it with a traceback of its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if slots is not None:
        pin_to_share(slots.get(), processes)
    work.setup()
    _PROCESS.update(work=work, progress=progress)


def _run_in_process(item):
    return _PROCESS["work"].run(item, _PROCESS["progress"].put)


def pin_to_share(slot: int, processes: int) -> None:
    """Keep worker ``slot`` of ``processes`` on its own share of this process's cores (Linux; elsewhere, or with
    more workers than cores, nothing changes). Pinned before the work starts its libraries, their thread pools size
    themselves to that share: left free, each one-thread Cycles worker on 2 cores kept a second thread busy, and a
    2-worker CLEVR-SV build at 8 samples ran at 11.1 frames/s instead of 13.4 (docs/benchmarks.md)."""
    if not hasattr(os, "sched_setaffinity"):
        return
    cores = sorted(os.sched_getaffinity(0))
    share = len(cores) // processes
    if share:
        os.sched_setaffinity(0, cores[slot * share : (slot + 1) * share])


def _run_in_processes(work: Work, items: Sequence, workers: int, update: Callable[[int], None], pin_cores: bool,
                      items_per_task: int) -> Iterator:
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
    processes = min(workers, len(items))
    slots = ctx.Queue() if pin_cores else None
    for slot in range(processes if pin_cores else 0):
        slots.put(slot)
    pool = _start_pool(ctx, processes, (work, progress, slots, processes))
    try:
        yield from pool.imap_unordered(_run_in_process, items, chunksize=items_per_task)
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


def _start_pool(ctx, processes: int, initargs: tuple):
    """A pool whose workers ignore SIGINT from birth: they inherit the ignored signal (Python leaves an ignored
    SIGINT alone at start-up), so a Ctrl-C while they import Blender does not print their tracebacks either."""
    if threading.current_thread() is not threading.main_thread():
        return ctx.Pool(processes, initializer=_init_process, initargs=initargs)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return ctx.Pool(processes, initializer=_init_process, initargs=initargs)
    finally:
        signal.signal(signal.SIGINT, previous)


# ------------------------------------------------------------------------------------------------------ Ray actors

def _import_ray():
    try:
        import ray
    except ImportError:
        raise BuildError(INSTALL_HINT) from None
    return ray


class _Actor:
    def __init__(self, work: Work, progress):
        work.setup()
        self.work, self.progress = work, progress

    def can_see(self, path: str) -> bool:
        return Path(path).exists()

    def run(self, item, attempt: int):
        # Progress is tagged with the attempt, so that the driver can take back what a failed attempt reported.
        return self.work.run(item, lambda n: self.progress.put((attempt, n)))


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


def _check_shared_storage(ray, actors, shared_dir: Path) -> None:
    """Every actor must see a file that this process has just written under the build folder."""
    probe = shared_dir / f".ray-probe-{uuid.uuid4().hex[:8]}"
    probe.write_text(os.uname().nodename)
    try:
        seen = ray.get([actor.can_see.remote(str(probe)) for actor in actors])
    except ray.exceptions.RayActorError as exc:
        raise BuildError(f"Ray workers could not start: {str(exc.__cause__ or exc).splitlines()[-1]}") from None
    finally:
        probe.unlink()
    if not all(seen):
        raise BuildError(
            f"{shared_dir.parent}: not visible from every Ray node; a Ray build needs an output folder on storage "
            "that all nodes share (NFS, Lustre, ...), at the same path"
        )


def _run_on_actors(work: Work, items: Sequence, shared_dir: Path, address: str, workers: int,
                   update: Callable[[int], None]) -> Iterator:
    """Run ``items``, in this order, on ``workers`` Ray actors, each set up once; yields their results as they
    finish. An item whose actor fails or dies is retried, :data:`RETRIES` times at most, and what the failed attempt
    had reported is taken off the progress bar. An actor that died more often than Ray restarts it is dead for
    good and leaves the pool. ``shared_dir``, where the actors write, must be visible to all of them (checked
    first)."""
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
