#!/usr/bin/env bash
# Issue 10 (the sensitivity scan at real scale) on the lent GPU machine. Four calls, back to back
# (the machine keeps /tmp while it stays warm):
#   a: unpack .gpu/minilab.xz (this version) and .gpu/minilab-old.xz (main before issue 10);
#      check the on-device metrics against the host ones at a 128k vocabulary; time the whole
#      synthetic Llama-3.2-3B run (-v: per-step breakdown).
#   b: copy .gpu/demo.part1 (first 45,000,000 bytes of the demo GGUF) to /tmp (call a does it too
#      when it carries the part).
#   c: join .gpu/demo.part2, check the sha256; demo model with the library defaults in bf16 and
#      in f32 (plan and score ranks compared), the old binary's scan for 120 s (items/s, same
#      settings), and 3 shards as 3 processes on the one GPU, merged.
#   d: the synthetic Llama-3.1-8B run.
# Usage there: bash bench/gpu-issue10.sh a|b|c|d. Writes under $OUT, prints a short table last.
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT" /tmp/bin /tmp/runs
source "$(dirname "$0")/unxz.sh"
unpack() { unxz ".gpu/$1.xz" "/tmp/bin/$1"; }
M=/tmp/bin/minilab
DEMO=/tmp/demo.gguf
SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
SYN="--calib synthetic --text synthetic --calib-tokens 16384 --formats int8,nf4 --frontier-points 8"
phases() { python3 - "$@" <<'PY'
import json, sys
for p in sys.argv[1:]:
    try:
        s = json.load(open(p))
    except Exception as e:
        print(f"{p}: {e}"); continue
    ph = s["phases_s"]; tot = sum(ph.values())
    print(f"{p.split('/')[-1]}: total {tot:.1f} s; " + ", ".join(f"{k} {v:.1f}" for k, v in ph.items()))
    print("   steps: " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(s.get("scan_steps_s", {}).items(), key=lambda kv: -kv[1])))
    print(f"   windows/batch {s.get('windows_per_batch')}, prefix cache {s.get('prefix_cache')}, peak device {s.get('peak_device_bytes', 0)/1e9:.1f} GB, "
          f"plan {s['plan_weight_bytes']/1e9:.3f} GB, held-out KLD {s['measured']['kld']['mean'] if s['measured'].get('kld') else 0:.5f}")
PY
}
case "${1:-a}" in
a)
  unpack minilab; unpack minilab-old
  [ -f .gpu/demo.part1 ] && cp .gpu/demo.part1 /tmp/demo.part1
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
  for at in host device; do
    MINILAB_METRICS=$at timeout 100 $M eval --model synthetic:llama-3.2-3b --device cuda --text synthetic \
      --max-tokens 4096 --precision nf4 --kld --json > "$OUT/eval-$at.json" 2> "$OUT/eval-$at.log"
    echo "eval metrics=$at: exit $?"
  done
  python3 - "$OUT" <<'PY'
import json, sys
o = sys.argv[1]
h, d = (json.load(open(f"{o}/eval-{a}.json")) for a in ("host", "device"))
print(f"PPL host {h['ppl']:.6f} device {d['ppl']:.6f}; KLD mean host {h['kld']['mean']:.7f} device {d['kld']['mean']:.7f}; "
      f"p99 {h['kld']['p99']:.6f} / {d['kld']['p99']:.6f}; top-1 {h['kld']['top1_agreement']:.5f} / {d['kld']['top1_agreement']:.5f}")
assert abs(h['ppl'] - d['ppl']) < 1e-4 * h['ppl'], "PPL differs"
assert abs(h['kld']['mean'] - d['kld']['mean']) < 1e-5 + 1e-3 * h['kld']['mean'], "KLD differs"
print("metrics check: device == host within tolerance")
PY
  /usr/bin/time -v timeout 380 $M -v sensitivity --model synthetic:llama-3.2-3b --device cuda $SYN --budget-gb 3 \
    --out /tmp/runs/s3b > "$OUT/s3b.out" 2> "$OUT/s3b.log"; echo "3B run: exit $?"
  cp /tmp/runs/s3b/summary.json "$OUT/s3b-summary.json" 2>/dev/null
  grep -A12 "scan steps" "$OUT/s3b.log" | head -14
  grep -E "Elapsed|Maximum resident" "$OUT/s3b.log"
  phases "$OUT/s3b-summary.json"
  ;;
b)
  unpack minilab; unpack minilab-old
  cp .gpu/demo.part1 /tmp/demo.part1 && ls -l /tmp/demo.part1
  ;;
