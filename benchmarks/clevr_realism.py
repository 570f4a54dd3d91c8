"""How close svkit's CLEVR-SV renders are to the real CLEVR-SV, as an attribute evaluator sees them.

An evaluator trained only on svkit renders (``sv-model train-evaluator``) reads held-out svkit frames and frames of
the real StoryGAN release (imported with ``sv-data import-storygan-clevr``). Where the renders match the real
dataset, it reads both equally well; a gap says what differs. For each, it prints the scores of the evaluation
(exact-match frame accuracy, object F1, count accuracy) and, per attribute, the share of objects whose value it
reads wrong: for each frame, the true and the read objects are reduced to that attribute alone (e.g. the shapes
{cube, cylinder, cylinder}), and every true value without a read counterpart is an error.

    python benchmarks/clevr_realism.py EVALUATOR --svkit OUT/test.h5 --real REAL/test.h5
"""
from __future__ import annotations

import argparse
import json
from collections import Counter

import numpy as np

from sv_data.shards import ShardReader
from sv_model.evaluation.clevr_objects import ATTRIBUTES, objects_from_conditions
from sv_model.evaluation.evaluators import load_evaluator


def values_of(objects: Counter, attribute: int) -> Counter:
    """A frame's objects reduced to one attribute: value -> how many objects have it."""
    values = Counter()
    for key, count in objects.items():
        values[key[attribute]] += count
    return values


def attribute_errors(seen: list[Counter], wanted: list[Counter]) -> dict[str, float]:
    """Per attribute, the share of true objects whose value has no counterpart among the objects read."""
    total = sum(sum(true.values()) for true in wanted)
    return {name: sum(sum((values_of(true, a) - values_of(read, a)).values()) for read, true in zip(seen, wanted))
            / max(total, 1) for a, (name, _) in enumerate(ATTRIBUTES)}


def confusions(seen: list[Counter], wanted: list[Counter], attribute: int, names) -> dict[str, int]:
    """In frames with exactly one value of ``attribute`` read wrong: "true read as seen", counted."""
    found = Counter()
    for read, true in zip(seen, wanted):
        read_values, true_values = values_of(read, attribute), values_of(true, attribute)
        missing, extra = true_values - read_values, read_values - true_values
        if sum(missing.values()) == 1 and sum(extra.values()) == 1:
            found[f"{names[next(iter(missing))]} read as {names[next(iter(extra))]}"] += 1
    return dict(found.most_common())


def measure(evaluator, path: str) -> dict:
    with ShardReader(path) as shard:
        rows = range(len(shard))
        frames, conditions = shard.read_images(rows), shard.read("conditions", rows)
        labels = shard.read("labels", rows)
    n, t = frames.shape[:2]
    tally = evaluator.tally(frames, conditions, labels)
    seen = evaluator.objects(frames.reshape(n * t, *frames.shape[2:]))
    wanted = [frame for story in objects_from_conditions(conditions) for frame in story]
    result = {"frames": n * t, "objects": int(sum(sum(w.values()) for w in wanted)), **tally.scores()}
    result["attribute_error"] = attribute_errors(seen, wanted)
    result["confusions"] = {name: confusions(seen, wanted, a, names) for a, (name, names) in enumerate(ATTRIBUTES)}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("evaluator", help="evaluator folder trained on svkit renders only")
    parser.add_argument("--svkit", required=True, help="held-out svkit shard")
    parser.add_argument("--real", required=True, help="shard imported from the StoryGAN release")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    evaluator = load_evaluator(args.evaluator, device="cpu")
    figures = {"svkit": measure(evaluator, args.svkit), "real": measure(evaluator, args.real)}
    print("| read | frames | objects | exact match | object F1 | count right | shape error | colour error | "
          "material error | size error |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, f in figures.items():
        e = f["attribute_error"]
        print(f"| {name} | {f['frames']} | {f['objects']} | {f['exact_match_accuracy']:.1%} | {f['object_f1']:.3f} | "
              f"{f['object_count_accuracy']:.1%} | {e['shape']:.1%} | {e['color']:.1%} | {e['material']:.1%} | "
              f"{e['size']:.1%} |")
    svkit, real = figures["svkit"], figures["real"]
    print(f"gap (svkit - real): exact match {100 * (svkit['exact_match_accuracy'] - real['exact_match_accuracy']):.1f}"
          " points; error rates (real - svkit): " + ", ".join(
              f"{a} {100 * (real['attribute_error'][a] - svkit['attribute_error'][a]):.1f}"
              for a in svkit["attribute_error"]) + " points")
    for name in ("shape", "material"):
        print(f"{name} confusions on real frames: {figures['real']['confusions'][name]}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()
