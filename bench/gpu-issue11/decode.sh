# bench/gpu-issue11.sh, the decode step: builds against each other, the headline
# run, the regressions, GEMV grids, mixed-format groups.
# Modes: decode, minilab, final, regress, resident, groups.
# Sourced by bench/gpu-issue11.sh (which sets OUT and loads lib.sh); $1 is the mode.
#   decode MODELS [check]: the same bench for each synthetic model of MODELS (default llama-3.2-3b),
#            three builds alternating: base (.gpu/minilab-base.xz, the previous commit), eager (this
#            build, --no-cuda-graph) and graph (this build); with `check` first `device_check cuda
#            attention` (the split decode attention against candle's ops), `device_check cuda graph`
#            (plain, fused-eager and graph decode against each other), `device_check cuda` (GPU
#            logits against the CPU's) and the attention A/B (simple, single and split kernels,
#            graph replays of the 3B step at 512, 1800 and 4000 cached positions).
#            DEPTH=N adds `-d N` to the benches (tgN then decodes after N cached positions);
#            PRECISIONS narrows the formats, BUDGET (s) stops starting benches once the call has run
#            that long, BUILDS picks the builds. Session 20's narrow rope_kv/causal_softmax templates
#            against session 19's build (3f9a1ab as .gpu/minilab-base.xz): MINILAB_WIDE_OPS=0
#            MINILAB_FUSE_ROPE=0 BUILDS="base graph" ... decode llama-3.2-3b.
#   minilab: .gpu/{minilab,minilab-base,device_check}.xz: device_check (every kernel and the fused
#            q/k/v launch against the plain path; GPU logits against the CPU's), then `minilab bench`
#            for the synthetic 3B and 8B in f16, int8 and nf4, this build and the base build
#            (before issue 11) alternating, so the ratio is measured side by side.
#   final: the committed build alone: device_check cuda, `mixed_bench --fused` where carried (stacked
#            q/k/v and gate/up against their parts), then the 3B/8B pp512 + tg128 in f16/int8/nf4 while
#            the call has time (.gpu/minilab.xz, .gpu/device_check.xz from bench/gpu-pack.sh).
#   regress: device_check cuda (GPU logits against the CPU's), graph, folds and kernels, then 3B
#            and 8B (MODELS) pp512/tg128 in f16, int8 and nf4 while the call has run < BUDGET (480) s.
#   resident: device_check cuda grid (rows, resident and both streaming GEMV grids, logits bit for bit,
#            on the 1B), then 3B tg128 in f16/int8/nf4 with MINILAB_GEMV_GRID=rows and each way that
#            passed (resident, stream, stream-regs); the grid check under MINILAB_PDL=1, then the
#            streams that pass it with MINILAB_PDL=1; then, while the call has time, stream+PDL with
#            MINILAB_FUSE_NORM=1, device_check cuda kernels and rope (on the 1B).
#   groups [MODELS]: (session 29) q/k/v and gate/up whose layers hold different formats in one launch
#            (gemv_mixed.cuh): `device_check cuda mixed` on the first of MODELS (default the 3B and the
#            8B: the launches against an f32 reference, mixed plans' decode logits and graph kernels
#            both ways, each plan's step both ways) and its timing alone on the others; then
#            bench/gpu-issue15.sh t on the 3B (time model 5's split charges, the frontier's errors).
case $1 in
decode)
  unpack minilab minilab-base device_check
  if [ "${3:-}" = check ]; then
    timeout 100 /tmp/bin/device_check cuda attention > "$OUT/attention_check.md" 2>&1; echo "device_check attention: exit $?"
    tail -1 "$OUT/attention_check.md"
    timeout 150 /tmp/bin/device_check cuda > "$OUT/device_check.txt" 2>&1; echo "device_check: exit $?"
    grep decode "$OUT/device_check.txt"
    timeout 120 /tmp/bin/device_check cuda graph > "$OUT/graph_check.md" 2>&1; echo "device_check graph: exit $?"
    cat "$OUT/graph_check.md"
    # The decode attention kernels against each other: graph replays of the 3B step at three depths.
    for n in 512 1800 4000; do for k in simple single split; do
      [ $k = simple ] && [ $n != 512 ] && continue
      echo "$k: $(MINILAB_ATTENTION=$k timeout 60 /tmp/bin/device_check cuda step llama-3.2-3b f16 $n 2>&1 | tail -1)"
    done; done | tee "$OUT/attention.txt"
  fi
  builds=${BUILDS:-base eager graph}
  for model in ${2:-llama-3.2-3b}; do
    for p in ${PRECISIONS:-f16 int8 nf4}; do
      for build in $builds; do
        [ $SECONDS -lt ${BUDGET:-100000} ] || continue
        bin=/tmp/bin/minilab; flag=""
        [ $build = base ] && bin=/tmp/bin/minilab-base
        [ $build = eager ] && flag=--no-cuda-graph
        timeout 150 $bin bench --model synthetic:$model --device cuda --dtype bf16 --precision $p -p 512 -n 128 -r 3 \
          ${DEPTH:+-d $DEPTH} $flag --no-log --output json > "$OUT/bench-${model#llama-}-$p-$build.json" 2> "$OUT/bench-${model#llama-}-$p-$build.err"
        echo "$model $p $build: exit $? $(tail -c 300 "$OUT/bench-${model#llama-}-$p-$build.err")"
      done
    done
  done
  python3 bench/builds_table.py "$OUT" $builds | tee "$OUT/table.md"
  pack decode table.md
  ;;
minilab)
  unpack minilab minilab-base device_check
  timeout 200 /tmp/bin/device_check cuda kernels > "$OUT/kernels.md" 2>&1; echo "device_check kernels: exit $?"
  timeout 150 /tmp/bin/device_check cuda > "$OUT/device_check.txt" 2>&1; echo "device_check: exit $?"
  cat "$OUT/device_check.txt"
  grep -E "worst|linears of one|q/k/v in one launch|^\| 3072\+" "$OUT/kernels.md" | awk -F'|' '{print}' | sort -t'|' -k6 -r | head -4
  grep -E "worst|linears of one" "$OUT/kernels.md"
  for model in llama-3.2-3b llama-3.1-8b; do
    for p in f16 int8 nf4; do
      for build in base new; do
        bin=/tmp/bin/minilab; [ $build = base ] && bin=/tmp/bin/minilab-base
        timeout 150 $bin bench --model synthetic:$model --device cuda --dtype bf16 --precision $p -p 512 -n 128 -r 3 \
          --output json > "$OUT/bench-${model#llama-}-$p-$build.json" 2> "$OUT/bench-${model#llama-}-$p-$build.err"
        echo "$model $p $build: exit $?"
      done
    done
  done
  table | tee "$OUT/table.md"
  pack minilab
  ;;
