"""Running a build's chunks on a Ray cluster: the same chunk function as local workers, as Ray actors.

Each actor is one worker process that sets the job up once (one Blender session, say) and then builds chunks
into part files under the build folder, which must therefore be on storage that every node sees. A chunk whose
actor dies is retried on another; finished parts are files, so an interrupted Ray build resumes like a local one.
"""
from __future__ import annotations

import logging
import os
import sys
import threading
import uuid
from pathlib import Path
from typing import Callable

from sv_data.build import BuildError, Chunk, StoryJob, run_chunk

RETRIES = 3
INSTALL_HINT = "Ray is not installed; install svkit's Ray extra: pip install 'svkit[ray]' (or pip install ray)"


def _import_ray():
    try:
        import ray
    except ImportError:
        raise BuildError(INSTALL_HINT) from None
    return ray


class _ChunkActor:
    def __init__(self, job: StoryJob, parts_dir: str, progress):
        job.setup()
        self.job, self.parts_dir, self.progress = job, Path(parts_dir), progress

    def can_see(self, path: str) -> bool:
        return Path(path).exists()

    def build(self, chunk: Chunk) -> Chunk:
        run_chunk(self.job, chunk, self.parts_dir, self.progress.put)
        return chunk


def _connect(ray, address: str, workers: int) -> None:
    if ray.is_initialized():
        return
    options = dict(logging_level=logging.WARNING, log_to_driver=False, include_dashboard=False)
    if address == "local":
        # Workers on this machine import what this process imports, from the same places.
        runtime_env = {"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}}
        ray.init(num_cpus=workers, runtime_env=runtime_env, **options)
    else:
        ray.init(address=address, **options)


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
    ray = _import_ray()
    from ray.util.queue import Empty, Queue

    _connect(ray, address, workers)
    progress = Queue()
    actor_class = ray.remote(num_cpus=1, max_restarts=RETRIES)(_ChunkActor)
    actors = [actor_class.remote(job, str(parts_dir.resolve()), progress) for _ in range(min(workers, len(todo)))]
    _check_shared_storage(ray, actors, parts_dir.resolve())

    stop = threading.Event()

    def pump():
        while not stop.is_set():
            try:
                update(progress.get(timeout=0.2))
            except Empty:
                pass

    pumper = threading.Thread(target=pump, daemon=True)
    pumper.start()
    attempts = {chunk: 0 for chunk in todo}
    queue = sorted(todo, key=lambda c: -c.size)
    running = {}
    try:
        idle = list(actors)
        while queue or running:
            while queue and idle:
                actor, chunk = idle.pop(), queue.pop(0)
                running[actor.build.remote(chunk)] = (actor, chunk)
            done, _ = ray.wait(list(running), num_returns=1)
            actor, chunk = running.pop(done[0])
            try:
                ray.get(done[0])
            except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError) as exc:
                attempts[chunk] += 1
                if attempts[chunk] > RETRIES:
                    raise BuildError(f"chunk {chunk.part_name} failed {attempts[chunk]} times: {exc}") from None
                queue.append(chunk)
            idle.append(actor)
    finally:
        stop.set()
        pumper.join()
        while not progress.empty():
            update(progress.get_nowait())
        for actor in actors:
            ray.kill(actor)
