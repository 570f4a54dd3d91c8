"""StoryGAN's networks and one training step, on the CPU at small widths."""
import numpy as np
import pytest
import torch
from test_model_data import one_cpu_thread  # noqa: F401 (an autouse fixture)

from sv_model.loss import kl_divergence
from sv_model.data import DeviceBatch
from sv_model.networks import MODELS, ModelConfig, Networks, StoryNoise, Text2Gist
from sv_model.options import Hyperparameters
from sv_model.trainer import Trainer

LABELS = ("red", "green", "blue")


def config(model="storygan", size=16, frames=4, condition_dim=5, **kw) -> ModelConfig:
    return ModelConfig(model, "squares", frames, condition_dim, LABELS, False, size, g_width=4, d_width=4, **kw)


def random_batches(cfg: ModelConfig, stories=3, frames=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    t, s, d, nl = cfg.frames, cfg.image_size, cfg.condition_dim, cfg.num_labels

    def batch(n, single):
        images = torch.rand((n, 3, s, s) if single else (n, t, 3, s, s), generator=g) * 2 - 1
        frame = torch.randint(0, t, (n,), generator=g) if single else None
        return DeviceBatch(images, torch.randn(n, t, d, generator=g),
                           torch.randint(0, 2, (n, t, nl), generator=g).float(), frame)

    return batch(stories, False), batch(frames, True)


def test_text2gist_output_is_each_samples_state_convolved_with_its_own_filters():
    torch.manual_seed(0)
    cell = Text2Gist(input_dim=6, state_dim=10, channels=2, kernel=3)
    h, filters = torch.randn(4, 10), torch.randn(4, 2 * 3)
    out = cell.convolve(h, filters).reshape(4, 2, 10)
    for b in range(4):
        for c in range(2):
            kernel = filters[b].reshape(2, 3)[c].numpy()
            expected = np.correlate(np.pad(h[b].numpy(), 1), kernel, mode="valid")  # conv1d is a correlation
            np.testing.assert_allclose(out[b, c].numpy(), expected, rtol=1e-5, atol=1e-6)
    # A convolution commutes with shifts of its input (away from the zero-padded ends).
    shifted = cell.convolve(torch.roll(h, 2, dims=1), filters).reshape(4, 2, 10)
    torch.testing.assert_close(shifted[..., 4:-1], torch.roll(out, 2, dims=2)[..., 4:-1])


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("size", [8, 32])
def test_shapes_follow_the_config(model, size):
    cfg = config(model, size=size, frames=3, condition_dim=7)
    nets = Networks.build(cfg)
    conditions = torch.randn(2, 3, 7)
    stories, mu, logvar = nets.generator(conditions, StoryNoise.draw(2, cfg, "cpu"))
    assert stories.shape == (2, 3, 3, size, size)
    frames, story_code, _ = nets.generator.frames(conditions, StoryNoise.draw(2, cfg, "cpu"), torch.tensor([0, 2]))
    logits, label_logits = nets.image_d(frames, conditions[:, 0], story_code)
    assert logits.shape == (2,) and label_logits.shape == (2, 3)
    if model == "storygan":
        assert mu.shape == logvar.shape == (2, 7)  # the story state is as large as the condition
        assert nets.story_d(stories, conditions).shape == (2,)
    else:
        assert mu is None and nets.story_d is None


def test_the_story_state_is_as_large_as_the_condition_unless_set():
    assert config(condition_dim=5).story_dim == 5
    with_labels = ModelConfig("storygan", "squares", 4, 5, LABELS, True, 16)
    assert with_labels.story_dim == 5 + len(LABELS)  # the labels appended to the condition count
    cfg = config(story_dim=9)
    assert cfg.story_dim == 9 and ModelConfig.from_dict(cfg.to_dict()) == cfg
    gru = Networks.build(cfg).generator.context.gru
    assert gru.hidden_size == 9 and StoryNoise.draw(2, cfg, "cpu").story.shape == (2, 9)
    with pytest.raises(ValueError, match="give --story-dim"):
        config(condition_dim=0)


def test_the_kl_term_reaches_the_story_encoder():
    cfg = config()
    nets = Networks.build(cfg)
    mu, logvar = nets.generator.story_encoder(torch.randn(6, 4, 5) * 3)
    kl = kl_divergence(mu, logvar)
    kl.backward()
    assert kl > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in nets.generator.story_encoder.parameters())


@pytest.mark.parametrize("model", MODELS)
def test_one_step_changes_every_parameter_and_gives_finite_losses(model):
    torch.manual_seed(0)
    cfg = config(model)
    trainer = Trainer(cfg, Hyperparameters(), steps_per_epoch=10, device=torch.device("cpu"))
    before = {
        f"{net}.{name}": p.detach().clone()
        for net, module in trainer.nets.modules().items()
        for name, p in module.named_parameters()
    }
    stats, _ = trainer.step(*random_batches(cfg))
    after = {
        f"{net}.{name}": p.detach() for net, module in trainer.nets.modules().items() for name, p in module.named_parameters()
    }
    unchanged = [name for name, value in before.items() if torch.equal(value, after[name])]
    assert not unchanged
    assert all(torch.isfinite(v) for v in stats.values())
    assert {"loss/g", "loss/d_image", "loss/kl", "loss/g_labels"} <= stats.keys()
    assert ("loss/d_story" in stats) == (model == "storygan")


def test_learning_rate_halves_every_lr_decay_epochs():
    cfg = config()
    trainer = Trainer(cfg, Hyperparameters(lr=1e-3, lr_decay_epochs=2), steps_per_epoch=1, device=torch.device("cpu"))
    rates = []
    for _ in range(5):
        rates.append(trainer.learning_rate)
        trainer.step(*random_batches(cfg))
    assert rates == pytest.approx([1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4])
