"""One StoryGAN training step, and the state that a checkpoint saves and restores.

Each step, as in the paper's code: the discriminators are updated once on a batch of stories (story
discriminator) and a batch of single frames with their stories (image discriminator), then the generator is
updated ``g_updates`` times, each time on freshly generated stories and frames.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from sv_model import distributed, losses
from sv_model.data import DeviceBatch
from sv_model.generate import autocast
from sv_model.networks import ModelConfig, Networks, StoryNoise, story_conditions

ADAM_BETAS = (0.5, 0.999)


@dataclass(frozen=True)
class Hyperparameters:
    lr: float = 2e-4
    lr_decay_epochs: int = 20  # the learning rate halves every this many epochs
    g_updates: int = 2
    kl_weight: float = 1.0
    label_weight: float = 1.0


@dataclass
class _Inputs:
    """A step's two streams with the conditions the networks see."""

    story_images: torch.Tensor  # (B, T, 3, S, S)
    story_conditions: torch.Tensor  # (B, T, C)
    frame_images: torch.Tensor  # (F, 3, S, S)
    frame_story_conditions: torch.Tensor  # (F, T, C): the whole story of each frame
    frame_index: torch.Tensor  # (F,)
    frame_conditions: torch.Tensor  # (F, C)
    frame_labels: torch.Tensor  # (F, L)

    @classmethod
    def from_batches(cls, stories: DeviceBatch, frames: DeviceBatch, config: ModelConfig) -> "_Inputs":
        frame_story = story_conditions(frames.conditions, frames.labels, config)
        rows = torch.arange(frame_story.shape[0], device=frame_story.device)
        return cls(
            story_images=stories.images,
            story_conditions=story_conditions(stories.conditions, stories.labels, config),
            frame_images=frames.images,
            frame_story_conditions=frame_story,
            frame_index=frames.frame,
            frame_conditions=frame_story[rows, frames.frame],
            frame_labels=frames.labels[rows, frames.frame],
        )


class Trainer:
    """Networks, optimizers and learning-rate schedules of one run, and :meth:`step`."""

    def __init__(self, config: ModelConfig, hyper: Hyperparameters, steps_per_epoch: int, device: torch.device):
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

    @property
    def generator(self):
        return self.nets.generator

    @property
    def learning_rate(self) -> float:
        return self.optimizers["generator"].param_groups[0]["lr"]

    def _noise(self, batch: int) -> StoryNoise:
        return StoryNoise.draw(batch, self.config, self.device)

    def _sync(self, enabled: bool) -> None:
        if enabled and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _optimizer_step(self, name: str) -> None:
        optimizer = self.optimizers[name]
        distributed.average_gradients([p for group in optimizer.param_groups for p in group["params"]])
        optimizer.step()

    def _discriminator_update(self, x: _Inputs) -> dict[str, torch.Tensor]:
        g, image_d, story_d = self.nets.generator, self.nets.image_d, self.nets.story_d
        with torch.no_grad(), autocast(self.device):
            fake_frames, story_code, _ = g.frames(
                x.frame_story_conditions, self._noise(len(x.frame_index)), x.frame_index
            )
            fake_stories = g(x.story_conditions, self._noise(len(x.story_conditions)))[0] if story_d else None
        with autocast(self.device):
            real, real_labels = image_d(x.frame_images, x.frame_conditions, story_code)
            fake, _ = image_d(fake_frames, x.frame_conditions, story_code)
            wrong, _ = image_d(x.frame_images, losses.mismatched(x.frame_conditions), losses.mismatched(story_code))
            label_loss = losses.label_loss(real_labels, x.frame_labels)
            d_image = losses.discriminator_loss(real, fake, wrong) + self.hyper.label_weight * label_loss
            stats = {
                "loss/d_image": d_image,
                "loss/d_labels": label_loss,
                "accuracy/d_image_real": losses.accuracy(real, True),
                "accuracy/d_image_fake": losses.accuracy(fake, False),
                "accuracy/d_image_wrong": losses.accuracy(wrong, False),
            }
            total = d_image
            if story_d is not None:
                s_real = story_d(x.story_images, x.story_conditions)
                s_fake = story_d(fake_stories, x.story_conditions)
                s_wrong = story_d(x.story_images, losses.mismatched(x.story_conditions))
                d_story = losses.discriminator_loss(s_real, s_fake, s_wrong)
                total = total + d_story
                stats.update({
                    "loss/d_story": d_story,
                    "accuracy/d_story_real": losses.accuracy(s_real, True),
                    "accuracy/d_story_fake": losses.accuracy(s_fake, False),
                    "accuracy/d_story_wrong": losses.accuracy(s_wrong, False),
                })
        for name in self.discriminators:
            self.optimizers[name].zero_grad(set_to_none=True)
        total.backward()
        for name in self.discriminators:
            self._optimizer_step(name)
        return stats

    def _generator_update(self, x: _Inputs) -> dict[str, torch.Tensor]:
        g, image_d, story_d = self.nets.generator, self.nets.image_d, self.nets.story_d
        with autocast(self.device):
            fake_frames, mu_f, logvar_f = g.frames(
                x.frame_story_conditions, self._noise(len(x.frame_index)), x.frame_index
            )
            story_code = None if mu_f is None else mu_f.detach()
            logits, label_logits = image_d(fake_frames, x.frame_conditions, story_code)
            adversarial = losses.generator_adversarial_loss(logits)
            label_loss = losses.label_loss(label_logits, x.frame_labels)
            kl = losses.kl_divergence(mu_f, logvar_f)
            stats = {"loss/g_image": adversarial}
            if story_d is not None:
                fake_stories, mu_s, logvar_s = g(x.story_conditions, self._noise(len(x.story_conditions)))
                story_adversarial = losses.generator_adversarial_loss(story_d(fake_stories, x.story_conditions))
                adversarial = adversarial + story_adversarial
                kl = 0.5 * (kl + losses.kl_divergence(mu_s, logvar_s))
                stats["loss/g_story"] = story_adversarial
            total = adversarial + self.hyper.label_weight * label_loss + self.hyper.kl_weight * kl
        self.optimizers["generator"].zero_grad(set_to_none=True)
        total.backward()
        self._optimizer_step("generator")
        stats.update({"loss/g": total, "loss/g_labels": label_loss, "loss/kl": kl})
        return stats

    def step(self, stories: DeviceBatch, frames: DeviceBatch, sync: bool = False) -> tuple[dict, dict]:
        """One training step. Returns (statistics as 0-d tensors, seconds spent per phase). The phases are only
        timed exactly on a GPU with ``sync`` (which waits for the GPU between phases)."""
        x = _Inputs.from_batches(stories, frames, self.config)
        start = time.perf_counter()
        for d in self.discriminators.values():
            d.requires_grad_(True)
        stats = self._discriminator_update(x)
        self._sync(sync)
        middle = time.perf_counter()
        for d in self.discriminators.values():
            d.requires_grad_(False)  # the generator's updates need no gradients of the discriminators' weights
        for _ in range(self.hyper.g_updates):
            stats.update(self._generator_update(x))
        self._sync(sync)
        end = time.perf_counter()
        for scheduler in self.schedulers.values():
            scheduler.step()
        stats = {k: v.detach().float() for k, v in stats.items()}
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
