"""A training run's folder: ``config.json``, ``checkpoints/``, ``samples/``, ``metrics.jsonl`` (and
``tensorboard/``, which the loop's SummaryWriter fills)."""
from __future__ import annotations

import json
from pathlib import Path

from sv_data import files
from sv_data.errors import SvkitError
from sv_model import checkpoint
from sv_model.networks import ModelConfig
from sv_model.options import RESUMABLE_CHANGES, TrainOptions


class RunFolder:
    """The run folder and everything the loop writes into it. Nothing is written before :meth:`write_config`."""

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
            unknown = sorted(set(stored["options"]) - set(config["options"]))
            if unknown:
                raise SvkitError(
                    f"{self.config_path}: this run was started by another svkit version (its option {unknown[0]} is "
                    "not one of this version's); resume it with that version, or use another --out"
                )
            changed = [
                key
                # A preset sets several options: name it first, rather than the first of its values that differs.
                for key in sorted({*stored["options"], *config["options"]} - RESUMABLE_CHANGES,
                                  key=lambda key: (key != "preset", key))
                if stored["options"].get(key) != config["options"].get(key)
            ]
            if changed:
                key = changed[0]
                raise SvkitError(
                    f"{self.config_path}: this run was started with {key}={stored['options'].get(key)!r}, now "
                    f"{key}={config['options'].get(key)!r}; use the same options to resume, or another --out"
                )
            # A run folder from before checkpoints recorded the condition kind reads as its checkpoints do.
            stored["model"] = ModelConfig.from_dict(stored["model"]).to_dict()
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
        files.write_json(self.config_path, config, sort_keys=True)

    def truncate_metrics(self, step: int) -> None:
        """Lines logged after the checkpoint we resume from belong to steps that will be run again."""
        if not self.metrics_path.exists():
            return
        kept = [line for line in self.metrics_path.read_text().splitlines() if json.loads(line)["step"] <= step]
        files.write_text(self.metrics_path, "".join(line + "\n" for line in kept))

    def append_metrics(self, row: dict) -> None:
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(row, sort_keys=True) + "\n")
