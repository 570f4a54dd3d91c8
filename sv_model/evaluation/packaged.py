"""The evaluators that ship inside svkit, so that everyone scores with the same weights, and the choice of evaluator
that ``--evaluator`` makes.

A packaged evaluator is an evaluator folder (:mod:`.evaluators`) under ``weights/NAME/``, its weights stored as
float16 and loaded back as float32. NAME carries a version and never changes meaning: new weights get a new name.
``SHA256`` pins each one's ``evaluator.pt``; loading checks it, and every report names the evaluator's name and
hash. How each was made, and how well it reads held-out frames: docs/evaluation.md.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from sv_data import files
from sv_data.shards import ShardInfo
from sv_model.checkpoint import save_atomically
from sv_model.evaluation.clevr_objects import CONDITION_KIND as CLEVR_OBJECTS
from sv_model.evaluation.evaluators import INFO_FILE, WEIGHTS_FILE, Evaluator, EvaluatorError, load_evaluator

WEIGHTS_ROOT = Path(__file__).with_name("weights")
CLEVR_SV_ATTRIBUTES = "clevr-sv-attributes-v1"
SHA256 = {CLEVR_SV_ATTRIBUTES: "sha256:ce2310c4619156901774cd1c0066091ac10789b638d3219182574829c78f1f36"}
NO_EVALUATOR = "none"  # --evaluator none: score without an evaluator, even where one is packaged


def packaged_for(info: ShardInfo) -> str | None:
    """The name of the packaged evaluator that reads shards like ``info``, if svkit ships one."""
    return CLEVR_SV_ATTRIBUTES if info.spec.condition_kind == CLEVR_OBJECTS else None


def load_packaged(name: str, device: str = "auto") -> Evaluator:
    """The packaged evaluator ``name``, its weights checked against the hash that svkit pins for it."""
    if name not in SHA256:
        raise EvaluatorError(f"{name}: no packaged evaluator of that name (svkit ships {', '.join(SHA256)})")
    weights = WEIGHTS_ROOT / name / WEIGHTS_FILE
    if not weights.is_file():
        raise EvaluatorError(f"{weights}: missing from this svkit installation; reinstall svkit")
    evaluator = load_evaluator(weights.parent, device)  # it hashes evaluator.pt (weights_only: safe to load first)
    if evaluator.info["sha256"] != SHA256[name]:
        raise EvaluatorError(f"{weights}: SHA-256 {evaluator.info['sha256']} is not the packaged {SHA256[name]}; "
                             "reinstall svkit")
    evaluator.info["name"] = name
    return evaluator


def names_packaged(choice: os.PathLike | str) -> bool:
    """Whether ``--evaluator CHOICE`` names a packaged evaluator: an existing folder of that name wins."""
    return str(choice) in SHA256 and not Path(choice).exists()


def choose_evaluator(choice: os.PathLike | str | None, shard: ShardInfo, device: str = "auto") -> Evaluator | None:
    """The evaluator that ``--evaluator CHOICE`` means for ``shard``: an evaluator folder of ``sv-model
    train-evaluator``, the name of a packaged evaluator, ``none``, or nothing (None): then the packaged evaluator
    for the shard's dataset where svkit ships one, else none. The evaluator is checked against the shard."""
    if choice is None:
        name = packaged_for(shard)
        evaluator = load_packaged(name, device) if name else None
    elif str(choice) == NO_EVALUATOR:
        evaluator = None
    elif names_packaged(choice):
        evaluator = load_packaged(str(choice), device)
    elif Path(choice).exists():
        evaluator = load_evaluator(choice, device)
    else:
        raise EvaluatorError(f"{choice}: neither an evaluator folder (train one with sv-model train-evaluator) nor "
                             f"the name of a packaged evaluator ({', '.join(SHA256)})")
    if evaluator is not None:
        evaluator.check_compatible(shard)
    return evaluator


def package(folder: os.PathLike | str, name: str, held_out: list[os.PathLike | str]) -> Path:
    """Write the evaluator of ``folder`` as the packaged evaluator ``name``: float16 weights, and an
    ``evaluator.json`` whose ``held_out_shards`` are the float16 weights' readings of the ``held_out`` shards
    (``AttributeEvaluator.read_shard``). Returns the new folder; its hash goes into ``SHA256``."""
    source = Path(folder)
    out = WEIGHTS_ROOT / name
    evaluator = load_evaluator(source, device="cpu")
    payload = torch.load(source / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    payload["state_dict"] = {k: v.half() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
    out.mkdir(parents=True, exist_ok=True)
    save_atomically(payload, out / WEIGHTS_FILE)
    entry = {**{k: v for k, v in evaluator.info.items() if k not in ("folder", "sha256")},
             "name": name, "weights": "float16", "packaged_from": str(source)}
    files.write_json(out / INFO_FILE, entry)  # the folder is an evaluator folder from here on: read it back
    halved = load_evaluator(out, device="cpu")
    entry["held_out_shards"] = [halved.read_shard(path) for path in held_out]
    files.write_json(out / INFO_FILE, entry, allow_nan=False)
    return out
