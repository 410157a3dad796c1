#!/usr/bin/env python3
"""minilab against llama.cpp at matched bits, from one call's JSON files.

Reads OUT/llama-bench-MODEL-{F16,Q8_0,Q4_0}.json (llama-bench -o json) and OUT/minilab-MODEL-{f16,int8,nf4}.json
(minilab bench --output json) and prints one markdown row per format pair and test (pp512, tg128): both
sides' weight bytes (minilab's `weight_bytes`, llama.cpp's `model_size`), minilab's mean ± sd (after its own
warm-up), llama.cpp's median and range over its repetitions (llama-bench runs no warm-up for pp: its first
pp512 repetition reads about half the others), and minilab / llama.cpp's median.

The bytes matter at "matched bits": llama-quantize keeps a Q8_0 file's head in Q8_0 and gives a Q4_0
file's head Q6_K, while `minilab bench --precision P` keeps the head in f16. So where they exist,
OUT/minilab-MODEL-{int8,nf4}-head8.json (the same formats with the head in int8, a plan's `output: int8`)
are paired with Q8_0 and Q4_0 too: the closer match in bytes. A missing or unreadable file gives a row
that says so, except an absent head8 file (older calls ran none), which is skipped.

Usage: side_by_side.py OUT MODEL
"""
import json
import os
import statistics
import sys

PAIRS = [("f16", "F16"), ("int8", "Q8_0"), ("int8-head8", "Q8_0"), ("nf4", "Q4_0"), ("nf4-head8", "Q4_0")]


def load(path):
    try:
        with open(path) as f:
            return json.load(f), None
    except (OSError, ValueError) as e:
        return None, f"{path}: {e}"


def llama_tests(runs):
    """test -> (median, "min–max") over llama-bench's repetitions (samples_ts)."""
    out = {}
    for r in runs:
        test = f"pp{r['n_prompt']}" if r.get("n_prompt") else f"tg{r['n_gen']}"
        samples = [float(x) for x in r.get("samples_ts") or [r["avg_ts"]]]
        out[test] = (statistics.median(samples), f"{min(samples):.1f}–{max(samples):.1f}")
    return out


def minilab_tests(recs):
    return {r["test"]: (float(r["avg_ts"]), float(r["stddev_ts"])) for r in recs}


def gb(n):
    return f"{float(n) / 1e9:.2f}" if n else "?"


def main(argv):
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    out, model = argv[1], argv[2]
    print("| minilab | llama.cpp | weights GB (minilab / llama.cpp) | test | minilab t/s (mean ± sd) "
          "| llama.cpp t/s (median, min–max) | minilab / llama.cpp |")
    print("| --- | --- | --- | --- | ---: | ---: | ---: |")
    for ours, theirs in PAIRS:
        path = f"{out}/minilab-{model}-{ours}.json"
        if ours.endswith("-head8") and not os.path.exists(path):
            continue
        a, ea = load(path)
        b, eb = load(f"{out}/llama-bench-{model}-{theirs}.json")
        if a is None or b is None:
            print(f"| {ours} | {theirs} | | missing or unreadable: {ea or eb} | | | |")
            continue
        try:
            ta, tb = minilab_tests(a), llama_tests(b)
            sizes = f"{gb(a[0].get('weight_bytes'))} / {gb(b[0].get('model_size'))}"
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
            print(f"| {ours} | {theirs} | | malformed: {e!r} | | | |")
            continue
        for test in sorted(set(ta) & set(tb)):
            (ma, sa), (mb, rb) = ta[test], tb[test]
            ratio = f"{ma / mb:.2f}" if mb > 0 else "-"
            print(f"| {ours} | {theirs} | {sizes} | {test} | {ma:.1f} ± {sa:.1f} | {mb:.1f} ({rb}) | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
