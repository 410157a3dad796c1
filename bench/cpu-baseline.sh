#!/usr/bin/env bash
# The CPU baselines of `minilab bench` on the demo model (pp512 / tg128, 5 reps after a warm-up),
# f16 three times in a row (run-to-run agreement), then int8 and nf4. Release build.
# Usage: bash bench/cpu-baseline.sh [OUTDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench/results}
mkdir -p "$OUT"
cargo build --release --quiet
for run in f16 f16.2 f16.3 int8 nf4; do
  p=${run%%.*}
  ./target/release/minilab bench --precision "$p" --output json > "$OUT/cpu-$run.json"
  echo "$run done" >&2
done
python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
print("| run | test | t/s | ± sd | ttft ms | weights GB | RSS growth GB | peak GB | bandwidth GB/s | roofline % |")
print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for run in ["f16", "f16.2", "f16.3", "int8", "nf4"]:
    for r in json.load(open(f"{out}/cpu-{run}.json")):
        ttft = "" if r["ttft_ms"] is None else f"{r['ttft_ms']:.0f}"
        roof = "" if r["roofline_pct"] is None else f"{r['roofline_pct']:.1f}"
        print(f"| {run} | {r['test']} | {r['avg_ts']:.1f} | {r['stddev_ts']:.1f} | {ttft} | {r['weight_bytes']/1e9:.3f} | {r['device_bytes']/1e9:.3f} | {r['device_peak_bytes']/1e9:.3f} | {r['bandwidth']/1e9:.1f} | {roof} |")
PY
