"""benchmarks/reproduce_clevr.py end to end at tiny sizes: four training steps on the real tiny CLEVR-SV build,
two checkpoints scored with a (barely trained) attribute evaluator, in a Python where Blender and pytorch-msssim
cannot be imported, as on the lent GPU machine."""
import json
import runpy
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from sv_model.evaluation.evaluators import train_evaluator

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "reproduce_clevr.py"
reproduction = SimpleNamespace(**runpy.run_path(str(SCRIPT)))  # the script's functions, without running it
# Runs the script with these modules made unimportable: the GPU machine has neither.
WITHOUT_BLENDER_AND_MSSSIM = (
    "import runpy, sys; sys.modules.update(dict.fromkeys(('bpy', 'pytorch_msssim'))); "
    f"sys.argv[0] = {str(SCRIPT)!r}; runpy.run_path(sys.argv[0], run_name='__main__')"
)


@pytest.fixture(scope="module")
def evaluator(tiny_clevr, tmp_path_factory) -> Path:
    """One epoch at the narrowest width: it reads few objects yet, but it is a real evaluator folder."""
    out = tmp_path_factory.mktemp("evaluator") / "evaluator"
    train_evaluator(tiny_clevr / "train.h5", out, val=tiny_clevr / "test.h5", epochs=1, width=8, batch_size=32,
                    device="cpu")
    return out


def reproduce(tiny_clevr: Path, evaluator: Path, out: Path, *options) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", WITHOUT_BLENDER_AND_MSSSIM, "--train", tiny_clevr / "train.h5", "--test",
               tiny_clevr / "test.h5", "--evaluator", evaluator, "--out", out, "--preset", "small", "--g-width", 4,
               "--d-width", 4, "--device", "cpu", "--workers", 0, *options]
    env = {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    return subprocess.run([str(c) for c in command], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def test_the_reproduction_trains_scores_each_checkpoint_and_draws_the_curve(tiny_clevr, evaluator, tmp_path):
    out = tmp_path / "reproduction"
    done = reproduce(tiny_clevr, evaluator, out, "--max-steps", 4, "--eval-every", 2, "--sample-stories", 2)
    assert done.returncode == 0, done.stderr[-3000:]
    numbers = json.loads((out / "reproduction.json").read_text())
    assert numbers["format"] == "svkit-reproduction"
    assert numbers["recipe"].startswith("recipe: small preset") and numbers["compiled"] is False
    training = numbers["training"]
    assert (training["steps"], training["stopped_by"], training["stories_seen"]) == (4, "finished", 4 * 8)
    assert training["stories_per_second"] > 0 and training["budget_minutes"] == 6.0
    assert numbers["test"]["stories_scored"] == 8

    held_out = json.loads((evaluator / "evaluator.json").read_text())["held_out"]
    assert [p["step"] for p in numbers["points"]] == [2, 4] and numbers["final"] == numbers["points"][-1]
    for p in numbers["points"]:
        assert p["stories_seen"] == 8 * p["step"] and p["epochs"] == pytest.approx(p["step"] / 3)
        report = json.loads((out / "reports" / f"step_{p['step']:06d}.json").read_text())
        assert report["model"]["step"] == p["step"] and set(report["metrics"]) >= {"exact_match_accuracy", "object_f1"}
        for name in ("exact_match_accuracy", "object_f1"):
            entry = report["metrics"][name]
            assert p[name] == {"model": entry["mean"], "floor": entry["floor"]["mean"], "ceiling": entry["ceiling"]}
            assert all(0 <= value <= 1 for value in p[name].values())
            # The ceiling is the evaluator on the real test frames, as it was scored when it was trained.
            assert p[name]["ceiling"] == pytest.approx(held_out[name])

    curve = np.asarray(Image.open(out / "curve.png").convert("RGB"))
    # Every score of this evaluator is 0 yet, so the model's line, drawn last, hides its floor and ceiling.
    assert curve.shape == (320, 920, 3) and (curve == reproduction.COLOURS["model"]).all(axis=2).sum() > 20
    # Two test stories, each its four real 64x64 frames, a gap of 8, then its four drawn ones.
    assert Image.open(out / "samples.png").size == (2 * 4 * 64 + 8, 2 * 64 + 8)
    assert sorted(p.name for p in (out / "run" / "checkpoints").iterdir()) == ["step_000002.pt", "step_000004.pt"]


def test_the_curve_draws_the_model_its_floor_and_its_ceiling_against_stories_seen(tmp_path):
    points = [{"stories_seen": seen, "exact_match_accuracy": {"model": model, "floor": 0.02, "ceiling": 0.97},
               "object_f1": {"model": model + 0.3, "floor": 0.2, "ceiling": 0.99}}
              for seen, model in ((24_000, 0.05), (48_000, 0.2), (96_000, 0.4))]
    curve = np.asarray(Image.open(reproduction.draw_curves(points, tmp_path / "curve.png")).convert("RGB"))
    for name, colour in reproduction.COLOURS.items():
        lines = (curve == colour).all(axis=2)
        # Drawn in both panels, as lines across them.
        assert lines[:, :460].sum() > 300 and lines[:, 460:].sum() > 300, name
    # The ceiling of exact match (0.97) is drawn above its floor (0.02), in the left panel.
    rows = {name: np.nonzero((curve[:, :460] == colour).all(axis=2))[0]
            for name, colour in reproduction.COLOURS.items()}
    assert np.median(rows["ceiling"]) < np.median(rows["model"]) < np.median(rows["floor"])


def test_a_folder_without_an_evaluator_is_refused_in_one_line(tiny_clevr, tmp_path):
    (tmp_path / "evaluator").mkdir()
    done = reproduce(tiny_clevr, tmp_path / "evaluator", tmp_path / "out", "--max-steps", 1)
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (tmp_path / "out" / "run").exists()
