"""The measures themselves: SSIM/PSNR, the Fréchet distance, the object-set and multi-label tallies, and the
CLEVR-SV truth and training targets."""
from collections import Counter

import numpy as np
import pytest
import torch

from sv_data.clevr.scene import CONDITION_DIM, NUM_OBJECTS, SLOT_SIZE
from sv_model.evaluation.clevr_objects import GRID, IGNORE, STRIDE, describe, frame_targets, objects_from_conditions
from sv_model.evaluation.fitting import EDGE, _shift
from sv_model.evaluation.floor import derangement
from sv_model.evaluation.frechet import GaussianStats, frechet_distance
from sv_model.evaluation.image_metrics import psnr_per_frame, ssim_per_frame
from sv_model.evaluation.scores import MultiLabelTally, ObjectSetTally, mean_and_std


def smooth_frames(n=3, size=64, seed=0):
    """Frames with structure at several scales (SSIM on pure noise says little)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    frames = []
    for _ in range(n):
        a, b, c = rng.uniform(2, 9, 3)
        base = np.stack([np.sin(a * xx + b * yy), np.cos(b * xx - c * yy), np.sin(c * xx * yy * 4)], axis=0)
        frames.append((base + 1) * 127.5)
    return torch.tensor(np.stack(frames), dtype=torch.float32).round().clamp(0, 255).to(torch.uint8)


def test_ssim_of_a_frame_with_itself_is_one_and_falls_with_noise():
    frames = smooth_frames()
    assert torch.allclose(ssim_per_frame(frames, frames), torch.ones(3), atol=1e-6)
    assert torch.isinf(psnr_per_frame(frames, frames)).all()
    generator = torch.Generator().manual_seed(0)
    ssims, psnrs = [], []
    for sigma in (5, 20, 60):
        noisy = (frames.float() + sigma * torch.randn(frames.shape, generator=generator)).round().clamp(0, 255)
        ssims.append(ssim_per_frame(noisy, frames))
        psnrs.append(psnr_per_frame(noisy, frames))
    for weaker, stronger in zip(ssims, ssims[1:]):
        assert (stronger < weaker).all()
    for weaker, stronger in zip(psnrs, psnrs[1:]):
        assert (stronger < weaker).all()
    assert (ssims[-1] < 0.5).all() and (ssims[0] > 0.9).all()


def test_ssim_keeps_the_leading_dimensions():
    stories = smooth_frames(8).reshape(2, 4, 3, 64, 64)
    assert ssim_per_frame(stories, stories).shape == (2, 4)


def stats_of(features):
    stats = GaussianStats(features.shape[1])
    stats.add(features)
    return stats


def test_frechet_distance_is_zero_for_the_same_set_and_the_squared_shift_for_a_translated_one():
    rng = np.random.default_rng(0)
    features = rng.standard_normal((500, 16)) @ rng.standard_normal((16, 16))
    shift = rng.standard_normal(16)
    assert frechet_distance(stats_of(features), stats_of(features)) == pytest.approx(0, abs=1e-8)
    assert frechet_distance(stats_of(features), stats_of(features + shift)) == pytest.approx(np.sum(shift**2), rel=1e-6)


def test_frechet_distance_matches_the_closed_form_for_diagonal_gaussians():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((4000, 3)) * np.array([1.0, 2.0, 3.0])
    b = rng.standard_normal((4000, 3)) * np.array([2.0, 2.0, 1.0]) + 1.0
    sa, sb = stats_of(a), stats_of(b)
    var_a, var_b = np.diag(sa.covariance()), np.diag(sb.covariance())
    expected = np.sum((sa.mean() - sb.mean()) ** 2) + np.sum((np.sqrt(var_a) - np.sqrt(var_b)) ** 2)
    assert frechet_distance(sa, sb) == pytest.approx(expected, rel=0.02)
    assert frechet_distance(sa, sb) == pytest.approx(frechet_distance(sb, sa), rel=1e-9)


def test_gaussian_stats_add_up_like_the_pooled_features():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((50, 4))
    merged = stats_of(x[:20]) + stats_of(x[20:])
    assert np.allclose(merged.mean(), x.mean(axis=0))
    assert np.allclose(merged.covariance(), np.cov(x, rowvar=False))


def test_frechet_distance_is_finite_with_fewer_samples_than_dimensions():
    rng = np.random.default_rng(3)
    value = frechet_distance(stats_of(rng.standard_normal((10, 64))), stats_of(rng.standard_normal((12, 64)) + 1))
    assert np.isfinite(value) and value > 64


A, B, C, D, E = (0, 0, 0, 0), (1, 1, 1, 1), (2, 2, 0, 1), (0, 7, 1, 0), (1, 3, 0, 0)


def test_object_set_scores_of_a_story_by_hand():
    actual = [Counter([A]), Counter([A, B]), Counter([A, B, C]), Counter([A, B, C, D])]
    predicted = [Counter([A]), Counter([A, B]), Counter([A, C]), Counter([A, B, C, D, E])]
    tally = ObjectSetTally()
    tally.add_story(predicted, actual)
    scores = tally.scores()
    assert scores["object_precision"] == pytest.approx(9 / 10)
    assert scores["object_recall"] == pytest.approx(9 / 10)
    assert scores["object_f1"] == pytest.approx(0.9)
    assert scores["exact_match_accuracy"] == pytest.approx(2 / 4)
    assert scores["object_count_accuracy"] == pytest.approx(2 / 4)
    assert scores["consistency"] == pytest.approx(2 / 3)  # B vanishes between frames 1 and 2


def test_object_sets_are_multisets():
    tally = ObjectSetTally()
    tally.add_story([Counter([A])], [Counter([A, A])])
    assert tally.scores()["object_recall"] == 0.5
    assert tally.scores()["exact_match_accuracy"] == 0.0


def test_tallies_add_up_over_stories():
    one, two, both = ObjectSetTally(), ObjectSetTally(), ObjectSetTally()
    one.add_story([Counter([A])], [Counter([A])])
    two.add_story([Counter([B])], [Counter([A])])
    both.add_story([Counter([A])], [Counter([A])])
    both.add_story([Counter([B])], [Counter([A])])
    one += two
    assert one == both
    assert both.scores()["exact_match_accuracy"] == 0.5


def test_multi_label_scores_by_hand():
    actual = np.array([[[1, 0, 1], [0, 0, 0]], [[1, 1, 0], [0, 1, 0]]])
    predicted = np.array([[[1, 0, 0], [0, 0, 0]], [[1, 1, 1], [0, 1, 0]]])
    tally = MultiLabelTally()
    tally.add(predicted, actual)
    scores = tally.scores()
    assert scores["character_precision"] == pytest.approx(4 / 5)
    assert scores["character_recall"] == pytest.approx(4 / 5)
    assert scores["character_f1"] == pytest.approx(0.8)
    assert scores["frame_accuracy"] == pytest.approx(2 / 4)


def test_mean_and_std_over_draws():
    assert mean_and_std([0.5]) == (0.5, None)
    mean, std = mean_and_std([1.0, 2.0, 3.0])
    assert mean == 2.0 and std == pytest.approx(1.0)


@pytest.mark.parametrize("n", [2, 3, 7, 100])
def test_a_derangement_gives_every_story_another_storys_conditions(n):
    order = derangement(n, seed=5)
    assert sorted(order) == list(range(n)), "every story's conditions are fed to exactly one story"
    assert (order != np.arange(n)).all()
    assert np.array_equal(order, derangement(n, seed=5))


def test_derangements_are_drawn_from_all_of_them():
    # The 2 derangements of 3 stories are the two 3-cycles; of 4 stories there are 9, two kinds: two swaps (3)
    # and 4-cycles (6). A draw that only ever made one kind (e.g. a shift by one) would miss most of them.
    assert {tuple(derangement(3, seed)) for seed in range(50)} == {(1, 2, 0), (2, 0, 1)}
    assert len({tuple(derangement(4, seed)) for seed in range(200)}) == 9
    with pytest.raises(ValueError):
        derangement(1, seed=0)


def conditions_for(objects):
    """A story's (T, 75) StoryGAN vectors for objects given as (shape, colour, material, size) tuples."""
    out = np.zeros((NUM_OBJECTS, CONDITION_DIM), np.float32)
    for t in range(NUM_OBJECTS):
        for k, (shape, color, material, size) in enumerate(objects[: t + 1]):
            slot = out[t, k * SLOT_SIZE : (k + 1) * SLOT_SIZE]
            slot[[shape, 3 + color, 11 + material, 13 + size]] = 1
            slot[15:] = (0.5, -1.0, 0.35 if size else 0.7)
        out[t, -3:] = (0.7, 0.7, 0)
    return out


