"""The training loop: StoryGAN on a shard, with resuming, logging, samples, validation and checkpoints.

    sv-model train TRAIN.h5 --out RUN [options]      # python -m cli.model train ... is the same

The run folder (:mod:`sv_model.run_folder`) holds ``config.json``, ``checkpoints/`` (``step_XXXXXX.pt``, the
newest few, and ``best.pt``), ``tensorboard/``, ``metrics.jsonl`` (the logged statistics, one JSON object per line)
and ``samples/step_XXXXXX.png``. Running again with the same folder resumes from its newest checkpoint.

Under torchrun (``torchrun --nproc-per-node N -m cli.model train ...``) it trains data-parallel: each rank reads
its part of every global batch, gradients are averaged over the ranks (see :mod:`sv_model.distributed`), and only
rank 0 writes the run folder.
"""
from __future__ import annotations

import math
import random
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from sv_data.errors import SvkitError
from sv_data.shards import ShardInfo
from sv_data.torch_data import StoryDataset
from sv_model import checkpoint, distributed
from sv_model.data import (
    FRAME_STREAM,
    STORY_STREAM,
    check_same_kind,
    default_workers,
    open_training_shard,
    resize,
    shard_story_kind,
    stream_loader,
    to_device,
    uses_pool_frames,
)
from sv_model.evaluation.evaluators import F1_SCORE, Evaluator
from sv_model.evaluation.packaged import NO_EVALUATOR, SHA256, choose_evaluator, names_packaged, packaged_for
from sv_model.evaluation.floor import NO_FLOOR, derangement
from sv_model.evaluation.image_metrics import SSIM_IMPLEMENTATION, ssim_per_frame
from sv_model.generate import draw_stories, save_story_sheet
from sv_model.networks import ModelConfig
from sv_model.options import COMPILE_MODE, DEFAULT_EPOCHS, DEFAULT_IMAGE_SIZE, TrainOptions
from sv_model.run_folder import RunFolder
from sv_model.trainer import Trainer

SAMPLE_SEED = 1234  # the fixed noise of samples and validation: curves then compare checkpoints, not noise draws


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    total_steps: int
    checkpoint: Path | None
    best_metric: float | None  # the best validation metric (evaluator F1 with --evaluator, else SSIM)
    stats: dict = field(default_factory=dict)


class _StopRequest:
    """Ctrl-C asks the loop to stop after the step in progress (so that the checkpoint holds a whole step); a
    second Ctrl-C interrupts at once."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _evenly_spaced(n: int, k: int) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, num=min(k, n)).round().astype(np.int64))


def _read_stories(path: Path, indices: np.ndarray) -> dict:
    return StoryDataset(path).batch(indices)


class _FixedStories:
    """Stories read once, drawn again at each validation or sample with the same noise."""

    def __init__(self, path: Path, indices: np.ndarray, image_size: int, device: torch.device):
        stories = _read_stories(path, indices)
        self.conditions, self.labels = stories["conditions"], stories["labels"]
        # Real frames are compared at the model's size, resized as the training batches are.
        real = resize(stories["images"].to(device).float(), image_size)
        self.real = real.round().clamp(0, 255).to(torch.uint8)

    def __len__(self) -> int:
        return len(self.conditions)

    def draw(self, trainer: Trainer, batch_size: int, fed: np.ndarray | None = None) -> torch.Tensor:
        """The stories drawn with their own conditions, or with those of stories ``fed`` (one per story, for the
        floor); either way story i gets the same noise."""
        rows = slice(None) if fed is None else torch.from_numpy(fed)
        return draw_stories(trainer.generator, self.conditions[rows], self.labels[rows], SAMPLE_SEED, trainer.device,
                            batch_size)

    def evaluated(self, evaluator: Evaluator, frames: torch.Tensor) -> dict[str, float]:
        """The evaluator's scores of uint8 frames (n, T, 3, S, S) against these stories' own conditions and labels."""
        pixels = frames.permute(0, 1, 3, 4, 2).cpu().numpy()
        return evaluator.tally(pixels, self.conditions.numpy(), self.labels.numpy()).scores()


def _validation_metric(options: TrainOptions, val_info: ShardInfo | None) -> str | None:
    """What picks best.pt, in words (config.json)."""
    if val_info is None:
        return None
    choice = options.evaluator if options.evaluator is not None else packaged_for(val_info)
    if choice is None or choice == NO_EVALUATOR:
        return f"mean SSIM over frames ({SSIM_IMPLEMENTATION})"
    packaged = names_packaged(choice)
    which = f"svkit's packaged evaluator {choice} ({SHA256[choice]})" if packaged else f"the evaluator in {choice}"
    return f"F1 of {which} (object F1 on CLEVR-SV, character F1 otherwise)"


def model_config_for(options: TrainOptions, info: ShardInfo) -> ModelConfig:
    """The networks' sizes for the options and the training shard."""
    spec = info.spec
    labels_in_condition = (
        spec.labels_in_condition if options.labels_in_condition is None else options.labels_in_condition
    )
    try:
        return ModelConfig(
            model=options.model,
            dataset=spec.dataset,
            condition_kind=spec.condition_kind,
            frames=spec.frames_per_story,
            condition_dim=spec.condition_dim,
            label_names=tuple(spec.label_names),
            labels_in_condition=labels_in_condition,
            image_size=options.image_size or DEFAULT_IMAGE_SIZE,
            noise_dim=options.noise_dim,
            g_width=options.g_width,
            d_width=options.d_width,
            story_dim=options.story_dim,
        )
    except ValueError as exc:  # the options were checked: what is left is a shard whose frames have no condition
        raise SvkitError(f"{info.path}: {exc}") from None