final)
  # The build as committed, alone: GPU logits against the CPU's (device_check cuda; in a cutlass build
  # the prompt's int8 products run CUTLASS's GEMM), then the 3B and 8B at pp512 and tg128 in f16, int8
  # and nf4 (the session's headline figures); one tar.
  # With .gpu/mixed_bench carried, `mixed_bench --fused` first: the stacked q/k/v and gate/up products
  # against their parts, in the crate's two formats.
  # NOCHECK=1 skips device_check (for a build already checked in an earlier call).
  unpack minilab device_check
  if [ -z "${NOCHECK:-}" ]; then
    timeout 150 /tmp/bin/device_check cuda > "$OUT/device_check.txt" 2>&1; echo "device_check: exit $?"
    tail -4 "$OUT/device_check.txt"
  fi
  if [ -x .gpu/mixed_bench ]; then
    libs=$(cublas_libs)
    LD_LIBRARY_PATH=.gpu:${libs:-}:${LD_LIBRARY_PATH:-} timeout 120 ./.gpu/mixed_bench --fused > "$OUT/fused.md" 2> "$OUT/fused.err"
    echo "mixed_bench --fused: exit $? (${SECONDS} s)"; grep -E "^\| [0-9]+x[0-9]+ .* \| 512 \||outside" "$OUT/fused.md"
  fi
  for model in llama-3.2-3b llama-3.1-8b; do
    for p in f16 int8 nf4; do
      [ $SECONDS -lt ${BUDGET:-360} ] || continue
      timeout 100 /tmp/bin/minilab bench --model synthetic:$model --device cuda --dtype bf16 --precision $p -p 512 -n 128 -r 3 \
        --no-log --output json > "$OUT/bench-${model#llama-}-$p-new.json" 2> "$OUT/bench-${model#llama-}-$p-new.err"
      echo "$model $p: exit $? (${SECONDS} s)"
    done
  done
  table | tee "$OUT/table.md"
  pack final table.md fused.md device_check.txt
  ;;
regress)
  unpack device_check minilab
  nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
  for c in "" graph folds kernels; do
    timeout ${LIMIT:-150} /tmp/bin/device_check cuda $c > "$OUT/check-${c:-logits}.txt" 2>&1; echo "device_check cuda $c: exit $?"
    tail -4 "$OUT/check-${c:-logits}.txt"; checkpoint
  done
  for m in ${MODELS:-llama-3.2-3b llama-3.1-8b}; do
    for p in f16 int8 nf4; do
      [ $SECONDS -lt ${BUDGET:-480} ] || continue
      timeout 150 /tmp/bin/minilab bench --model synthetic:$m --device cuda --dtype bf16 --precision $p \
        -p 512 -n 128 -r 3 --output json --no-log > "$OUT/bench-$m-$p-new.json" 2> "$OUT/bench-$m-$p.err"
      echo "bench $m $p: exit $?"; checkpoint
    done
  done
  table; pack regress
  ;;
