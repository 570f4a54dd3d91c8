#!/usr/bin/env bash
# The GPU checks of issue 15 as one prepared command for a lent GPU machine (the device tool's `run`): the
# training-speed benchmark (eager against compiled, at the official widths and at widths 64) and the CLEVR-SV
# reproduction run, each under its own time limit so that one that hangs leaves the other its share. About 7
# minutes in all, so that a session's 15 minutes of device time hold the machine's start and one rerun.
#
# Prepare the data here (the repository and the data travel together, at most 64 MiB; renderer 2's stories take
# about 14.6 KB each with their extras, so 3,800 training stories and the 200 test stories are about 59 MB):
#
#   sv-data repack /path/to/clevr-sv/train.h5 data/train.h5 --stories 3800
#   cp /path/to/clevr-sv/test.h5 data/test.h5
#
# then, through the device tool: run(command="bash benchmarks/device_checks.sh", carry=["data"], timeout_s=540).
# It writes into $OUT: gpu.txt, train_speed.txt, reproduction.txt, reproduction.json, curve.png, samples.png.
# docs/benchmarks.md says where their figures go.
#
# A dry run on a CPU at tiny sizes (eager only: compiling takes minutes on a CPU; about 2 minutes):
#   OUT=/tmp/checks DEVICE=cpu BENCH_ARGS="--preset small --widths 4 --variants eager --steps 2 --warmup 1" \
#     REPRO_ARGS="--preset small --g-width 4 --d-width 4 --max-steps 4 --eval-every 2 --test-stories 8" \
#     bash benchmarks/device_checks.sh
set -uo pipefail
out=${OUT:?"set OUT to the folder that the results go to"}
data=${DATA:-data}
device=${DEVICE:-cuda}
bench_args=${BENCH_ARGS:-"--preset official --widths preset,64 --variants eager,compiled --steps 20 --warmup 10"}
repro_args=${REPRO_ARGS:-"--minutes 2.5 --eval-every 500"}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
python=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"
for shard in "$data/train.h5" "$data/test.h5"; do
  [ -f "$shard" ] || { echo "error: $shard is missing: prepare it as this script's header says" >&2; exit 2; }
done

{ date -u +%FT%TZ; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || true
  "$python" -c 'import sys, torch; print(sys.version.split()[0], "torch", torch.__version__)'; } > "$out/gpu.txt"
cat "$out/gpu.txt"

echo "== training speed, eager and compiled"
# shellcheck disable=SC2086  # the arguments are meant to split
timeout 170 "$python" benchmarks/train.py --shard "$data/train.h5" --device "$device" $bench_args \
  2>&1 | tee "$out/train_speed.txt"
bench=$?

echo "== reproduction run"
# shellcheck disable=SC2086
timeout 250 "$python" benchmarks/reproduce_clevr.py --train "$data/train.h5" --test "$data/test.h5" \
  --out "$work/repro" --device "$device" --no-progress $repro_args 2>&1 | tee "$out/reproduction.txt"
repro=$?
for name in reproduction.json curve.png samples.png; do
  [ -f "$work/repro/$name" ] && cp "$work/repro/$name" "$out/"
done

echo "exit statuses: training speed $bench, reproduction $repro (124: stopped at its time limit)"
[ "$bench" -eq 0 ] && [ "$repro" -eq 0 ]
