# bench/gpu-issue11.sh, one switch (an environment variable) against the
# default: checked, then alternating benches.
# Modes: pdl, rope, norm, prefetch, chunk, staged, grid, plainprefill, qgemm, alternate, stack, wide,
# flash, foldab.
# Sourced by bench/gpu-issue11.sh (which sets OUT and loads lib.sh); $1 is the mode.
#   pdl [MODELS]: programmatic dependent launch. `device_check cuda graph` and `device_check cuda`,
#            `gemv_bench --pdl` (a step's linears, plain against PDL launches), then minilab bench for
#            MODELS (default llama-3.2-3b) in f16/int8/nf4: the base build (.gpu/minilab-base.xz), this
#            build ("new") and this build with MINILAB_PDL=1 ("pdl"), alternating.
#            (Session 6 ran it when PDL was the default: its "nopdl" is today's "new", its "new" "pdl".)
#   rope [MODELS]: the same for RoPE and the KV append in a kernel of their own (MINILAB_FUSE_ROPE=0)
#            against the default, the q/k/v launch doing them (`device_check cuda rope`: equal logits,
#            then ms a token each way).
#   norm [MODELS]: the same for the norms and residual adds folded into the GEMVs
#            (MINILAB_FUSE_NORM=${NORM:-late}; also `device_check cuda folds`, which checks both ways).
#            Session 9, with =1 (each block normalizes xs into shared memory first): correct, 13-16 %
#            slower. =late: the gemv_ln_ kernels' warps normalize as they load xs.
#   prefetch [MODELS]: `device_check cuda prefetch` (the step whose GEMV launches ask L2 for the next
#            launch's weights, every way, against the step without: equal logits, then ms a token per
#            way), then the same benches with MINILAB_PREFETCH=${WAY:-bulk}.
#   chunk [MODELS]: the same for prefill dequantizing int8/NF4 weights in row chunks of ${MB:-16} MB
#            (MINILAB_PREFILL_CHUNK_MB; `device_check cuda kernels` checks the 64-row products with it).
#   staged [MODELS]: the same for the one-row GEMVs staging their weights through shared memory by
#            cp.async (MINILAB_GEMV_STAGED=1; `device_check cuda staged`: equal logits, then ms a token).
#   grid [MODELS]: the same for GEMV launches on resident grids (MINILAB_GEMV_GRID=${GRID:-resident};
#            `device_check cuda grid`: rows, resident and stream, equal logits, then ms a token each way).
#   plainprefill [MODELS]: the same for the prompt's small ops unfused (MINILAB_FUSE_PREFILL=0; the
#            default fuses RoPE, the layout by head and the KV writes in one pass, the attention output
#            by token, add + norm, silu·up; `device_check cuda prefill` checks the fused prefill against
#            the plain one and times pp512 both ways).
#   qgemm [MODELS]: the same for the prefill GEMM that dequantizes int8/NF4 tiles in shared memory
#            (MINILAB_QGEMM=on; `device_check cuda qgemm` checks it against an f32 reference on every
#            3B/8B shape, times it against the shipped dequantize + cuBLAS, then the 3B's logits and
#            pp512 both ways). `prefill-ways` times it in the harness too (qgemm, bm64, bm128 rows).
#            QGEMM=cutlass runs the benches with CUTLASS's GEMM instead (a gpu-pack.sh build, which has
#            the `cutlass` feature; device_check qgemm checks both GEMMs either way).
#   alternate VAR: VAR=0 and VAR=1 alternating ROUNDS (3) times on MODELS × PRECISIONS, pp128/512
#            (LENGTHS=512,2048 for others); the median over rounds of each round's ratio
#            (.gpu/minilab.xz). E.g. LENGTHS=512,2048 ... alternate MINILAB_FLASH_B3: flash attention's
#            three-blocks-an-SM build against the default (`device_check cuda flash` checks and times it).
#            LENGTHS=128,512 ... alternate MINILAB_FLASH_SPLIT: the split-KV build for short prompts.
#   stack: q/k/v stacked into one weight (MINILAB_STACK_QKV=1) against the layers apart: device_check
#            cuda stack, then the 3B/8B pp128/512/2048 both ways in f16/int8/nf4 (.gpu/minilab.xz,
#            .gpu/device_check.xz).
#   wide [softmax]: the prompt's add + norm, silu·up, RoPE and causal softmax with 16-byte accesses against the
#            2-byte kernels (device_check cuda wide and cuda, then pp128/512/2048 with MINILAB_WIDE_OPS=0
#            and 1); with `softmax`, the softmax with its rows in registers (MINILAB_SOFTMAX_REGS) instead.
#   flash: device_check cuda flash, then `alternate MINILAB_FLASH` if it passed.
#   foldab [MODELS]: the stats way (session 27: the residual launch before each norm hands it xw and
#            its blocks' sums of squares) checked with `device_check cuda folds`, `graph` and `cuda`
#            under the default (CHECK=0 skips them), then tg128 (-p 16 -n 128 -r 3) of MODELS (default
#            the 3B) in f16/int8/nf4 with MINILAB_FUSE_NORM=0, late and the default (auto) alternating
#            ROUNDS (2) times while the call has BUDGET (480 s); the median over rounds of each round's
#            ratio into table.md.
case $1 in
pdl|rope|norm|prefetch|chunk|staged|grid|plainprefill|qgemm)
  # pdl: programmatic dependent launch (MINILAB_PDL=1); staged: the one-row GEMVs staging their
  # weights through shared memory (MINILAB_GEMV_STAGED=1); rope: RoPE and the KV append in a kernel
  # of their own (MINILAB_FUSE_ROPE=0, the q/k/v launch does them by default); norm: norms and
  # residual adds folded into the GEMVs (MINILAB_FUSE_NORM=1); grid: GEMV launches on resident grids
  # (MINILAB_GEMV_GRID=resident); plainprefill: the prompt's small ops unfused (MINILAB_FUSE_PREFILL=0;
  # `device_check cuda prefill`: f32 logits within 1e-4, bf16 argmax, pp512 both ways); qgemm: the
  # prefill GEMM that dequantizes in shared memory (MINILAB_QGEMM=on; `device_check cuda qgemm`:
  # every 3B/8B shape against an f32 reference and timed, the 3B's logits and pp512). The checks
  # run with the setting; the benches alternate the base build, this build and this build with it.
  unpack minilab minilab-base device_check
  case $1 in pdl) opt=MINILAB_PDL=1 ;; rope) opt=MINILAB_FUSE_ROPE=0 ;; norm) opt=MINILAB_FUSE_NORM=${NORM:-late} ;;
    prefetch) opt=MINILAB_PREFETCH=${WAY:-bulk} ;; chunk) opt=MINILAB_PREFILL_CHUNK_MB=${MB:-16} ;;
    staged) opt=MINILAB_GEMV_STAGED=1 ;; plainprefill) opt=MINILAB_FUSE_PREFILL=0 ;; qgemm) opt=MINILAB_QGEMM=${QGEMM:-on} ;;
    *) opt=MINILAB_GEMV_GRID=${GRID:-resident} ;; esac
  if [ $1 = prefetch ] || [ $1 = staged ] || [ $1 = rope ] || [ $1 = grid ]; then
    # every way in one process: logits bit-equal to the step without, then the 3B step's time per way
    timeout 300 /tmp/bin/device_check cuda $1 > "$OUT/$1.md" 2>&1; echo "device_check $1: exit $?"
    cat "$OUT/$1.md"
  fi
  if [ $1 = qgemm ]; then
    timeout 240 /tmp/bin/device_check cuda qgemm > "$OUT/$1.md" 2>&1; echo "device_check qgemm: exit $?"
    cat "$OUT/$1.md"
  fi
  if [ $1 = plainprefill ]; then
    timeout 200 /tmp/bin/device_check cuda prefill > "$OUT/$1.md" 2>&1; echo "device_check prefill: exit $?"
    grep -vE "^heads_to_rows .*: 0 of" "$OUT/$1.md"
  fi
  env $opt timeout 120 /tmp/bin/device_check cuda graph > "$OUT/graph_check.md" 2>&1; echo "$opt device_check graph: exit $?"
  tail -5 "$OUT/graph_check.md"
  env $opt timeout 150 /tmp/bin/device_check cuda > "$OUT/device_check.txt" 2>&1; echo "$opt device_check: exit $?"
  grep -iE "decode|logits" "$OUT/device_check.txt" | tail -4
  # every GEMV launch (the silu·up and, with the opt-ins, the RoPE and residual ones) against the plain path
  env $opt timeout 200 /tmp/bin/device_check cuda kernels > "$OUT/kernels.md" 2>&1; echo "$opt device_check kernels: exit $?"
  grep -E "worst|silu|rope|residual" "$OUT/kernels.md" | tail -6
  if [ $1 = norm ]; then
    env $opt timeout 120 /tmp/bin/device_check cuda folds > "$OUT/folds.md" 2>&1; echo "$opt device_check folds: exit $?"
    tail -4 "$OUT/folds.md"
  fi
  if [ $1 = pdl ]; then
    LD_LIBRARY_PATH=.gpu timeout 150 ./.gpu/gemv_bench --pdl > "$OUT/pdl.md" 2> "$OUT/pdl.err"; echo "gemv_bench --pdl: exit $?"
    tail -3 "$OUT/pdl.err"; cat "$OUT/pdl.md"
  fi
  for model in ${2:-llama-3.2-3b}; do
    for p in f16 int8 nf4; do
      for build in base new $1; do
        bin=/tmp/bin/minilab; env=""
        [ $build = base ] && bin=/tmp/bin/minilab-base
        [ $build = $1 ] && env="$opt"
        env $env timeout 150 $bin bench --model synthetic:$model --device cuda --dtype bf16 --precision $p \
          -p 512 -n 128 -r 3 --no-log --output json > "$OUT/bench-${model#llama-}-$p-$build.json" 2> "$OUT/bench-${model#llama-}-$p-$build.err"
        echo "$model $p $build: exit $?"
        checkpoint
      done
    done
  done
  python3 bench/builds_table.py "$OUT" base new $1 | tee "$OUT/table.md"
  pack $1 table.md pdl.md prefetch.md staged.md rope.md grid.md plainprefill.md qgemm.md
  ;;
