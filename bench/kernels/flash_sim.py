#!/usr/bin/env python3
"""flash.cu's index arithmetic run on the CPU: src/kernels/cuda/flash.cu's attention, line for line,
with ldmatrix and mma.sync m16n8k16 emulated from the PTX ISA's fragment layouts, in float64 (plain
Python, no numpy: it runs in the README's tests), against causal attention computed row by row. It checks what a GPU run cannot isolate cheaply: that every ldmatrix
address, every fragment and accumulator index, the P-from-accumulator repacking, the masks, the
online softmax, the rows-to-heads folding and the output layout are what the kernel means, on
shapes with blocks that straddle heads, a partial last block, cached positions before the prompt, a
buffer longer than the positions filled, a batch of two, and head dims 64 and 128; and the same for
the split-KV entry (a row block's key tiles in two halves, rows that meet no key in the second half,
the halves merged in either order). It does not check
timing (cp.async, barriers) or 16-bit rounding: `device_check cuda flash` does, on the GPU.

It found the missing sum over a quad's four lanes before the kernel first ran.

Usage: python3 bench/kernels/flash_sim.py   (exit 0 when every shape matches within 1e-9)
"""
import math
import random
import sys

BM = BN = 64
WARPS = BM // 16
LANES = range(32)
INF = math.inf


def ldmatrix_x4(smem, addr, trans=False):
    """ldmatrix.x4: lane i gives the address addr(i) = (row, col) of row i % 8 of matrix i // 8 (8
    consecutive elements); lane t's register j holds matrix j's elements (t/4, 2(t%4)+{0,1}), or with
    .trans (2(t%4)+{0,1}, t/4). Returns regs[lane][j] = (lo, hi)."""
    mats = []
    for j in range(4):
        rows = []
        for i in range(8):
            r, c = addr(8 * j + i)
            rows.append(smem[r][c:c + 8])
        mats.append(rows)
    out = []
    for t in LANES:
        g, c = t // 4, t % 4
        out.append([(m[2 * c][g], m[2 * c + 1][g]) if trans else (m[g][2 * c], m[g][2 * c + 1]) for m in mats])
    return out


def mma(acc, a, b0, b1):
    """mma.sync m16n8k16 row.col: A from a[lane] = 4 pairs (a0: (g, 2c..), a1: (g+8, 2c..), a2: (g, 2c+8..),
    a3: (g+8, 2c+8..)), B from b0[lane], b1[lane] (b0: (k 2c.., n g), b1: (k 2c+8.., n g)), C/D acc[lane]
    = 4 values (c0,c1: (g, 2c..), c2,c3: (g+8, 2c..)); g = lane/4, c = lane%4."""
    A = [[0.0] * 16 for _ in range(16)]
    B = [[0.0] * 8 for _ in range(16)]
    for t in LANES:
        g, c = t // 4, t % 4
        for e in range(2):
            A[g][2 * c + e], A[g + 8][2 * c + e] = a[t][0][e], a[t][1][e]
            A[g][2 * c + 8 + e], A[g + 8][2 * c + 8 + e] = a[t][2][e], a[t][3][e]
            B[2 * c + e][g], B[2 * c + 8 + e][g] = b0[t][e], b1[t][e]
    for t in LANES:
        g, c = t // 4, t % 4
        for i, (row, col) in enumerate([(g, 2 * c), (g, 2 * c + 1), (g + 8, 2 * c), (g + 8, 2 * c + 1)]):
            acc[t][i] += sum(A[row][x] * B[x][col] for x in range(16))


def load_tile(src, row0, n, D):
    """load_tile: rows row0.. of src (rows of D) into 64 rows of D + 8 (the padding is never read: NaN),
    zeros past row n."""
    return [(src[row0 + r] if row0 + r < n else [0.0] * D) + [math.nan] * 8 for r in range(BN)]


