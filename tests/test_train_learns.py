"""Evidence that StoryGAN draws what it is told, in a form that a generator blind to its conditions fails.

A short CPU training (300 steps, widths 8, 32x32 frames) on the 24 training stories of the tiny real CLEVR-SV
build. Then every training story is drawn twice with the same noise: from its own conditions (the model) and
from the conditions of another story (the floor: the seeded derangement of svkit's evaluation), and both drawings
are scored against the story's own truth. A generator that ignores its conditions draws the same frames both
times, so its model and floor figures are equal and it cannot pass. Two measures must rise above their floors:

- **colour where wanted**: svkit's packaged CLEVR-SV evaluator reads each frame, and the measure is the mean
  probability it gives each wanted object's colour at the pixel where that object's centre should be (the
  builder's ``extra/pixel_coords``). The evaluator's own reading (objects found at heat peaks, all four
  attributes right) is too strict for frames this blurry: it finds few objects in them (object F1 below);
- **PSNR** against the story's own real frames (``sv_model.evaluation.evaluate``'s model and floor).

Measured 2026-12-02 with ``clevr-sv-attributes-v1`` (2 noise draws; model / floor, then the margin):

| training seed | colour where wanted | PSNR, dB | object F1 (not asserted) |
| --- | --- | --- | --- |
| 0 (the test's) | 0.183 / 0.134: +0.049 | 26.82 / 24.56: +2.27 | 0.051 / 0.009 |
| 1 | 0.207 / 0.135: +0.072 | 27.77 / 25.27: +2.50 | 0.046 / 0.009 |
| 2 | 0.142 / 0.130: +0.012 | 27.03 / 24.68: +2.35 | 0.017 / 0.014 |
| 3 | 0.230 / 0.125: +0.105 | 27.45 / 24.53: +2.92 | 0.008 / 0.029 |
| 4 | 0.254 / 0.126: +0.128 | 27.30 / 25.36: +1.94 | 0.051 / 0.021 |
| the dataset's mean image (per frame position) | 0.108 / 0.108: 0 | 27.80 / 27.80: 0 | 0 / 0 |
| the real frames (the ceiling) | 0.994 at 32x32, 0.998 at 64x64 | | |

The mean image scores a higher PSNR than the model (blur is cheap in PSNR) and yet fails, as every condition-blind
generator must: the margins, not the levels, are what the test asks for. The margins asked for (COLOUR_MARGIN,
PSNR_MARGIN) lie below the smallest of the five seeds. With the generator's conditions zeroed (every story drawn
from zeros), both margins are 0 and the test fails.
"""
import json
from pathlib import Path

import numpy as np
import torch
from test_model_data import one_cpu_thread  # noqa: F401 (an autouse fixture)

from sv_data.shards import ShardReader
from sv_model.evaluation import attribute_net
from sv_model.evaluation.clevr_objects import ATTRIBUTE_SIZES, ATTRIBUTES, INPUT_SIZE
from sv_model.evaluation.evaluate import evaluate
from sv_model.evaluation.evaluators import AttributeEvaluator
from sv_model.evaluation.floor import derangement
from sv_model.evaluation.packaged import CLEVR_SV_ATTRIBUTES, load_packaged
from sv_model.generate import load_generator
from sv_model.training_loop import TrainOptions, train

STEPS, SIZE = 300, 32  # frames resized from 64x64 to 32x32: a quarter of the work, and the resize path is tested
DRAWS = 2  # noise draws per story
COLOUR = [name for name, _ in ATTRIBUTES].index("color")
COLOUR_MARGIN, PSNR_MARGIN = 0.005, 1.0  # the smallest margins of five seeds: 0.012 and 1.94 dB (the docstring)


def short_run(train_shard: Path, out: Path, seed: int):
    # 24 stories are 3 steps an epoch: the official halving of the learning rate every 20 epochs would leave
    # a thousandth of it by step 600, so it stays constant here.
    return train(TrainOptions(
        train=str(train_shard), out=str(out), max_steps=STEPS, image_size=SIZE, device="cpu", preset="small",
        g_width=8, d_width=8, story_batch=8, image_batch=16, lr_decay_epochs=10**6, workers=0, seed=seed,
        checkpoint_every=STEPS, sample_every=STEPS, log_every=25, progress=False,
    ), log=lambda m: None)


@torch.no_grad()
def colour_where_wanted(evaluator: AttributeEvaluator, frames: np.ndarray, places: np.ndarray, colours: np.ndarray,
                        shard_size: int) -> float:
    """The mean probability that the evaluator gives each wanted object's colour at the pixel of its centre.
    frames uint8 (n, T, S, S, 3); places (n, T, K, 3) the shard's pixel_coords (x, y on its frames of
    ``shard_size``, x < 0 for an object not yet in the frame); colours (n, K)."""
    n, t = frames.shape[:2]
    _, attributes = evaluator.network(attribute_net.to_input(frames.reshape(n * t, *frames.shape[2:])))
    probabilities = torch.split(attributes, ATTRIBUTE_SIZES, dim=1)[COLOUR].softmax(dim=1)
    probabilities = probabilities.reshape(n, t, -1, INPUT_SIZE, INPUT_SIZE)
    story, frame, k = np.nonzero(places[..., 0] >= 0)
    x, y = (np.minimum(places[story, frame, k, axis] * INPUT_SIZE // shard_size, INPUT_SIZE - 1).astype(int)
            for axis in (0, 1))
    return float(probabilities[story, frame, colours[story, k].astype(np.int64), y, x].mean())


def scores_with_floors(checkpoint: Path, shard: Path) -> dict[str, tuple[float, float]]:
    """(model, floor) of colour where wanted, PSNR and the evaluator's object F1 over DRAWS noise draws."""
    generator = load_generator(checkpoint, device="cpu")
    evaluator = load_packaged(CLEVR_SV_ATTRIBUTES, device="cpu")
    report = evaluate(generator, shard, evaluator=evaluator, metrics=["psnr", "attributes"], samples=DRAWS, seed=0,
                      device="cpu", progress=False)["metrics"]
    with ShardReader(shard) as reader:
        rows, shard_size = np.arange(len(reader)), reader.info.image_size[0]
        conditions, labels = reader.read("conditions", rows), reader.read("labels", rows)
        places, colours = reader.read("extra/pixel_coords", rows), reader.read("extra/color", rows)
    fed = derangement(len(rows), seed=0)
    own, other = [], []
    for draw in range(DRAWS):
        for story_conditions, story_labels, scores in ((conditions, labels, own), (conditions[fed], labels[fed], other)):
            drawn = generator.generate(story_conditions, story_labels, seed=draw)
            scores.append(colour_where_wanted(evaluator, drawn, places, colours, shard_size))
    return {"colour": (float(np.mean(own)), float(np.mean(other))),
            **{name: (report[name]["mean"], report[name]["floor"]["mean"]) for name in ("psnr", "object_f1")}}


def test_frames_drawn_from_their_own_conditions_beat_frames_drawn_from_other_stories(tiny_clevr, tmp_path):
    train_shard = tiny_clevr / "train.h5"
    result = short_run(train_shard, tmp_path / "run", seed=0)
    scores = scores_with_floors(result.checkpoint, train_shard)
    (colour, colour_floor), (psnr, psnr_floor) = scores["colour"], scores["psnr"]
    assert colour - colour_floor > COLOUR_MARGIN, scores
    assert psnr - psnr_floor > PSNR_MARGIN, scores

    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss/g"] for r in rows if "loss/g" in r]
    assert len(losses) == STEPS // 25 and all(map(torch.isfinite, torch.tensor(losses)))
