#!/usr/bin/env bash
# Issue 11 (decode at the memory roofline) on the lent GPU machine. One mode per call:
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
#            Every kernels run also samples the SM clock (nvidia-smi, 100 ms) into clocks.csv and
#            prints its median: the static ceilings of bench/kernels/sass_table.py assume a clock.
#   launches: `gemv_bench --merged`, `--floor` and `--stream` in one call, into one tar.
#   barriers: `gemv_bench --barriers`: the grid barrier alone per block shape and kind, then a step's
#            linears in one resident launch, with a grid barrier where each shipped launch starts
#            (128-thread blocks with session 13's fenced barrier, and one block an SM with a
#            release/acquire one), against --merged's no-barrier bound: what a persistent step's waits cost.
#   resident: device_check cuda grid (rows, resident and both streaming GEMV grids, logits bit for bit,
#            on the 1B), then 3B tg128 in f16/int8/nf4 with MINILAB_GEMV_GRID=rows and each way that
#            passed (resident, stream, stream-regs); the grid check under MINILAB_PDL=1, then the
#            streams that pass it with MINILAB_PDL=1; then, while the call has time, stream+PDL with
#            MINILAB_FUSE_NORM=1, device_check cuda kernels and rope (on the 1B).
#   prefill-ways: the prefill harness (bench/kernels/prefill_bench.cu, built by bench/kernels/build.sh):
#            a prompt's linears (m = 512) with bf16 weights against int8/NF4 dequantized then multiplied
#            (the shipped way), in chunks that fit L2, on two streams, and by the qgemm GEMM; the
#            dequantize pass alone.
#   prefill-overlap: `prefill_bench --overlap` (bench/kernels/overlap.cuh): the dequantize pass on S SMs
#            beside cuBLAS on the rest (cublasSetSmCountTarget), S = 16–32, in three shapes of the pass,
#            against the shipped way; the pass alone on S SMs; the same overlap without spinning (a
#            launch a weight on S blocks, two streams and events); each overlap's timeline (pass busy,
#            GEMMs busy, both at once).
#   profile: Nsight Compute on a few harness kernels (ncu is on the GPU machine).
#   flash-profile: Nsight Compute on flash attention's first nine launches in `device_check cuda flash`
#            (both builds at the 3B's pp512 shape, the 8B's, the 3B's at 2048): what bounds it.
#   qgemm-profile: Nsight Compute on the qgemm prefill kernels and cuBLAS bf16 at the 3B's gate and
#            down shapes (`prefill_bench --profile`).
#   minilab: .gpu/{minilab,minilab-base,device_check}.xz: device_check (every kernel and the fused
#            q/k/v launch against the plain path; GPU logits against the CPU's), then `minilab bench`
#            for the synthetic 3B and 8B in f16, int8 and nf4, this build and the base build
#            (before issue 11) alternating, so the ratio is measured side by side.
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
#   prefill MODEL PRECISION: one `minilab bench -p 512 -n 0 -r 1` under Nsight Compute (kernel
#            durations only), summed by kernel: where a prefill's time goes.
#   stack: q/k/v stacked into one weight (MINILAB_STACK_QKV=1) against the layers apart: device_check
#            cuda stack, then the 3B/8B pp128/512/2048 both ways in f16/int8/nf4 (.gpu/minilab.xz,
#            .gpu/device_check.xz).
#   wide [softmax]: the prompt's add + norm, silu·up, RoPE and causal softmax with 16-byte accesses against the
#            2-byte kernels (device_check cuda wide and cuda, then pp128/512/2048 with MINILAB_WIDE_OPS=0
#            and 1); with `softmax`, the softmax with its rows in registers (MINILAB_SOFTMAX_REGS) instead.
#   flash: device_check cuda flash, then `alternate MINILAB_FLASH` if it passed.
#   alternate VAR: VAR=0 and VAR=1 alternating ROUNDS (3) times on MODELS × PRECISIONS, pp128/512
#            (LENGTHS=512,2048 for others); the median over rounds of each round's ratio
#            (.gpu/minilab.xz). E.g. LENGTHS=512,2048 ... alternate MINILAB_FLASH_B3: flash attention's
#            three-blocks-an-SM build against the default (`device_check cuda flash` checks and times it).
#            LENGTHS=128,512 ... alternate MINILAB_FLASH_SPLIT: the split-KV build for short prompts.
#   prefill-graph [MODELS]: `device_check cuda prefill-graph` (pp512 eager against one CUDA graph's
#            replay, every format: how much of a prompt is candle's host cost), .gpu/device_check.xz.
#   coldstart: a fresh machine's first run (JIT cache off), the SASS-loading build against the PTX one
#            (.gpu/minilab.xz, .gpu/minilab-ptx.xz, .gpu/device_check.xz), after device_check cuda.
#   final: the committed build alone: device_check cuda, `mixed_bench --fused` where carried (stacked
#            q/k/v and gate/up against their parts), then the 3B/8B pp512 + tg128 in f16/int8/nf4 while
#            the call has time (.gpu/minilab.xz, .gpu/device_check.xz from bench/gpu-pack.sh).
#   llamacpp prepare|bench [MODEL]: the llama.cpp CUDA peer (bench/peers/llamacpp-cuda.sh, needs
#            .gpu/llamacpp.tar.xz from bench/peers/fetch-llamacpp.sh). `prepare` builds it on the GPU
#            machine and writes the F16/Q8_0/Q4_0 GGUFs of MODEL (default llama-3.2-3b) into /tmp/peer;
#            a call cut short by the time limit goes on in the next one, made while the machine is warm.
#            `bench` runs llama-bench on them, then minilab bench (.gpu/minilab.xz) on the same shape in
#            f16/int8/nf4, and prints both side by side at matched bits (Q8_0: 8.5 bits a weight against
#            int8's 8 plus a row scale; Q4_0 and nf4: 4.5 each).
#   peers [VARIANTS]: the PyTorch peers (bench/peers/torch_bnb.py, one process a variant; default
#            bf16,static; also compile, nf4 and int8 with bitsandbytes from .gpu/bnb.zip) on the synthetic
#            3B, then minilab bench on the same shape in f16/int8/nf4, and minilab / peer at matched format.
#   allpeers [VARIANTS]: llama-bench (after `llamacpp prepare` in the call before), the PyTorch VARIANTS
#            and minilab on the synthetic 3B in one call, both tables.
#   pdl [MODELS]: programmatic dependent launch. `device_check cuda graph` and `device_check cuda`,
#            `gemv_bench --pdl` (a step's linears, plain against PDL launches), then minilab bench for
#            MODELS (default llama-3.2-3b) in f16/int8/nf4: the base build (.gpu/minilab-base.xz), this
#            build ("new") and this build with MINILAB_PDL=1 ("pdl"), alternating.
#            (Session 6 ran it when PDL was the default: its "nopdl" is today's "new", its "new" "pdl".)
#   prefetch [MODELS]: `device_check cuda prefetch` (the step whose GEMV launches ask L2 for the next
#            launch's weights, every way, against the step without: equal logits, then ms a token per
#            way), then the same benches with MINILAB_PREFETCH=${WAY:-bulk}.
#   staged [MODELS]: the same for the one-row GEMVs staging their weights through shared memory by
#            cp.async (MINILAB_GEMV_STAGED=1; `device_check cuda staged`: equal logits, then ms a token).
#   chunk [MODELS]: the same for prefill dequantizing int8/NF4 weights in row chunks of ${MB:-16} MB
#            (MINILAB_PREFILL_CHUNK_MB; `device_check cuda kernels` checks the 64-row products with it).
#   rope [MODELS]: the same for RoPE and the KV append in a kernel of their own (MINILAB_FUSE_ROPE=0)
#            against the default, the q/k/v launch doing them (`device_check cuda rope`: equal logits,
#            then ms a token each way).
#   grid [MODELS]: the same for GEMV launches on resident grids (MINILAB_GEMV_GRID=${GRID:-resident};
#            `device_check cuda grid`: rows, resident and stream, equal logits, then ms a token each way).
#   norm [MODELS]: the same for the norms and residual adds folded into the GEMVs
#            (MINILAB_FUSE_NORM=${NORM:-late}; also `device_check cuda folds`, which checks both ways).
#            Session 9, with =1 (each block normalizes xs into shared memory first): correct, 13-16 %
#            slower. =late: the gemv_ln_ kernels' warps normalize as they load xs.
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
#   foldab [MODELS]: the stats way (session 27: the residual launch before each norm hands it xw and
#            its blocks' sums of squares) checked with `device_check cuda folds`, `graph` and `cuda`
#            under the default (CHECK=0 skips them), then tg128 (-p 16 -n 128 -r 3) of MODELS (default
#            the 3B) in f16/int8/nf4 with MINILAB_FUSE_NORM=0, late and the default (auto) alternating
#            ROUNDS (2) times while the call has BUDGET (480 s); the median over rounds of each round's
#            ratio into table.md.
#   regress: device_check cuda (GPU logits against the CPU's), graph, folds and kernels, then 3B
#            and 8B (MODELS) pp512/tg128 in f16, int8 and nf4 while the call has run < BUDGET (480) s.
#   groups [MODELS]: (session 29) q/k/v and gate/up whose layers hold different formats in one launch
#            (gemv_mixed.cuh): `device_check cuda mixed` on the first of MODELS (default the 3B and the
#            8B: the launches against an f32 reference, mixed plans' decode logits and graph kernels
#            both ways, each plan's step both ways) and its timing alone on the others; then
#            bench/gpu-issue15.sh t on the 3B (time model 5's split charges, the frontier's errors).
# Usage there: bash bench/gpu-issue11.sh MODE. Writes everything under $OUT, prints a short table.
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT" /tmp/bin
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader | tee "$OUT/gpu.txt"
# Nsight Compute's binary; the directory of libcublas.so.13 in PyTorch's nvidia wheels (the system's
# comes first where it has one).
ncu_bin() { command -v ncu || ls /usr/local/cuda*/bin/ncu 2>/dev/null | head -1; }
cublas_libs() { python3 -c "import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], 'cu13', 'lib'))" 2>/dev/null; }
# pack NAME [FILE…]: everything under $OUT into $OUT/NAME.tgz, then only it and the FILEs stay there
# (a call brings back at most 8 files). The archive is written outside $OUT and moved in: written
# inside, tar sees the folder change as it reads it and exits 1.
pack() { local name=$1; shift
  local keep=(! -name "$name.tgz"); for f in "$@"; do keep+=(! -name "$f"); done
  tar czf "/tmp/$name.tgz" -C "$OUT" . && mv "/tmp/$name.tgz" "$OUT/" && find "$OUT" -type f "${keep[@]}" -delete; }
