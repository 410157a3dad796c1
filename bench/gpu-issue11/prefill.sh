# bench/gpu-issue11.sh, the prompt: the prefill harness, the CUTLASS GEMMs,
# the qgemm rows, the host cost, cold starts.
# Modes: prefill-ways, prefill-overlap, mixed, cutlass, qgemm-rows, prefill-graph, coldstart.
# Sourced by bench/gpu-issue11.sh (which sets OUT and loads lib.sh); $1 is the mode.
#   prefill-ways: the prefill harness (bench/kernels/prefill_bench.cu, built by bench/kernels/build.sh):
#            a prompt's linears (m = 512) with bf16 weights against int8/NF4 dequantized then multiplied
#            (the shipped way), in chunks that fit L2, on two streams, and by the qgemm GEMM; the
#            dequantize pass alone.
#   prefill-overlap: `prefill_bench --overlap` (bench/kernels/overlap.cuh): the dequantize pass on S SMs
#            beside cuBLAS on the rest (cublasSetSmCountTarget), S = 16–32, in three shapes of the pass,
#            against the shipped way; the pass alone on S SMs; the same overlap without spinning (a
#            launch a weight on S blocks, two streams and events); each overlap's timeline (pass busy,
#            GEMMs busy, both at once).
#   mixed: bench/kernels/mixed_bench.cu (CUTLASS 4.2's sm90 mixed-input GEMM, int8 × bf16 with row
#            scales (bf16, f32, and f32 on the stored q + 128 through cutlass/int8_convert.cuh),
#            int4 × bf16 and NF4 (bf16 table, f32 exact) with 64-element group scales, three
#            data-parallel tiles, stream-K and split-K 2 each, every 3B/8B shape at
#            512, 128 and 2048 rows) against cuBLAS bf16, each checked against cuBLAS on the dequantized
#            weight: would a wgmma GEMM reach the int8/NF4 prefill target? (`mixed --fused`: the
#            crate's two formats on stacked q/k/v and gate/up products beside their parts.)
#   cutlass: the `cutlass` build's int8 prefill, everything in one tar (call-sized, about 300 s):
#            mixed_bench first (the biased int8 converter of bench/kernels/int8_convert.cuh checked
#            against cuBLAS on the dequantized weight, and timed beside the zero-point way's figures),
#            then `device_check cuda qgemm` (every shape against the f32 reference, the 3B's logits),
#            then `minilab bench -p 128,512,2048 -n 0` for the 3B and 8B in f16, int8 with
#            MINILAB_QGEMM=off and =auto (the default: CUTLASS for int8), nf4; needs .gpu/mixed_bench,
#            .gpu/minilab.xz and .gpu/device_check.xz from a gpu-pack.sh build.
#   qgemm-rows [MODELS]: where the qgemm GEMM pays: `device_check cuda qgemm-rows` (each 3B/8B shape at
#            16 to 512 rows, bf16 against int8/NF4 shipped and by the GEMM), then pp16…pp512 of MODELS
#            (default the 3B and 8B) in f16, int8 and NF4 shipped ("new") and with MINILAB_QGEMM=on
#            ("qgemm"), then, while the call has time, the qgemm-profile below.
#   prefill-graph [MODELS]: `device_check cuda prefill-graph` (pp512 eager against one CUDA graph's
#            replay, every format: how much of a prompt is candle's host cost), .gpu/device_check.xz.
#   coldstart: a fresh machine's first run (JIT cache off), the SASS-loading build against the PTX one
#            (.gpu/minilab.xz, .gpu/minilab-ptx.xz, .gpu/device_check.xz), after device_check cuda.
case $1 in
prefill-ways)
  # bench/kernels/prefill_bench.cu: a prompt's linears in bf16, and int8/nf4 the shipped way
  # (dequantize, then cuBLAS), in L2-sized chunks, and on two streams; the dequantize pass alone.
  libs=$(cublas_libs)
  LD_LIBRARY_PATH=.gpu:${libs:-}:${LD_LIBRARY_PATH:-} timeout 300 ./.gpu/prefill_bench > "$OUT/prefill.md" 2> "$OUT/prefill.err"
  echo "prefill_bench: exit $?"; tail -5 "$OUT/prefill.err"; cat "$OUT/prefill.md"
  ;;
