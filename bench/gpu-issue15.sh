#!/usr/bin/env bash
# Issues 15 (speed-aware plans) and 10 (the scan at scale) on the lent GPU machine. Three calls,
# back to back (the machine keeps /tmp while it stays warm):
#   a: unpack .gpu/minilab.xz, copy .gpu/demo.part1 (first 45,000,000 bytes of the demo GGUF) to
#      /tmp; the synthetic Llama-3.2-3B run in bf16 with the decode-time model (predicted vs
#      measured tg128 at every frontier point), then the same run resumed with --min-decode-tps
#      set between the all-f16 and the all-nf4 predictions (is the limit met when measured?).
#   b: join .gpu/demo.part2 and check the sha256; the demo model with the README's settings (the
#      plan compared with the CPU's, carried in .gpu/cpu-demo/) and with the library defaults.
#   c: call a's 3B run resumed with a binding --min-decode-tps (between the chosen plan's and
#      all-nf4's predictions); the synthetic Llama-3.1-8B whole run.
#   d: (after --speed-margin) a fresh 3B run, then resumed with a binding --min-decode-tps: is the
#      limit met when measured, with the margin's reserve?
#   t: (time model 4, calibrated by every format's step; 5, charging split q/k/v and gate/up groups)
#      `device_check cuda timemodel` on MODELS (default the 3B and the 8B: three uniform and two mixed
#      plans, predicted against measured; .gpu/device_check.xz), then call a's 3B run alone (every
#      frontier point predicted against measured).
# Usage there: bash bench/gpu-issue15.sh a|b|c|d|t. Writes a tarball and a table under $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT" /tmp/bin /tmp/runs /tmp/res
M=/tmp/bin/minilab
DEMO=/tmp/demo.gguf
SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
SYN="--calib synthetic --text synthetic --calib-tokens 16384 --formats int8,nf4 --frontier-points 8"
README_ARGS="--budget-gb 0.12 --calib-tokens 1024 --max-tokens 2048 --frontier-points 4 --bench-reps 1"
source "$(dirname "$0")/unxz.sh"
unpack() { unxz .gpu/minilab.xz $M; }
keep() { # run folder → /tmp/res/NAME-*
  for f in summary.json frontier.csv plan.yaml time_model.json report.md; do cp "$1/$f" "/tmp/res/$2-$f" 2>/dev/null; done
}
speed() { python3 - "$@" <<'PY'
import csv, json, sys
for run in sys.argv[1:]:
    s = json.load(open(f"{run}/summary.json")); sp = s.get("speed") or {}
    ph = s["phases_s"]
    print(f"{run.split('/')[-1]}: total {sum(ph.values()):.1f} s (" + ", ".join(f"{k} {v:.1f}" for k, v in ph.items()) + ")")
    print(f"  fixed {sp.get('fixed_us', 0)/1e3:.3f} ms/token, f16 step {sp.get('f16_step_us', 0)/1e3:.3f} ms; chosen: predicted "
          f"{sp.get('predicted_decode_tps', 0):.1f} tok/s, measured {sp.get('measured_decode_tps') or 0:.1f}; limit "
          f"{(1e6 / sp['max_decode_us']) if sp.get('max_decode_us') else 0:.1f}; error median {sp.get('error_pct_median') or 0:.1f} %, "
          f"max {sp.get('error_pct_max') or 0:.1f} % over {sp.get('points_compared', 0)} points")
    print("  | point | weights GB | tg128 measured | predicted | error % |")
    for r in csv.DictReader(open(f"{run}/frontier.csv")):
        m, p = float(r["decode_tps"] or 0), float(r["predicted_decode_tps"] or 0)
        print(f"  | {r['label']} | {int(r['weight_bytes'])/1e9:.3f} | {m:.1f} | {p:.1f} | {100*(p-m)/m if m else 0:+.1f} |")
PY
}
case "${1:-a}" in
a)
  unpack
  [ -f .gpu/demo.part1 ] && cp .gpu/demo.part1 /tmp/demo.part1
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
  /usr/bin/time -f "wall %e s" timeout 330 $M -v sensitivity --model synthetic:llama-3.2-3b --device cuda --dtype bf16 $SYN \
    --budget-gb 3 --out /tmp/runs/s3b > /tmp/res/s3b.out 2> /tmp/res/s3b.log; echo "3B run: exit $?"
  tail -1 /tmp/res/s3b.log; grep -A8 "scan steps" /tmp/res/s3b.log | head -9
  keep /tmp/runs/s3b s3b
  speed /tmp/runs/s3b
  # A limit between the all-f16 and all-nf4 predictions: the plan must meet it when measured.
  LIM=$(python3 -c "
import csv; r = {x['label']: float(x['predicted_decode_tps']) for x in csv.DictReader(open('/tmp/runs/s3b/frontier.csv'))}
print(round((r['all f16'] + r['all nf4']) / 2, 1))")
  echo "limit: --min-decode-tps $LIM"
  /usr/bin/time -f "wall %e s" timeout 200 $M sensitivity --model synthetic:llama-3.2-3b --device cuda --dtype bf16 $SYN \
    --budget-gb 3 --out /tmp/runs/s3b --resume --min-decode-tps "$LIM" > /tmp/res/s3b-lim.out 2> /tmp/res/s3b-lim.log
  echo "3B run with the limit: exit $?"; tail -1 /tmp/res/s3b-lim.log; cat /tmp/res/s3b-lim.out
  mkdir -p /tmp/runs/s3b-lim && cp /tmp/runs/s3b/{summary.json,frontier.csv} /tmp/runs/s3b-lim/
  keep /tmp/runs/s3b-lim s3b-lim
  speed /tmp/runs/s3b-lim
  tar czf "$OUT/a.tgz" -C /tmp/res .
  ;;
b)
  unpack
  cat /tmp/demo.part1 .gpu/demo.part2 > $DEMO
  echo "$SHA  $DEMO" | sha256sum -c || exit 1
  /usr/bin/time -f "wall %e s" timeout 200 $M -v sensitivity --model $DEMO --device cuda $README_ARGS \
    --out /tmp/runs/demo-readme > /tmp/res/demo-readme.out 2> /tmp/res/demo-readme.log; echo "demo, README settings: exit $?"
  tail -1 /tmp/res/demo-readme.log
  keep /tmp/runs/demo-readme demo-readme
  /usr/bin/time -f "wall %e s" timeout 200 $M -v sensitivity --model $DEMO --device cuda --budget-gb 0.12 \
    --out /tmp/runs/demo-defaults > /tmp/res/demo-defaults.out 2> /tmp/res/demo-defaults.log; echo "demo, defaults: exit $?"
  tail -1 /tmp/res/demo-defaults.log
  keep /tmp/runs/demo-defaults demo-defaults
  speed /tmp/runs/demo-readme /tmp/runs/demo-defaults
  python3 - .gpu/cpu-demo /tmp/runs/demo-readme <<'PY'