# What a call cut short by its limit still brings back: a call returns only a few loose files (the
# first few by name), so after each run everything so far goes into 00-partial.tgz, which sorts first;
# pack removes it.
checkpoint() { tar czf /tmp/00-partial.tgz -C "$OUT" --exclude=00-partial.tgz . && mv /tmp/00-partial.tgz "$OUT/"; }
unpack() { for f in "$@"; do
  [ -x /tmp/bin/$f ] || python3 -c "import lzma,sys; open(sys.argv[2],'wb').write(lzma.open(sys.argv[1]).read())" .gpu/$f.xz /tmp/bin/$f
  chmod +x /tmp/bin/$f; done; }
table() { python3 - "$OUT" <<'PY'
import glob, json, os, sys
rows = {}
for f in sorted(glob.glob(f"{sys.argv[1]}/bench-*.json")):
    name = os.path.basename(f)[len("bench-"):-len(".json")]  # e.g. 3.2-3b-nf4-new
    try:
        recs = json.load(open(f))
    except Exception as e:
        print(f"| {name} | failed: {e} |"); continue
    for r in recs:
        rows[(name, r["test"])] = r
# without base runs (the regress mode) the base columns are left out rather than printed as zeros
based = any(name.endswith("-base") for name, _ in rows)
if based:
    print("| model | precision | test | base t/s | new t/s | new/base | new roofline % | new % matmul peak |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |")
else:
    print("| model | precision | test | t/s | roofline % | % matmul peak |")
    print("| --- | --- | --- | ---: | ---: | ---: |")
for (name, test), r in sorted(rows.items()):
    if not name.endswith("-new"): continue
    b = rows.get((name[:-4] + "-base", test))
    model, prec, _ = name.rsplit("-", 2)
    roof, peak = r.get("roofline_pct"), r.get("compute_pct")
    roof, peak = '' if roof is None else f'{roof:.1f}', '' if peak is None else f'{peak:.1f}'
    if not based:
        print(f"| {model} | {prec} | {test} | {r['avg_ts']:.1f} ± {r['stddev_ts']:.1f} | {roof} | {peak} |")
        continue
    print(f"| {model} | {prec} | {test} | {b['avg_ts'] if b else 0:.1f} ± {b['stddev_ts'] if b else 0:.1f} | {r['avg_ts']:.1f} ± {r['stddev_ts']:.1f} | "
          f"{r['avg_ts'] / b['avg_ts'] if b else 0:.2f} | {roof} | {peak} |")
PY
}
# alternate_runs VAR "VALUES" NAME BUDGET BENCH_ARGS…: `minilab bench` of MODELS (default the 3B) ×
# PRECISIONS (default every format) with VAR set to each of VALUES in turn, ROUNDS (3) times, while the
# call has run less than BUDGET s: OUT/NAME-<model>-<precision>-<value>-<round>.json, checkpointed.
alternate_runs() { local var=$1 values=$2 name=$3 budget=$4 r model p v; shift 4
  for r in $(seq ${ROUNDS:-3}); do
    for model in ${MODELS:-llama-3.2-3b}; do
      for p in ${PRECISIONS:-f16 int8 nf4}; do
        for v in $values; do
          [ $SECONDS -lt $budget ] || continue
          env $var=$v timeout 120 /tmp/bin/minilab bench --model synthetic:$model --device cuda --dtype bf16 --precision $p \
            "$@" --no-log --output json > "$OUT/$name-${model#llama-}-$p-$v-$r.json" 2> /dev/null
          echo "round $r $model $p $var=$v: exit $? (${SECONDS} s)"
          checkpoint
        done
      done
    done
  done; }
