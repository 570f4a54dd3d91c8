"""How close svkit's CLEVR-SV renders are to the real CLEVR-SV, as an attribute evaluator sees them.

An evaluator trained only on svkit renders (svkit's packaged one, or one of ``sv-model train-evaluator``) reads
held-out svkit frames and frames of the real StoryGAN release (imported with ``sv-data import-storygan-clevr``). Where the renders match the real
dataset, it reads both equally well; a gap says what differs. For each, it prints the scores of the evaluation
(exact-match frame accuracy, object F1, count accuracy) and, per attribute, the share of objects whose value it
reads wrong: for each frame, the true and the read objects are reduced to that attribute alone (e.g. the shapes
{cube, cylinder, cylinder}), and every true value without a read counterpart is an error.

    python benchmarks/clevr_realism.py --svkit OUT/test.h5 --real REAL/test.h5 [--evaluator FOLDER]
"""
from __future__ import annotations

import argparse
import json

from sv_data.shards import read_info
from sv_model.evaluation.packaged import choose_evaluator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--evaluator", help="evaluator folder trained on svkit renders only [default: the packaged one]")
    parser.add_argument("--svkit", required=True, help="held-out svkit shard")
    parser.add_argument("--real", required=True, help="shard imported from the StoryGAN release")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    evaluator = choose_evaluator(args.evaluator, read_info(args.svkit), device="cpu")
    figures = {"svkit": evaluator.read_shard(args.svkit), "real": evaluator.read_shard(args.real)}
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