@dataclass(frozen=True)
class Batches:
    """Batch sizes per process and the length of the run, from the options and the shard."""

    story: int
    image: int
    steps_per_epoch: int
    processes: int
    total_steps: int

    @classmethod
    def plan(cls, options: TrainOptions, info: ShardInfo, processes: int) -> "Batches":
        n_stories = info.num_stories
        if n_stories < 2 * processes:
            raise SvkitError(
                f"{info.path}: {n_stories} stories are too few; training needs at least 2 per process (the "
                "wrong-condition term pairs each story with another one's condition)"
            )
        # Per-process batches; the processes together train on batches ``processes`` times as large.
        story = min(options.story_batch, n_stories // processes)
        image = min(options.image_batch, n_stories * info.frames_per_story // processes)
        steps_per_epoch = n_stories // (story * processes)
        total_steps = options.max_steps or (options.epochs or DEFAULT_EPOCHS) * steps_per_epoch
        return cls(story, image, steps_per_epoch, processes, total_steps)

    def to_config(self) -> dict:
        """config.json's ``batches``."""
        return {"story": self.story, "image": self.image, "steps_per_epoch": self.steps_per_epoch,
                "processes": self.processes, "effective_story": self.story * self.processes,
                "effective_image": self.image * self.processes}


@dataclass
class LoopSetup:
    """Everything the loop runs with, checked and prepared by :func:`train`."""

    options: TrainOptions
    context: distributed.Context
    info: ShardInfo
    run_folder: RunFolder
    trainer: Trainer
    batches: Batches
    val_stories: _FixedStories | None  # rank 0 only, as the next two
    samples: _FixedStories | None
    evaluator: Evaluator | None
    log: Callable[[str], None]


def train(options: TrainOptions, log=print) -> TrainResult:
    """Train (or resume training) as the options say; returns where it stopped. Options and shards are checked
    before the run folder is created: a refused start leaves no folder behind (and an existing one as it was)."""
    options.check()
    with distributed.session(options.device) as context:
        return _train(options, context, log if context.is_main else lambda message: None)


def _rank_seed(seed: int, rank: int) -> int:
    return int(np.random.SeedSequence([seed, rank]).generate_state(1)[0])


def _open_shards(options: TrainOptions, context: distributed.Context) -> tuple[ShardInfo, ShardInfo | None,
                                                                               Evaluator | None]:
    """The training shard, the validation shard and rank 0's evaluator, each checked against the training shard."""
    info = open_training_shard(options.train, options.image_size)
    val_info = evaluator = None
    if options.val is not None:
        val_info = open_training_shard(options.val, options.image_size, role="validation")
        check_same_kind(val_info, shard_story_kind(info), f"the training shard {info.path}")
    if val_info is not None and context.is_main:
        evaluator = choose_evaluator(options.evaluator, val_info, device=str(context.device))
    return info, val_info, evaluator


def _train(options: TrainOptions, context: distributed.Context, log) -> TrainResult:
    info, val_info, evaluator = _open_shards(options, context)
    device, ranks = context.device, context.world_size
    model_config = model_config_for(options, info)
    batches = Batches.plan(options, info, ranks)
    run = RunFolder(options)
    config = {
        "options": asdict(options),
        "model": model_config.to_dict(),
        "shard_kind": {"dataset": info.spec.dataset, "num_stories": info.num_stories,
                       "image_size": list(info.image_size)},
        "batches": batches.to_config(),
        "total_steps": batches.total_steps,
        "validation_metric": _validation_metric(options, val_info),
    }
    run.check_config(config)

    _seed_everything(options.seed)
    compiled = options.compiles(device.type)
    trainer = Trainer(model_config, options.hyperparameters(), batches.steps_per_epoch, device,
                      COMPILE_MODE if compiled else None)
    if ranks > 1:
        _seed_everything(_rank_seed(options.seed, context.rank))  # same weights (broadcast), other noise per rank
    start, best_metric = 0, None
    log(options.recipe(model_config.story_dim))
    latest = run.checkpoints.latest()
    if latest is not None:
        payload = checkpoint.load(latest)
        trainer.load_state_dict(payload)
        start, best_metric = int(payload["step"]), payload.get("best_metric")
        checkpoint.restore_rng(payload["rank_rng"][context.rank] if ranks > 1 else payload["rng"])
        log(f"resuming {run.dir} from {latest.name} (step {start} of {batches.total_steps})")
    else:
        log(f"run folder: {run.dir} (new; resume it with --out {run.dir})")
    log(f"training {model_config.model} on {info.path} ({info.num_stories} stories of {info.frames_per_story} frames, "
        f"{batches.steps_per_epoch} steps per epoch) on {device}, "
        + (f"compiled (torch.compile, mode {COMPILE_MODE}: the first steps compile it)" if compiled else "eager"))
    if ranks > 1:
        log(f"{ranks} processes of {batches.story} stories and {batches.image} frames: effective batches of "
            f"{batches.story * ranks} stories and {batches.image * ranks} frames")
    if batches.story < options.story_batch or batches.image < options.image_batch:
        log(f"note: the shard is small; batches of {batches.story} stories and {batches.image} frames per process")
    if context.is_main:
        run.write_config(config)
        run.truncate_metrics(start)

    if start >= batches.total_steps:
        log(f"{run.dir}: already trained for {start} steps (of {batches.total_steps}); nothing to do")
        return TrainResult(run.dir, start, batches.total_steps, latest, best_metric)

    val_stories = samples = None
    if context.is_main:  # validation and sample sheets are drawn by rank 0 alone
        fixed_source = (val_info or info).path
        val_stories = (
            _FixedStories(val_info.path, _evenly_spaced(val_info.num_stories, options.val_stories),
                          model_config.image_size, device)
            if val_info else None
        )
        sample_indices = _evenly_spaced(
            val_info.num_stories if val_info else info.num_stories, options.sample_stories
        )
        samples = _FixedStories(fixed_source, sample_indices, model_config.image_size, device)

    setup = LoopSetup(options, context, info, run, trainer, batches, val_stories, samples, evaluator, log)
    return _Loop(setup, best_metric).run(start)


class _Loop:
    def __init__(self, setup: LoopSetup, best_metric: float | None):
        self.setup, self.best_metric = setup, best_metric
        self.options, self.trainer, self.run_folder = setup.options, setup.trainer, setup.run_folder
        self.device, self.main = setup.context.device, setup.context.is_main
        self.last_checkpoint: Path | None = setup.run_folder.checkpoints.latest()

    def _loaders(self, start: int):
        workers = default_workers() if self.options.workers is None else self.options.workers
        pin = self.device.type == "cuda"
        pool = uses_pool_frames(self.setup.info)
        common = dict(seed=self.options.seed, start=start, workers=workers, pin=pin, pool_frames=pool,
                      rank=self.setup.context.rank, world_size=self.setup.context.world_size)
        stories = stream_loader(self.setup.info.path, STORY_STREAM, self.setup.batches.story, **common)
        frames = stream_loader(self.setup.info.path, FRAME_STREAM, self.setup.batches.image, **common)
        return iter(stories), iter(frames)

    def _validate(self) -> dict[str, float]:
        """The validation scores: ``val/ssim``, with an evaluator every score of it (``val/object_f1``, ...) and
        ``val/evaluator_f1``, the F1 that picks best.pt; each but consistency beside its floor (``val/ssim_floor``,
        ...: the stories drawn with the same noise and the conditions of other validation stories)."""
        fixed, evaluator = self.setup.val_stories, self.setup.evaluator
        batch_size = self.options.story_batch * 4
        drawn = {"": fixed.draw(self.trainer, batch_size)}
        if len(fixed) >= 2:  # one story has no other to take conditions from
            drawn["_floor"] = fixed.draw(self.trainer, batch_size, derangement(len(fixed), SAMPLE_SEED))
        scores = {}
        for suffix, generated in drawn.items():
            scores[f"val/ssim{suffix}"] = float(ssim_per_frame(generated, fixed.real).mean())
            if evaluator is not None:
                evaluated = fixed.evaluated(evaluator, generated)
                scores.update({f"val/{name}{suffix}": value for name, value in evaluated.items()
                               if not (suffix and name in NO_FLOOR)})
        if evaluator is not None:
            scores["val/evaluator_f1"] = scores[f"val/{F1_SCORE[evaluator.kind]}"]
        return scores

    def _log_ceilings(self, writer) -> None:
        """The evaluator's scores of the real validation frames, the best a checkpoint can reach: logged at step 0,
        as ``val/NAME_ceiling``, once for the whole run."""
        fixed = self.setup.val_stories
        scores = fixed.evaluated(self.setup.evaluator, fixed.real)
        ceilings = {f"val/{name}_ceiling": value for name, value in scores.items()}
        for name, value in ceilings.items():
            writer.add_scalar(name, value, 0)
        self.run_folder.append_metrics({"step": 0, **ceilings})
        self.setup.log("validation ceilings (the evaluator on the real validation frames): "
                       + ", ".join(f"{name} {value:.4f}" for name, value in scores.items()))

    def _stop_if_diverged(self, step: int, statistics: dict[str, float] | None = None) -> None:
        """A loss or weight that turned NaN or infinite never recovers: stop before a checkpoint or sample keeps
        it. Every rank sees the same averaged statistics and weights, so all of them stop together."""
        broken = [name for name, value in (statistics or {}).items() if not math.isfinite(value)]
        if not broken and self.trainer.weights_are_finite():
            return
        what = f"{broken[0]} is {statistics[broken[0]]}" if broken else "the networks' weights are not finite"
        kept = f"the last good checkpoint is {self.last_checkpoint}" if self.last_checkpoint else "no checkpoint kept"
        raise SvkitError(f"step {step}: training diverged ({what}); {kept}; a lower --lr may help")

    def _write_samples(self, step: int) -> None:
        self._stop_if_diverged(step)
        if not self.main:
            return
        generated = self.setup.samples.draw(self.trainer, self.options.story_batch)
        save_story_sheet(
            self.run_folder.samples / f"step_{step:06d}.png",
            generated.permute(0, 1, 3, 4, 2).cpu().numpy(),
            self.setup.samples.real.permute(0, 1, 3, 4, 2).cpu().numpy(),
        )

    def _save(self, step: int, writer) -> None:
        """Rank 0 validates and writes the checkpoint, with every rank's random state; the others wait for it."""
        self._stop_if_diverged(step)
        rank_rng = distributed.gather(checkpoint.capture_rng())
        if self.main:
            self._write_checkpoint(step, writer, rank_rng)
        else:
            self.last_checkpoint = self.run_folder.checkpoints.path_for(step)
        distributed.barrier()

    def _write_checkpoint(self, step: int, writer, rank_rng: list[dict]) -> None:
        metric = None
        if self.setup.val_stories is not None:
            scores = self._validate()
            for name, value in scores.items():
                writer.add_scalar(name, value, step)
            self.run_folder.append_metrics({"step": step, **scores})
            metric = scores.get("val/evaluator_f1", scores["val/ssim"])  # what picks best.pt
        best = metric is not None and (self.best_metric is None or metric > self.best_metric)
        if best:
            self.best_metric = metric
        payload = {
            "format": checkpoint.FORMAT,
            "version": checkpoint.VERSION,
            "step": step,
            "epoch": step // self.setup.batches.steps_per_epoch,
            "metric": metric,
            "best_metric": self.best_metric,
            "model": self.trainer.config.to_dict(),
            "options": asdict(self.options),
            "shard": {"path": str(self.setup.info.path), "dataset": self.setup.info.spec.dataset,
                      "image_size": list(self.setup.info.image_size), "num_stories": self.setup.info.num_stories},
            "rng": rank_rng[0],
            **({"rank_rng": rank_rng} if len(rank_rng) > 1 else {}),
            **self.trainer.state_dict(),
        }
        self.last_checkpoint = self.run_folder.checkpoints.save(payload, best=best)

    def run(self, start: int) -> TrainResult:
        from torch.utils.tensorboard import SummaryWriter
        from tqdm import tqdm

        options, trainer, total = self.options, self.trainer, self.setup.batches.total_steps
        story_iter, frame_iter = self._loaders(start)
        writer = (SummaryWriter(self.run_folder.dir / "tensorboard", purge_step=start if start else None)
                  if self.main else None)
        if self.main and start == 0 and self.setup.evaluator is not None:
            self._log_ceilings(writer)
        progress = tqdm(total=total, initial=start, unit="step", dynamic_ncols=True,
                        disable=not (options.progress and self.main), file=sys.stderr)
        step, sums, count, last_stats = start, {}, 0, {}
        window_start, data_time = time.perf_counter(), 0.0
        phase_times: dict[str, float] = {}  # of the window's last step, timed exactly (see below)
        deadline = None if options.max_minutes is None else time.monotonic() + 60 * options.max_minutes
        stopped_early = interrupted = False
        try:
            with _StopRequest() as stop:
                while step < total and not distributed.any_rank(
                        stop.requested or (deadline is not None and time.monotonic() >= deadline), self.device):
                    fetch = time.perf_counter()
                    try:
                        stories = to_device(next(story_iter), self.device, trainer.config.image_size)
                        frames = to_device(next(frame_iter), self.device, trainer.config.image_size)
                    except (RuntimeError, OSError):
                        # Ctrl-C also reached the loader's workers: one died (RuntimeError), or died while handing
                        # over a batch, whose shared memory then cannot be fetched (OSError).
                        if stop.requested:
                            break
                        raise
                    data_time += time.perf_counter() - fetch
                    # On a GPU the phases can only be timed by waiting for it between them: do that on the last
                    # step of each log window alone, so that the figures are exact and the GPU's queue stays full.
                    timed = (step + 1) % options.log_every == 0 or step + 1 == total
                    stats, phases = trainer.step(stories, frames, sync=timed)
                    step += 1
                    if timed:
                        phase_times = phases
                    for key, value in stats.items():
                        sums[key] = sums.get(key, 0.0) + value
                    count += 1
                    if step % options.log_every == 0 or step == total:
                        elapsed = time.perf_counter() - window_start
                        last_stats = self._log(writer, progress, step, sums, count, elapsed, data_time, phase_times)
                        sums, count, window_start, data_time = {}, 0, time.perf_counter(), 0.0
                        phase_times = {}
                    if step % options.sample_every == 0:
                        self._write_samples(step)
                    if step % options.checkpoint_every == 0 or step == total:
                        self._save(step, writer)
                    progress.update(1)
                stopped_early = step < total
                # Not the clock, so Ctrl-C: on this process or on another rank, which all ranks stop for alike.
                interrupted = stopped_early and not (deadline is not None and time.monotonic() >= deadline)
            if stopped_early and count:
                self._log(writer, progress, step, sums, count, time.perf_counter() - window_start, data_time,
                          phase_times)
            if stopped_early and step > start and step % options.checkpoint_every:
                self._save(step, writer)  # between two steps, so the checkpoint holds whole steps only
        finally:
            progress.close()
            if writer is not None:
                writer.close()
            del story_iter, frame_iter
        if step % options.sample_every and not interrupted:
            self._write_samples(step)
        if interrupted:
            self.setup.log(f"\nstopped at step {step}; checkpoint {self.last_checkpoint}; run the same command to resume")
            raise KeyboardInterrupt
        ended = (f"stopped at step {step} of {total}: --max-minutes {options.max_minutes:g} have passed (the same "
                 "command trains on)" if stopped_early else f"finished {step} steps")
        self.setup.log(f"{ended}; checkpoint {self.last_checkpoint}"
                       + (f"; best validation {self._metric_name} {self.best_metric:.4f}"
                          if self.best_metric is not None else ""))
        return TrainResult(self.run_folder.dir, step, total, self.last_checkpoint, self.best_metric, stats=last_stats)

    @property
    def _metric_name(self) -> str:
        return "evaluator F1" if self.setup.evaluator is not None else "SSIM"

    def _log(self, writer, progress, step, sums, count, elapsed, data_time, phase_times) -> dict:
        values = {k: float(v) / count for k, v in sums.items()}  # one device sync per log, not per step
        values = distributed.mean_over_ranks(values, self.device)  # the losses of the whole global batch
        self._stop_if_diverged(step, values)
        values.update({
            "lr": self.trainer.learning_rate,
            "time/step": elapsed / count,
            "time/data": data_time / count,
            **{f"time/{phase}": seconds for phase, seconds in phase_times.items()},
            "throughput/stories_per_s": count * self.setup.batches.story * self.setup.context.world_size / elapsed,
            "epoch": step / self.setup.batches.steps_per_epoch,
        })
        if not self.main:
            return values
        for key, value in values.items():
            writer.add_scalar(key, value, step)
        self.run_folder.append_metrics({"step": step, **values})
        progress.set_postfix(
            g=f"{values['loss/g']:.3f}", d=f"{values['loss/d_image']:.3f}",
            stories_s=f"{values['throughput/stories_per_s']:.1f}", refresh=False,
        )
        return values
