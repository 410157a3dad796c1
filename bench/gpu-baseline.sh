#!/usr/bin/env bash
# Runs on the lent GPU machine (see ../shared/cuda/README.md): the issue-3 baselines of
# `minilab bench` at the synthetic Llama-3.2-3B shape, f16 / int8 / nf4, with measured bandwidth.
# Usage there: bash bench/gpu-baseline.sh ./.gpu/minilab   (writes JSON and a table under $OUT)
set -uo pipefail
BIN=${1:-./.gpu/minilab}
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
# f16 three times in a row: do consecutive runs agree within their own sd?
for run in f16 f16.2 f16.3 int8 nf4; do
  p=${run%%.*}; reps=5; [ "$p" = f16 ] || reps=3
  timeout 280 "$BIN" bench --model synthetic:llama-3.2-3b --device cuda --dtype bf16 --precision "$p" \
    -p 512 -n 128 -r "$reps" --log "$OUT/benchmark_log.csv" --output json > "$OUT/bench-$run.json" 2> "$OUT/bench-$run.err"
  echo "$run: exit $?"; tail -2 "$OUT/bench-$run.err"
done
python3 - "$OUT" <<'PY'
import json, sys, glob
out = sys.argv[1]
print("| precision | test | t/s | ± sd | weights GB | device GB | peak GB | bandwidth GB/s | roofline % |")
print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for p in ["f16", "f16.2", "f16.3", "int8", "nf4"]:
    try:
        recs = json.load(open(f"{out}/bench-{p}.json"))
    except Exception as e:
        print(f"| {p} | failed: {e} |"); continue
    for r in recs:
        roof = r["roofline_pct"]
        print(f"| {p} | {r['test']} | {r['avg_ts']:.1f} | {r['stddev_ts']:.1f} | {r['weight_bytes']/1e9:.3f} | {r['device_bytes']/1e9:.3f} | {r['device_peak_bytes']/1e9:.3f} | {r['bandwidth']/1e9:.0f} | {'' if roof is None else f'{roof:.1f}'} |")
PY
