"""Data-parallel training with torchrun: the process group, identical networks, and averaged gradients.

``torchrun --nproc-per-node N -m cli.model train ...`` starts N processes and tells each its RANK, WORLD_SIZE and
LOCAL_RANK. Without these variables (or with WORLD_SIZE 1) every function here is a no-op, so the one-process
path runs the same code.

A GAN step calls the same network several times before one backward pass (real, fake and mismatched inputs
through a discriminator; two generator paths), which DistributedDataParallel's hooks handle badly. As in NVlabs'
StyleGAN3, the networks are therefore plain modules: rank 0's parameters and buffers are broadcast once after
construction, and before each optimizer step the gradients of that optimizer's parameters are summed over the
ranks and divided by their number: the same arithmetic as DDP's all-reduce.
"""
from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import torch
import torch.distributed as dist

from sv_data.errors import SvkitError
from sv_model.devices import resolve_device


@dataclass(frozen=True)
class Context:
    """Where this process stands: its rank among ``world_size`` processes, and the device it trains on."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0 writes the run folder (checkpoints, samples, config, logs) and shows the progress bar."""
        return self.rank == 0


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _environment() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


@contextmanager
def session(device_name: str) -> Iterator[Context]:
    """Join the process group that torchrun describes (NCCL on cuda:LOCAL_RANK, gloo on the CPU) and leave it at
    the end; one process without torchrun just resolves its device. A group that the caller already started is
    used and left alone."""
    rank, world, local_rank = _environment()
    device = resolve_device(device_name)
    if world == 1:
        yield Context(0, 1, device)
        return
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise SvkitError(f"local rank {local_rank}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    started_here = not dist.is_initialized()
    if started_here:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world,
                                **({"device_id": device} if device.type == "cuda" else {}))
    try:
        yield Context(dist.get_rank(), dist.get_world_size(), device)
    finally:
        if started_here:
            dist.destroy_process_group()


def broadcast_from_main(modules: Iterable[torch.nn.Module]) -> None:
    """Give every rank rank 0's parameters and buffers."""
    if not active():
        return
    with torch.no_grad():
        for module in modules:
            for tensor in [*module.parameters(), *module.buffers()]:
                dist.broadcast(tensor, src=0)


def average_gradients(parameters: Sequence[torch.nn.Parameter]) -> None:
    """Replace each gradient by its mean over the ranks, in one all-reduce (a missing gradient counts as zeros,
    and is then set, so that every rank's optimizer steps on the same values)."""
    if not active():
        return
    params = [p for p in parameters if p.requires_grad]
    if not params:
        return
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in params])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= dist.get_world_size()
    for p, mean in zip(params, flat.split([p.numel() for p in params])):
        p.grad = mean.view_as(p).clone() if p.grad is None else p.grad.copy_(mean.view_as(p))


def mean_over_ranks(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """Logged statistics averaged over the ranks' batches."""
    if not active():
        return values
    keys = sorted(values)
    tensor = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return dict(zip(keys, (tensor / dist.get_world_size()).tolist()))


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when it is true on one (a stop request must stop all ranks after the same step)."""
    if not active():
        return flag
    tensor = torch.tensor([int(flag)], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item())


def gather(value) -> list:
    """Every rank's ``value`` (any picklable object), in rank order, on every rank."""
    if not active():
        return [value]
    values = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values


def barrier() -> None:
    if active():
        dist.barrier()


def launch(processes: int, device_name: str, module_args: list[str]) -> int:
    """Run ``python -m torch.distributed.run --standalone --nproc-per-node N -m cli.model train ARGS`` and return
    its exit status. N processes need N CUDA devices, except with ``--device cpu`` (N CPU processes, gloo)."""
    if processes < 1:
        raise SvkitError(f"--gpus must be at least 1, got {processes}")
    if "WORLD_SIZE" in os.environ:
        raise SvkitError("--gpus starts torchrun itself; inside torchrun, leave --gpus out")
    if device_name != "cpu":
        available = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if processes > available:
            raise SvkitError(
                f"--gpus {processes}: this machine has {available} CUDA device(s) "
                f"(--device cpu --gpus {processes} runs {processes} CPU processes instead)"
            )
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
               "-m", "cli.model", "train", *module_args]
    return subprocess.call(command)
