"""One StoryGAN training step (the optimizers and learning-rate schedules around :mod:`sv_model.loss`), and the
state that a checkpoint saves and restores.

Each step, as in the paper's code: the discriminators are updated once on a batch of stories (story
discriminator) and a batch of single frames with their stories (image discriminator), then the generator is
updated ``g_updates`` times, each time on freshly generated stories and frames.

With a ``compile_mode`` (training uses :data:`~sv_model.options.COMPILE_MODE`), the two phases of
:mod:`sv_model.loss` (every network's forward pass, and so the backward pass that autograd derives from it) run
through ``torch.compile`` in that mode: the same functions, wrapped. The noise is drawn outside them, the optimizer
steps after them, as in eager mode.
"""
from __future__ import annotations

import time

import torch

from sv_model import distributed
from sv_model.data import DeviceBatch
from sv_model.loss import StepInputs, StoryGANLoss
from sv_model.networks import ModelConfig, Networks
from sv_model.options import Hyperparameters

ADAM_BETAS = (0.5, 0.999)


def _copied(stats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The statistics, detached, as float32, in memory of their own (one copy for all of them): the outputs of a
    compiled phase live in its CUDA graph's memory, which the next phase may overwrite."""
    return dict(zip(stats, torch.stack([value.detach().float() for value in stats.values()]).unbind()))


class Trainer:
    """Networks, optimizers and learning-rate schedules of one run, and :meth:`step`."""

    def __init__(self, config: ModelConfig, hyper: Hyperparameters, steps_per_epoch: int, device: torch.device,
                 compile_mode: str | None = None):
        self.config, self.hyper, self.device = config, hyper, device
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # shapes are fixed for a run: pick the fastest kernels once
        self.nets = Networks.build(config).to(device)
        distributed.broadcast_from_main(self.nets.modules().values())  # every rank starts from rank 0's weights
        self.optimizers = {
            # One fused kernel per optimizer step on the GPU, where a step is bound by kernel launches.
            name: torch.optim.Adam(net.parameters(), lr=hyper.lr, betas=ADAM_BETAS, fused=device.type == "cuda")
            for name, net in self.nets.modules().items()
        }
        decay_every = max(1, hyper.lr_decay_epochs * steps_per_epoch)
        self.schedulers = {
            name: torch.optim.lr_scheduler.StepLR(opt, step_size=decay_every, gamma=0.5)
            for name, opt in self.optimizers.items()
        }
        self.discriminators = {name: net for name, net in self.nets.modules().items() if name != "generator"}
        self.loss = StoryGANLoss(self.nets, device, hyper)
        phases = (self.loss.discriminator_phase, self.loss.generator_phase)
        if compile_mode is not None:
            # Traced into the graph (dynamo's allow_rnn), the context encoder's GRU leaves each phase one graph, and
            # so one CUDA graph, instead of pieces around a graph break at every call of the generator.
            trace_rnn = torch._dynamo.config.patch(allow_rnn=True)
            phases = tuple(trace_rnn(torch.compile(phase, mode=compile_mode)) for phase in phases)
        self._discriminator_phase, self._generator_phase = phases

    @property
    def generator(self):
        return self.nets.generator

    @property
    def learning_rate(self) -> float:
        return self.optimizers["generator"].param_groups[0]["lr"]

    def weights_are_finite(self) -> bool:
        """False once a diverged step has left a NaN or an infinity in any network."""
        return all(bool(torch.isfinite(p).all()) for net in self.nets.modules().values() for p in net.parameters())

    def _sync(self, enabled: bool) -> None:
        if enabled and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _optimizer_step(self, name: str) -> None:
        optimizer = self.optimizers[name]
        distributed.average_gradients([p for group in optimizer.param_groups for p in group["params"]])
        optimizer.step()

    def _update(self, total: torch.Tensor, names) -> None:
        total.backward()
        for name in names:
            self._optimizer_step(name)
            # Dropped at once rather than before the next backward pass: a compiled backward pass writes its
            # gradients into a CUDA graph's memory, which the next phase's graph may reuse.
            self.optimizers[name].zero_grad(set_to_none=True)

    def discriminator_step(self, x: StepInputs) -> dict[str, torch.Tensor]:
        """One update of the discriminators; the generator only draws, without gradients."""
        for d in self.discriminators.values():
            d.requires_grad_(True)
        total, stats = self._discriminator_phase(x, self.loss.draw_noise(x))
        self._update(total, self.discriminators)
        return _copied(stats)

    def generator_step(self, x: StepInputs) -> dict[str, torch.Tensor]:
        """One update of the generator; the discriminators only judge."""
        for d in self.discriminators.values():
            d.requires_grad_(False)  # the generator's update needs no gradients of the discriminators' weights
        total, stats = self._generator_phase(x, self.loss.draw_noise(x))
        self._update(total, ["generator"])
        return _copied(stats)

    def step(self, stories: DeviceBatch, frames: DeviceBatch, sync: bool = False) -> tuple[dict, dict]:
        """One training step. Returns (statistics as 0-d tensors, seconds spent per phase). The phases are only
        timed exactly on a GPU with ``sync`` (which waits for the GPU between phases)."""
        x = StepInputs.from_batches(stories, frames, self.config)
        start = time.perf_counter()
        stats = self.discriminator_step(x)
        self._sync(sync)
        middle = time.perf_counter()
        for _ in range(self.hyper.g_updates):
            stats.update(self.generator_step(x))
        self._sync(sync)
        end = time.perf_counter()
        for scheduler in self.schedulers.values():
            scheduler.step()
        return stats, {"discriminators": middle - start, "generator": end - middle}

    def state_dict(self) -> dict:
        return {
            "networks": {name: net.state_dict() for name, net in self.nets.modules().items()},
            "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
            "schedulers": {name: s.state_dict() for name, s in self.schedulers.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        for name, net in self.nets.modules().items():
            net.load_state_dict(state["networks"][name])
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        for name, scheduler in self.schedulers.items():
            scheduler.load_state_dict(state["schedulers"][name])