alternate)
  # `alternate VAR`: VAR=0 and VAR=1 alternating ROUNDS times (default 3) on MODELS × PRECISIONS
  # (default the 3B, every format), pp128/512 (LENGTHS) -r 5 each; the median over rounds of each round's
  # VAR=1 / VAR=0 ratio, so a drift in clock or a neighbour's load does not fall on one side.
  unpack minilab
  var=${2:?alternate needs a variable}
  alternate_runs $var "0 1" alt ${BUDGET:-400} -p ${LENGTHS:-128,512} -n 0 -r 5
  python3 - "$OUT" <<'PY' | tee "$OUT/table.md"
import glob, json, os, statistics, sys
runs = {}
for f in glob.glob(f"{sys.argv[1]}/alt-*.json"):
    model, prec, v, r = os.path.basename(f)[4:-5].rsplit("-", 3)
    try:
        for row in json.load(open(f)):
            runs.setdefault((model, prec, row["test"]), {}).setdefault(r, {})[v] = row["avg_ts"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
print("| model | precision | test | rounds | median t/s 0 | median t/s 1 | per-round 1/0 | median 1/0 |")
print("| --- | --- | --- | ---: | ---: | ---: | --- | ---: |")
for k, rounds in sorted(runs.items()):
    pairs = [(d["0"], d["1"]) for d in rounds.values() if "0" in d and "1" in d]
    if not pairs: continue
    ratios = [b / a for a, b in pairs]
    print(f"| {k[0]} | {k[1]} | {k[2]} | {len(pairs)} | {statistics.median(a for a, _ in pairs):.1f} | "
          f"{statistics.median(b for _, b in pairs):.1f} | {' '.join(f'{x:.3f}' for x in ratios)} | {statistics.median(ratios):.3f} |")
PY
  pack alternate table.md
  ;;
stack)
  # q/k/v stacked (MINILAB_STACK_QKV=1, src/quant/stacked.rs) against the layers apart:
  # `device_check cuda stack` (the 1B in f32 within 1e-4; the 3B in bf16, prompt logits and ms both
  # ways on one model), then the 3B and 8B prompts (pp128/512/2048) with the switch 0 and 1,
  # alternating, in f16, int8 and nf4; one tar. MODELS and PRECISIONS narrow the benches, NOCHECK=1
  # skips the check.
  unpack minilab device_check
  if [ -z "${NOCHECK:-}" ]; then
    timeout 200 /tmp/bin/device_check cuda stack > "$OUT/stack.md" 2>&1; echo "device_check stack: exit $? (${SECONDS} s)"
    cat "$OUT/stack.md"
  else
    # one untimed prompt first: on a fresh machine the first process fills the driver's JIT cache (candle's
    # PTX, and minilab's where a build loads PTX), which took three timed runs past 60 s in session 17
    timeout 300 /tmp/bin/minilab bench --model synthetic:llama-3.2-3b --device cuda --dtype bf16 --precision int8 \
      -p 16 -n 0 -r 1 --no-log > /dev/null 2>&1; echo "warm-up: exit $? (${SECONDS} s)"
  fi
  ab_prompts MINILAB_STACK_QKV stack
  pack stack table.md $( [ -f "$OUT/stack.md" ] && echo stack.md )
  ;;