c)
  cat /tmp/demo.part1 .gpu/demo.part2 > $DEMO
  echo "$SHA  $DEMO" | sha256sum -c || exit 1
  unpack minilab; unpack minilab-old
  for dt in bf16 f32; do
    /usr/bin/time -f "wall %e s" timeout 200 $M -v sensitivity --model $DEMO --device cuda --dtype $dt --budget-gb 0.12 \
      --out /tmp/runs/demo-$dt > "$OUT/demo-$dt.out" 2> "$OUT/demo-$dt.log"; echo "demo $dt: exit $?"
    tail -1 "$OUT/demo-$dt.log"
    cp /tmp/runs/demo-$dt/summary.json "$OUT/demo-$dt-summary.json"; cp /tmp/runs/demo-$dt/plan.yaml "$OUT/demo-$dt-plan.yaml"
    cp /tmp/runs/demo-$dt/scan.jsonl "$OUT/demo-$dt-scan.jsonl"
  done
  phases "$OUT/demo-bf16-summary.json" "$OUT/demo-f32-summary.json"
  # The previous version, same command, for 150 s of its scan: items per second side by side.
  timeout -s INT 120 /tmp/bin/minilab-old sensitivity --model $DEMO --device cuda --dtype f32 --budget-gb 0.12 \
    --out /tmp/runs/demo-old > /dev/null 2> "$OUT/demo-old.log"
  echo "old version: $(($(wc -l < /tmp/runs/demo-old/scan.jsonl) - 1)) items in 120 s (f32; includes load and baseline)"
  # Three shards as three processes on the one GPU, then the merge.
  t0=$(date +%s.%N)
  for i in 0 1 2; do
    $M sensitivity --model $DEMO --device cuda --budget-gb 0.12 --out /tmp/runs/demo-sh --shard $i/3 > "$OUT/shard-$i.out" 2>&1 &
  done
  wait; t1=$(date +%s.%N)
  $M sensitivity --model $DEMO --device cuda --budget-gb 0.12 --out /tmp/runs/demo-sh --merge > "$OUT/merge.out" 2>&1; echo "merge: exit $?"
  t2=$(date +%s.%N)
  python3 -c "import sys; a, b, c = map(float, sys.argv[1:]); print(f'3 shards on one GPU: scan {b - a:.1f} s, merge+finish {c - b:.1f} s')" $t0 $t1 $t2
  cmp /tmp/runs/demo-sh/plan.yaml /tmp/runs/demo-bf16/plan.yaml && echo "sharded plan == unsharded plan"
  python3 - "$OUT" <<'PY'
import json, sys
o = sys.argv[1]
def scores(p):
    return {(d["layer"], d["format"]): d["score"] for d in map(json.loads, open(p).read().splitlines()[1:])}
a, b = scores(f"{o}/demo-bf16-scan.jsonl"), scores(f"{o}/demo-f32-scan.jsonl")
keys = sorted(a)
def ranks(v):
    order = sorted(range(len(v)), key=lambda i: v[i]); r = [0] * len(v)
    for k, i in enumerate(order): r[i] = k
    return r
ra, rb = ranks([a[k] for k in keys]), ranks([b[k] for k in keys])
n = len(keys); rho = 1 - 6 * sum((x - y) ** 2 for x, y in zip(ra, rb)) / (n * (n * n - 1))
pa, pb = (open(f"{o}/demo-{d}-plan.yaml").read().splitlines() for d in ("bf16", "f32"))
diff = sum(1 for x, y in zip(pa, pb) if x != y)
s16, s32 = (json.load(open(f"{o}/demo-{d}-summary.json")) for d in ("bf16", "f32"))
print(f"bf16 vs f32 scan: Spearman rho {rho:.4f} over {n} items; plan lines differing {diff}; "
      f"held-out KLD bf16 plan {s16['measured']['kld']['mean']:.5f}, f32 plan {s32['measured']['kld']['mean']:.5f}")
PY
  ;;
d)
  unpack minilab
  /usr/bin/time -v timeout 580 $M -v sensitivity --model synthetic:llama-3.1-8b --device cuda $SYN --budget-gb 8 \
    --out /tmp/runs/s8b > "$OUT/s8b.out" 2> "$OUT/s8b.log"; echo "8B run: exit $?"
  cp /tmp/runs/s8b/summary.json "$OUT/s8b-summary.json" 2>/dev/null
  grep -A12 "scan steps" "$OUT/s8b.log" | head -14
  grep -E "Elapsed|Maximum resident" "$OUT/s8b.log"
  phases "$OUT/s8b-summary.json"
  ;;
esac
