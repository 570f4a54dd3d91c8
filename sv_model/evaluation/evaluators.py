"""svkit's own evaluators, trained on the real frames of a training shard, and the folder that holds one.

- CLEVR-SV (condition kind ``clevr-objects``): the attribute evaluator (:mod:`.attribute_net`) finds the objects in a frame
  with their shape, colour, material and size; it learns from the builder's instance masks and object attributes.
- Any other shard with labels (Pororo-SV's characters): a multi-label classifier (:mod:`.character_net`).

An evaluator folder holds ``evaluator.pt`` (tensors and plain values; ``torch.load(weights_only=True)``) and
``evaluator.json`` (what it was trained on, with which options, and its scores on held-out real stories).
``evaluator.json`` is written last: a folder without it holds an unfinished training, which the same command
resumes from ``training_state.pt``.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from sv_data import files
from sv_data.errors import SvkitError
from sv_data.shards import ShardInfo, ShardReader, iter_blocks, legacy_condition_kind, read_info
from sv_model.checkpoint import save_atomically
from sv_model.devices import resolve_device
from sv_model.evaluation import attribute_net, character_net, clevr_objects
from sv_model.evaluation.fitting import EDGE, FitOptions, fit
from sv_model.evaluation.provenance import package_versions, utc_now
from sv_model.evaluation.scores import MultiLabelTally, ObjectSet, ObjectSetTally

ATTRIBUTES = "clevr-attributes"
CHARACTERS = "characters"
FORMAT, VERSION = "svkit-evaluator", 1
WEIGHTS_FILE, INFO_FILE, STATE_FILE = "evaluator.pt", "evaluator.json", "training_state.pt"
DEFAULTS = {
    ATTRIBUTES: {"epochs": 14, "learning_rate": 2e-3, "width": 48, "max_shift": 3},  # 96.9 %: docs/benchmarks.md
    CHARACTERS: {"epochs": 10, "learning_rate": 1e-3, "input_size": 128, "max_shift": 0},
}
OWN_EVALUATOR_NOTE = (
    "svkit's own evaluator, trained by svkit on the real training frames: its scores follow the published "
    "definitions, but published values came from other evaluators and compare in definition, not in value"
)


class EvaluatorError(SvkitError):
    """An evaluator folder that cannot be used, or one that does not fit a shard."""


def kind_for(info: ShardInfo) -> str:
    """Which evaluator a shard calls for: CLEVR object slots call for the attribute evaluator, any other
    conditions with labels for a character classifier."""
    if info.spec.condition_kind == clevr_objects.CONDITION_KIND:
        return ATTRIBUTES
    if info.spec.label_names:
        return CHARACTERS
    raise EvaluatorError(f"{info.path}: dataset {info.spec.dataset!r} has no labels, so svkit has no evaluator for it")


class Evaluator:
    """A trained evaluator in eval mode. ``tally`` compares frames with what their stories asked for;
    ``features`` maps frames into the space of svkit's cheap Fréchet distance."""

    kind: str

    def __init__(self, network: torch.nn.Module, info: dict, device: torch.device, batch_size: int = 256):
        self.network = network.to(device).eval()
        self.info = info
        self.device = device
        self.batch_size = batch_size

    def check_compatible(self, shard: ShardInfo) -> None:
        for what, theirs, ours in (
            ("dataset", shard.spec.dataset, self.info["dataset"]),
            ("condition kind", shard.spec.condition_kind, self.info["condition_kind"]),
            ("labels", list(shard.spec.label_names), self.info["label_names"]),
        ):
            if theirs != ours:
                raise EvaluatorError(
                    f"{shard.path}: does not fit the evaluator in {self.info['folder']}: {what} is {theirs} in the "
                    f"shard, {ours} in the evaluator"
                )

    def _pixels(self, frames: np.ndarray) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def _batched(self, fn: Callable[[torch.Tensor], object], frames: np.ndarray) -> list:
        return [fn(self._pixels(frames[s : s + self.batch_size]).to(self.device)) for s in range(0, len(frames), self.batch_size)]

    def features(self, frames: np.ndarray) -> np.ndarray:
        """uint8 frames (m, H, W, 3) -> float64 (m, d)."""
        parts = self._batched(lambda x: self.network.features(x).double().cpu(), frames)
        return torch.cat(parts).numpy() if parts else np.empty((0, self.feature_dim))

    @property
    def feature_dim(self) -> int:
        return int(self.info["feature_dim"])

    def new_tally(self):
        raise NotImplementedError

    def tally(self, frames: np.ndarray, conditions: np.ndarray, labels: np.ndarray):
        """frames uint8 (n, T, H, W, 3) of n stories with their (n, T, D) conditions and (n, T, L) labels."""
        raise NotImplementedError


