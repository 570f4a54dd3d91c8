"""Training StoryGAN on a shard: the run folder, resuming, logging, samples, validation and checkpoints.

    python -m sv_model train TRAIN.h5 --out RUN [options]      # the same as `sv-model train`

A run folder holds ``config.json``, ``checkpoints/`` (``step_XXXXXX.pt``, the newest few, and ``best.pt``),
``tensorboard/``, ``metrics.jsonl`` (the logged statistics, one JSON object per line) and
``samples/step_XXXXXX.png``. Running again with the same folder resumes from its newest checkpoint.

Under torchrun (``torchrun --nproc-per-node N -m sv_model.train ...``) it trains data-parallel: each rank reads its
part of every global batch, gradients are averaged over the ranks (see :mod:`sv_model.distributed`), and only rank
0 writes the run folder.
"""
from __future__ import annotations

import json
import os
import random
import signal
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

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
    labels_belong_in_condition,
    open_training_shard,
    resize,
    stream_loader,
    to_device,
    uses_pool_frames,
)
from sv_model.evaluation.evaluators import evaluator_f1, load_evaluator
from sv_model.evaluation.image_metrics import SSIM_IMPLEMENTATION, ssim_per_frame
from sv_model.generate import draw_stories, save_story_sheet
from sv_model.networks import ModelConfig
from sv_model.training_loop import Hyperparameters, Trainer

DEFAULT_EPOCHS = 120
SAMPLE_SEED = 1234  # the fixed noise of samples and validation: curves then compare checkpoints, not noise draws


@dataclass
class TrainOptions:
    """Everything ``sv-model train`` takes. See docs/training.md for what each option does."""

    train: str
    out: str
    val: str | None = None
    evaluator: str | None = None  # a folder of sv-model train-evaluator: its F1 on --val picks best.pt
    epochs: int | None = None  # DEFAULT_EPOCHS when max_steps is not given either
    max_steps: int | None = None
    device: str = "auto"
    model: str = "storygan"
    image_size: int | None = None
    g_width: int = 64
    d_width: int = 64
    noise_dim: int = 100
    story_batch: int = 24
    image_batch: int = 60
    lr: float = 2e-4
    lr_decay_epochs: int = 20
    g_updates: int = 2
    kl_weight: float = 1.0
    label_weight: float = 1.0
    labels_in_condition: bool | None = None  # None: as the shard says (Pororo-SV: yes)
    seed: int = 0
    workers: int | None = None  # per stream; None: default_workers()
    checkpoint_every: int = 500
    sample_every: int = 500
    log_every: int = 10
    keep: int = 3
    val_stories: int = 256
    sample_stories: int = 4
    progress: bool = True

    def hyperparameters(self) -> Hyperparameters:
        return Hyperparameters(self.lr, self.lr_decay_epochs, self.g_updates, self.kl_weight, self.label_weight)


# Options that may differ when a run is resumed: how long, where, how often to log and save; not what is trained.
RESUMABLE_CHANGES = frozenset({
    "train", "val", "out", "epochs", "max_steps", "device", "workers", "checkpoint_every", "sample_every",
    "log_every", "keep", "val_stories", "sample_stories", "progress",
})


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


