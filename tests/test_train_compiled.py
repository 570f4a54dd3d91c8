"""The compiled training step (``--compile``), on the CPU as CI runs it: torch.compile wraps the same phases as the
eager step, so it gives the same losses up to the order of float additions, and resuming stays exact.

Compiling the two phases at these tiny sizes takes about 100 s on a loaded 2-core machine when inductor's cache (in
the temporary folder) is cold, a few seconds when it is warm; the tests of this file share one compilation."""
import pytest
import torch
from click.testing import CliRunner
from test_model_data import one_cpu_thread  # noqa: F401 (an autouse fixture)
from test_train_resume import SMALL, generator_weights, losses_by_step, shards  # noqa: F401 (a fixture)

from cli.model import main
from sv_model.training_loop import TrainOptions, train

# Steps compared: enough for the optimizer's updates to feed back into the losses, few enough that training has
# not yet amplified rounding differences (wider networks amplify them sooner: at widths 32 the losses of eager runs
# on one and on two threads are about 1e-4 apart by the second step, 1e-2 by the seventh, and compiled runs alike).
STEPS = 5
# Difference allowed between compiled and eager losses, as inductor fuses and reorders float32 sums: relative,
# and absolute for the KL term, which is about 1e-6 itself. Measured here: under 1e-6 relative, 2e-9 absolute.
LOSS_TOLERANCE, KL_TOLERANCE = 1e-4, 1e-8


def loss_curves(run) -> dict[int, dict[str, float]]:
    # Accuracies are left out: a logit within rounding of zero may land on either side.
    return {step: {k: v for k, v in row.items() if k.startswith("loss/")} for step, row in losses_by_step(run).items()}


def test_the_compiled_step_gives_the_eager_losses(tmp_path, shards):
    train_shard, _ = shards
    common = dict(train=str(train_shard), max_steps=STEPS, workers=0, checkpoint_every=STEPS, sample_every=STEPS,
                  **SMALL)
    logs = []
    torch._dynamo.utils.counters.clear()
    train(TrainOptions(out=str(tmp_path / "eager"), **common), log=lambda m: None)
    train(TrainOptions(out=str(tmp_path / "compiled"), compile=True, **common), log=logs.append)
    assert any(line.endswith("compiled (torch.compile, mode reduce-overhead: the first steps compile it)")
               for line in logs), logs
    # Each phase is one graph: the GRU is traced into it rather than breaking it.
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 2
    assert not torch._dynamo.utils.counters["graph_break"]

    eager, compiled = loss_curves(tmp_path / "eager"), loss_curves(tmp_path / "compiled")
    assert sorted(compiled) == sorted(eager) == list(range(1, STEPS + 1))
    for step, losses in eager.items():
        assert set(compiled[step]) == set(losses) and len(losses) >= 8
        for name, value in losses.items():
            assert compiled[step][name] == pytest.approx(value, rel=LOSS_TOLERANCE, abs=KL_TOLERANCE), (step, name)


def test_a_resumed_compiled_run_equals_an_uninterrupted_one(tmp_path, shards):
    train_shard, _ = shards
    common = dict(train=str(train_shard), workers=0, checkpoint_every=2, sample_every=100, **SMALL)
    whole = train(TrainOptions(out=str(tmp_path / "whole"), max_steps=STEPS, compile=True, **common),
                  log=lambda m: None)
    parts = tmp_path / "parts"
    first = CliRunner().invoke(main, [
        "train", str(train_shard), "--out", str(parts), "--max-steps", "3", "--compile", "--device", "cpu",
        "--image-size", "16", "--g-width", "4", "--d-width", "4", "--story-batch", "4", "--image-batch", "8",
        "--workers", "0", "--checkpoint-every", "2", "--sample-every", "100", "--log-every", "1", "--no-progress"])
    assert first.exit_code == 0, first.output
    assert "compiled (torch.compile" in first.output
    second = train(TrainOptions(out=str(parts), max_steps=STEPS, compile=True, **common), log=lambda m: None)
    assert second.step == whole.step == STEPS
    assert losses_by_step(parts) == losses_by_step(tmp_path / "whole")
    for name, value in generator_weights(whole.checkpoint).items():
        assert torch.equal(value, generator_weights(second.checkpoint)[name]), name


def test_the_step_compiles_by_default_on_a_gpu_only():
    default = TrainOptions("train.h5", "run")
    assert default.compiles("cuda") and not default.compiles("cpu")
    assert TrainOptions("train.h5", "run", compile=True).compiles("cpu")
    assert not TrainOptions("train.h5", "run", compile=False).compiles("cuda")