class AttributeEvaluator(Evaluator):
    kind = ATTRIBUTES

    def _pixels(self, frames):
        return attribute_net.to_input(frames)

    def objects(self, frames: np.ndarray) -> list[ObjectSet]:
        """The multiset of (shape, colour, material, size) it sees in each of the uint8 frames (m, H, W, 3)."""
        return [s for part in self._batched(lambda x: attribute_net.read_objects(self.network, x), frames) for s in part]

    def new_tally(self) -> ObjectSetTally:
        return ObjectSetTally()

    def stories(self, frames: np.ndarray, conditions: np.ndarray) -> list[tuple[list[ObjectSet], list[ObjectSet]]]:
        """Per story of uint8 frames (n, T, H, W, 3) and their conditions (n, T, D): per frame, the objects it sees
        and the objects the story asks for."""
        n, t = frames.shape[:2]
        seen = self.objects(frames.reshape(n * t, *frames.shape[2:]))
        wanted = clevr_objects.objects_from_conditions(conditions)
        return [(seen[i * t : (i + 1) * t], wanted[i]) for i in range(n)]

    def tally(self, frames, conditions, labels) -> ObjectSetTally:
        tally = ObjectSetTally()
        for seen, wanted in self.stories(frames, conditions):
            tally.add_story(seen, wanted)
        return tally

    def read_shard(self, path: os.PathLike | str, max_stories: int | None = None) -> dict:
        """How well it reads the real frames of a CLEVR-SV shard: the evaluation's scores, and per attribute the
        share of objects whose value it reads wrong and what it reads it as (:func:`.clevr_objects.confusions`)."""
        tally, seen, wanted = ObjectSetTally(), [], []
        with ShardReader(path) as reader:
            for start, stop in iter_blocks(min(len(reader), max_stories or len(reader)), 128):
                rows = np.arange(start, stop)
                for story_seen, story_wanted in self.stories(reader.read("images", rows), reader.read("conditions", rows)):
                    tally.add_story(story_seen, story_wanted)
                    seen += story_seen
                    wanted += story_wanted
        return {
            "path": str(path),
            "frames": tally.frames,
            "objects": tally.actual_objects,
            **tally.scores(),
            "attribute_error": clevr_objects.attribute_errors(seen, wanted),
            "confusions": clevr_objects.confusions(seen, wanted),
        }


class CharacterEvaluator(Evaluator):
    kind = CHARACTERS

    def _pixels(self, frames):
        return character_net.to_input(frames)

    def predict(self, frames: np.ndarray) -> np.ndarray:
        """uint8 frames (m, H, W, 3) -> 0/1 labels (m, L): each label whose probability exceeds 1/2."""
        parts = self._batched(lambda x: (self.network(x) > 0).to(torch.uint8).cpu(), frames)
        return torch.cat(parts).numpy() if parts else np.empty((0, len(self.info["label_names"])), np.uint8)

    def new_tally(self) -> MultiLabelTally:
        return MultiLabelTally()

    def tally(self, frames, conditions, labels) -> MultiLabelTally:
        n, t = frames.shape[:2]
        tally = MultiLabelTally()
        tally.add(self.predict(frames.reshape(n * t, *frames.shape[2:])).reshape(n, t, -1), labels)
        return tally