def warp_tiles(s_q, kh, vh, warp, row0, rows, t, start, last_pos, scale_log2, D, j0, j1, split):
    """One warp's rows of flash::attention over key tiles [j0, j1): (o, l, m) of its lanes, l each
    lane's own share (the kernel sums a quad's four when it stores); with split, the guard for rows
    that have met no key yet."""
    qa = [ldmatrix_x4(s_q, lambda i, kk=kk: (warp * 16 + i % 16, kk * 16 + (i // 16) * 8)) for kk in range(D // 16)]
    pos = [[start + min(row0 + warp * 16 + ln // 4 + h * 8, rows - 1) % t for ln in LANES] for h in range(2)]
    o = [[[0.0] * 4 for _ in LANES] for _ in range(D // 8)]
    m, l = [[-INF] * 32, [-INF] * 32], [[0.0] * 32, [0.0] * 32]
    for j in range(j0, j1):
        key0 = j * BN
        s_k, s_v = load_tile(kh, key0, last_pos + 1, D), load_tile(vh, key0, last_pos + 1, D)
        s = [[[0.0] * 4 for _ in LANES] for _ in range(BN // 8)]
        for kk in range(D // 16):
            for nt in range(0, BN // 8, 2):
                b = ldmatrix_x4(s_k, lambda i: (nt * 8 + i % 8 + (i // 16) * 8, kk * 16 + ((i // 8) % 2) * 8))
                mma(s[nt], qa[kk], [x[0] for x in b], [x[1] for x in b])
                mma(s[nt + 1], qa[kk], [x[2] for x in b], [x[3] for x in b])
        p_scale = [[0.0] * 32, [0.0] * 32]
        for h in range(2):
            mx = list(m[h])
            for ln in LANES:
                for nt in range(BN // 8):
                    for e in range(2):
                        key = key0 + nt * 8 + (ln % 4) * 2 + e
                        x = s[nt][ln][h * 2 + e] * scale_log2 if key <= pos[h][ln] else -INF
                        s[nt][ln][h * 2 + e] = x
                        mx[ln] = max(mx[ln], x)
            mx = [max(mx[ln], mx[ln ^ 1]) for ln in LANES]
            mx = [max(mx[ln], mx[ln ^ 2]) for ln in LANES]
            for ln in LANES:
                ref = 0.0 if split and mx[ln] == -INF else mx[ln]
                p_scale[h][ln] = 2.0 ** (m[h][ln] - ref)
                m[h][ln] = mx[ln]
                total = 0.0
                for nt in range(BN // 8):
                    for e in range(2):
                        s[nt][ln][h * 2 + e] = 2.0 ** (s[nt][ln][h * 2 + e] - ref)
                        total += s[nt][ln][h * 2 + e]
                l[h][ln] = l[h][ln] * p_scale[h][ln] + total
        for dt in range(D // 8):
            for ln in LANES:
                for i in range(4):
                    o[dt][ln][i] *= p_scale[i // 2][ln]
        for kk in range(BN // 16):
            lo, hi = s[2 * kk], s[2 * kk + 1]
            pa = [[(lo[ln][0], lo[ln][1]), (lo[ln][2], lo[ln][3]), (hi[ln][0], hi[ln][1]), (hi[ln][2], hi[ln][3])]
                  for ln in LANES]
            for dt in range(0, D // 8, 2):
                b = ldmatrix_x4(s_v, lambda i: (kk * 16 + i % 8 + ((i // 8) % 2) * 8, dt * 8 + (i // 16) * 8), trans=True)
                mma(o[dt], pa, [x[0] for x in b], [x[1] for x in b])
                mma(o[dt + 1], pa, [x[2] for x in b], [x[3] for x in b])
    return o, l, m


def quad_sum(x):
    """A value summed over each quad's four lanes (two shuffles)."""
    x = [x[ln] + x[ln ^ 1] for ln in LANES]
    return [x[ln] + x[ln ^ 2] for ln in LANES]


def merge(mine, other):
    """merge_halves: the second half to arrive folds the first's slot (o, m and its quad's whole sum
    a row) into its own o and per-lane l."""
    o, l, m = mine
    o_b, l_b, m_b = other
    for h in range(2):
        l_b[h] = quad_sum(l_b[h])
        for ln in LANES:
            mx = max(m[h][ln], m_b[h][ln])
            fa = 0.0 if m[h][ln] == -INF else 2.0 ** (m[h][ln] - mx)
            fb = 0.0 if m_b[h][ln] == -INF else 2.0 ** (m_b[h][ln] - mx)
            for dt in range(len(o)):
                for e in range(2):
                    o[dt][ln][h * 2 + e] = o[dt][ln][h * 2 + e] * fa + o_b[dt][ln][h * 2 + e] * fb
            l[h][ln] = l[h][ln] * fa + (l_b[h][ln] * fb if ln % 4 == 0 else 0.0)
    return o, l


def block(q, k, v, out, bx, by, grid_x, rows, t, start, kv_heads, scale_log2, D, split_min):
    """One row block of flash::attention, its four warps one after another (they share only the
    tiles, which the kernel fills between barriers). With split_min, the _split entry: a row block of
    at least split_min tiles walks its tiles in two halves, which merge_halves joins (the half that
    arrives second, alternating by block)."""
    row0 = (grid_x - 1 - bx) * BM
    last = min(row0 + BM, rows) - 1
    last_pos = start + (last % t if row0 // t == last // t else t - 1)
    tiles = last_pos // BN + 1
    s_q = load_tile(q[by], row0, rows, D)
    bb, hk, group = by // kv_heads, by % kv_heads, rows // t
    for warp in range(WARPS):
        args = (s_q, k[by], v[by], warp, row0, rows, t, start, last_pos, scale_log2, D)
        if split_min and tiles >= split_min:
            half = (tiles + 1) // 2
            first, second = warp_tiles(*args, 0, half, True), warp_tiles(*args, half, tiles, True)
            o, l = merge(first, second) if bx % 2 else merge(second, first)
        else:
            o, l, _ = warp_tiles(*args, 0, tiles, bool(split_min))
        l = [quad_sum(l[0]), quad_sum(l[1])]
        for hh in range(2):
            for ln in LANES:
                r = row0 + warp * 16 + ln // 4 + hh * 8
                if r >= rows:
                    continue
                head = hk * group + r // t
                for dt in range(D // 8):
                    for e in range(2):
                        out[bb][r % t][head * D + dt * 8 + (ln % 4) * 2 + e] = o[dt][ln][hh * 2 + e] / l[hh][ln]


def flash(q, k, v, start, shape, split=False):
    """The launch of src/kernels/cuda/flash.rs: q[b·kv_heads][rows][D] (a group's heads folded into rows),
    k, v[b·kv_heads][cap][D] → out[b][t][heads·D]; split: the _split entry with the launch's split_min."""
    b, heads, kv_heads, t, D = shape
    rows = heads // kv_heads * t
    grid_x = -(-rows // BM)
    out = [[[math.nan] * (heads * D) for _ in range(t)] for _ in range(b)]
    scale_log2 = 1.0 / math.sqrt(D) * math.log2(math.e)
    split_min = max(2, -(-(start + t) // BN) // 2 + 1) if split else 0
    for by in range(b * kv_heads):
        for bx in range(grid_x):
            block(q, k, v, out, bx, by, grid_x, rows, t, start, kv_heads, scale_log2, D, split_min)
    return out


def reference(q, k, v, start, shape):
    """softmax(q·kᵀ/√D + causal mask)·v, row by row."""
    b, heads, kv_heads, t, D = shape
    group = heads // kv_heads
    out = [[[0.0] * (heads * D) for _ in range(t)] for _ in range(b)]
    for by in range(b * kv_heads):
        for r in range(group * t):
            i, head = r % t, by % kv_heads * group + r // t
            scores = [sum(a * c for a, c in zip(q[by][r], k[by][j])) / math.sqrt(D) for j in range(start + i + 1)]
            top = max(scores)
            p = [math.exp(x - top) for x in scores]
            total = sum(p)
            for d in range(D):
                out[by // kv_heads][i][head * D + d] = sum(pj * v[by][j][d] for j, pj in enumerate(p)) / total
    return out


def main():
    rng = random.Random(0)
    # (b, heads, kv_heads, t, start, cap, D): blocks straddling heads, a partial last block, cached
    # positions before the prompt, buffers longer than the positions filled (NaN there: never read),
    # a batch of two, one query, D 64 and 128, three key tiles
    shapes = [(1, 3, 1, 29, 0, 29, 128), (2, 4, 2, 9, 5, 20, 64), (1, 2, 2, 70, 0, 80, 64),
              (1, 2, 1, 40, 100, 150, 64), (1, 2, 2, 1, 10, 16, 64)]
    worst = 0.0
    for b, heads, kv_heads, t, start, cap, D in shapes:
        rows = heads // kv_heads * t
        shape = (b, heads, kv_heads, t, D)
        q = [[[rng.gauss(0, 1) for _ in range(D)] for _ in range(rows)] for _ in range(b * kv_heads)]
        k = [[[rng.gauss(0, 2) if p < start + t else math.nan for _ in range(D)] for p in range(cap)]
             for _ in range(b * kv_heads)]
        v = [[[rng.gauss(0, 1) if p < start + t else math.nan for _ in range(D)] for p in range(cap)]
             for _ in range(b * kv_heads)]
        want = reference(q, k, v, start, shape)
        for split in (False, True):
            got = flash(q, k, v, start, shape, split)
            err = max(abs(x - y) for gb, wb in zip(got, want) for gr, wr in zip(gb, wb) for x, y in zip(gr, wr))
            print(f"b{b} {heads}/{kv_heads}×{D} t{t} start{start} cap{cap}{' split-KV' if split else ''}: max |Δ| {err:.2e}")
            worst = err if math.isnan(err) else max(worst, err)
    ok = not math.isnan(worst) and worst < 1e-9
    print("ok" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
