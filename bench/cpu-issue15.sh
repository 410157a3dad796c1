#!/usr/bin/env bash
# Issue 15 on this 2-core CPU with the demo model: the decode-time model's predictions against the
# frontier's measured tg128, then the run resumed with a --min-decode-tps that binds (the plan is
# made for LIMIT / 0.97, halfway between the budget plan's prediction and all-nf4's).
# Smaller than the README's run (nf4 only, 128-token windows) so that it takes minutes; the
# frontier's speeds are 3 repetitions each. Usage: bash bench/cpu-issue15.sh [minilab binary]
set -euo pipefail
M=${1:-target/release/minilab}
OUT=${OUT:-runs/cpu-issue15}
ARGS="--budget-gb 0.12 --ctx 128 --calib-tokens 256 --max-tokens 1024 --formats nf4 --frontier-points 4 --baselines 0 --bench-reps 3"
rm -rf "$OUT"
/usr/bin/time -f "wall %e s" $M sensitivity $ARGS --out "$OUT"
table() { python3 - "$1" <<'PY'
import csv, json, sys
d = sys.argv[1]; s = json.load(open(f"{d}/summary.json"))["speed"]
print(f"fixed {s['fixed_us']/1e3:.2f} ms, f16 step {s['f16_step_us']/1e3:.2f} ms; chosen predicted {s['predicted_decode_tps']:.1f}, "
      f"measured {s['measured_decode_tps']:.1f}; error median {s['error_pct_median']:.1f} %, max {s['error_pct_max']:.1f} %")
print("| point | weights GB | tg128 measured | predicted | error % |")
for r in csv.DictReader(open(f"{d}/frontier.csv")):
    m, p = float(r["decode_tps"]), float(r["predicted_decode_tps"])
    print(f"| {r['label']} | {int(r['weight_bytes'])/1e9:.3f} | {m:.1f} | {p:.1f} | {100*(p-m)/m:+.1f} |")
PY
}
table "$OUT"
cp "$OUT/frontier.csv" "$OUT/frontier-unlimited.csv"
LIM=$(python3 -c "
import csv; u = {x['label']: float(x['predicted_decode_tps']) for x in csv.DictReader(open('$OUT/frontier.csv'))}
c = [v for k, v in u.items() if k.endswith('budget')][0]
print(round(0.97 * (c + u['all nf4']) / 2, 1))")
echo "binding limit: --min-decode-tps $LIM"
/usr/bin/time -f "wall %e s" $M sensitivity $ARGS --out "$OUT" --resume --min-decode-tps "$LIM"
table "$OUT"