F1_SCORE = {ATTRIBUTES: "object_f1", CHARACTERS: "character_f1"}  # per evaluator kind: the score best.pt is kept by


def evaluator_f1(evaluator: Evaluator, frames: np.ndarray, conditions: np.ndarray, labels: np.ndarray) -> float:
    """The evaluator's F1 on stories (object F1 on CLEVR-SV, character F1 otherwise): the one number a training
    loop can log to keep its best checkpoint. frames uint8 (n, T, H, W, 3)."""
    return evaluator.tally(frames, conditions, labels).scores()[F1_SCORE[evaluator.kind]]


# ---------------------------------------------------------------------------------------------------------------
# Training


def _network(kind: str, config: dict, pretrained: bool) -> torch.nn.Module:
    if kind == ATTRIBUTES:
        return attribute_net.AttributeNet(width=config["width"])
    return character_net.CharacterNet(len(config["label_names"]), config["input_size"], pretrained=pretrained)


def _read_frames(reader: ShardReader, rows: np.ndarray, kind: str, desc: str, progress: bool) -> list[np.ndarray]:
    """The arrays the loss needs, one row per frame: images first, then targets."""
    parts: list[list[np.ndarray]] = []
    for start, stop in tqdm(list(iter_blocks(len(rows), 128)), desc=desc, unit="block", leave=False,
                            disable=not progress):
        block = rows[start:stop]
        images = reader.read("images", block)
        n, t = images.shape[:2]
        if kind == ATTRIBUTES:
            frames = attribute_net.resize_frames(images.reshape(n * t, *images.shape[2:]))
            masks = reader.read("extra/masks", block)
            attributes = np.stack([reader.read(f"extra/{name}", block) for name, _ in clevr_objects.ATTRIBUTES], -1)
            targets = [clevr_objects.frame_targets(masks[i, f], attributes[i]) for i in range(n) for f in range(t)]
            parts.append([frames, np.stack([h for h, _ in targets]), np.stack([l for _, l in targets])])
        else:
            labels = reader.read("labels", block)
            parts.append([images.reshape(n * t, *images.shape[2:]), labels.reshape(n * t, -1).astype(np.float32)])
    return [np.concatenate(column) for column in zip(*parts)]


def _check_training_options(
    held_out, epochs, batch_size, learning_rate, input_size, width, max_stories, max_shift
) -> None:
    bad = [
        (f"--held-out {held_out}", "must be at least 0 and below 1", not 0 <= held_out < 1),
        (f"--epochs {epochs}", "must be at least 1", epochs is not None and epochs < 1),
        (f"--batch-size {batch_size}", "must be at least 1", batch_size < 1),
        (f"--lr {learning_rate}", "must be above 0", learning_rate is not None and not learning_rate > 0),
        (f"--input-size {input_size}", "must be at least 32", input_size is not None and input_size < 32),
        (f"--width {width}", "must be an even number, at least 8", width is not None and (width < 8 or width % 2)),
        (f"--max-stories {max_stories}", "must be at least 1", max_stories is not None and max_stories < 1),
        (f"--max-shift {max_shift}", "must be at least 0", max_shift is not None and max_shift < 0),
    ]
    for option, rule, broken in bad:
        if broken:
            raise SvkitError(f"{option}: {rule}")


def _check_training_shard(info: ShardInfo, kind: str) -> None:
    if kind == ATTRIBUTES:
        missing = [f"extra/{name}" for name in clevr_objects.EXTRA_NAMES if name not in info.spec.extras]
        if missing:
            raise EvaluatorError(
                f"{info.path}: lacks {', '.join(missing)}; the attribute evaluator learns from the instance masks "
                "and object attributes that sv-data build-clevr stores (the StoryGAN release has none)"
            )