import json, sys
cpu, gpu = sys.argv[1:]
pc, pg = (open(f"{d}/plan.yaml").read().splitlines() for d in (cpu, gpu))
body = lambda p: [l for l in p if not l.startswith("#")]
diff = sum(1 for x, y in zip(body(pc), body(pg)) if x != y) + abs(len(body(pc)) - len(body(pg)))
sc, sg = (json.load(open(f"{d}/summary.json")) for d in (cpu, gpu))
kc, kg = sc["measured"]["kld"]["mean"], sg["measured"]["kld"]["mean"]
print(f"README settings: plan lines differing CPU vs GPU {diff}; held-out KLD CPU plan {kc:.5f} (on CPU), "
      f"GPU plan {kg:.5f} (on GPU), ratio {kg / kc:.3f}")
PY
  tar czf "$OUT/b.tgz" -C /tmp/res .
  ;;
c)
  unpack
  # A binding limit: between the 3 GB plan's prediction and all-nf4's (call a's run folder, warm).
  if [ -f /tmp/runs/s3b/frontier.csv ]; then
    LIM=$(python3 -c "
import csv; r = {x['kind']: float(x['predicted_decode_tps']) for x in csv.DictReader(open('/tmp/res/s3b-frontier.csv')) if x['kind'] in ('chosen',)}
u = {x['label']: float(x['predicted_decode_tps']) for x in csv.DictReader(open('/tmp/res/s3b-frontier.csv'))}
print(round((r['chosen'] + u['all nf4']) / 2, 1))")
    echo "binding limit: --min-decode-tps $LIM"
    /usr/bin/time -f "wall %e s" timeout 150 $M sensitivity --model synthetic:llama-3.2-3b --device cuda --dtype bf16 $SYN \
      --budget-gb 3 --bench-reps 3 --out /tmp/runs/s3b --resume --min-decode-tps "$LIM" > /tmp/res/s3b-bind.out 2> /tmp/res/s3b-bind.log
    echo "3B run with a binding limit: exit $?"; tail -1 /tmp/res/s3b-bind.log; cat /tmp/res/s3b-bind.out
    mkdir -p /tmp/runs/s3b-bind && cp /tmp/runs/s3b/{summary.json,frontier.csv,plan.yaml} /tmp/runs/s3b-bind/
    keep /tmp/runs/s3b-bind s3b-bind
    speed /tmp/runs/s3b-bind
  fi
  /usr/bin/time -v timeout 520 $M -v sensitivity --model synthetic:llama-3.1-8b --device cuda --dtype bf16 $SYN --budget-gb 8 \
    --out /tmp/runs/s8b > /tmp/res/s8b.out 2> /tmp/res/s8b.log; echo "8B run: exit $?"
  grep -A8 "scan steps" /tmp/res/s8b.log | head -9
  grep -E "Elapsed|Maximum resident" /tmp/res/s8b.log
  keep /tmp/runs/s8b s8b
  speed /tmp/runs/s8b
  tar czf "$OUT/c.tgz" -C /tmp/res .
  ;;
t)
  unpack; unxz .gpu/device_check.xz /tmp/bin/device_check
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
  for m in ${MODELS:-llama-3.2-3b llama-3.1-8b}; do
    timeout 250 /tmp/bin/device_check cuda timemodel $m > /tmp/res/timemodel-$m.txt 2>&1; echo "device_check timemodel $m: exit $?"
    tail -12 /tmp/res/timemodel-$m.txt
  done
  /usr/bin/time -f "wall %e s" timeout 330 $M -v sensitivity --model synthetic:llama-3.2-3b --device cuda --dtype bf16 $SYN \
    --budget-gb 3 --out /tmp/runs/t3b > /tmp/res/t3b.out 2> /tmp/res/t3b.log; echo "3B run: exit $?"
  tail -1 /tmp/res/t3b.log; keep /tmp/runs/t3b t3b; speed /tmp/runs/t3b
  tar czf "$OUT/t.tgz" -C /tmp/res .
  ;;