wide)
  # The prompt's small ops with 16-byte accesses (the default; MINILAB_WIDE_OPS=0 turns them off) against the 2-byte kernels:
  # `device_check cuda wide` (each op against the narrow one and timed, the register-held softmax
  # against the wide one bit for bit and timed, the 1B's f32 logits, the 3B's pp512 logits and ms
  # both ways), `device_check cuda` (GPU logits against the CPU's), then ab_prompts (MODELS,
  # PRECISIONS) both ways; one tar. `wide softmax` A/Bs MINILAB_SOFTMAX_REGS instead of
  # MINILAB_WIDE_OPS, without `device_check cuda`.
  unpack minilab device_check
  timeout 240 /tmp/bin/device_check cuda wide > "$OUT/wide.md" 2>&1; echo "device_check wide: exit $? (${SECONDS} s)"
  grep -vE "^\| (add_rms_norm|silu_mul|rope_kv|causal_softmax) [0-9×+]+ \| F" "$OUT/wide.md"
  if [ "${2:-}" = softmax ]; then
    ab_prompts MINILAB_SOFTMAX_REGS regs
  else
    timeout 150 /tmp/bin/device_check cuda > "$OUT/check.md" 2>&1; echo "device_check cuda: exit $? (${SECONDS} s)"
    grep -E "argmax|decode" "$OUT/check.md"
    ab_prompts MINILAB_WIDE_OPS wide
  fi
  pack wide table.md wide.md
  ;;