prefill-overlap)
  # bench/kernels/overlap.cuh: the dequantize pass of a prompt's int8/NF4 weights on S SMs (one
  # persistent kernel, or a launch a weight) while cuBLAS multiplies on the rest, against the shipped way
  libs=$(cublas_libs)
  CUDA_MODULE_LOADING=EAGER LD_LIBRARY_PATH=.gpu:${libs:-}:${LD_LIBRARY_PATH:-} timeout 200 ./.gpu/prefill_bench --overlap > "$OUT/overlap.md" 2> "$OUT/overlap.err"
  echo "prefill_bench --overlap: exit $?"; tail -5 "$OUT/overlap.err"; cat "$OUT/overlap.md"
  ;;
mixed)
  libs=$(cublas_libs)
  LD_LIBRARY_PATH=.gpu:${libs:-}:${LD_LIBRARY_PATH:-} timeout ${LIMIT:-300} ./.gpu/mixed_bench "${@:2}" 2> "$OUT/mixed.err" | tee "$OUT/mixed.md"
  echo "mixed_bench: exit ${PIPESTATUS[0]}"; tail -5 "$OUT/mixed.err"
  ;;
cutlass)
  # With .gpu/{minilab,device_check}-biased.xz carried too (a build whose CUTLASS int8 GEMM reads the
  # stored q + 128 back as q through bench/kernels/int8_convert.cuh, no zero point), that build is
  # checked and timed as a third int8 way ("biased") beside `off` and the zero-point GEMM ("auto").
  unpack minilab device_check
  builds=(minilab); [ -f .gpu/minilab-biased.xz ] && { unpack minilab-biased device_check-biased; builds+=(minilab-biased); }
  libs=$(cublas_libs)
  LD_LIBRARY_PATH=.gpu:${libs:-}:${LD_LIBRARY_PATH:-} timeout 60 ./.gpu/mixed_bench > "$OUT/mixed.md" 2> "$OUT/mixed.err"
  echo "mixed_bench: exit $?"; grep -E "q\+128|outside|wrong" "$OUT/mixed.md"
  for b in "${builds[@]}"; do
    check=${b/minilab/device_check}
    timeout 150 /tmp/bin/$check cuda qgemm > "$OUT/qgemm-$b.md" 2>&1; echo "$check qgemm: exit $?"
    grep -E "BF16|worst|^\| (int8|nf4) " "$OUT/qgemm-$b.md" | grep -v F16
  done
  for model in llama-3.2-3b llama-3.1-8b; do
    for run in f16:auto:minilab int8:off:minilab int8:auto:minilab int8:auto:minilab-biased nf4:auto:minilab; do
      IFS=: read -r p q b <<< "$run"
      [ -x /tmp/bin/$b ] && [ $SECONDS -lt ${BUDGET:-480} ] || continue
      name=${model#llama-}-$p-$q; [ $b = minilab-biased ] && name=${model#llama-}-$p-biased
      MINILAB_QGEMM=$q timeout 60 /tmp/bin/$b bench --model synthetic:$model --device cuda --dtype bf16 --precision $p \
        -p 128,512,2048 -n 0 -r 5 --no-log --output json > "$OUT/bench-$name.json" 2> "$OUT/bench-$name.err"
      echo "$model $p QGEMM=$q $b: exit $? (${SECONDS} s)"
    done
  done
  python3 - "$OUT" <<'PY' | tee "$OUT/table.md"
import glob, json, os, sys
print("| run | pp128 | pp512 | pp2048 |")
print("| --- | ---: | ---: | ---: |")
for f in sorted(glob.glob(f"{sys.argv[1]}/bench-*.json")):
    try:
        r = {x["test"]: f"{x['avg_ts']:.0f} ± {x['stddev_ts']:.0f}" for x in json.load(open(f))}
    except Exception as e:
        r = {"pp128": f"failed: {e}"}
    name = os.path.basename(f)[len("bench-"):-len(".json")]
    print(f"| {name} | {r.get('pp128', '')} | {r.get('pp512', '')} | {r.get('pp2048', '')} |")
PY
  pack cutlass table.md mixed.md qgemm-minilab.md
  ;;
qgemm-rows)
  unpack minilab device_check
  timeout 120 /tmp/bin/device_check cuda qgemm-rows > "$OUT/qgemm-rows.md" 2>&1; echo "device_check qgemm-rows: exit $?"
  cat "$OUT/qgemm-rows.md"
  for model in ${2:-llama-3.2-3b llama-3.1-8b}; do
    for p in f16 int8 nf4; do
      for build in new qgemm; do
        [ $p = f16 ] && [ $build = qgemm ] && continue
        env=""; [ $build = qgemm ] && env=MINILAB_QGEMM=on
        env $env timeout 100 /tmp/bin/minilab bench --model synthetic:$model --device cuda --dtype bf16 --precision $p \
          -p 16,32,64,128,256,512 -n 0 -r 5 --no-log --output json > "$OUT/bench-${model#llama-}-$p-$build.json" 2> "$OUT/bench-${model#llama-}-$p-$build.err"
        echo "$model $p $build: exit $?"
      done
    done
  done
  python3 bench/builds_table.py "$OUT" new qgemm | tee "$OUT/table.md"
  echo "qgemm-rows: ${SECONDS} s"
  [ $SECONDS -lt ${BUDGET:-300} ] && [ -x .gpu/prefill_bench ] && bash "$0" qgemm-profile | tail -80
  pack qgemm-rows table.md qgemm-rows.md
  ;;