def _write_json(path: Path, value: dict) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class _Run:
    """The run folder and everything the loop writes into it."""

    def __init__(self, options: TrainOptions):
        self.options = options
        self.dir = Path(options.out)
        if self.dir.exists() and not self.dir.is_dir():
            raise SvkitError(f"{self.dir}: --out must be a folder")
        self.config_path = self.dir / "config.json"
        self.checkpoints = checkpoint.CheckpointFolder(self.dir / "checkpoints", options.keep)
        self.samples = self.dir / "samples"
        self.metrics_path = self.dir / "metrics.jsonl"

    def check_config(self, config: dict) -> None:
        """A resumed run must have been started with the same training options, on as many processes."""
        if self.config_path.exists():
            stored = json.loads(self.config_path.read_text())
            changed = [
                key
                for key in sorted({*stored["options"], *config["options"]} - RESUMABLE_CHANGES)
                if stored["options"].get(key) != config["options"].get(key)
            ]
            if changed:
                key = changed[0]
                raise SvkitError(
                    f"{self.config_path}: this run was started with {key}={stored['options'].get(key)!r}, now "
                    f"{key}={config['options'].get(key)!r}; use the same options to resume, or another --out"
                )
            for what in ("model", "shard_kind"):
                if stored[what] != config[what]:
                    raise SvkitError(
                        f"{self.config_path}: this run was started on other data ({what} {stored[what]} vs "
                        f"{config[what]}); use another --out"
                    )
            processes = stored["batches"].get("processes", 1), config["batches"]["processes"]
            if processes[0] != processes[1]:
                raise SvkitError(
                    f"{self.config_path}: this run was trained by {processes[0]} process(es), now {processes[1]}; "
                    f"the batches depend on it: resume with {processes[0]}, or use another --out"
                )

    def write_config(self, config: dict) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        _write_json(self.config_path, config)

    def truncate_metrics(self, step: int) -> None:
        """Lines logged after the checkpoint we resume from belong to steps that will be run again."""
        if not self.metrics_path.exists():
            return
        kept = [line for line in self.metrics_path.read_text().splitlines() if json.loads(line)["step"] <= step]
        self.metrics_path.write_text("".join(line + "\n" for line in kept))

    def append_metrics(self, row: dict) -> None:
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(row, sort_keys=True) + "\n")


def _evenly_spaced(n: int, k: int) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, num=min(k, n)).round().astype(np.int64))


def _read_stories(path: Path, indices: np.ndarray) -> dict:
    samples = StoryDataset(path).__getitems__(indices)
    return {key: torch.stack([s[key] for s in samples]) for key in ("images", "conditions", "labels")}


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

    def draw(self, trainer: Trainer, batch_size: int) -> torch.Tensor:
        return draw_stories(trainer.generator, self.conditions, self.labels, SAMPLE_SEED, trainer.device, batch_size)


def _validation_metric(options: TrainOptions, val_info: ShardInfo | None) -> str | None:
    """What picks best.pt, in words (config.json)."""
    if val_info is None:
        return None
    if options.evaluator is not None:
        return f"F1 of the evaluator in {options.evaluator} (object F1 on CLEVR-SV, character F1 otherwise)"
    return f"mean SSIM over frames ({SSIM_IMPLEMENTATION})"


def _model_config(options: TrainOptions, info: ShardInfo) -> ModelConfig:
    spec = info.spec
    labels_in_condition = (
        labels_belong_in_condition(info) if options.labels_in_condition is None else options.labels_in_condition
    )
    try:
        return ModelConfig(
            model=options.model,
            dataset=spec.dataset,
            frames=spec.frames_per_story,
            condition_dim=spec.condition_dim,
            label_names=tuple(spec.label_names),
            labels_in_condition=labels_in_condition,
            image_size=options.image_size or 64,
            noise_dim=options.noise_dim,
            g_width=options.g_width,
            d_width=options.d_width,
        )
    except ValueError as exc:
        raise SvkitError(f"{info.path}: {exc}") from None


def _check_options(options: TrainOptions) -> None:
    if options.epochs is not None and options.max_steps is not None:
        raise SvkitError("give --epochs or --max-steps, not both")
    positive = ("story_batch", "image_batch", "g_updates", "lr_decay_epochs", "checkpoint_every", "sample_every",
                "log_every", "keep", "val_stories", "sample_stories", "noise_dim")
    for name in positive:
        if getattr(options, name) < 1:
            raise SvkitError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(options, name)}")
    for name in ("story_batch", "image_batch"):
        if getattr(options, name) < 2:  # the wrong-condition term pairs each sample with another one's condition
            raise SvkitError(f"--{name.replace('_', '-')} must be at least 2, got {getattr(options, name)}")
    if options.evaluator is not None and options.val is None:
        raise SvkitError("--evaluator scores the validation stories: give --val too")
    for name in ("epochs", "max_steps"):
        value = getattr(options, name)
        if value is not None and value < 1:
            raise SvkitError(f"--{name.replace('_', '-')} must be at least 1, got {value}")