def _held_out_scores(evaluator: Evaluator, path: Path, rows: np.ndarray) -> dict:
    tally = evaluator.new_tally()
    with ShardReader(path) as reader:
        for start, stop in iter_blocks(len(rows), 128):
            block = rows[start:stop]
            tally += evaluator.tally(
                reader.read("images", block), reader.read("conditions", block), reader.read("labels", block)
            )
    return {"stories": int(len(rows)), "frames": int(tally.frames), **tally.scores()}


def train_evaluator(
    train: os.PathLike | str,
    out_dir: os.PathLike | str,
    *,
    val: os.PathLike | str | None = None,
    held_out: float = 0.1,
    epochs: int | None = None,
    batch_size: int = 64,
    learning_rate: float | None = None,
    seed: int = 0,
    device: str = "auto",
    input_size: int | None = None,
    width: int | None = None,
    max_stories: int | None = None,
    max_shift: int | None = None,
    progress: bool = True,
) -> dict:
    """Train the evaluator that ``train``'s dataset calls for and write it to ``out_dir``; returns its info.

    Held-out scores come from ``val`` when given, else from the last ``held_out`` fraction of the training
    stories, which are then left out of training (Pororo-SV's stories overlap their neighbours, so a random split
    would leak). Re-running an interrupted training resumes it; re-running a finished one changes nothing.
    """
    train, out_dir = Path(train), Path(out_dir)
    info = read_info(train)
    kind = kind_for(info)
    _check_training_shard(info, kind)
    _check_training_options(held_out, epochs, batch_size, learning_rate, input_size, width, max_stories, max_shift)
    val_info = read_info(val) if val is not None else None
    if val_info is not None and (val_info.spec.dataset, val_info.spec.label_names) != (info.spec.dataset, info.spec.label_names):
        raise EvaluatorError(f"{val_info.path}: another dataset or other labels than {train}")
    stories = min(info.num_stories, max_stories or info.num_stories)
    held = 0 if val_info is not None else int(round(stories * held_out))
    train_rows = np.arange(stories - held)
    defaults = DEFAULTS[kind]
    config = {"dataset": info.spec.dataset, "label_names": list(info.spec.label_names)}
    if kind == ATTRIBUTES:
        config["width"] = width or defaults["width"]
    else:
        config["input_size"] = input_size or defaults["input_size"]
    fit_options = FitOptions(
        epochs=epochs or defaults["epochs"],
        batch_size=batch_size,
        learning_rate=learning_rate or defaults["learning_rate"],
        weight_decay=1e-4,
        seed=seed,
        max_shift=defaults["max_shift"] if max_shift is None else max_shift,
    )
    options = {
        "train": str(train.resolve()),
        "val": str(Path(val).resolve()) if val is not None else None,
        "held_out": held_out,
        "max_stories": max_stories,
        **asdict(fit_options),
        **{k: v for k, v in config.items() if k not in ("dataset", "label_names")},
    }
    info_path = out_dir / INFO_FILE
    if info_path.exists():
        done = json.loads(info_path.read_text())
        if done.get("options") != options:
            raise EvaluatorError(f"{out_dir}: already holds an evaluator trained with other options; use another --out")
        return done
    if len(train_rows) * info.frames_per_story < batch_size:
        raise SvkitError(f"{train}: {len(train_rows)} training stories are fewer frames than one batch of {batch_size}")
    target = resolve_device(device)
    started = time.perf_counter()
    with ShardReader(train) as reader:
        arrays = _read_frames(reader, train_rows, kind, "reading training frames", progress)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # the initial weights, like every batch, follow from --seed
        network = _network(kind, config, pretrained=True)
    padding = (EDGE, 0.0, clevr_objects.IGNORE) if kind == ATTRIBUTES else (EDGE, None)  # images, targets
    loss_fn = attribute_net.loss if kind == ATTRIBUTES else character_net.loss
    losses = fit(network, loss_fn, arrays, padding, fit_options, target, out_dir / STATE_FILE,
                 prepare=torch.Tensor.float, progress=progress)
    del arrays
    feature_dim = int(network.features(torch.zeros(1, 3, 64, 64, device=target)).shape[1])
    payload = {"format": FORMAT, "version": VERSION, "kind": kind, "config": config, "state_dict": network.state_dict()}
    save_atomically(payload, out_dir / WEIGHTS_FILE)
    evaluator_info = {
        "format": FORMAT,
        "version": VERSION,
        "kind": kind,
        "dataset": info.spec.dataset,
        "condition_kind": info.spec.condition_kind,
        "label_names": list(info.spec.label_names),
        "feature_dim": feature_dim,
        "note": OWN_EVALUATOR_NOTE,
        "trained_on": {
            "path": str(train),
            "split": info.spec.split,
            "stories": int(len(train_rows)),
            "frames": int(len(train_rows) * info.frames_per_story),
            "image_size": list(info.image_size),
        },
        "options": options,
        "epoch_losses": losses,
        "training_seconds": round(time.perf_counter() - started, 1),
        "device": str(target),
        "versions": package_versions(),
        "created": utc_now(),
    }
    evaluator = _evaluator_class(kind)(network, {**evaluator_info, "folder": str(out_dir)}, target)
    if val_info is not None:
        held_out_rows, source = np.arange(val_info.num_stories), str(val_info.path)
    else:
        held_out_rows, source = np.arange(stories - held, stories), f"last {held} stories of {train}"
    evaluator_info["held_out"] = (
        {"source": source, "split": (val_info or info).spec.split, **_held_out_scores(evaluator, Path(val or train), held_out_rows)}
        if len(held_out_rows)
        else None
    )
    files.write_json(info_path, evaluator_info, allow_nan=False)
    (out_dir / STATE_FILE).unlink(missing_ok=True)
    return evaluator_info


