#!/usr/bin/env python3
"""Side-by-side table of `minilab bench --output json` runs of several builds, from one call's files.

Reads OUT/bench-MODEL-PRECISION-BUILD.json (e.g. bench-3.2-3b-nf4-base.json) and prints one markdown row per
(model, precision, test): each build's tokens/s (mean ± sd), each build over the first, the last build's
roofline % and whether its decode ran as a CUDA graph. A file that cannot be read gives a row that says so.

Usage: builds_table.py OUT BUILD [BUILD ...]   (the first build is the one the others are divided by)
"""
import glob
import json
import os
import sys


def main(argv):
    if len(argv) < 3:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    out, builds = argv[1], argv[2:]
    rows = {}
    for f in sorted(glob.glob(f"{out}/bench-*.json")):
        model, prec, build = os.path.basename(f)[len("bench-"):-len(".json")].rsplit("-", 2)
        try:
            for r in json.load(open(f)):
                rows[(model, prec, r["test"], build)] = r
        except (OSError, ValueError, KeyError, TypeError) as e:
            print(f"| {model} {prec} {build} | failed: {e} |")
    last = builds[-1]
    print("| model | precision | test | " + " | ".join(f"{b} t/s" for b in builds) + " | "
          + " | ".join(f"{b}/{builds[0]}" for b in builds[1:]) + f" | {last} roofline % | {last} graph |")
    print("| --- | --- | --- |" + " ---: |" * (2 * len(builds)) + " --- |")
    for k in sorted({k[:3] for k in rows}):
        rs = [rows.get(k + (b,)) for b in builds]
        cells = [f"{r['avg_ts']:.1f} ± {r['stddev_ts']:.1f}" if r else "-" for r in rs]
        ratios = [f"{r['avg_ts'] / rs[0]['avg_ts']:.3f}" if r and rs[0] else "-" for r in rs[1:]]
        roof = rs[-1].get("roofline_pct") if rs[-1] else None
        graph = rs[-1].get("cuda_graph", "-") if rs[-1] else "-"
        print(f"| {k[0]} | {k[1]} | {k[2]} | " + " | ".join(cells + ratios)
              + f" | {'' if roof is None else f'{roof:.1f}'} | {graph} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
