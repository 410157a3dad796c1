#!/usr/bin/env bash
# llama.cpp CUDA as a peer, on the GPU machine: builds llama-bench and llama-quantize from
# .gpu/llamacpp.tar.xz (bench/peers/fetch-llamacpp.sh), writes the synthetic MODEL's GGUF in F16
# (bench/peers/synthetic_gguf.py, llama.cpp's own gguf-py), quantizes it to Q8_0 and Q4_0, and runs
# llama-bench -p 512 -n 128 -r 3 on the GPU for each, the same tests as `minilab bench`.
# Usage there: bash bench/peers/llamacpp-cuda.sh [MODEL] [ARCH]   (llama-3.2-3b, 90). Output under $OUT.
# CUDA=OFF P=64 N=16 R=2 bash bench/peers/llamacpp-cuda.sh tiny: the same on a CPU (to try the script here).
# STOP_AFTER_PREPARE=1: build, write and quantize only (a first call; a second one benches). Every
# step that is done is skipped, so a call cut short by the time limit resumes in the next.
set -uo pipefail
OUT=${OUT:-/tmp/out}
MODEL=${1:-llama-3.2-3b}
ARCH=${2:-90}
CUDA=${CUDA:-ON}
REPO=$(pwd)
WORK=${WORK:-/tmp/peer}
mkdir -p "$OUT" "$WORK"
cd "$WORK"
[ -d lc ] || tar xJf "$REPO/.gpu/llamacpp.tar.xz" || { echo "no llama.cpp sources: run bench/peers/fetch-llamacpp.sh here first"; exit 1; }
SCRIPT="$REPO/bench/peers/synthetic_gguf.py"
BUILD=lc/build-cuda-$CUDA
NGL=99; [ "$CUDA" = ON ] || NGL=0
if [ ! -x $BUILD/bin/llama-bench ]; then
  t0=$(date +%s)
  cmake -S lc -B $BUILD -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_CUDA=$CUDA -DCMAKE_CUDA_ARCHITECTURES=$ARCH \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
    > "$OUT/cmake.log" 2>&1 || { echo "cmake failed"; tail -20 "$OUT/cmake.log"; exit 1; }
  cmake --build $BUILD -j"$(nproc)" --target llama-bench llama-quantize > "$OUT/build.log" 2>&1 ||
    { echo "build failed"; tail -20 "$OUT/build.log"; exit 1; }
  echo "llama.cpp built in $(( $(date +%s) - t0 )) s"
fi
BIN=$BUILD/bin
# Each file is written under a temporary name and renamed when complete, so that a run cut short
# (the device tool's time limit) resumes where it stopped on a machine that kept /tmp.
if [ ! -f "$MODEL-F16.gguf" ]; then
  t0=$(date +%s)
  PYTHONPATH=lc/gguf-py python3 "$SCRIPT" "$MODEL" "$MODEL-F16.gguf.part" && mv "$MODEL-F16.gguf.part" "$MODEL-F16.gguf" || exit 1
  echo "GGUF written in $(( $(date +%s) - t0 )) s"
fi
for q in Q8_0 Q4_0; do
  [ -f "$MODEL-$q.gguf" ] || { $BIN/llama-quantize "$MODEL-F16.gguf" "$MODEL-$q.gguf.part" $q > "$OUT/quantize-$q.log" 2>&1 &&
    mv "$MODEL-$q.gguf.part" "$MODEL-$q.gguf"; } || { echo "quantize $q failed"; tail -5 "$OUT/quantize-$q.log"; }
done
[ "${STOP_AFTER_PREPARE:-0}" = 1 ] && { echo "prepared: $(ls "$WORK"/*.gguf | tr '\n' ' ')"; exit 0; }
for q in F16 Q8_0 Q4_0; do
  timeout 300 $BIN/llama-bench -m "$MODEL-$q.gguf" -p ${P:-512} -n ${N:-128} -r ${R:-3} -ngl $NGL -o json > "$OUT/llama-bench-$MODEL-$q.json" \
    2> "$OUT/llama-bench-$MODEL-$q.err"; echo "llama-bench $MODEL $q: exit $?"
done
python3 - "$OUT" "$MODEL" <<'PY'
import json, sys
out, model = sys.argv[1], sys.argv[2]
print("| model | type | test | t/s |")
print("| --- | --- | --- | ---: |")
for q in ("F16", "Q8_0", "Q4_0"):
    try:
        runs = json.load(open(f"{out}/llama-bench-{model}-{q}.json"))
    except Exception as e:
        print(f"| {model} | {q} | failed: {e} | |"); continue
    for r in runs:
        test = f"pp{r['n_prompt']}" if r["n_prompt"] else f"tg{r['n_gen']}"
        print(f"| {model} | {q} | {test} | {r['avg_ts']:.1f} ± {r['stddev_ts']:.1f} |")
PY