# ab_prompts VAR TAG: pp128/512/2048 (-r 5) of MODELS × PRECISIONS (default the 3B and 8B, every
# format) with VAR=0 and VAR=1 alternating, into bench-<model>-<precision>-<TAG><0|1>.json while the
# call has BUDGET (480 s) left, then their table into table.md.
ab_prompts() { local var=$1 tag=$2 model p v
  for model in ${MODELS:-llama-3.2-3b llama-3.1-8b}; do
    for p in ${PRECISIONS:-f16 int8 nf4}; do
      for v in 0 1; do
        [ $SECONDS -lt ${BUDGET:-480} ] || continue
        env $var=$v timeout 120 /tmp/bin/minilab bench --model synthetic:$model --device cuda --dtype bf16 --precision $p \
          -p 128,512,2048 -n 0 -r 5 --no-log --output json > "$OUT/bench-${model#llama-}-$p-$tag$v.json" 2> "$OUT/bench-${model#llama-}-$p-$tag$v.err"
        echo "$model $p $tag=$v: exit $? (${SECONDS} s)"
      done
    done
  done
  python3 bench/builds_table.py "$OUT" ${tag}0 ${tag}1 | tee "$OUT/table.md"
}
# The PyTorch peers (bench/peers/torch_bnb.py), one process a variant; bitsandbytes from .gpu/bnb.zip
# where it was carried (the nf4 and int8 variants need it).
torch_peers() {
  rm -rf /tmp/bnb; [ -f .gpu/bnb.zip ] && python3 -c "import zipfile; zipfile.ZipFile('.gpu/bnb.zip').extractall('/tmp/bnb')"
  for v in $(echo "$1" | tr , ' '); do
    PYTHONPATH=/tmp/bnb timeout ${PEER_LIMIT:-240} python3 bench/peers/torch_bnb.py --variants $v --reps 3 \
      --model-dir /tmp/torch-3b --json "$OUT/torch-$v.json" > "$OUT/torch-$v.md" 2> "$OUT/torch-$v.err"
    echo "torch $v: exit $? $(tail -c 200 "$OUT/torch-$v.err" | tr '\n' ' ')"
  done; }
