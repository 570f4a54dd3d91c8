"""Data-parallel training on the CPU: 2 processes with the gloo backend, as torchrun would start them."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from click.testing import CliRunner
from test_model_data import COLOUR_NAMES, one_cpu_thread, squares_shard  # noqa: F401 (an autouse fixture)
from test_train_resume import SMALL, generator_weights, losses_by_step

from cli.model import main
from sv_model import distributed
from sv_model.data import FRAME_STREAM, STORY_STREAM, StreamBatches, stream_batch, stream_loader, to_device
from sv_model.networks import ModelConfig
from sv_model.training_loop import TrainOptions, train
from sv_model.options import Hyperparameters
from sv_model.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]
RANKS = 2


@pytest.fixture(scope="module")
def shard(tmp_path_factory):
    return squares_shard(tmp_path_factory.mktemp("shards") / "train.h5", stories=16, size=16)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def as_torchrun_rank(rank: int, port: int) -> None:
    """The environment that torchrun gives rank ``rank`` of RANKS."""
    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(RANKS), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))


def spawn(function, *args) -> None:
    mp.spawn(function, args=(free_port(), *args), nprocs=RANKS, join=True)


def one_step(rank: int, port: int, shard: Path, out: Path) -> None:
    as_torchrun_rank(rank, port)
    with distributed.session("cpu") as context:
        config = ModelConfig(model="storygan", dataset="squares", frames=4, condition_dim=6,
                             label_names=COLOUR_NAMES, labels_in_condition=False,
                             image_size=16, noise_dim=8, g_width=4, d_width=4)
        torch.manual_seed(rank)  # different weights on each rank before the broadcast
        trainer = Trainer(config, Hyperparameters(), steps_per_epoch=2, device=context.device)
        initial = {n: p.detach().clone() for n, p in trainer.generator.named_parameters()}
        loaders = [stream_loader(shard, stream, 4, seed=0, start=0, workers=0, pin=False, pool_frames=False,
                                 rank=rank, world_size=RANKS) for stream in (STORY_STREAM, FRAME_STREAM)]
        stories, frames = (next(iter(loader)) for loader in loaders)
        trainer.step(to_device(stories, context.device, 16), to_device(frames, context.device, 16))
        torch.save({"initial": initial, "stories": stories["conditions"], **trainer.state_dict()},
                   out / f"rank{rank}.pt")


def test_after_a_step_both_ranks_hold_the_same_parameters(tmp_path, shard):
    spawn(one_step, shard, tmp_path)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(RANKS)]
    assert not torch.equal(ranks[0]["stories"], ranks[1]["stories"])  # each rank trained on its own stories
    for name, net in ranks[0]["networks"].items():
        for key, value in net.items():
            if "running_" in key or "num_batches" in key:
                continue  # batch-norm statistics of each rank's own batch, as with DDP
            assert torch.equal(value, ranks[1]["networks"][name][key]), (name, key)
    for key, value in ranks[0]["initial"].items():  # broadcast: both started from rank 0's weights, then moved
        assert torch.equal(value, ranks[1]["initial"][key])
        assert not torch.equal(value, ranks[0]["networks"]["generator"][key]), key


def test_ranks_read_the_parts_of_the_single_process_batch():
    whole = stream_batch(16, 8, seed=0, stream=STORY_STREAM, k=3)
    parts = [next(iter(StreamBatches(16, 4, 0, STORY_STREAM, start=3, rank=r, world_size=2))) for r in range(2)]
    assert [i for part in parts for _, i in part] == whole.tolist()


def train_ranks(rank: int, port: int, options: dict) -> None:
    as_torchrun_rank(rank, port)
    train(TrainOptions(**options), log=lambda message: None)


def test_a_resumed_two_process_run_equals_an_uninterrupted_one(tmp_path, shard):
    common = dict(train=str(shard), workers=0, checkpoint_every=3, sample_every=3, **SMALL)
    spawn(train_ranks, dict(out=str(tmp_path / "whole"), max_steps=5, **common))
    spawn(train_ranks, dict(out=str(tmp_path / "parts"), max_steps=3, **common))
    spawn(train_ranks, dict(out=str(tmp_path / "parts"), max_steps=5, **common))
    expected, got = losses_by_step(tmp_path / "whole"), losses_by_step(tmp_path / "parts")
    assert sorted(got) == list(range(1, 6)) and got == expected
    final = tmp_path / "whole" / "checkpoints" / "step_000005.pt"
    for name, value in generator_weights(final).items():
        assert torch.equal(value, generator_weights(tmp_path / "parts" / "checkpoints" / "step_000005.pt")[name])
    payload = torch.load(final, weights_only=True)
    assert len(payload["rank_rng"]) == RANKS
    assert not torch.equal(payload["rank_rng"][0]["torch"], payload["rank_rng"][1]["torch"])  # noise per rank
    config = json.loads((tmp_path / "whole" / "config.json").read_text())
    assert config["batches"] == {"story": 4, "image": 8, "steps_per_epoch": 2, "processes": 2,
                                 "effective_story": 8, "effective_image": 16}
    # Rank 0 alone writes the run folder.
    assert len(list((tmp_path / "whole" / "tensorboard").glob("events.out.tfevents.*"))) == 1
    assert sorted(p.name for p in (tmp_path / "whole" / "samples").iterdir()) == ["step_000003.png",
                                                                                 "step_000005.png"]
    # A 2-process run is not resumed by one process: its batches would change.
    result = CliRunner().invoke(main, ["train", str(shard), "--out", str(tmp_path / "whole"), "--max-steps", "6",
                                       "--image-size", "16", "--g-width", "4", "--d-width", "4",
                                       "--story-batch", "4", "--image-batch", "8", "--workers", "0", "--device",
                                       "cpu", "--checkpoint-every", "3", "--sample-every", "3", "--log-every", "1",
                                       "--no-progress"])
    assert result.exit_code == 2 and "trained by 2 process(es), now 1" in result.output


def test_gpus_launches_torchrun_with_the_same_options(tmp_path, shard):
    run = tmp_path / "run"
    args = [sys.executable, "-m", "cli.model", "train", str(shard), "--out", str(run), "--max-steps", "2",
            "--image-size", "16", "--g-width", "4", "--d-width", "4", "--story-batch", "3", "--image-batch", "8",
            "--workers", "0", "--no-progress", "--device", "cpu", "--gpus", "2", "--no-labels-in-condition"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    process = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stderr
    config = json.loads((run / "config.json").read_text())
    assert config["options"]["story_batch"] == 3 and config["options"]["labels_in_condition"] is False
    assert config["batches"]["processes"] == 2 and config["batches"]["effective_story"] == 6
    assert (run / "checkpoints" / "step_000002.pt").is_file()
    assert "effective batches of 6 stories and 16 frames" in process.stdout


def test_more_gpus_than_the_machine_has_is_an_error(tmp_path, shard):
    available = torch.cuda.device_count()
    n = max(2, available + 1)
    result = CliRunner().invoke(main, ["train", str(shard), "--out", str(tmp_path / "run"), "--gpus", str(n)])
    assert result.exit_code == 2
    assert f"--gpus {n}: this machine has {available} CUDA device(s) (--device cpu --gpus {n} runs" in result.output
