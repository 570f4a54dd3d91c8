#!/usr/bin/env bash
# The main job at a small size, end to end: build CLEVR-SV, look at it, train StoryGAN, evaluate it.
# Usage: scripts/demo.sh [DIR]   (make demo runs it inside the project's .venv)
set -euo pipefail
dir=${1:-demo}
mkdir -p "$dir"

echo "== 1/5 build a small CLEVR-SV (Blender, Cycles on the CPU)"
sv-data build-clevr --n-train 96 --n-val 16 --n-test 16 --out "$dir/clevr-sv"

echo "== 2/5 check and look at it"
sv-data validate "$dir/clevr-sv/train.h5" "$dir/clevr-sv/val.h5" "$dir/clevr-sv/test.h5"
sv-data inspect "$dir/clevr-sv/train.h5"
sv-data preview "$dir/clevr-sv/test.h5" --out "$dir/preview.png" --stories 6

echo "== 3/5 train StoryGAN (the small preset, a few hundred steps on the CPU)"
# The packaged evaluator's object F1 on val.h5 (beside train.h5) picks checkpoints/best.pt; test.h5 stays for the final evaluation. The official recipe
# (the default) has 9 times the parameters and a CPU step about 35 times as long: hours, not a demo's minutes.
sv-model train "$dir/clevr-sv/train.h5" --out "$dir/run" --preset small --max-steps 300

echo "== 4/5 draw a test story next to the real one"
sv-model generate --checkpoint "$dir/run/checkpoints/best.pt" --data "$dir/clevr-sv/test.h5" --index 0 \
  --out "$dir/story.png"

echo "== 5/5 evaluate (svkit's packaged CLEVR-SV attribute evaluator reads the drawn frames)"
sv-model evaluate --checkpoint "$dir/run/checkpoints/best.pt" --data "$dir/clevr-sv/test.h5" --out "$dir/report.json"

echo "done: $dir/preview.png, $dir/story.png, $dir/report.json, TensorBoard logs in $dir/run"