def _evaluator_class(kind: str) -> type[Evaluator]:
    return AttributeEvaluator if kind == ATTRIBUTES else CharacterEvaluator


def load_evaluator(folder: os.PathLike | str, device: str = "auto") -> Evaluator:
    """The evaluator in ``folder`` (written by :func:`train_evaluator`), in eval mode on ``device``."""
    folder = Path(folder)
    info_path, weights_path = folder / INFO_FILE, folder / WEIGHTS_FILE
    if not folder.is_dir():
        raise EvaluatorError(f"{folder}: no such evaluator folder (train one with sv-model train-evaluator)")
    if not info_path.is_file() or not weights_path.is_file():
        raise EvaluatorError(f"{folder}: holds no finished evaluator ({INFO_FILE} or {WEIGHTS_FILE} is missing)")
    try:
        info = json.loads(info_path.read_text())
        payload = torch.load(weights_path, map_location="cpu", weights_only=True)
    except (ValueError, RuntimeError, OSError) as exc:
        raise EvaluatorError(f"{folder}: unreadable evaluator ({type(exc).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT or info.get("format") != FORMAT:
        raise EvaluatorError(f"{folder}: not an svkit evaluator")
    if payload.get("version") != VERSION:
        raise EvaluatorError(f"{folder}: evaluator version {payload.get('version')} (this svkit reads {VERSION})")
    # Folders from before shards said what their conditions are: as sv_data reads such old shards.
    info.setdefault("condition_kind", legacy_condition_kind(info["dataset"]))
    network = _network(payload["kind"], payload["config"], pretrained=False)
    network.load_state_dict(payload["state_dict"])  # float16 weights (svkit's packaged evaluators) become float32
    info = {**info, "folder": str(folder), "sha256": files.file_sha256(weights_path)}
    return _evaluator_class(payload["kind"])(network, info, resolve_device(device))
