#!/usr/bin/env bash
# Issue 5 on CPU, demo model: the plain path (MINILAB_KERNELS=plain: dequantize, then candle's
# matmul) against the fused kernels, per format, in one run, alternating so that machine noise hits
# both alike. f32 weights (the default CPU dtype) and 16-bit weights (--dtype f16) for the f16 format.
# Usage: bash bench/cpu-issue5.sh [OUTDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench/results/cpu-issue5}
mkdir -p "$OUT"
cargo build --release --quiet
for p in f16 int8 nf4; do
  for path in plain fused; do
    env MINILAB_KERNELS=$([ $path = plain ] && echo plain || echo fused) ./target/release/minilab bench \
      --precision $p -p 512 -n 32 -r 3 --no-log --output json > "$OUT/$p-$path.json"
  done
done
./target/release/minilab bench --precision f16 --dtype f16 -p 512 -n 32 -r 3 --no-log --output json > "$OUT/f16w16-fused.json"
python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
print("| format | test | plain t/s | fused t/s | fused / plain |")
print("| --- | --- | ---: | ---: | ---: |")
for p in ["f16", "int8", "nf4"]:
    a = {r["test"]: r for r in json.load(open(f"{out}/{p}-plain.json"))}
    b = {r["test"]: r for r in json.load(open(f"{out}/{p}-fused.json"))}
    for t in a:
        print(f"| {p} | {t} | {a[t]['avg_ts']:.1f} ± {a[t]['stddev_ts']:.1f} | {b[t]['avg_ts']:.1f} ± {b[t]['stddev_ts']:.1f} | {b[t]['avg_ts'] / a[t]['avg_ts']:.2f}× |")
for r in json.load(open(f"{out}/f16w16-fused.json")):
    print(f"| f16, 16-bit weights (--dtype f16) | {r['test']} | | {r['avg_ts']:.1f} ± {r['stddev_ts']:.1f} | |")
PY