def test_objects_are_read_back_from_the_storygan_vector():
    objects = [A, D, C, A]
    stories = objects_from_conditions(conditions_for(objects)[None])
    assert stories == [[Counter(objects[: t + 1]) for t in range(NUM_OBJECTS)]]
    assert describe(D) == "large yellow metal cube"


def test_training_targets_mark_one_anchor_on_each_visible_object():
    mask = np.zeros((64, 64), np.uint8)
    mask[8:24, 8:24] = 1  # a square
    ring = np.zeros((64, 64), bool)
    yy, xx = np.mgrid[0:64, 0:64]
    ring[(yy - 44) ** 2 + (xx - 40) ** 2 <= 12**2] = True
    ring[(yy - 44) ** 2 + (xx - 40) ** 2 <= 7**2] = False  # a ring: its centroid is not on it
    mask[ring] = 2
    attributes = np.array([[0, 1, 1, 0], [2, 6, 0, 1], [1, 1, 1, 1]])  # object 2 is absent from this frame
    heat, labels = frame_targets(mask, attributes)
    peaks = np.argwhere(heat == 1.0)
    assert len(peaks) == 2
    for y, x in peaks:
        owner = mask[y * STRIDE : (y + 1) * STRIDE, x * STRIDE : (x + 1) * STRIDE]
        assert owner.any(), "an anchor cell lies on its object"
        assert tuple(labels[:, y, x]) in {(0, 1, 1, 0), (2, 6, 0, 1)}
    assert heat.shape == labels.shape[1:] == (GRID, GRID)
    assert (labels[:, 0, 0] == IGNORE).all()
    assert tuple(labels[:, 8, 8]) == (0, 1, 1, 0)


