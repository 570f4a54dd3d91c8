"""svkit's packaged CLEVR-SV attribute evaluator: it loads on the CPU from the installed package, its weights are
the pinned ones, it reads the real renders of the tiny build as their conditions name them, and it is what
``sv-model evaluate`` and ``sv-model train`` use on CLEVR-SV when no evaluator is named."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sv_data import files
from sv_data.shards import read_info
from sv_model.evaluation import packaged
from sv_model.evaluation.evaluators import WEIGHTS_FILE, EvaluatorError
from sv_model.evaluation.packaged import CLEVR_SV_ATTRIBUTES, NO_EVALUATOR, choose_evaluator, load_packaged

WEIGHTS = packaged.WEIGHTS_ROOT / CLEVR_SV_ATTRIBUTES / WEIGHTS_FILE


def test_the_packaged_weights_are_the_pinned_float16_ones():
    assert files.file_sha256(WEIGHTS) == packaged.SHA256[CLEVR_SV_ATTRIBUTES]
    state = torch.load(WEIGHTS, map_location="cpu", weights_only=True)["state_dict"]
    floats = [t for t in state.values() if t.is_floating_point()]
    assert floats and all(t.dtype == torch.float16 for t in floats)
    assert WEIGHTS.stat().st_size < 4 * 2**20
    info = json.loads(WEIGHTS.with_name("evaluator.json").read_text())
    held_out = {Path(r["path"]).parent.name: r for r in info["held_out_shards"]}
    # docs/evaluation.md quotes these figures: frames of a seed it never saw, read with the float16 weights
    assert info["name"] == CLEVR_SV_ATTRIBUTES and info["weights"] == "float16"
    assert held_out["heldout23"]["frames"] == 800 and held_out["heldout23"]["exact_match_accuracy"] >= 0.92


def test_it_reads_the_tiny_builds_renders_as_their_conditions_name_them(tiny_clevr):
    evaluator = load_packaged(CLEVR_SV_ATTRIBUTES, device="cpu")
    assert evaluator.network.heads.weight.dtype == torch.float32  # float16 on disk, float32 to compute
    reading = evaluator.read_shard(tiny_clevr / "train.h5")
    # Chance is near 0: a frame is exact only if all its 1-4 objects are read with all four attributes right (96
    # combinations each). These renders have 4 samples, not the 16 it was trained on.
    assert reading["frames"] == 24 * 4
    assert reading["exact_match_accuracy"] >= 0.8, reading
    assert reading["object_f1"] >= 0.9, reading


def test_a_changed_weights_file_is_refused(monkeypatch):
    monkeypatch.setitem(packaged.SHA256, CLEVR_SV_ATTRIBUTES, "sha256:" + "0" * 64)
    with pytest.raises(EvaluatorError, match="reinstall svkit"):
        load_packaged(CLEVR_SV_ATTRIBUTES, device="cpu")
    with pytest.raises(EvaluatorError, match="no packaged evaluator"):
        load_packaged("clevr-sv-attributes-v0", device="cpu")


def test_the_choice_of_evaluator(tiny_clevr, tmp_path):
    shard = read_info(tiny_clevr / "test.h5")
    chosen = choose_evaluator(None, shard, device="cpu")
    assert chosen.info["name"] == CLEVR_SV_ATTRIBUTES and chosen.info["sha256"] == packaged.SHA256[CLEVR_SV_ATTRIBUTES]
    assert choose_evaluator(CLEVR_SV_ATTRIBUTES, shard, device="cpu").info["name"] == CLEVR_SV_ATTRIBUTES
    assert choose_evaluator(NO_EVALUATOR, shard, device="cpu") is None
    folder = tmp_path / "own"
    shutil.copytree(WEIGHTS.parent, folder)
    own = choose_evaluator(folder, shard, device="cpu")  # a copy of it is the same evaluator, by its hash
    assert own.info["folder"] == str(folder) and own.info["sha256"] == packaged.SHA256[CLEVR_SV_ATTRIBUTES]
    with pytest.raises(EvaluatorError, match="neither an evaluator folder"):
        choose_evaluator(tmp_path / "missing", shard, device="cpu")


def sv_model(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli.model", *map(str, args)], capture_output=True, text=True)


def test_evaluate_and_train_use_it_on_clevr_sv_by_default(tiny_clevr, tmp_path):
    run = tmp_path / "run"
    done = sv_model("train", tiny_clevr / "train.h5", "--val", tiny_clevr / "test.h5", "--out", run,
                    "--preset", "small", "--g-width", 4, "--d-width", 4, "--max-steps", 2, "--checkpoint-every", 2,
                    "--workers", 0, "--device", "cpu", "--no-progress")
    assert done.returncode == 0, done.stderr
    config = json.loads((run / "config.json").read_text())
    metric = config["validation_metric"]
    assert CLEVR_SV_ATTRIBUTES in metric and packaged.SHA256[CLEVR_SV_ATTRIBUTES] in metric
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("val/object_f1" in row and "val/object_f1_floor" in row for row in logged)

    out = tmp_path / "report.json"
    done = sv_model("evaluate", "-c", run / "checkpoints" / "best.pt", "--data", tiny_clevr / "test.h5", "--metrics",
                    "attributes", "--out", out, "--device", "cpu", "--no-progress")
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert report["evaluator"]["name"] == CLEVR_SV_ATTRIBUTES
    assert report["evaluator"]["sha256"] == packaged.SHA256[CLEVR_SV_ATTRIBUTES]
    exact = report["metrics"]["exact_match_accuracy"]
    assert exact["ceiling"] >= 0.8 and exact["floor"] is not None
    assert f"svkit's packaged {CLEVR_SV_ATTRIBUTES}" in out.with_suffix(".txt").read_text()
