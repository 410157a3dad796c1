# bench/gpu-issue11.sh, Nsight Compute.
# Modes: step, prefill, profile, qgemm-profile, flash-profile.
# Sourced by bench/gpu-issue11.sh (which sets OUT and loads lib.sh); $1 is the mode.
#   prefill MODEL PRECISION: one `minilab bench -p 512 -n 0 -r 1` under Nsight Compute (kernel
#            durations only), summed by kernel: where a prefill's time goes.
#   profile: Nsight Compute on a few harness kernels (ncu is on the GPU machine).
#   qgemm-profile: Nsight Compute on the qgemm prefill kernels and cuBLAS bf16 at the 3B's gate and
#            down shapes (`prefill_bench --profile`).
#   flash-profile: Nsight Compute on flash attention's first nine launches in `device_check cuda flash`
#            (both builds at the 3B's pp512 shape, the 8B's, the 3B's at 2048): what bounds it.
case $1 in
step)
  # step MODEL PRECISIONS: graph-replay time a token per precision, then each kernel's share of one
  # step from Nsight Compute (per-node durations of two replays, warm caches, clocks left alone).
  unpack device_check
  for p in ${3:-f16}; do timeout 120 /tmp/bin/device_check cuda step ${2:-llama-3.2-3b} $p 2>&1 | tail -2; done
  NCU=$(ncu_bin)
  p=$(echo ${3:-f16} | cut -d' ' -f1)
  # kernels a step: 9 a block (the split attention takes two; silu·up is in the gate/up GEMV) and one for the head
  n=$(( $(python3 -c "print({'llama-3.2-3b':28,'llama-3.1-8b':32,'llama-3.2-1b':16}.get('${2:-llama-3.2-3b}',28))") * ${PER_BLOCK:-9} + 1 ))
  timeout 400 $NCU --graph-profiling node --clock-control none --cache-control none --metrics gpu__time_duration.sum \
    --kernel-name regex:"gemv_|attn_|rope_kv|add_rms_norm|silu_mul" --launch-skip $n --launch-count $((2 * n)) \
    --csv --print-units base /tmp/bin/device_check cuda step ${2:-llama-3.2-3b} $p > "$OUT/ncu-step.csv" 2> "$OUT/ncu-step.err"
  echo "ncu: exit $?"; tail -2 "$OUT/ncu-step.err"
  python3 bench/ncu_table.py "$OUT/ncu-step.csv" 2 us
  ;;
prefill)
  unpack minilab
  NCU=$(ncu_bin)
  timeout ${NCU_LIMIT:-200} $NCU --clock-control none --cache-control none --metrics gpu__time_duration.sum --csv --print-units base \
    /tmp/bin/minilab bench --model synthetic:${2:-llama-3.2-3b} --device cuda --dtype bf16 --precision ${3:-f16} -p 512 -n 0 -r 1 \
    --no-roofline --no-log > "$OUT/ncu-prefill-${3:-f16}.csv" 2> "$OUT/ncu-prefill-${3:-f16}.err"
  echo "ncu prefill ${3:-f16}: exit $?"; tail -2 "$OUT/ncu-prefill-${3:-f16}.err"
  # two prefills: the warm-up and the timed one; the load's kernels (q/k/v stacking's copies, the RoPE
  # tables) come before the first pass's embedding gather and are summed apart
  python3 bench/ncu_table.py "$OUT/ncu-prefill-${3:-f16}.csv" 2 ms 14 --start is_u32_
  ;;
profile)
  NCU=$(ncu_bin)
  echo "ncu: ${NCU:-none}"
  LD_LIBRARY_PATH=.gpu timeout 300 $NCU --kernel-name regex:"kern|dec|gemv_" --launch-count 18 \
    "${NCU_SECTIONS[@]}" \
    ./.gpu/gemv_bench --profile > "$OUT/ncu.txt" 2> "$OUT/ncu.err"; echo "ncu: exit $?"
  tail -3 "$OUT/ncu.err"
  grep -E "^  [a-z_]+.*\(|Duration|Memory Throughput|DRAM Throughput|Compute \(SM\) Throughput|Achieved Occupancy|Issue Slots Busy|Warp Cycles Per Issued|No Eligible|L1/TEX Hit|Mem Pipes Busy|Registers Per|Theoretical Occ|Block Limit|Stall|lsu|LSU" "$OUT/ncu.txt" | head -150
  ;;
qgemm-profile)
  # Nsight Compute on `prefill_bench --profile`: cuBLAS bf16 and the qgemm kernels (int8/NF4, 64 and
  # 128 rows a block) on the 3B's gate and down shapes, the second launch of each (after a warm-up).
  NCU=$(ncu_bin)
  libs=$(cublas_libs)
  LD_LIBRARY_PATH=.gpu:${libs:-}:${LD_LIBRARY_PATH:-} timeout 400 $NCU --kernel-name regex:"qgemm|gemm|sm90" \
    "${NCU_SECTIONS[@]}" \
    ./.gpu/prefill_bench --profile > "$OUT/ncu-qgemm.txt" 2> "$OUT/ncu-qgemm.err"; echo "ncu: exit $?"
  tail -3 "$OUT/ncu-qgemm.err"
  grep -E "^  [A-Za-z_].*\(|Duration|Memory Throughput|DRAM Throughput|Compute \(SM\) Throughput|Achieved Occupancy|Issue Slots Busy|Warp Cycles Per Issued|No Eligible|Shared Memory|Bank|Registers Per|Theoretical Occ|Block Limit|Stall|Tensor|pipe" "$OUT/ncu-qgemm.txt" | head -200
  ;;
flash-profile)
  # Nsight Compute on flash attention: the first nine launches of `device_check cuda flash` (the 3B's
  # 512-token shape in the default build (three blocks an SM since session 25), that build again,
  # the compiler's own layout and the split-KV entry; the same four at the 8B's 512; the 3B's at
  # 2048), with the sections that say what bounds it (tensor pipe, stalls, occupancy, memory) and
  # each kernel's own duration (the split's without its scratch's zeroing); the check then runs on
  # unprofiled.
  unpack device_check
  NCU=$(ncu_bin)
  timeout ${NCU_LIMIT:-300} $NCU --kernel-name regex:flash_attention --launch-count 9 \
    "${NCU_SECTIONS[@]}" \
    /tmp/bin/device_check cuda flash > "$OUT/ncu-flash.txt" 2> "$OUT/ncu-flash.err"; echo "ncu: exit $?"
  tail -3 "$OUT/ncu-flash.err"
  grep -E "^  [a-z_]+.*\(|Duration|Memory Throughput|DRAM Throughput|Compute \(SM\) Throughput|Achieved Occupancy|Issue Slots Busy|Warp Cycles Per Issued|No Eligible|Registers Per|Theoretical Occ|Block Limit|Stall|Tensor|pipe|Shared Memory|Bank" "$OUT/ncu-flash.txt" | head -200
  pack flash-profile ncu-flash.txt
  ;;
esac