flash)
  # A prompt's causal attention in one kernel (MINILAB_FLASH): `device_check cuda flash` (random
  # shapes against an f32 reference both ways, NaN-poisoned output; the ops timed; the 3B's pp512
  # logits and ms both ways), then, if it passed, the `alternate` A/B of MINILAB_FLASH (MODELS,
  # PRECISIONS, ROUNDS) while BUDGET lasts; one tar.
  unpack minilab device_check
  timeout 200 /tmp/bin/device_check cuda flash > "$OUT/flash.md" 2>&1; rc=$?
  echo "device_check flash: exit $rc (${SECONDS} s)"; cat "$OUT/flash.md"
  mkdir -p "$OUT/alt"
  [ $rc = 0 ] && OUT="$OUT/alt" BUDGET=$(( ${BUDGET:-400} - SECONDS )) bash "$0" alternate MINILAB_FLASH | tail -8
  pack flash flash.md table.md
  ;;
foldab)
  unpack minilab device_check
  if [ "${CHECK:-1}" = 1 ]; then
    timeout 150 /tmp/bin/device_check cuda folds > "$OUT/folds.md" 2>&1; echo "device_check folds: exit $?"
    grep -E "^\| stats|FAIL|rror" "$OUT/folds.md" | head -32
    timeout 120 /tmp/bin/device_check cuda graph > "$OUT/graph_check.md" 2>&1; echo "device_check graph: exit $?"
    tail -4 "$OUT/graph_check.md"
    timeout 150 /tmp/bin/device_check cuda > "$OUT/device_check.txt" 2>&1; echo "device_check: exit $?"
    grep -iE "decode|logits" "$OUT/device_check.txt" | tail -4
    checkpoint
  fi
  MODELS=${2:-llama-3.2-3b} ROUNDS=${ROUNDS:-2} alternate_runs MINILAB_FUSE_NORM "0 late auto" fold ${BUDGET:-480} -p 16 -n 128 -r 3
  python3 - "$OUT" <<'PY' | tee "$OUT/table.md"
import glob, json, os, statistics, sys
runs = {}
for f in glob.glob(f"{sys.argv[1]}/fold-*.json"):
    model, prec, v, r = os.path.basename(f)[5:-5].rsplit("-", 3)
    try:
        for row in json.load(open(f)):
            if row["test"].startswith("tg"):
                runs.setdefault((model, prec), {}).setdefault(r, {})[v] = (row["avg_ts"], row.get("roofline_pct"))
    except (OSError, ValueError, KeyError, TypeError):
        pass
print("| model | precision | rounds | tg t/s 0 | late | auto (stats) | late / 0 | auto / 0 | auto / late | auto % roofline |")
print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for (model, prec), rounds in sorted(runs.items()):
    full = [d for d in rounds.values() if all(k in d for k in ("0", "late", "auto"))]
    if not full: continue
    med = lambda k: statistics.median(d[k][0] for d in full)
    ratio = lambda a, b: statistics.median(d[a][0] / d[b][0] for d in full)
    roof = [d["auto"][1] for d in full if d["auto"][1] is not None]
    print(f"| {model} | {prec} | {len(full)} | {med('0'):.1f} | {med('late'):.1f} | {med('auto'):.1f} | {ratio('late', '0'):.3f} | "
          f"{ratio('auto', '0'):.3f} | {ratio('auto', 'late'):.3f} | {statistics.median(roof) if roof else 0:.1f} |")
PY
  pack foldab table.md folds.md
  ;;
esac