d)
  unpack
  FAST="--baselines 0"; SYN="${SYN/--frontier-points 8/--frontier-points 0}"
  /usr/bin/time -f "wall %e s" timeout 300 $M sensitivity --model synthetic:llama-3.2-3b --device cuda --dtype bf16 $SYN $FAST \
    --bench-reps 1 --budget-gb 3 --out /tmp/runs/d3b > /tmp/res/d3b.out 2> /tmp/res/d3b.log; echo "3B run: exit $?"
  tail -1 /tmp/res/d3b.log; keep /tmp/runs/d3b d3b; speed /tmp/runs/d3b
  # The plan is made for LIM / 0.97 (the 3 % margin): put that halfway between the 3 GB plan and all-nf4.
  LIM=$(python3 -c "
import csv; u = {x['label']: float(x['predicted_decode_tps']) for x in csv.DictReader(open('/tmp/runs/d3b/frontier.csv'))}
c = [v for k, v in u.items() if k.endswith('budget')][0]
print(round(0.97 * (c + u['all nf4']) / 2, 1))")
  echo "binding limit: --min-decode-tps $LIM"
  for i in 1 2; do
    /usr/bin/time -f "wall %e s" timeout 150 $M sensitivity --model synthetic:llama-3.2-3b --device cuda --dtype bf16 $SYN $FAST \
      --bench-reps 3 --budget-gb 3 --out /tmp/runs/d3b --resume --min-decode-tps "$LIM" > /tmp/res/d3b-bind$i.out 2> /tmp/res/d3b-bind$i.log
    echo "3B run with a binding limit, try $i: exit $?"; tail -1 /tmp/res/d3b-bind$i.log; cat /tmp/res/d3b-bind$i.out
    mkdir -p /tmp/runs/d3b-bind$i && cp /tmp/runs/d3b/{summary.json,frontier.csv,plan.yaml} /tmp/runs/d3b-bind$i/
    keep /tmp/runs/d3b-bind$i d3b-bind$i; speed /tmp/runs/d3b-bind$i
  done
  tar czf "$OUT/d.tgz" -C /tmp/res .
  ;;
esac
