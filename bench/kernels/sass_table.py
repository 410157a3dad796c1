"""Reads the compiler's resource report (ptxas -v) and the SASS (cuobjdump -sass) of the decode GEMVs
and prints, per kernel, what its hot loop costs per weight: the weight loads, the xs loads, the
shared-memory lookups and the instructions issued. From those it gives two static ceilings on the
fraction of the copy bandwidth a kernel can reach, whatever the DRAM does:
  issue: an SM issues 4 warp instructions a clock (128 lane instructions);
  mio:   shared memory and L1 answer 128 bytes a clock per SM, and xs (read through L1) and the NF4
         codebook lookups (shared memory) both go through them.
The hot loop is the innermost loop (a backward branch with no other inside it) that holds the most
streaming weight loads (ld.global.nc.L1::no_allocate: LDG.E.NA.128; in the gemv_st_ and gemv_sm_
kernels the cp.async copies into shared memory, LDGSTS, whose bytes then also count as MIO traffic),
counted on its fast path: code a forward branch skips that holds no weight load and no slot read (the
gemv_sm_ kernels' move to the next row group, their stores at a group's end) is left out.

Usage: python3 bench/kernels/sass_table.py SASS PTXAS [--filter RE] [--bw-tbs 4.24] [--sms 132]
       [--clock-ghz 1.98]
  SASS: cuobjdump -sass output; PTXAS: nvcc -Xptxas -v's stderr for the same build."""
import argparse
import collections
import errno
import os
import re
import sys

INSTR = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(?:@!?U?P[0-7T]\s+)?([A-Z][A-Z0-9_.]*)\s*([^;]*);")
BRANCH = re.compile(r"0x([0-9a-f]+)")
# elements of one 16-byte weight load, by the format and activation dtype in the kernel's name
ELEMS = {"dense": {"f32": 4, "f16": 8, "bf16": 8}, "int8": 16, "nf4": 32}
NAME = re.compile(r"gemv_(?:pf_|st_|sm_|sr_)?(dense|int8|nf4)_(f32|f16|bf16)_m(\d)(?:_r(\d))?")


def functions(path):
    """{name: [(addr, opcode, operands)]} in program order."""
    out, cur = {}, None
    for line in open(path, errors="replace"):
        if "Function : " in line:
            cur = out.setdefault(line.split("Function : ")[1].strip(), [])
        elif cur is not None:
            m = INSTR.search(line)
            if m:
                cur.append((int(m.group(1), 16), m.group(2), m.group(3)))
    return out


def resources(path):
    """{name: {regs, spill, stack, smem}} from ptxas -v."""
    out, cur = {}, None
    for line in open(path, errors="replace"):
        m = re.search(r"Function properties for (\S+)", line)
        if m:
            cur = out.setdefault(m.group(1), {"regs": 0, "spill": 0, "stack": 0, "smem": 0})
            continue
        if cur is None:
            continue
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m:
            cur["stack"], cur["spill"] = int(m.group(1)), int(m.group(2)) + int(m.group(3))
        m = re.search(r"Used (\d+) registers", line)
        if m:
            cur["regs"] = int(m.group(1))
        m = re.search(r"(\d+) bytes smem", line)
        if m:
            cur["smem"] = int(m.group(1))
    return out


def innermost_loops(code):
    """[(start, end)] index ranges of loops that hold no other backward branch."""
    at = {addr: i for i, (addr, _, _) in enumerate(code)}
    loops = []
    for i, (addr, op, args) in enumerate(code):
        m = BRANCH.search(args) if op.startswith("BRA") else None
        if m and int(m.group(1), 16) <= addr and int(m.group(1), 16) in at:
            loops.append((at[int(m.group(1), 16)], i))
    return [(s, e) for s, e in loops if not any(s < s2 and e2 < e for s2, e2 in loops if (s2, e2) != (s, e))]


def classify(op):
    if op.startswith("LDGDEPBAR"):
        return "LDGDEPBAR"  # commits the cp.async group: no load
    if op.startswith("LDGSTS"):
        # cp.async into shared memory (the gemv_st_ kernels): 16-byte weights or 4-byte absmax
        return "wload" if ".128" in op else "sload"
    if op.startswith("LDG") and ".NA." in op:
        return "wload"
    if op.startswith(("LDG", "LD.")) or op == "LD":
        # xs comes in 16-byte vectors; the narrower loads are the NF4 absmax and int8 scales
        return "xload" if ".128" in op else "sload"
    if op.startswith("LDS"):
        return "lds"
    if op.startswith(("LDL", "STL")):
        return "local"
    return op.split(".")[0]


def width(op):
    """Bytes a lane moves with a load."""
    return 16 if ".128" in op else 8 if ".64" in op else 4


REG = re.compile(r"\bR(\d+)\b")


