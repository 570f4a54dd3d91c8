"""StoryGAN's loss (sv_model/loss.py): the targets of each term, the wrong-condition pairs, the label loss and its
weights, and which networks each phase of a step updates."""
import math

import pytest
import torch
from test_model_data import one_cpu_thread  # noqa: F401 (an autouse fixture)
from test_model_networks import config, random_batches

from sv_model.loss import (
    StepInputs,
    discriminator_loss,
    generator_adversarial_loss,
    label_loss,
    mismatched,
)
from sv_model.options import Hyperparameters
from sv_model.trainer import Trainer


def minus_log_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """-log D for D = sigmoid(x), element-wise: the BCE of a logit against the target 'real'."""
    return -torch.log(torch.sigmoid(x.double()))


def test_the_discriminator_wants_real_as_real_and_fakes_and_wrong_pairs_as_fake():
    real, fake, wrong = torch.tensor([2.0, -1.0]), torch.tensor([0.5, -3.0]), torch.tensor([1.5, 0.25])
    expected = (minus_log_sigmoid(real).mean()
                + 0.5 * (minus_log_sigmoid(-fake).mean() + minus_log_sigmoid(-wrong).mean()))
    assert float(discriminator_loss(real, fake, wrong)) == pytest.approx(float(expected), rel=1e-6)
    sure = torch.full((2,), 20.0)
    assert float(discriminator_loss(sure, -sure, -sure)) < 1e-6  # every term at its target
    assert float(discriminator_loss(-sure, -sure, -sure)) > 19  # real frames judged fake
    assert float(discriminator_loss(sure, -sure, sure)) > 9  # wrong pairs judged real: half the weight


def test_the_generator_wants_its_fakes_judged_real():
    fake = torch.tensor([3.0, -2.0, 0.0])
    assert float(generator_adversarial_loss(fake)) == pytest.approx(float(minus_log_sigmoid(fake).mean()), rel=1e-6)
    assert float(generator_adversarial_loss(torch.full((2,), 20.0))) < 1e-6


def test_mismatched_pairs_each_sample_with_the_next_ones_condition():
    conditions = torch.arange(4.0)[:, None].expand(4, 3)
    assert mismatched(conditions)[:, 0].tolist() == [1.0, 2.0, 3.0, 0.0]
    assert mismatched(torch.tensor([[5.0], [7.0]])).flatten().tolist() == [7.0, 5.0]  # never a sample's own
    assert mismatched(None) is None  # ImageGAN has no story code


def test_the_label_loss_is_the_official_multilabel_soft_margin_loss():
    torch.manual_seed(0)
    logits, labels = torch.randn(5, 3), torch.randint(0, 2, (5, 3)).float()
    official = torch.nn.MultiLabelSoftMarginLoss()(logits, labels)
    assert float(label_loss(logits, labels)) == pytest.approx(float(official), rel=1e-6)
    assert float(label_loss(logits, labels)) > float(label_loss(20 * (2 * labels - 1), labels))
    assert float(label_loss(None, labels)) == 0  # a shard without labels


def phase_stats(weights: Hyperparameters, phase: str) -> dict[str, float]:
    """The statistics of one phase on the same networks, batches and noise, with the given loss weights."""
    torch.manual_seed(0)
    cfg = config()
    trainer = Trainer(cfg, weights, steps_per_epoch=10, device=torch.device("cpu"))
    x = StepInputs.from_batches(*random_batches(cfg), cfg)
    _, stats = getattr(trainer.loss, phase)(x, trainer.loss.draw_noise(x))
    return {name: float(value.detach()) for name, value in stats.items()}


def test_the_discriminator_and_the_generator_weigh_the_label_loss_each_with_its_own_weight():
    d_one, d_three = (phase_stats(Hyperparameters(d_label_weight=w), "discriminator_phase") for w in (1.0, 3.0))
    assert d_one["loss/d_labels"] > 0
    assert d_three["loss/d_image"] - d_one["loss/d_image"] == pytest.approx(2 * d_one["loss/d_labels"], rel=1e-5)
    g = phase_stats(Hyperparameters(g_label_weight=0.4, kl_weight=2.0), "generator_phase")
    expected = g["loss/g_image"] + g["loss/g_story"] + 0.4 * g["loss/g_labels"] + 2.0 * g["loss/kl"]
    assert g["loss/g"] == pytest.approx(expected, rel=1e-5)
    assert g["loss/g_labels"] > 0 and not math.isclose(g["loss/g_labels"], d_one["loss/d_labels"])
    other_d_weight = phase_stats(Hyperparameters(d_label_weight=3.0), "generator_phase")
    assert other_d_weight["loss/g"] == pytest.approx(phase_stats(Hyperparameters(), "generator_phase")["loss/g"])


def parameters(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in module.named_parameters()}


def changed_parameters(before: dict[str, torch.Tensor], module: torch.nn.Module) -> set[str]:
    return {name for name, p in module.named_parameters() if not torch.equal(p, before[name])}


def test_a_discriminator_step_leaves_the_generator_alone_and_the_other_way_round():
    torch.manual_seed(0)
    cfg = config()
    trainer = Trainer(cfg, Hyperparameters(), steps_per_epoch=10, device=torch.device("cpu"))
    x = StepInputs.from_batches(*random_batches(cfg), cfg)
    nets = trainer.nets.modules()
    phases = ((trainer.discriminator_step, {"image_d", "story_d"}), (trainer.generator_step, {"generator"}))
    for step, updated in phases:
        before = {name: parameters(net) for name, net in nets.items()}
        step(x)
        for name, net in nets.items():
            assert bool(changed_parameters(before[name], net)) == (name in updated), (step.__name__, name)