prefill-graph)
  # How much of a prompt is the host's: `device_check cuda prefill-graph` for MODELS (default the 3B,
  # then the 8B): pp512 eager (ms, and when the host had issued it all) against the same prompt
  # replayed as one CUDA graph, every format, logits compared.
  unpack device_check
  for model in ${2:-llama-3.2-3b llama-3.1-8b}; do
    [ $SECONDS -lt ${BUDGET:-400} ] || continue
    timeout 200 /tmp/bin/device_check cuda prefill-graph $model > "$OUT/prefill-graph-$model.md" 2>&1
    echo "device_check prefill-graph $model: exit $? (${SECONDS} s)"; cat "$OUT/prefill-graph-$model.md"
  done
  ;;
coldstart)
  # What a fresh machine's first run costs: `minilab bench` with the driver's JIT cache off
  # (CUDA_CACHE_DISABLE=1, as on a new node or container), the build that embeds SASS (this one,
  # .gpu/minilab.xz) against one that loads PTX (.gpu/minilab-ptx.xz, ca5626b), alternating, three
  # rounds, wall time and the bench's own figures; first `device_check cuda` on this build (its kernels
  # loaded from SASS, logits against the CPU's). Candle's own kernels are PTX in both.
  unpack minilab device_check
  unpack minilab-ptx
  timeout 150 /tmp/bin/device_check cuda > "$OUT/device_check.txt" 2>&1; echo "device_check: exit $? (${SECONDS} s)"
  tail -6 "$OUT/device_check.txt"
  for r in 1 2 3; do
    for b in minilab minilab-ptx; do
      [ $SECONDS -lt ${BUDGET:-420} ] || continue
      t0=$(date +%s.%N)
      CUDA_CACHE_DISABLE=1 timeout 150 /tmp/bin/$b bench --model synthetic:llama-3.2-3b --device cuda --dtype bf16 \
        --precision int8 -p 512 -n 16 -r 1 --no-log --output json > "$OUT/cold-$b-$r.json" 2> "$OUT/cold-$b-$r.err"
      rc=$?
      echo "$b round $r: exit $rc, $(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$t0" "$(date +%s.%N)") s wall"
    done
  done
  pack coldstart device_check.txt
  ;;
esac
