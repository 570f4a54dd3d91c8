"""StoryGAN's objectives, on logits (BCE-with-logits is the numerically safe form of the paper's log D terms)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


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
    """Pair each sample with the next one's condition: the 'real image, wrong text' term. Training batches hold
    at least two stories (``sv_model.train`` sees to it), so no sample is paired with its own condition."""
    return None if x is None else torch.roll(x, shifts=1, dims=0)