def test_training_targets_from_a_larger_mask_land_on_the_same_grid():
    small = np.zeros((64, 64), np.uint8)
    small[20:30, 30:44] = 1
    large = small.repeat(2, axis=0).repeat(2, axis=1)
    heat_small, labels_small = frame_targets(small, np.array([[1, 2, 0, 1]]))
    heat_large, labels_large = frame_targets(large, np.array([[1, 2, 0, 1]]))
    assert np.array_equal(heat_small, heat_large) and np.array_equal(labels_small, labels_large)


def test_a_training_shift_moves_the_frame_and_its_targets_together():
    mask = np.zeros((64, 64), np.uint8)
    mask[20:30, 30:44] = 1
    heat, labels = frame_targets(mask, np.array([[1, 2, 0, 1]]))
    image = np.where(mask[None] > 0, 200, 50).astype(np.uint8)
    image[:, 0, :] = 90  # a top row that the downward shift repeats
    batch = [torch.from_numpy(a[None]) for a in (image, heat, labels)]
    moved_image, moved_heat, moved_labels = _shift(batch, np.array([[3, -2]]), (EDGE, 0.0, IGNORE))
    (y, x), = np.argwhere(heat == 1.0)
    assert moved_heat[0, y + 3, x - 2] == 1.0 and (moved_heat[0] == 1.0).sum() == 1
    assert moved_image[0, 0, y + 3, x - 2] == 200
    assert tuple(moved_labels[0, :, y + 3, x - 2].tolist()) == (1, 2, 0, 1)
    assert (moved_image[0, :, :4, :] == 90).all(), "the image's border is repeated into the uncovered rows"
    assert (moved_heat[0, :, -2:] == 0).all() and (moved_labels[0, :, :, -2:] == IGNORE).all()


class Interrupted(Exception):
    """Raised by the loss below in place of a killed process."""


def fit_tiny(state_path, interrupt_at_epoch=None):
    """A small network with dropout fitted for 3 epochs by the evaluators' own loop; its final weights."""
    from torch import nn

    from sv_model.evaluation.fitting import FitOptions, fit

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Dropout(0.5), nn.Flatten(), nn.Linear(4 * 8 * 8, 2))
    images = np.random.default_rng(0).integers(0, 256, (24, 8, 8, 3), dtype=np.uint8)
    targets = np.arange(24) % 2
    calls = []

    def loss_fn(net, pixels, target):
        calls.append(1)
        if interrupt_at_epoch is not None and len(calls) > interrupt_at_epoch * 3:
            raise Interrupted
        return nn.functional.cross_entropy(net(pixels / 255), target)

    options = FitOptions(epochs=3, batch_size=8, learning_rate=1e-2, weight_decay=0.0, seed=5, max_shift=1)
    fit(model, loss_fn, [images, targets], (EDGE, None), options, torch.device("cpu"), state_path, progress=False)
    return model.state_dict()


def test_an_interrupted_evaluator_training_resumed_ends_with_the_weights_of_an_uninterrupted_one(tmp_path):
    whole = fit_tiny(tmp_path / "whole.pt")
    torch.manual_seed(123)  # whatever the process drew before does not matter
    with pytest.raises(Interrupted):
        fit_tiny(tmp_path / "resumed.pt", interrupt_at_epoch=2)  # two epochs finished, the third broken off
    assert (tmp_path / "resumed.pt").exists()
    resumed = fit_tiny(tmp_path / "resumed.pt")
    assert whole.keys() == resumed.keys()
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
    again = fit_tiny(tmp_path / "again.pt")
    assert all(torch.equal(whole[k], again[k]) for k in whole)  # the same command, the same weights