def train(options: TrainOptions, log=print) -> TrainResult:
    """Train (or resume training) as the options say; returns where it stopped."""
    _check_options(options)
    with distributed.session(options.device) as context:
        return _train(options, context, log if context.is_main else lambda message: None)


def _rank_seed(seed: int, rank: int) -> int:
    return int(np.random.SeedSequence([seed, rank]).generate_state(1)[0])


def _train(options: TrainOptions, context: distributed.Context, log) -> TrainResult:
    info = open_training_shard(options.train, options.image_size)
    val_info = None
    if options.val is not None:
        val_info = open_training_shard(options.val, options.image_size, role="validation")
        check_same_kind(info, val_info)
    device, ranks = context.device, context.world_size
    evaluator = None
    if options.evaluator is not None and context.is_main:  # checked before the run folder is written
        evaluator = load_evaluator(options.evaluator, device=str(device))
        evaluator.check_compatible(val_info)
    model_config = _model_config(options, info)

    n_stories = info.num_stories
    if n_stories < 2 * ranks:
        raise SvkitError(
            f"{info.path}: {n_stories} stories are too few; training needs at least 2 per process (the "
            "wrong-condition term pairs each story with another one's condition)"
        )
    # Per-rank batches; the ranks together train on batches ``ranks`` times as large.
    story_batch = min(options.story_batch, n_stories // ranks)
    image_batch = min(options.image_batch, n_stories * info.frames_per_story // ranks)
    steps_per_epoch = n_stories // (story_batch * ranks)
    total_steps = options.max_steps or (options.epochs or DEFAULT_EPOCHS) * steps_per_epoch

    run = _Run(options)
    config = {
        "options": asdict(options),
        "model": model_config.to_dict(),
        "shard_kind": {"dataset": info.spec.dataset, "num_stories": n_stories,
                       "image_size": list(info.image_size)},
        "batches": {"story": story_batch, "image": image_batch, "steps_per_epoch": steps_per_epoch,
                    "processes": ranks, "effective_story": story_batch * ranks,
                    "effective_image": image_batch * ranks},
        "total_steps": total_steps,
        "validation_metric": _validation_metric(options, val_info),
    }
    run.check_config(config)
    if context.is_main:
        run.write_config(config)

    _seed_everything(options.seed)
    trainer = Trainer(model_config, options.hyperparameters(), steps_per_epoch, device)
    if ranks > 1:
        _seed_everything(_rank_seed(options.seed, context.rank))  # same weights (broadcast), other noise per rank
    start, best_metric = 0, None
    latest = run.checkpoints.latest()
    if latest is not None:
        payload = checkpoint.load(latest)
        trainer.load_state_dict(payload)
        start, best_metric = int(payload["step"]), payload.get("best_metric")
        checkpoint.restore_rng(payload["rank_rng"][context.rank] if ranks > 1 else payload["rng"])
        log(f"resuming {run.dir} from {latest.name} (step {start} of {total_steps})")
    else:
        log(
            f"training {model_config.model} on {info.path} ({n_stories} stories of {info.frames_per_story} frames, "
            f"{steps_per_epoch} steps per epoch) on {device}; run folder {run.dir}"
        )
    if ranks > 1:
        log(f"{ranks} processes of {story_batch} stories and {image_batch} frames: effective batches of "
            f"{story_batch * ranks} stories and {image_batch * ranks} frames")
    if story_batch < options.story_batch or image_batch < options.image_batch:
        log(f"note: the shard is small; batches of {story_batch} stories and {image_batch} frames per process")
    if context.is_main:
        run.truncate_metrics(start)

    if start >= total_steps:
        log(f"{run.dir}: already trained for {start} steps (of {total_steps}); nothing to do")
        return TrainResult(run.dir, start, total_steps, latest, best_metric)

    val_stories = samples = None
    if context.is_main:  # validation and sample sheets are drawn by rank 0 alone
        fixed_source = (val_info or info).path
        val_stories = (
            _FixedStories(val_info.path, _evenly_spaced(val_info.num_stories, options.val_stories),
                          model_config.image_size, device)
            if val_info else None
        )
        sample_indices = _evenly_spaced(
            val_info.num_stories if val_info else n_stories, options.sample_stories
        )
        samples = _FixedStories(fixed_source, sample_indices, model_config.image_size, device)

    loop = _Loop(options, run, trainer, info, context, story_batch, image_batch, steps_per_epoch, total_steps,
                 val_stories, samples, evaluator, best_metric, log)
    return loop.run(start)


class _Loop:
    def __init__(self, options, run, trainer, info, context, story_batch, image_batch, steps_per_epoch, total_steps,
                 val_stories, samples, evaluator, best_metric, log):
        self.options, self.run_folder, self.trainer, self.info = options, run, trainer, info
        self.context, self.device, self.main = context, context.device, context.is_main
        self.story_batch, self.image_batch = story_batch, image_batch
        self.steps_per_epoch, self.total_steps = steps_per_epoch, total_steps
        self.val_stories, self.samples, self.evaluator = val_stories, samples, evaluator
        self.best_metric, self.log = best_metric, log
        self.last_checkpoint: Path | None = run.checkpoints.latest()

    def _loaders(self, start: int):
        workers = default_workers() if self.options.workers is None else self.options.workers
        pin = self.device.type == "cuda"
        pool = uses_pool_frames(self.info)
        common = dict(seed=self.options.seed, start=start, workers=workers, pin=pin, pool_frames=pool,
                      rank=self.context.rank, world_size=self.context.world_size)
        stories = stream_loader(self.info.path, STORY_STREAM, self.story_batch, **common)
        frames = stream_loader(self.info.path, FRAME_STREAM, self.image_batch, **common)
        return iter(stories), iter(frames)

    def _validate(self) -> dict[str, float]:
        """The validation scores: ``val/ssim``, and ``val/evaluator_f1`` with an evaluator."""
        fixed = self.val_stories
        generated = fixed.draw(self.trainer, self.options.story_batch * 4)
        scores = {"val/ssim": float(ssim_per_frame(generated, fixed.real).mean())}
        if self.evaluator is not None:
            frames = generated.permute(0, 1, 3, 4, 2).cpu().numpy()
            scores["val/evaluator_f1"] = evaluator_f1(
                self.evaluator, frames, fixed.conditions.cpu().numpy(), fixed.labels.cpu().numpy()
            )
        return scores

    def _write_samples(self, step: int) -> None:
        if not self.main:
            return
        generated = self.samples.draw(self.trainer, self.options.story_batch)
        save_story_sheet(
            self.run_folder.samples / f"step_{step:06d}.png",
            generated.permute(0, 1, 3, 4, 2).cpu().numpy(),
            self.samples.real.permute(0, 1, 3, 4, 2).cpu().numpy(),
        )

    def _save(self, step: int, writer) -> None:
        """Rank 0 validates and writes the checkpoint, with every rank's random state; the others wait for it."""
        rank_rng = distributed.gather(checkpoint.capture_rng())
        if self.main:
            self._write_checkpoint(step, writer, rank_rng)
        else:
            self.last_checkpoint = self.run_folder.checkpoints.path_for(step)
        distributed.barrier()

    def _write_checkpoint(self, step: int, writer, rank_rng: list[dict]) -> None:
        metric = None
        if self.val_stories is not None:
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
            "epoch": step // self.steps_per_epoch,
            "metric": metric,
            "best_metric": self.best_metric,
            "model": self.trainer.config.to_dict(),
            "options": asdict(self.options),
            "shard": {"path": str(self.info.path), "dataset": self.info.spec.dataset,
                      "image_size": list(self.info.image_size), "num_stories": self.info.num_stories},
            "rng": rank_rng[0],
            **({"rank_rng": rank_rng} if len(rank_rng) > 1 else {}),
            **self.trainer.state_dict(),
        }
        self.last_checkpoint = self.run_folder.checkpoints.save(payload, best=best)

    def run(self, start: int) -> TrainResult:
        from torch.utils.tensorboard import SummaryWriter
        from tqdm import tqdm

        options, trainer = self.options, self.trainer
        story_iter, frame_iter = self._loaders(start)
        writer = (SummaryWriter(self.run_folder.dir / "tensorboard", purge_step=start if start else None)
                  if self.main else None)
        progress = tqdm(total=self.total_steps, initial=start, unit="step", dynamic_ncols=True,
                        disable=not (options.progress and self.main), file=sys.stderr)
        step, sums, count, last_stats = start, {}, 0, {}
        window_start, data_time = time.perf_counter(), 0.0
        phase_times: dict[str, float] = {}  # of the window's last step, timed exactly (see below)
        interrupted = False
        try:
            with _StopRequest() as stop:
                while step < self.total_steps and not distributed.any_rank(stop.requested, self.device):
                    fetch = time.perf_counter()
                    try:
                        stories = to_device(next(story_iter), self.device, trainer.config.image_size)
                        frames = to_device(next(frame_iter), self.device, trainer.config.image_size)
                    except RuntimeError:
                        if stop.requested:  # Ctrl-C also reached the loader's workers
                            break
                        raise
                    data_time += time.perf_counter() - fetch
                    # On a GPU the phases can only be timed by waiting for it between them: do that on the last
                    # step of each log window alone, so that the figures are exact and the GPU's queue stays full.
                    timed = (step + 1) % options.log_every == 0 or step + 1 == self.total_steps
                    stats, phases = trainer.step(stories, frames, sync=timed)
                    step += 1
                    if timed:
                        phase_times = phases
                    for key, value in stats.items():
                        sums[key] = sums.get(key, 0.0) + value
                    count += 1
                    if step % options.log_every == 0 or step == self.total_steps:
                        elapsed = time.perf_counter() - window_start
                        last_stats = self._log(writer, progress, step, sums, count, elapsed, data_time, phase_times)
                        sums, count, window_start, data_time = {}, 0, time.perf_counter(), 0.0
                        phase_times = {}
                    if step % options.sample_every == 0:
                        self._write_samples(step)
                    if step % options.checkpoint_every == 0 or step == self.total_steps:
                        self._save(step, writer)
                    progress.update(1)
                interrupted = step < self.total_steps
            if interrupted and count:
                self._log(writer, progress, step, sums, count, time.perf_counter() - window_start, data_time,
                          phase_times)
            if interrupted and step > start and step % options.checkpoint_every:
                self._save(step, writer)  # between two steps, so the checkpoint holds whole steps only
        finally:
            progress.close()
            if writer is not None:
                writer.close()
            del story_iter, frame_iter
        if step % options.sample_every and step == self.total_steps:
            self._write_samples(step)
        if interrupted:
            self.log(f"\nstopped at step {step}; checkpoint {self.last_checkpoint}; run the same command to resume")
            raise KeyboardInterrupt
        self.log(f"finished {step} steps; checkpoint {self.last_checkpoint}"
                 + (f"; best validation {self._metric_name} {self.best_metric:.4f}"
                    if self.best_metric is not None else ""))
        return TrainResult(self.run_folder.dir, step, self.total_steps, self.last_checkpoint, self.best_metric,
                           stats=last_stats)

    @property
    def _metric_name(self) -> str:
        return "evaluator F1" if self.evaluator is not None else "SSIM"

    def _log(self, writer, progress, step, sums, count, elapsed, data_time, phase_times) -> dict:
        values = {k: float(v) / count for k, v in sums.items()}  # one device sync per log, not per step
        values = distributed.mean_over_ranks(values, self.device)  # the losses of the whole global batch
        values.update({
            "lr": self.trainer.learning_rate,
            "time/step": elapsed / count,
            "time/data": data_time / count,
            **{f"time/{phase}": seconds for phase, seconds in phase_times.items()},
            "throughput/stories_per_s": count * self.story_batch * self.context.world_size / elapsed,
            "epoch": step / self.steps_per_epoch,
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


if __name__ == "__main__":  # python -m sv_model.train ARGS is python -m sv_model train ARGS
    from cli.model import main

    main(["train", *sys.argv[1:]], prog_name="python -m sv_model")