resident)
  # the GEMV grids against each other (rows, resident, both streaming kernels: logits bit for bit on
  # the 1B), then 3B tg128 per way that equals the rows: rows, resident, stream, stream-regs; the
  # same check under PDL, then the streams that pass it with PDL (their first loads overlap the
  # previous kernel); then, while the call has time (each step starts only before ${BUDGET:-470} s),
  # stream with PDL and the norm fold (a block normalizes once a launch, after its first copies are
  # out), the silu·up check and RoPE fused against separate; all in one tar
  unpack minilab device_check
  budget=${BUDGET:-470}
  bench_way() {  # bench_way NAME ENV...: 3B tg128 in f16/int8/nf4 with ENV
    local name=$1; shift
    for p in f16 int8 nf4; do
      env "$@" timeout 50 /tmp/bin/minilab bench --model synthetic:llama-3.2-3b --device cuda --dtype bf16 --precision $p \
        -p 512 -n 128 -r 3 --no-log --output json > "$OUT/bench-3.2-3b-$p-$name.json" 2> "$OUT/bench-3.2-3b-$p-$name.err"
      echo "$p $name: exit $?"
    done
  }
  grid_check() {  # grid_check FILE [ENV...]: device_check cuda grid; prints the ways whose logits equal
    # the rows' in every format (none if the check hung or crashed): a way that changed the logits
    # times nothing worth having
    local file=$1; shift
    env "$@" timeout 150 /tmp/bin/device_check cuda grid llama-3.2-1b > "$file" 2>&1
    echo "device_check grid $*: exit $?" >&2; tail -9 "$file" >&2
    python3 - "$file" <<'PY'
import sys
head, ok = None, {}
for line in open(sys.argv[1], errors="replace"):
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if cells and cells[0] == "format" and any("logits equal" in c for c in cells):
        head = [c.split(":")[0] for c in cells[1:]]
    elif head and len(cells) == len(head) + 1 and cells[0] in ("f16", "int8", "nf4"):
        for name, cell in zip(head, cells[1:]):
            ok[name] = ok.get(name, True) and cell == "yes"
print(" ".join(n for n, good in ok.items() if good))
PY
  }
  has() { case " $1 " in *" $2 "*) true ;; *) false ;; esac; }
  equal=$(grid_check "$OUT/grid.md"); echo "equal to rows: ${equal:-none}"
  ways="rows"
  for w in resident stream stream-regs; do has "$equal" $w && ways="$ways ${w/stream-regs/regs}"; done
  for w in $ways; do
    case $w in regs) bench_way $w MINILAB_GEMV_GRID=stream-regs ;; *) bench_way $w MINILAB_GEMV_GRID=$w ;; esac
  done
  if has "$ways" stream || has "$ways" regs; then
    pdl_equal=$(grid_check "$OUT/grid-pdl.md" MINILAB_PDL=1); echo "equal to rows under PDL: ${pdl_equal:-none}"
    if has "$ways" stream && has "$pdl_equal" stream; then bench_way streampdl MINILAB_GEMV_GRID=stream MINILAB_PDL=1; ways="$ways streampdl"; fi
    if has "$ways" regs && has "$pdl_equal" stream-regs; then bench_way regspdl MINILAB_GEMV_GRID=stream-regs MINILAB_PDL=1; ways="$ways regspdl"; fi
  fi
  if has "$ways" streampdl && [ $SECONDS -lt $budget ]; then
    bench_way streamnorm MINILAB_GEMV_GRID=stream MINILAB_PDL=1 MINILAB_FUSE_NORM=1; ways="$ways streamnorm"
  fi
  if [ $SECONDS -lt $budget ]; then
    timeout 60 /tmp/bin/device_check cuda kernels > "$OUT/kernels.md" 2>&1; echo "device_check kernels: exit $?"
    grep -A22 "silu·up in one" "$OUT/kernels.md" | tail -20
  fi
  if [ $SECONDS -lt $budget ]; then
    timeout 60 /tmp/bin/device_check cuda rope llama-3.2-1b > "$OUT/rope.md" 2>&1; echo "device_check rope: exit $?"; tail -9 "$OUT/rope.md"
  fi
  echo "resident: ${SECONDS} s"
  python3 bench/builds_table.py "$OUT" $ways | tee "$OUT/table.md"
  pack resident table.md
  ;;
groups)
  unpack device_check minilab
  only=""
  for m in ${MODELS:-llama-3.2-3b llama-3.1-8b}; do
    timeout 240 /tmp/bin/device_check cuda mixed $m $only > "$OUT/mixed-$m.txt" 2>&1; echo "device_check mixed $m: exit $?"
    grep -A7 "^| model | plan" "$OUT/mixed-$m.txt"; tail -2 "$OUT/mixed-$m.txt"; only=time; checkpoint
  done
  OUT=$OUT/t MODELS=llama-3.2-3b bash bench/gpu-issue15.sh t; checkpoint
  pack groups
  ;;
esac
