"""The consumers' hot loop of gemv_bench --ahead's kernels (bench/kernels/ahead.cuh), read from the
compiler's resource report and the SASS, and the static ceilings it sets on the fraction of the copy
bandwidth a way can stream, whatever the DRAM and the rings do:
  issue: an SM issues 4 warp instructions a clock;
  mio:   shared memory and L1 answer 128 bytes a clock an SM, and they carry the NF4 table lookups
         (LDS), the slot reads (LDS.128), xs (16-byte loads through L1), the absmax reads, and the
         bulk copies' writes into the slots (every streamed byte once).
Streamed bytes a weight: 2 (bf16), 1 (int8, its per-row scales aside), 0.5 + 4/64 (NF4 and its absmax).
The hot loop is the innermost loop that holds slot reads (one step of R rows: 32 lanes × 16 bytes a row).

Usage: python3 bench/kernels/ahead_sass.py SASS PTXAS [--bw-tbs 3.02] [--sms 132] [--clock-ghz 1.98]
  SASS: cuobjdump -sass of gemv_bench.o; PTXAS: nvcc -Xptxas -v's stderr for the same build
  (bench/kernels/build.sh writes .gpu/gemv_bench.ptxas.txt and /tmp/gemv_bench.sass.txt)."""
import collections
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sass_table import ceiling_args, innermost_loops, print_table, read_inputs  # noqa: E402

# ahead::kernel<F, R, CW, D, PIECE, MINB>, mangled
NAME = re.compile(r"_ZN5ahead6kernelILi(\d)ELi(\d)ELi(\d+)ELi(\d)ELi(\d+)ELi(\d)E")
FORMATS = {0: ("bf16", 8, 2.0), 1: ("int8", 16, 1.0), 2: ("nf4", 32, 0.5 + 4 / 64)}  # name, weights a 16 B, bytes a weight


def hot_loop(code):
    """Opcode counts of the smallest innermost loop with slot reads, or None."""
    best = None
    for s, e in innermost_loops(code):
        ops = [op for _, op, _ in code[s : e + 1]]
        if any(op.startswith("LDS.128") for op in ops) and (best is None or len(ops) < sum(best.values())):
            best = collections.Counter(ops)
    return best


def row(name, code, res, args):
    fmt, r, cw, d, piece, minb = (int(g) for g in NAME.match(name).groups())
    label, elems, stream_bytes = FORMATS[fmt]
    c = hot_loop(code)
    rr = res.get(name, {})
    head = f"| {label} | {r} | {cw} | {d} | {piece} | {minb} | {rr.get('regs', '?')} | {rr.get('spill', '?')} |"
    if c is None:
        return head + " no loop with slot reads | | | | | | |"
    weights = r * 32 * elems  # a warp's step: R rows, 32 lanes, 16 bytes each
    count = lambda pred: sum(n for op, n in c.items() if pred(op))  # noqa: E731
    lds32 = count(lambda op: op == "LDS" or op.startswith("LDS.U") or op.startswith("LDS.S"))
    slot = count(lambda op: op.startswith("LDS.128"))
    xs = count(lambda op: op.startswith("LDG") and ".128" in op)
    # bytes through shared memory / L1 for the warp's step, then the bulk copies' writes
    mio = lds32 * 32 * 4 + slot * 32 * 16 + xs * 32 * 16 + weights * stream_bytes
    instructions = sum(c.values())
    rate = args.bw_tbs * 1e12 / stream_bytes / (args.sms * args.clock_ghz * 1e9)  # weights an SM-clock at the copy rate
    issue_cap = 4 * weights / instructions / rate
    mio_cap = 128 * weights / mio / rate
    return (
        head + f" {instructions / (r * elems):.2f} | {lds32} | {slot} | {xs} | {mio / weights:.2f} |"
        f" {100 * issue_cap:.0f} % | {100 * mio_cap:.0f} % |"
    )


def main():
    ap = ceiling_args(__doc__, 3.02, "copy bandwidth, TB/s (H100, sessions 11-31)")
    args = ap.parse_args()
    code, res = read_inputs(ap, args)
    names = sorted((n for n in code if NAME.match(n)), key=lambda n: tuple(int(g) for g in NAME.match(n).groups()))
    if not names:
        sys.exit(f"no ahead kernel in {args.sass}")
    columns = [
        "format", "R", "consumer warps", "slots", "piece bytes", "blocks an SM bound", "registers", "spill bytes",
        "instructions a lane's weight", "LDS (32-bit)", "slot reads", "xs loads", "MIO bytes a weight",
        "issue ceiling", "MIO ceiling",
    ]
    print_table(f"Static ceilings at {args.bw_tbs} TB/s, {args.sms} SMs, {args.clock_ghz} GHz\n", columns,
                [row(n, code[n], res, args) for n in names])


if __name__ == "__main__":
    main()
