"""A training run's folder, its checkpoints, and resuming: a resumed run continues exactly like an uninterrupted one."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_model_data import one_cpu_thread, squares_shard  # noqa: F401 (an autouse fixture)

from sv_data.errors import SvkitError
from sv_model import checkpoint
from sv_model.training_loop import TrainOptions, train

REPO = Path(__file__).resolve().parents[1]
SMALL = dict(device="cpu", image_size=16, g_width=4, d_width=4, story_batch=4, image_batch=8, log_every=1, progress=False)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shards")
    return squares_shard(folder / "train.h5", stories=10, size=16), squares_shard(folder / "val.h5", stories=4,
                                                                                  size=16, seed=1)


def losses_by_step(run: Path) -> dict[int, dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: {k: v for k, v in r.items() if k.startswith(("loss/", "accuracy/", "lr"))}
            for r in rows if "loss/g" in r}


def generator_weights(ckpt: Path) -> dict:
    return torch.load(ckpt, weights_only=True)["networks"]["generator"]


def test_resumed_run_equals_uninterrupted_run(tmp_path, shards):
    train_shard, val_shard = shards
    common = dict(train=str(train_shard), val=str(val_shard), checkpoint_every=3, sample_every=3, **SMALL)
    whole = train(TrainOptions(out=str(tmp_path / "whole"), max_steps=7, workers=0, **common), log=lambda m: None)
    first = train(TrainOptions(out=str(tmp_path / "parts"), max_steps=4, workers=0, **common), log=lambda m: None)
    assert first.step == 4
    # Resumed with a data-loading worker process: the batches do not depend on how they are loaded.
    second = train(TrainOptions(out=str(tmp_path / "parts"), max_steps=7, workers=1, **common), log=lambda m: None)
    assert second.step == whole.step == 7
    expected, got = losses_by_step(tmp_path / "whole"), losses_by_step(tmp_path / "parts")
    assert sorted(got) == list(range(1, 8))
    assert got == expected
    for name, value in generator_weights(whole.checkpoint).items():
        assert torch.equal(value, generator_weights(second.checkpoint)[name]), name


def test_run_folder_holds_config_checkpoints_samples_and_logs(tmp_path, shards):
    train_shard, val_shard = shards
    run = tmp_path / "run"
    result = train(TrainOptions(train=str(train_shard), val=str(val_shard), out=str(run), max_steps=6, workers=0,
                                checkpoint_every=2, sample_every=3, keep=2, **SMALL), log=lambda m: None)
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["frames"] == 4 and config["model"]["condition_dim"] == 6
    assert config["options"]["g_width"] == 4 and config["total_steps"] == 6
    numbered = sorted(p.name for p in (run / "checkpoints").glob("step_*.pt"))
    assert numbered == ["step_000004.pt", "step_000006.pt"]
    best = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    ssims = [r["val/ssim"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "val/ssim" in r]
    assert len(ssims) == 3 and best["metric"] == max(ssims) == result.best_metric
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step_000003.png", "step_000006.png"]
    assert any((run / "tensorboard").glob("events.out.tfevents.*"))
    latest = torch.load(result.checkpoint, weights_only=True)  # tensors and plain values only
    assert latest["step"] == 6 and set(latest["rng"]) == {"python", "numpy", "torch", "cuda"}
    # Running the finished command again does nothing.
    again = train(TrainOptions(train=str(train_shard), val=str(val_shard), out=str(run), max_steps=6, workers=0,
                               checkpoint_every=2, sample_every=3, keep=2, **SMALL), log=lambda m: None)
    assert again.step == 6 and again.checkpoint == result.checkpoint


def test_resuming_with_other_training_options_is_refused(tmp_path, shards):
    train_shard, _ = shards
    options = dict(train=str(train_shard), out=str(tmp_path / "run"), max_steps=1, workers=0, **SMALL)
    train(TrainOptions(**options), log=lambda m: None)
    with pytest.raises(SvkitError, match="started with lr=0.0002, now lr=0.001"):
        train(TrainOptions(**{**options, "lr": 1e-3, "max_steps": 2}), log=lambda m: None)
    # The sizes are given, so only the preset's name differs; it is named before any value it would change.
    with pytest.raises(SvkitError, match="started with preset='official', now preset='small'"):
        train(TrainOptions(**{**options, "preset": "small", "d_label_weight": 0.5}), log=lambda m: None)
    config_path = tmp_path / "run" / "config.json"
    config = json.loads(config_path.read_text())
    config["options"]["label_weight"] = 1.0  # one weight for both label losses, as older svkit had
    config_path.write_text(json.dumps(config))
    with pytest.raises(SvkitError, match=r"started by another svkit version \(its option label_weight is not"):
        train(TrainOptions(**options), log=lambda m: None)


def test_max_minutes_stops_with_a_checkpoint_and_the_same_command_trains_on(tmp_path, shards):
    train_shard, _ = shards
    logs = []
    options = TrainOptions(train=str(train_shard), out=str(tmp_path / "run"), max_steps=100_000, max_minutes=0.02,
                           workers=0, checkpoint_every=100_000, sample_every=100_000, **SMALL)
    result = train(options, log=logs.append)
    assert 0 < result.step < result.total_steps == 100_000
    assert result.checkpoint == checkpoint.CheckpointFolder(tmp_path / "run" / "checkpoints").path_for(result.step)
    assert (tmp_path / "run" / "samples" / f"step_{result.step:06d}.png").is_file()
    assert logs[-1].startswith(f"stopped at step {result.step} of 100000: --max-minutes 0.02 have passed")
    again = train(options, log=lambda m: None)
    assert result.step < again.step < again.total_steps
    assert sorted(losses_by_step(tmp_path / "run")) == list(range(1, again.step + 1))


def test_a_broken_checkpoint_is_reported_with_its_name(tmp_path):
    path = tmp_path / "step_000001.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(checkpoint.CheckpointError, match="step_000001.pt: not a readable checkpoint"):
        checkpoint.load(path)


def test_ctrl_c_saves_a_checkpoint_and_the_resumed_run_matches(tmp_path, shards):
    train_shard, _ = shards
    run = tmp_path / "interrupted"
    args = [sys.executable, "-m", "cli.model", "train", str(train_shard), "--out", str(run), "--max-steps", "1000",
            "--workers", "1", "--checkpoint-every", "1000", "--sample-every", "1000", "--image-size", "16",
            "--g-width", "4", "--d-width", "4", "--story-batch", "4", "--image-batch", "8", "--log-every", "1",
            "--no-progress", "--device", "cpu"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}  # as one_cpu_thread, for equal sums
    process = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    metrics = run / "metrics.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:
            break
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGINT)  # like Ctrl-C in a terminal: the loader's worker gets it too
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr
    saved = checkpoint.CheckpointFolder(run / "checkpoints").numbered()
    assert len(saved) == 1
    stopped_at = saved[0][0]
    assert stopped_at >= 3 and sorted(losses_by_step(run)) == list(range(1, stopped_at + 1))

    common = dict(train=str(train_shard), max_steps=stopped_at + 2, workers=0, checkpoint_every=1000,
                  sample_every=1000, **SMALL)
    train(TrainOptions(out=str(run), **common), log=lambda m: None)
    train(TrainOptions(out=str(tmp_path / "whole"), **common), log=lambda m: None)
    assert losses_by_step(run) == losses_by_step(tmp_path / "whole")
