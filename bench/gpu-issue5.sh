#!/usr/bin/env bash
# Issue 5 on the lent GPU machine, one call: unpack the binaries carried in .gpu/, check every fused
# kernel against the plain path on the GPU (device_check kernels) and the whole model against the CPU
# (device_check), then `minilab bench` at the synthetic Llama-3.2-3B shape (bf16, batch 1) for f16,
# int8 and nf4 with the fused kernels, and int8/nf4 on the plain path (MINILAB_KERNELS=plain) in the
# same run for the before/after ratio. Writes everything under $OUT and prints a table last.
# Usage there: bash bench/gpu-issue5.sh [minilab|bench|peers]
# (the device tool returns at most 8 files: pack $OUT into one archive after the call)
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT" /tmp/bin
source "$(dirname "$0")/unxz.sh"
for f in minilab device_check; do unxz .gpu/$f.xz /tmp/bin/$f; done
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader | tee "$OUT/gpu.txt"
MODE=${1:-minilab}
table() {
  python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
print("| run | test | t/s | ± sd | weights GB | bandwidth GB/s | roofline % |")
print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
for run in ["f16", "int8", "nf4", "f16.2", "int8.2", "nf4.2", "plain-int8", "plain-nf4"]:
    try:
        recs = json.load(open(f"{out}/bench-{run}.json"))
    except Exception as e:
        print(f"| {run} | failed: {e} |"); continue
    for r in recs:
        roof = r["roofline_pct"]
        print(f"| {run} | {r['test']} | {r['avg_ts']:.1f} | {r['stddev_ts']:.1f} | {r['weight_bytes']/1e9:.3f} | {r['bandwidth']/1e9:.0f} | {'' if roof is None else f'{roof:.1f}'} |")
PY
}
BENCH="/tmp/bin/minilab bench --model synthetic:llama-3.2-3b --device cuda --dtype bf16 --log $OUT/benchmark_log.csv --output json"

if [ "$MODE" = minilab ]; then
  timeout 200 /tmp/bin/device_check cuda kernels > "$OUT/kernels.md" 2>&1; echo "kernels: exit $?"
  timeout 120 /tmp/bin/device_check cuda > "$OUT/device_check.txt" 2>&1; echo "device_check: exit $?"
  cat "$OUT/device_check.txt"
  for run in f16 int8 nf4 f16.2 int8.2 nf4.2; do
    p=${run%%.*}
    timeout 120 $BENCH --precision "$p" -p 512 -n 128 -r 5 > "$OUT/bench-$run.json" 2> "$OUT/bench-$run.err"
    echo "$run: exit $?"
  done
  for p in int8 nf4; do
    MINILAB_KERNELS=plain timeout 120 $BENCH --precision "$p" -p 512 -n 16 -r 2 > "$OUT/bench-plain-$p.json" 2> "$OUT/bench-plain-$p.err"
    echo "plain $p: exit $?"
  done
  table
  grep -E "worst|linears of one|^\| [0-9]+x[0-9]+ \| (f16|int8|nf4) \| [0-9.]+ \|" "$OUT/kernels.md"
elif [ "$MODE" = bench ]; then
  for run in f16 int8 nf4 f16.2 int8.2 nf4.2; do
    p=${run%%.*}
    timeout 120 $BENCH --precision "$p" -p 512 -n 128 -r 5 > "$OUT/bench-$run.json" 2> "$OUT/bench-$run.err"
    echo "$run: exit $?"
  done
  table
else
  # bitsandbytes travels as an unpacked wheel (CUDA 13.0 library only) in .gpu/bnb.zip. One process
  # per variant, so that a crash in one (torch.compile, bitsandbytes) cannot hide the others.
  rm -rf /tmp/bnb && python3 -c "import zipfile; zipfile.ZipFile('.gpu/bnb.zip').extractall('/tmp/bnb')"
  for v in bf16 static nf4 int8 compile; do
    PYTHONPATH=/tmp/bnb timeout 300 python3 bench/peers/torch_bnb.py --variants $v --reps 3 --model-dir /tmp/torch-3b \
      --json "$OUT/torch-$v.json" > "$OUT/torch-$v.md" 2> "$OUT/torch-$v.err"
    echo "torch $v: exit $?"; grep -E "^\| $v " "$OUT/torch-$v.md" || tail -3 "$OUT/torch-$v.err"
  done
fi
