"""Sums an Nsight Compute CSV of kernel durations (--metrics gpu__time_duration.sum --csv
--print-units base) by kernel name and prints a markdown table, largest first.
Usage: python3 bench/ncu_table.py CSV PASSES UNIT [TOP]
  PASSES: how many passes the CSV holds (its sums are divided by it: launches and time per pass);
  UNIT: us or ms; TOP: rows to print (default all)."""
import collections
import csv
import re
import sys

path, passes, unit = sys.argv[1], int(sys.argv[2]), sys.argv[3]
top = int(sys.argv[4]) if len(sys.argv) > 4 else None
rows = [r for r in csv.reader(open(path)) if len(r) > 10]
if not rows:
    sys.exit("no ncu rows")
h = rows[0]
ki, vi = h.index("Kernel Name"), h.index("Metric Value")
tot, cnt = collections.defaultdict(float), collections.Counter()
for r in rows[1:]:
    name = re.sub(r"\(.*", "", r[ki])[:60]
    tot[name] += float(r[vi].replace(",", "")) / passes
    cnt[name] += 1
scale = 1e3 if unit == "us" else 1e6
s = sum(tot.values())
print(f"| kernel | launches a pass | {unit} a pass | share |")
print("| --- | ---: | ---: | ---: |")
for k, v in sorted(tot.items(), key=lambda x: -x[1])[:top]:
    print(f"| {k} | {cnt[k] // passes} | {v / scale:.2f} | {100 * v / s:.1f} % |")
print(f"| all | {sum(cnt.values()) // passes} | {s / scale:.2f} | |")
