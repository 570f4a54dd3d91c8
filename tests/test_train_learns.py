"""Evidence that StoryGAN learns: a short CPU run on the tiny real CLEVR-SV build draws frames measurably closer to
the ground truth of the same conditions than the same networks did at step 0."""
import json
from pathlib import Path

import torch
from test_model_data import one_cpu_thread  # noqa: F401 (an autouse fixture)

from sv_data.shards import ShardReader
from sv_model.data import resize
from sv_model.evaluation.image_metrics import ssim_per_frame
from sv_model.generate import StoryGenerator, load_generator
from sv_model.networks import Networks
from sv_model.training_loop import TrainOptions, train

STEPS, SIZE = 300, 32  # frames resized from 64x64 to 32x32: a quarter of the work, and the resize path is tested


def per_pixel_error(generator: StoryGenerator, shard: Path) -> float:
    """Mean squared error (0..255 scale) between the stories drawn for a shard's conditions and its real frames."""
    with ShardReader(shard) as reader:
        rows = range(len(reader))
        real = resize(torch.from_numpy(reader.read("images", rows)).permute(0, 1, 4, 2, 3).float(), SIZE).round()
        fake = generator.generate(reader.read("conditions", rows), reader.read("labels", rows), seed=0)
    return float((torch.from_numpy(fake).permute(0, 1, 4, 2, 3).float() - real).pow(2).mean())


def test_a_short_run_draws_frames_closer_to_the_real_ones_than_at_step_0(tiny_clevr, tmp_path):
    train_shard, test_shard = tiny_clevr / "train.h5", tiny_clevr / "test.h5"
    result = train(TrainOptions(
        train=str(train_shard), val=str(test_shard), out=str(tmp_path / "run"), max_steps=STEPS, image_size=SIZE,
        device="cpu", g_width=8, d_width=8, story_batch=8, image_batch=16, workers=0, checkpoint_every=STEPS // 2,
        sample_every=STEPS, log_every=25, progress=False,
    ), log=lambda m: None)
    trained = load_generator(result.checkpoint, device="cpu")
    torch.manual_seed(0)  # train() seeds with --seed 0 and builds the networks first: these are its step-0 weights
    untrained = StoryGenerator(Networks.build(trained.config).generator, torch.device("cpu"), Path("step 0"), 0)

    for shard, factor in ((train_shard, 0.75), (test_shard, 0.9)):
        before, after = per_pixel_error(untrained, shard), per_pixel_error(trained, shard)
        assert after < factor * before, f"{shard.name}: per-pixel error {before:.0f} at step 0, {after:.0f} after"

    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss/g"] for r in rows if "loss/g" in r]
    assert len(losses) == STEPS // 25 and all(map(torch.isfinite, torch.tensor(losses)))
    assert [r["step"] for r in rows if "val/ssim" in r] == [STEPS // 2, STEPS]
    assert (tmp_path / "run" / "checkpoints" / "best.pt").is_file()
    # The validation metric is the pinned SSIM of the test stories drawn with fixed noise.
    with ShardReader(test_shard) as reader:
        real = resize(torch.from_numpy(reader.read("images", range(8))).permute(0, 1, 4, 2, 3).float(), SIZE)
        drawn = trained.generate(reader.read("conditions", range(8)), reader.read("labels", range(8)), seed=1234)
    ssim = float(ssim_per_frame(torch.from_numpy(drawn).permute(0, 1, 4, 2, 3), real.round().clamp(0, 255)).mean())
    assert abs(ssim - [r["val/ssim"] for r in rows if "val/ssim" in r][-1]) < 1e-4
