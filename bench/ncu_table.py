"""Sums an Nsight Compute CSV of kernel durations (--metrics gpu__time_duration.sum --csv
--print-units base) by kernel name and prints a markdown table, largest first.
Usage: python3 bench/ncu_table.py CSV PASSES UNIT [TOP] [--start REGEX]
  PASSES: how many passes the CSV holds (its sums are divided by it: launches and time per pass);
  UNIT: us or ms; TOP: rows to print (default all);
  --start REGEX: the kernel that opens a pass (a prefill's embedding gather, is_u32_): the kernels
  launched before its first launch are the model's load (weights stacked, tables built), summed on
  a line of their own and left out of the passes. Without it they are spread over the passes (a
  prefill's load is q/k/v stacking's copies and the RoPE tables: 2 ms on the 3B, H100)."""
import collections
import csv
import re
import sys

args = sys.argv[1:]
start = None
if "--start" in args:
    i = args.index("--start")
    start = re.compile(args[i + 1])
    del args[i : i + 2]
path, passes, unit = args[0], int(args[1]), args[2]
top = int(args[3]) if len(args) > 3 else None
rows = [r for r in csv.reader(open(path)) if len(r) > 10]
if not rows:
    sys.exit("no ncu rows")
h = rows[0]
ki, vi = h.index("Kernel Name"), h.index("Metric Value")
launches = [(re.sub(r"\(.*", "", r[ki])[:60], float(r[vi].replace(",", ""))) for r in rows[1:]]
load = []
if start:
    first = next((i for i, (name, _) in enumerate(launches) if start.match(name)), None)
    if first is None:
        sys.exit(f"no kernel matches --start {start.pattern}")
    load, launches = launches[:first], launches[first:]
tot, cnt = collections.defaultdict(float), collections.Counter()
for name, ns in launches:
    tot[name] += ns / passes
    cnt[name] += 1
scale = 1e3 if unit == "us" else 1e6
s = sum(tot.values())
print(f"| kernel | launches a pass | {unit} a pass | share |")
print("| --- | ---: | ---: | ---: |")
for k, v in sorted(tot.items(), key=lambda x: -x[1])[:top]:
    print(f"| {k} | {cnt[k] // passes} | {v / scale:.2f} | {100 * v / s:.1f} % |")
print(f"| all | {sum(cnt.values()) // passes} | {s / scale:.2f} | |")
if load:
    print(f"| before the first pass (load) | {len(load)} | {sum(ns for _, ns in load) / scale:.2f} | |")