def first_use(body):
    """Index of the loop's first instruction that must wait for one of its own global loads: one that
    reads a register that a weight or scale load of this iteration wrote (and nothing rewrote since),
    or (cp.async) the first wait. Loads issued after it start only once that data is in, a DRAM
    round trip later."""
    pending = set()
    for i, (_, op, args) in enumerate(body):
        kind = classify(op)
        if op.startswith("DEPBAR") and "LDGSTS" in {o.split(".")[0] for _, o, _ in body[:i]}:
            return i
        dest, _, rest = args.partition(",")
        # stores, reductions and cp.async have no register destination: every operand is read
        no_dest = op.startswith(("ST", "RED", "ATOM", "LDGSTS"))
        if any(int(r) in pending for r in REG.findall(args if no_dest else rest)):
            return i
        written = [] if no_dest else REG.findall(dest)
        if kind in ("wload", "sload") and not op.startswith("LDGSTS") and written:
            pending.update(range(int(written[0]), int(written[0]) + width(op) // 4))
        elif written:
            pending.discard(int(written[0]))
    return len(body)


def fast_path(body):
    """The loop body less its cold code: what a forward branch inside the loop skips over when the
    skipped code holds no weight load and no 16-byte shared load (the streaming kernels' slot reads),
    such as the gemv_sm_ kernels' search for the next row group and their stores at a group's end,
    which run once in several steps."""
    at = {addr: i for i, (addr, _, _) in enumerate(body)}
    cold = set()
    for i, (addr, op, args) in enumerate(body):
        m = BRANCH.search(args) if op.startswith("BRA") else None
        j = at.get(int(m.group(1), 16)) if m else None
        if j is None or j <= i + 1:
            continue
        skipped = body[i + 1 : j]
        if not any(classify(o) == "wload" or (o.startswith("LDS") and ".128" in o) for _, o, _ in skipped):
            cold.update(range(i + 1, j))
    return [ins for i, ins in enumerate(body) if i not in cold]


def hot_loop(code):
    """Counts of the loop with the most weight loads, or None (on the loop's fast path)."""
    best = None
    for s, e in innermost_loops(code):
        body = fast_path(code[s : e + 1])
        c = collections.Counter(classify(op) for _, op, _ in body)
        c["all"] = len(body)
        # bytes a lane moves through L1 and shared memory (the MIO pipe), weights aside
        c["mio"] = sum(
            width(op) for _, op, _ in body if classify(op) in ("xload", "sload", "lds") or op.startswith("LDGSTS")
        )
        first = first_use(body)
        c["wload_early"] = sum(1 for _, op, _ in body[:first] if classify(op) == "wload")
        c["sload_early"] = sum(1 for _, op, _ in body[:first] if classify(op) == "sload")
        if c["wload"] and (best is None or c["wload"] > best["wload"]):
            best = c
    return best


def row(name, code, res, args):
    m = NAME.fullmatch(name)
    fmt, dt = m.group(1), m.group(2)
    elems = ELEMS[fmt][dt] if fmt == "dense" else ELEMS[fmt]
    c = hot_loop(code)
    r = res.get(name, {})
    local = sum(1 for _, op, _ in code if classify(op) == "local")
    if c is None:
        return f"| {name} | {r.get('regs', '?')} | {r.get('spill', '?')} | {local} | no loop with weight loads | | | | | | | | | |"
    weights = c["wload"] * elems
    bytes_per_weight = 16 / elems
    # weights an SM must take per clock for the copy bandwidth
    rate = args.bw_tbs * 1e12 / bytes_per_weight / (args.sms * args.clock_ghz * 1e9)
    per_w = c["all"] / weights
    mio = c["mio"] / weights
    issue_cap = min(1.0, 128 / (per_w * rate))
    mio_cap = min(1.0, 128 / (mio * rate)) if mio else 1.0
    return (
        f"| {name} | {r.get('regs', '?')} | {r.get('spill', '?')} | {local} | {c['wload']} | {c['xload']} | "
        f"{c['sload']} | {c['wload_early']} of {c['wload']} | {c['sload_early']} of {c['sload']} | "
        f"{c['lds']} | {per_w:.2f} | {mio:.2f} | {100 * issue_cap:.0f} % | {100 * mio_cap:.0f} % |"
    )


def ceiling_args(doc, bw_tbs, bw_help):
    """The arguments both SASS tables take: the SASS, the ptxas report and the machine."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("sass")
    ap.add_argument("ptxas")
    ap.add_argument("--bw-tbs", type=float, default=bw_tbs, help=bw_help)
    ap.add_argument("--sms", type=int, default=132)
    ap.add_argument("--clock-ghz", type=float, default=1.98, help="SM clock under load, GHz")
    return ap


def read_inputs(ap, args):
    """The SASS's functions and the ptxas report's resources; a file that cannot be read is bad input
    (exit 2, one line)."""
    try:
        return functions(args.sass), resources(args.ptxas)
    except OSError as e:
        ap.error(f"cannot read {e.filename}: {e.strerror}")


def print_table(note, columns, rows):
    """`note`, then a markdown table (the first column text, the rest numbers) on stdout; a stdout
    that cannot take it (closed, a full disk) ends the run with exit 1 and one line."""
    lines = [note, "| " + " | ".join(columns) + " |", "| --- |" + " ---: |" * (len(columns) - 1), *rows]
    try:
        if sys.stdout is None:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()
    except OSError as e:
        sys.stderr.write(f"{os.path.basename(sys.argv[0])}: cannot write the table: {e.strerror}\n")
        os._exit(1)  # the interpreter's own flush at exit would fail again, with a traceback


def main():
    ap = ceiling_args(__doc__, 4.24, "copy bandwidth, TB/s (session 6: 4.24)")
    ap.add_argument("--filter", default=r"gemv_.*_(f16|bf16)_m1_r\d")
    args = ap.parse_args()
    code, res = read_inputs(ap, args)
    names = sorted(n for n in code if NAME.fullmatch(n) and re.search(args.filter, n))
    if not names:
        sys.exit(f"no gemv kernel matches {args.filter!r} in {args.sass}")
    columns = [
        "kernel", "registers", "spill bytes", "local ld/st", "weight loads", "xs loads", "scale loads",
        "weight loads before the first wait on one", "scale loads before it", "LDS", "instructions a weight",
        "MIO bytes a weight", "issue ceiling", "MIO ceiling",
    ]
    print_table(
        f"Static ceilings at {args.bw_tbs} TB/s, {args.sms} SMs, {args.clock_ghz} GHz "
        "(hot loop: the innermost loop with the most weight loads)\n",
        columns,
        [row(n, code[n], res, args) for n in names],
    )


if __name__ == "__main__":
    main()