# minilab bench on synthetic MODEL in f16/int8/nf4 as the peers run (-p 512 -n 128 -r 3), after one
# untimed short run (a fresh machine's JIT cache): OUT/minilab-MODEL-PRECISION.json.
minilab_peer() { local m=$1 p
  unpack minilab
  timeout 150 /tmp/bin/minilab bench --model synthetic:$m --device cuda --dtype bf16 -p 16 -n 4 -r 1 --no-log > /dev/null 2>&1
  for p in f16 int8 nf4; do
    timeout 150 /tmp/bin/minilab bench --model synthetic:$m --device cuda --dtype bf16 --precision $p -p 512 -n 128 -r 3 \
      --no-log --output json > "$OUT/minilab-$m-$p.json" 2> "$OUT/minilab-$m-$p.err"; echo "minilab $m $p: exit $?"
  done
  # The same formats with the head in int8: llama-quantize gives Q8_0's head Q8_0 and Q4_0's Q6_K,
  # where --precision keeps minilab's in f16 (side_by_side.py pairs both and prints the bytes).
  for p in int8 nf4; do
    [ $SECONDS -lt ${BUDGET:-100000} ] || continue
    printf 'default: %s\noutput: int8\n' $p > /tmp/plan-$p-head8.yaml
    timeout 150 /tmp/bin/minilab bench --model synthetic:$m --device cuda --dtype bf16 --plan /tmp/plan-$p-head8.yaml -p 512 -n 128 \
      -r 3 --no-log --output json > "$OUT/minilab-$m-$p-head8.json" 2> "$OUT/minilab-$m-$p-head8.err"; echo "minilab $m $p-head8: exit $?"
  done; }
