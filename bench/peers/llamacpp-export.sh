#!/usr/bin/env bash
# Checks minilab's llama.cpp exports with the real llama.cpp (built from the PyPI sdist of
# llama-cpp-python), on the demo model:
#   1. for each 4-bit type for nf4 layers (q4_0, iq4_nl, q4_k), `minilab export --tensor-type-file`
#      → llama-quantize on the F16 file → every tensor's type read back with the `gguf` package;
#   2. `minilab export --gguf` (q4_0, q4_k) from the GGUF and (q4_0) from a Hugging Face folder made
#      of the same weights → the same type check, and the two routes' tensors compared bit for bit;
#   3. llama-perplexity on every file: PPL and KLD against the F16 file, next to `minilab eval --kld`.
# Fails (exit 1) on the first file whose tensor types differ from the plan's, or if the old unanchored
# lines (the negative control) were to pass the same check.
#
# Usage: bash bench/peers/llamacpp-export.sh [PLAN] [OUTDIR]
#   PLAN default configs/plans/mixed.yaml; OUTDIR default bench/results/export (logs, JSON, table.md).
#   CHUNKS (512-token windows, default 16 = 8,192 tokens), THREADS (default nproc),
#   PEER_DIR (llama.cpp build and the large .gguf files, default target/peers) from the environment.
set -euo pipefail
cd "$(dirname "$0")/../.."
PLAN=${1:-configs/plans/mixed.yaml}
OUT=${2:-bench/results/export}
VERSION=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
PEER_DIR=${PEER_DIR:-target/peers}
CHUNKS=${CHUNKS:-16}
THREADS=${THREADS:-$(nproc)}
MODEL=models/SmolLM2-135M-Instruct-Q4_1.gguf
TEXT=eval-data/heldout.txt
MINILAB=${MINILAB:-target/release/minilab}
BIN=$PEER_DIR/bin
W=$PEER_DIR/export
PY="python3 bench/peers/export_check.py"
log() { echo "llamacpp-export.sh: $*" >&2; }

[[ -f $MODEL ]] || { log "missing $MODEL: run scripts/fetch-demo-model.sh"; exit 2; }
bash bench/peers/llamacpp-build.sh "$VERSION" llama-quantize llama-perplexity
python3 -c 'import gguf, safetensors' 2>/dev/null || python3 -m pip install --quiet --user gguf safetensors
[[ -x $MINILAB ]] || cargo build --release --quiet
mkdir -p "$OUT" "$W"
F16=$W/demo-F16.gguf
[[ -f $F16 ]] || "$BIN/llama-quantize" --allow-requantize "$MODEL" "$F16" F16 >"$W/f16.log" 2>&1

log "1. --tensor-type-file through llama-quantize"
for t in q4_0 iq4_nl q4_k; do
  "$MINILAB" export --model "$MODEL" --plan "$PLAN" --gguf-4bit $t --tensor-type-file "$OUT/plan-$t.list"
  "$BIN/llama-quantize" --tensor-type-file "$OUT/plan-$t.list" "$F16" "$W/lq-$t.gguf" Q8_0 >"$OUT/quantize-$t.log" 2>&1
  $PY check "$W/lq-$t.gguf" "$OUT/plan-$t.list"
done

# Negative control: the unanchored lines minilab wrote before issue 12 (`output=…` is also found
# inside every blk.N.attn_output.weight) must fail the same check, or the check proves nothing.
python3 - "$OUT/plan-q4_0.list" >"$W/old-style.list" <<'PY'
import sys
for tok in open(sys.argv[1]).read().split():
    pat, ty = tok.rsplit("=", 1)
    name = pat.strip("^$").replace("\\", "").removesuffix(".weight")
    print(f"token_embd={ty}\noutput={ty}" if name == "token_embd" else f"{name}={ty}")
PY
"$BIN/llama-quantize" --tensor-type-file "$W/old-style.list" "$F16" "$W/old-style.gguf" Q8_0 >"$OUT/quantize-old-style.log" 2>&1
if $PY check "$W/old-style.gguf" "$OUT/plan-q4_0.list"; then log "the check passed the old unanchored lines"; exit 1; fi

log "2. minilab export --gguf, from the GGUF and from a Hugging Face folder of the same weights"
for t in q4_0 q4_k; do
  "$MINILAB" export --model "$MODEL" --plan "$PLAN" --gguf-4bit $t --gguf "$W/minilab-$t.gguf"
  $PY check "$W/minilab-$t.gguf" "$OUT/plan-$t.list"
done
[[ -f $W/hf/model.safetensors ]] || $PY to-hf "$MODEL" "$W/hf"
"$MINILAB" export --model "$W/hf" --plan "$PLAN" --gguf "$W/minilab-hf-q4_0.gguf"
$PY check "$W/minilab-hf-q4_0.gguf" "$OUT/plan-q4_0.list"
$PY same "$W/minilab-q4_0.gguf" "$W/minilab-hf-q4_0.gguf"

log "3. llama-perplexity, $CHUNKS windows of 512 tokens of $TEXT, KLD against the F16 file"
"$BIN/llama-perplexity" -m "$F16" -f "$TEXT" -c 512 --chunks "$CHUNKS" -t "$THREADS" \
  --kl-divergence-base "$W/f16.kld" >"$OUT/ppl-f16.log" 2>&1
for f in lq-q4_0 lq-iq4_nl lq-q4_k minilab-q4_0 minilab-q4_k minilab-hf-q4_0; do
  "$BIN/llama-perplexity" -m "$W/$f.gguf" --kl-divergence-base "$W/f16.kld" --kl-divergence -c 512 \
    --chunks "$CHUNKS" -t "$THREADS" >"$OUT/ppl-$f.log" 2>&1 || { log "llama-perplexity failed on $f.gguf"; tail -5 "$OUT/ppl-$f.log"; exit 1; }
done
"$MINILAB" eval --plan "$PLAN" --kld --max-tokens $((CHUNKS * 512)) --json >"$OUT/minilab-eval.json"
$PY table "$OUT" | tee "$OUT/table.md"
