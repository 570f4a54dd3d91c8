"""Package a trained CLEVR-SV attribute evaluator into svkit (maintainers only; docs/evaluation.md gives the
commands that made each packaged evaluator).

    PYTHONPATH=. python scripts/package_evaluator.py EVALUATOR_FOLDER --name clevr-sv-attributes-v2 \\
        --held-out OTHER_SEED/test.h5 [--held-out ...]

writes sv_model/evaluation/weights/NAME/ (float16 weights, evaluator.json with the float16 weights' readings of the
held-out shards) and prints the SHA-256 to pin in sv_model/evaluation/packaged.py's SHA256.
"""
from __future__ import annotations

import argparse

from sv_data import files
from sv_model.evaluation.evaluators import WEIGHTS_FILE
from sv_model.evaluation.packaged import package


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", help="evaluator folder of sv-model train-evaluator")
    parser.add_argument("--name", required=True, help="the packaged name, with its version (never reused)")
    parser.add_argument("--held-out", action="append", default=[], help="a shard of real stories it never saw")
    args = parser.parse_args()
    out = package(args.folder, args.name, args.held_out)
    print(f"{out}: pin {args.name!r}: {files.file_sha256(out / WEIGHTS_FILE)!r}")


if __name__ == "__main__":
    main()
