# Helpers of bench/gpu-issue11.sh, sourced by it (OUT is set).
# Nsight Compute's binary; the directory of libcublas.so.13 in PyTorch's nvidia wheels (the system's
# comes first where it has one).
ncu_bin() { command -v ncu || ls /usr/local/cuda*/bin/ncu 2>/dev/null | head -1; }
cublas_libs() { python3 -c "import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], 'cu13', 'lib'))" 2>/dev/null; }
# The Nsight Compute sections the profile modes read: what bounds a kernel (memory, issue, occupancy).
NCU_SECTIONS=(--section SpeedOfLight --section Occupancy --section WarpStateStats --section SchedulerStats
  --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis --section LaunchStats)
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
source "$(dirname "${BASH_SOURCE[0]}")/../unxz.sh"
# unpack NAME…: .gpu/NAME.xz into /tmp/bin/NAME.
unpack() { local f; for f in "$@"; do unxz .gpu/$f.xz /tmp/bin/$f; done; }
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