# The PyTorch peers against minilab_peer's figures for MODEL, at matched format.
torch_table() { python3 - "$OUT" "$1" <<'PY' | tee "$OUT/torch-table.md"
import glob, json, statistics, sys
out, model = sys.argv[1], sys.argv[2]
mine = {}
for p in ("f16", "int8", "nf4"):
    try:
        mine[p] = {r["test"]: r["avg_ts"] for r in json.load(open(f"{out}/minilab-{model}-{p}.json"))}
    except Exception as e:
        print(f"minilab {p}: {e}")
print("| peer | format | test | peer t/s (median) | minilab t/s | minilab / peer |")
print("| --- | --- | --- | ---: | ---: | ---: |")
for f in sorted(glob.glob(f"{out}/torch-*.json")):
    for name, r in json.load(open(f))["results"].items():
        fmt = {"nf4": "nf4", "int8": "int8"}.get(name, "f16")
        if "error" in r:
            print(f"| torch {name} | {fmt} | | {r['error'][:60]} | | |"); continue
        for test in ("pp512", "tg128"):
            peer, ours = statistics.median(r[test]), mine.get(fmt, {}).get(test)
            print(f"| torch {name} | {fmt} | {test} | {peer:.1f} | {ours or 0:.1f} | {(ours or 0) / peer:.2f} |")
PY
}
case "${1:-kernels}" in
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
  python3 -c "import lzma,sys; open(sys.argv[2],'wb').write(lzma.open(sys.argv[1]).read())" .gpu/minilab-ptx.xz /tmp/bin/minilab-ptx
  chmod +x /tmp/bin/minilab-ptx
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
llamacpp)
  m=${3:-llama-3.2-3b}
  if [ "${2:-bench}" = prepare ]; then
    STOP_AFTER_PREPARE=1 OUT=$OUT bash bench/peers/llamacpp-cuda.sh $m 90 2>&1 | tail -6
    exit 0
  fi
  OUT=$OUT bash bench/peers/llamacpp-cuda.sh $m 90 2>&1 | tail -12
  minilab_peer $m
  python3 bench/peers/side_by_side.py "$OUT" $m | tee "$OUT/table.md"
  pack llamacpp-$m table.md
  ;;
peers)
  torch_peers ${2:-bf16,static}
  minilab_peer llama-3.2-3b
  torch_table llama-3.2-3b
  pack peers torch-table.md
  ;;
