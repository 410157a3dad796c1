#!/usr/bin/env bash
# llama.cpp side by side with `minilab bench` on the demo model, same machine, same run.
#
# Builds llama.cpp from the PyPI sdist of llama-cpp-python (which vendors it; no git, no hub), requantizes
# the demo GGUF to F16 / Q8_0 / Q4_0 with llama-quantize, runs llama-bench (pp512, tg128, -t THREADS,
# -r REPS) and `minilab bench` at the matched precision (f16↔F16, int8↔Q8_0, nf4↔Q4_0), alternating
# the two tools per format so that machine noise hits both alike, and prints one table of ratios.
#
# Usage: bash bench/peers/llamacpp.sh [--build-only] [OUTDIR]
#   THREADS (default: nproc), REPS (default 5), PEER_DIR (default target/peers) are read from the environment.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD_ONLY=0
[[ ${1:-} == --build-only ]] && { BUILD_ONLY=1; shift; }
OUT=${1:-bench/results/peers}
THREADS=${THREADS:-$(nproc)}
REPS=${REPS:-5}
PEER_DIR=${PEER_DIR:-target/peers}
VERSION=${LLAMA_CPP_PYTHON_VERSION:-0.3.16}
MODEL=models/SmolLM2-135M-Instruct-Q4_1.gguf
log() { echo "llamacpp.sh: $*" >&2; }

# The build steps live in llamacpp-build.sh (shared with the export checks).
build() { PEER_DIR="$PEER_DIR" bash bench/peers/llamacpp-build.sh "$VERSION" llama-bench llama-quantize; }

build
[[ $BUILD_ONLY == 1 ]] && exit 0
[[ -f $MODEL ]] || { log "missing $MODEL: run scripts/fetch-demo-model.sh"; exit 2; }
mkdir -p "$OUT"
cargo build --release --quiet
for q in F16 Q8_0 Q4_0; do
  [[ -f $PEER_DIR/demo-$q.gguf ]] || "$PEER_DIR/bin/llama-quantize" --allow-requantize "$MODEL" "$PEER_DIR/demo-$q.gguf" "$q" >/dev/null 2>&1
done
# Matched bits: llama-quantize keeps the (tied) LM head in Q8_0 in the Q8_0 and Q4_0 files, so the
# minilab plans do the same; 16-bit weights on both sides for F16 (minilab computes in f32 on CPU).
declare -A MATCH=([F16]=configs/plans/all-f16.yaml [Q8_0]=configs/plans/like-q8_0.yaml [Q4_0]=configs/plans/like-q4_0.yaml)
for q in F16 Q8_0 Q4_0; do
  plan=${MATCH[$q]}
  p=$(basename "$plan" .yaml)
  log "$q: llama-bench"
  "$PEER_DIR/bin/llama-bench" -m "$PEER_DIR/demo-$q.gguf" -p 512 -n 128 -t "$THREADS" -r "$REPS" -o json >"$OUT/llamacpp-$q.json" 2>/dev/null
  log "$p: minilab bench"
  RAYON_NUM_THREADS=$THREADS ./target/release/minilab bench --plan "$plan" --dtype f16 -p 512 -n 128 -r "$REPS" \
    --no-log --output json >"$OUT/minilab-$p.json"
done
python3 - "$OUT" "$THREADS" <<'PY'
import json, sys
out, threads = sys.argv[1], sys.argv[2]
print(f"| format | test | llama.cpp t/s | minilab t/s | minilab / llama.cpp |  ({threads} threads)")
print("| --- | --- | ---: | ---: | ---: |")
for q, p in [("F16", "all-f16"), ("Q8_0", "like-q8_0"), ("Q4_0", "like-q4_0")]:
    peer = json.load(open(f"{out}/llamacpp-{q}.json"))
    ours = {r["test"]: r for r in json.load(open(f"{out}/minilab-{p}.json"))}
    for r in peer:
        test = f"pp{r['n_prompt']}" if r["n_gen"] == 0 else f"tg{r['n_gen']}"
        m = ours[test]
        print(f"| {p}↔{q} | {test} | {r['avg_ts']:.1f} ± {r['stddev_ts']:.1f} | "
              f"{m['avg_ts']:.1f} ± {m['stddev_ts']:.1f} | {m['avg_ts'] / r['avg_ts']:.2f}× |")
PY
