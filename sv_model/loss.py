"""StoryGAN's loss: the objectives, on logits (BCE-with-logits is the numerically safe form of the paper's log D
terms), and the discriminator and generator phases of a training step with the weights of their terms.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from sv_model.data import DeviceBatch
from sv_model.devices import autocast
from sv_model.networks import ModelConfig, Networks, StoryNoise, story_conditions
from sv_model.options import Hyperparameters


def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    logits = logits.float()
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def discriminator_loss(real: torch.Tensor, fake: torch.Tensor, mismatched: torch.Tensor) -> torch.Tensor:
    """BCE(real) + 1/2 (BCE(fake) + BCE(real images with the wrong condition)), as in StoryGAN's code."""
    return _bce(real, 1.0) + 0.5 * (_bce(fake, 0.0) + _bce(mismatched, 0.0))


def generator_adversarial_loss(fake: torch.Tensor) -> torch.Tensor:
    """The non-saturating generator loss: BCE of the fakes against the 'real' target."""
    return _bce(fake, 1.0)


def label_loss(label_logits: torch.Tensor | None, labels: torch.Tensor) -> torch.Tensor:
    """The auxiliary multi-label classification loss (zero when the shard has no labels)."""
    if label_logits is None:
        return labels.new_zeros(())
    return F.binary_cross_entropy_with_logits(label_logits.float(), labels.float())


def kl_divergence(mu: torch.Tensor | None, logvar: torch.Tensor | None) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, I)) of the story code, averaged over its elements (zero for ImageGAN)."""
    if mu is None:
        return torch.zeros(())
    mu, logvar = mu.float(), logvar.float()
    return 0.5 * torch.mean(mu.pow(2) + logvar.exp() - 1 - logvar)


def accuracy(logits: torch.Tensor, real: bool) -> torch.Tensor:
    """Fraction of logits on the right side of zero."""
    return ((logits > 0) == real).float().mean()


def mismatched(x: torch.Tensor | None) -> torch.Tensor | None:
    """Pair each sample with the next one's condition (the last with the first's): the 'real image, wrong text'
    term, as the official code pairs image i with condition i + 1. Training batches hold at least two stories
    (``TrainOptions.check`` sees to it), so no sample is paired with its own condition."""
    return None if x is None else torch.roll(x, shifts=-1, dims=0)


@dataclass
class StepInputs:
    """A step's two streams with the conditions the networks see."""

    story_images: torch.Tensor  # (B, T, 3, S, S)
    story_conditions: torch.Tensor  # (B, T, C)
    frame_images: torch.Tensor  # (F, 3, S, S)
    frame_story_conditions: torch.Tensor  # (F, T, C): the whole story of each frame
    frame_index: torch.Tensor  # (F,)
    frame_conditions: torch.Tensor  # (F, C)
    frame_labels: torch.Tensor  # (F, L)

    @classmethod
    def from_batches(cls, stories: DeviceBatch, frames: DeviceBatch, config: ModelConfig) -> "StepInputs":
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


@dataclass
class PhaseNoise:
    """The generator's noise for one phase: for the stories of the single frames, and for the story stream (None
    without a story discriminator)."""

    frames: StoryNoise
    stories: StoryNoise | None


class StoryGANLoss:
    """The two phases of a step, each returning (the total loss to minimise, statistics as 0-d tensors). The
    phases take their noise from :meth:`draw_noise` and draw none themselves, so that a compiled phase (see
    :class:`sv_model.trainer.Trainer`) computes the same function of the same random numbers as the eager one."""

    def __init__(self, nets: Networks, device: torch.device, weights: Hyperparameters):
        self.nets, self.device = nets, device
        self.kl_weight = weights.kl_weight
        self.d_label_weight, self.g_label_weight = weights.d_label_weight, weights.g_label_weight

    def draw_noise(self, x: StepInputs) -> PhaseNoise:
        config = self.nets.generator.config
        frames = StoryNoise.draw(len(x.frame_index), config, self.device)
        stories = StoryNoise.draw(len(x.story_conditions), config, self.device) if self.nets.story_d else None
        return PhaseNoise(frames, stories)

    def discriminator_phase(self, x: StepInputs, noise: PhaseNoise) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Both discriminators on real, generated and mismatched inputs, plus the image discriminator's labels."""
        g, image_d, story_d = self.nets.generator, self.nets.image_d, self.nets.story_d
        with torch.no_grad(), autocast(self.device):
            fake_frames, story_code, _ = g.frames(x.frame_story_conditions, noise.frames, x.frame_index)
            fake_stories = g(x.story_conditions, noise.stories)[0] if story_d else None
        with autocast(self.device):
            real, real_labels = image_d(x.frame_images, x.frame_conditions, story_code)
            fake, _ = image_d(fake_frames, x.frame_conditions, story_code)
            wrong, _ = image_d(x.frame_images, mismatched(x.frame_conditions), mismatched(story_code))
            labels = label_loss(real_labels, x.frame_labels)
            d_image = discriminator_loss(real, fake, wrong) + self.d_label_weight * labels
            stats = {
                "loss/d_image": d_image,
                "loss/d_labels": labels,
                "accuracy/d_image_real": accuracy(real, True),
                "accuracy/d_image_fake": accuracy(fake, False),
                "accuracy/d_image_wrong": accuracy(wrong, False),
            }
            total = d_image
            if story_d is not None:
                s_real = story_d(x.story_images, x.story_conditions)
                s_fake = story_d(fake_stories, x.story_conditions)
                s_wrong = story_d(x.story_images, mismatched(x.story_conditions))
                d_story = discriminator_loss(s_real, s_fake, s_wrong)
                total = total + d_story
                stats.update({
                    "loss/d_story": d_story,
                    "accuracy/d_story_real": accuracy(s_real, True),
                    "accuracy/d_story_fake": accuracy(s_fake, False),
                    "accuracy/d_story_wrong": accuracy(s_wrong, False),
                })
        return total, stats

    def generator_phase(self, x: StepInputs, noise: PhaseNoise) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Fool both discriminators, with the label and KL terms, on freshly generated frames and stories."""
        g, image_d, story_d = self.nets.generator, self.nets.image_d, self.nets.story_d
        with autocast(self.device):
            fake_frames, mu_f, logvar_f = g.frames(x.frame_story_conditions, noise.frames, x.frame_index)
            story_code = None if mu_f is None else mu_f.detach()
            logits, label_logits = image_d(fake_frames, x.frame_conditions, story_code)
            adversarial = generator_adversarial_loss(logits)
            labels = label_loss(label_logits, x.frame_labels)
            kl = kl_divergence(mu_f, logvar_f)
            stats = {"loss/g_image": adversarial}
            if story_d is not None:
                fake_stories, mu_s, logvar_s = g(x.story_conditions, noise.stories)
                story_adversarial = generator_adversarial_loss(story_d(fake_stories, x.story_conditions))
                adversarial = adversarial + story_adversarial
                kl = 0.5 * (kl + kl_divergence(mu_s, logvar_s))
                stats["loss/g_story"] = story_adversarial
            total = adversarial + self.g_label_weight * labels + self.kl_weight * kl
        stats.update({"loss/g": total, "loss/g_labels": labels, "loss/kl": kl})
        return total, stats