allpeers)
  # Every peer and minilab on the synthetic 3B in one call: llama-bench (F16, Q8_0, Q4_0, from the
  # GGUFs that `llamacpp prepare` left in /tmp/peer in the call before), the PyTorch VARIANTS (default
  # bf16,static), then minilab in f16/int8/nf4; both tables.
  OUT=$OUT bash bench/peers/llamacpp-cuda.sh llama-3.2-3b 90 2>&1 | tail -12
  torch_peers ${2:-bf16,static}
  minilab_peer llama-3.2-3b
  python3 bench/peers/side_by_side.py "$OUT" llama-3.2-3b | tee "$OUT/table.md"
  torch_table llama-3.2-3b
  pack allpeers table.md torch-table.md
  ;;
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
mixed)
  libs=$(cublas_libs)
  LD_LIBRARY_PATH=.gpu:${libs:-}:${LD_LIBRARY_PATH:-} timeout ${LIMIT:-300} ./.gpu/mixed_bench "${@:2}" 2> "$OUT/mixed.err" | tee "$OUT/mixed.md"
  echo "mixed_bench: exit ${PIPESTATUS[0]}"; tail -5 "$OUT/mixed.err"
  ;;
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
barriers)
  LD_LIBRARY_PATH=.gpu timeout 240 ./.gpu/gemv_bench --barriers > "$OUT/barriers.md" 2> "$OUT/barriers.err"
  echo "gemv_bench --barriers: exit $?"; tail -2 "$OUT/barriers.err"; cat "$OUT/barriers.md"
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
kernels)
  nvidia-smi --query-gpu=clocks.sm,clocks.mem --format=csv,noheader,nounits -lms 100 > "$OUT/clocks.csv" 2>/dev/null &
  sampler=$!
  LD_LIBRARY_PATH=.gpu timeout 400 ./.gpu/gemv_bench ${2:-} > "$OUT/gemv.md" 2> "$OUT/gemv.err"; echo "gemv_bench: exit $?"
  kill $sampler 2>/dev/null
  python3 - "$OUT/clocks.csv" <<'PY'
import statistics, sys
sm = [int(l.split(",")[0]) for l in open(sys.argv[1]) if l.split(",")[0].strip().isdigit()]
print(f"SM clock while running: median {statistics.median(sm)} MHz, min {min(sm)}, max {max(sm)} ({len(sm)} samples)" if sm else "SM clock: no samples")
PY
  cat "$OUT/gemv.err" | tail -5
  cat "$OUT/gemv.md"
  ;;
qgemm-profile)
  # Nsight Compute on `prefill_bench --profile`: cuBLAS bf16 and the qgemm kernels (int8/NF4, 64 and
  # 128 rows a block) on the 3B's gate and down shapes, the second launch of each (after a warm-up).
  NCU=$(ncu_bin)
  libs=$(cublas_libs)
  LD_LIBRARY_PATH=.gpu:${libs:-}:${LD_LIBRARY_PATH:-} timeout 400 $NCU --kernel-name regex:"qgemm|gemm|sm90" \
    --section SpeedOfLight --section Occupancy --section WarpStateStats --section SchedulerStats \
    --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis --section LaunchStats \
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
    --section SpeedOfLight --section Occupancy --section WarpStateStats --section SchedulerStats \
    --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis --section LaunchStats \
    /tmp/bin/device_check cuda flash > "$OUT/ncu-flash.txt" 2> "$OUT/ncu-flash.err"; echo "ncu: exit $?"
  tail -3 "$OUT/ncu-flash.err"
  grep -E "^  [a-z_]+.*\(|Duration|Memory Throughput|DRAM Throughput|Compute \(SM\) Throughput|Achieved Occupancy|Issue Slots Busy|Warp Cycles Per Issued|No Eligible|Registers Per|Theoretical Occ|Block Limit|Stall|Tensor|pipe|Shared Memory|Bank" "$OUT/ncu-flash.txt" | head -200
  pack flash-profile ncu-flash.txt
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
profile)
  NCU=$(ncu_bin)
  echo "ncu: ${NCU:-none}"
  LD_LIBRARY_PATH=.gpu timeout 300 $NCU --kernel-name regex:"kern|dec|gemv_" --launch-count 18 \
    --section SpeedOfLight --section Occupancy --section WarpStateStats --section SchedulerStats \
    --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis --section LaunchStats \
    ./.gpu/gemv_bench --profile > "$OUT/ncu.txt" 2> "$OUT/ncu.err"; echo "ncu: exit $?"
  tail -3 "$OUT/ncu.err"
  grep -E "^  [a-z_]+.*\(|Duration|Memory Throughput|DRAM Throughput|Compute \(SM\) Throughput|Achieved Occupancy|Issue Slots Busy|Warp Cycles Per Issued|No Eligible|L1/TEX Hit|Mem Pipes Busy|Registers Per|Theoretical Occ|Block Limit|Stall|lsu|LSU" "$OUT/ncu.txt" | head -150
  ;;
esac
