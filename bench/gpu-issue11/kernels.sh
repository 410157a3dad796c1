# bench/gpu-issue11.sh, the GEMV harness (bench/kernels/gemv_bench.cu).
# Modes: kernels, launches, barriers, ahead.
# Sourced by bench/gpu-issue11.sh (which sets OUT and loads lib.sh); $1 is the mode.
#   kernels: the GEMV harness (bench/kernels/gemv_bench.cu, built by bench/kernels/build.sh):
#            every kernel against the plain reference, then GB/s per shape and a decode step's linears.
#            (`kernels --quick`: the m = 1 variant sweep and the decode step only.)
#            (`kernels --floor`: per NF4 shape and step, the empty launch, the loads alone (every load
#            of a warp's group in flight, or streamed by a resident grid across rows) and the shipped
#            kernel: how much of its time is launch, memory pattern or decode; then every format at
#            m = 1 with 4 or 8 steps of the k loop in flight against the shipped 2.)
#            (`kernels --pdl`: a step's linears with and without programmatic dependent launch.)
#            (`kernels --prefetch`: a step's linears where each launch first asks L2 for the next
#            launch's weights, per-line or bulk, at several caps, against the shipped kernels.)
#            (`kernels --merged`: the shipped kernels on resident grids (at most the blocks the GPU
#            holds at once, warps striding over the row groups), per shape and per step; and a step's
#            linears as one launch, dependencies ignored, at R = 2 and 4: what short-lived warps and
#            launch boundaries cost; every output against the shipped step's.)
#            (`kernels --staged`: the one-row kernels with their weights staged through shared memory
#            by cp.async, per shape and per step, bit-equal to the shipped kernels' outputs.)
#            (`kernels --late`: a block's two norm launches (q/k/v, gate/up with silu·up), 3B and 8B, every
#            format: a norm kernel then the shipped GEMV, against the late fold's gemv_ln_ kernels and, for
#            NF4, the late kernel at R = 2 and at R = 4 with 4 or 6 blocks an SM; each checked first;
#            then each norm's producer and consumer launches together: unfolded, late, and "stats",
#            where the residual launch hands the next one x·w and its blocks' sums of squares.)
#            Every kernels, barriers and ahead run also samples the SM clock (nvidia-smi, 100 ms) into
#            NAME.clocks.csv and prints its median: the static ceilings of bench/kernels/sass_table.py
#            and ahead_sass.py, and --ahead's waits (clock64 at the top clock), assume a clock.
#   launches: `gemv_bench --merged`, `--floor` and `--stream` in one call, into one tar.
#   barriers: `gemv_bench --barriers`: the grid barrier alone per block shape and kind, then a step's
#            linears in one resident launch, with a grid barrier where each shipped launch starts
#            (128-thread blocks with session 13's fenced barrier, and one block an SM with a
#            release/acquire one), against --merged's no-barrier bound: what a persistent step's waits cost.
#   ahead:   `gemv_bench --ahead`: the same persistent step, each block's producer warp streaming its
#            consumer warps' weights into shared memory with bulk copies ahead of the grid barriers
#            (bench/kernels/ahead.cuh), against the shipped step, the one-launch bound and session 15's
#            barrier way, every output checked against the shipped step's; 3B and 8B, every format.
# Runs gemv_bench with ARGS (timeout SECONDS) into $OUT/NAME.md and .err while sampling the SM clock
# (nvidia-smi, 100 ms) into $OUT/NAME.clocks.csv, and prints the exit and the clock's median: the
# static ceilings (sass_table.py, ahead_sass.py) and --ahead's waits assume a clock.
clocked() {
  local name=$1 seconds=$2
  nvidia-smi --query-gpu=clocks.sm,clocks.mem --format=csv,noheader,nounits -lms 100 > "$OUT/$name.clocks.csv" 2>/dev/null &
  local sampler=$!
  LD_LIBRARY_PATH=.gpu timeout "$seconds" ./.gpu/gemv_bench "${@:3}" > "$OUT/$name.md" 2> "$OUT/$name.err"
  echo "gemv_bench ${*:3}: exit $?"
  kill $sampler 2>/dev/null
  python3 - "$OUT/$name.clocks.csv" <<'PY'
import statistics, sys
sm = [int(l.split(",")[0]) for l in open(sys.argv[1]) if l.split(",")[0].strip().isdigit()]
print(f"SM clock while running: median {statistics.median(sm)} MHz, min {min(sm)}, max {max(sm)} ({len(sm)} samples)" if sm else "SM clock: no samples")
PY
}
case $1 in
kernels)
  clocked gemv 400 ${2:-}
  cat "$OUT/gemv.err" | tail -5
  cat "$OUT/gemv.md"
  ;;
launches)
  # what short-lived warps and launch boundaries cost the decode GEMVs: minilab's streaming kernels
  # against the shipped ones, with and without PDL (--stream), the shipped kernels on resident grids
  # and a step as one launch (--merged), the stream floor (--floor); every output against the
  # shipped kernels', all in one tar; the most telling first, the caps summing to under 600 s
  for m in stream:200 merged:200 floor:150; do
    LD_LIBRARY_PATH=.gpu timeout ${m#*:} ./.gpu/gemv_bench --${m%:*} > "$OUT/${m%:*}.md" 2> "$OUT/${m%:*}.err"; echo "gemv_bench --${m%:*}: exit $?"
    tail -2 "$OUT/${m%:*}.err"
  done
  cat "$OUT/stream.md"; grep -A16 "decode step" "$OUT/merged.md"; sed -n '/| step/,/^$/p' "$OUT/floor.md"
  pack launches
  ;;
barriers|ahead)
  clocked "$1" 240 "--$1"
  tail -2 "$OUT/$1.err"; cat "$OUT/$1.md"
  ;;
esac
