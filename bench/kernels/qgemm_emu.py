# Emulates src/kernels/cuda/qgemm.cuh thread by thread in numpy (f32): the same shared-memory
# offsets, cp.async chunks, dequantize split, ldmatrix row addresses, mma fragment layouts (PTX ISA
# m8n8.x4 and m16n8k16) and epilogue,
# with NaN-poisoned shared memory and output, against X·Wᵀ in f64. It checks the index arithmetic
# (a read that misses a written element gives NaN, a wrong offset a wrong sum) on a machine without
# a GPU; it cannot check the PTX itself, the barriers or the speed: device_check cuda qgemm does.
# Run: python3 bench/kernels/qgemm_emu.py (numpy). Keep it in step with qgemm.cuh.
import numpy as np
BN, THREADS, STAGES = 128, 256, 3
CODES = np.array([-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
  -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725, 0.24611230194568634,
  0.33791524171829224, 0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0], np.float32)

def byte_perm(x, y, s):
    """CUDA's __byte_perm: result byte n is byte (s >> 4n) & 7 of the 8 bytes y:x (x = bytes 0-3)."""
    both = (y << 32) | x
    return sum(((both >> (8 * ((s >> (4 * n)) & 7))) & 0xFF) << (8 * n) for n in range(4))


def code_value(w, e):
    """qgemm.cuh's code_value: byte e of w into the low mantissa of 2^23, minus 2^23 + 128, in f32."""
    f = np.frombuffer(np.uint32(byte_perm(w, 0x4B000000, 0x7440 | e)).tobytes(), np.float32)[0]
    return np.float32(f - np.float32(8388736.0))


def ldmatrix_x4(smem, rows):
    """ldmatrix.sync.aligned.m8n8.x4.b16: rows[l] is the element offset of the 8-element row that lane
    l gives (matrix l // 8, row l % 8); lane l receives, of each matrix j, row l // 4 at columns
    2·(l % 4) and 2·(l % 4) + 1."""
    for r in rows:
        assert (r * 2) % 16 == 0, "ldmatrix rows are 16-byte aligned"
    return [[smem[rows[8 * j + (l >> 2)] + 2 * (l & 3): rows[8 * j + (l >> 2)] + 2 * (l & 3) + 2] for j in range(4)]
            for l in range(32)]


def run(fmt, BM, BK, m, n, k, rng):
    LDS = BK + 8
    xs = rng.standard_normal((m, k)).astype(np.float32)
    if fmt == 'int8':
        wq = rng.integers(0, 256, n * k, dtype=np.uint8)
        wb = rng.uniform(0.001, 0.004, n).astype(np.float32)
        W = (wq.reshape(n, k).astype(np.float32) - 128) * wb[:, None]
        qrow = BK
    else:
        wq = rng.integers(0, 256, n * k // 2, dtype=np.uint8)
        wb = rng.uniform(0.5, 2, n * k // 64).astype(np.float32)
        hi, lo = wq >> 4, wq & 15
        codes = np.stack([hi, lo], 1).reshape(-1)  # element 2i high nibble
        W = (CODES[codes] * np.repeat(wb, 64)).reshape(n, k)
        qrow = BK // 2
    xsf = xs.reshape(-1); ys = np.full(m * n, np.nan, np.float32)
    MT = BM // 32
    for bx in range((m + BM - 1) // BM):
        for by in range(n // BN):
            As = np.full(STAGES * BM * LDS, np.nan, np.float32)
            Bq = np.zeros(STAGES * BN * qrow, np.int64) - 1
            Bsc = np.full(STAGES * BN, np.nan, np.float32)
            Bs = np.full(BN * LDS, np.nan, np.float32)
            m0, n0, tiles = bx * BM, by * BN, k // BK
            def load(s, k0):
                aoff, qoff, soff = s * BM * LDS, s * BN * qrow, s * BN
                XCH, QCH = BK // 8, qrow // 16
                for tid in range(THREADS):
                    for c in range(tid, BM * XCH, THREADS):
                        r, col = c // XCH, (c % XCH) * 8
                        inn = m0 + r < m
                        src = (m0 + r if inn else 0) * k + k0 + col
                        As[aoff + r * LDS + col: aoff + r * LDS + col + 8] = xsf[src:src + 8] if inn else 0
                    for c in range(tid, BN * QCH, THREADS):
                        r, col = c // QCH, (c % QCH) * 16
                        at = (n0 + r) * k + k0 if fmt == 'int8' else ((n0 + r) * k + k0) // 2
                        assert (at + col) % 16 == 0
                        Bq[qoff + r * qrow + col: qoff + r * qrow + col + 16] = wq[at + col: at + col + 16]
                    if fmt == 'nf4':
                        r = (tid + THREADS - BN) % THREADS
                        if r < BN:
                            Bsc[soff + r] = wb[((n0 + r) * k + k0) // 64]
            for s in range(STAGES - 1):
                if s < tiles: load(s, s * BK)
            acc = np.zeros((8, 32, MT, 4, 4), np.float32)
            for kt in range(tiles):
                nxt = kt + STAGES - 1; sn = nxt % STAGES; s = kt % STAGES
                if nxt < tiles: load(sn, nxt * BK)
                qoff = s * BN * qrow
                SEGS = BK // 16
                for tid in range(THREADS):
                    for c in range(tid, BN * SEGS, THREADS):
                        r, seg = c // SEGS, c % SEGS
                        if fmt == 'int8':
                            b = Bq[qoff + r * BK + seg * 16: qoff + r * BK + seg * 16 + 16]
                            words = [int(b[4*q]) | int(b[4*q+1]) << 8 | int(b[4*q+2]) << 16 | int(b[4*q+3]) << 24
                                     for q in range(4)]
                            out = np.array([code_value(words[e >> 2], e & 3) for e in range(16)], np.float32)
                        else:
                            b = Bq[qoff + r * (BK // 2) + seg * 8: qoff + r * (BK // 2) + seg * 8 + 8]
                            a = Bsc[s * BN + r]
                            out = np.empty(16, np.float32)
                            out[0::2] = CODES[b >> 4] * a; out[1::2] = CODES[b & 15] * a
                        assert (b >= 0).all()
                        Bs[r * LDS + seg * 16: r * LDS + seg * 16 + 16] = out
                for warp in range(8):
                    wm, wn = warp >> 2, warp & 3
                    abase = s * BM * LDS + wm * (BM // 2) * LDS
                    bbase = wn * 32 * LDS
                    for kk in range(0, BK, 16):
                        # ldmatrix.x4: lane l gives the row address of matrix l // 8, row l % 8
                        a_rows = [abase + (i * 16 + (l & 7) + ((l >> 3) & 1) * 8) * LDS + kk + (l >> 4) * 8
                                  for i in range(MT) for l in range(32)]
                        b_rows = [bbase + (j * 8 + (l & 7) + (l >> 4) * 8) * LDS + kk + ((l >> 3) & 1) * 8
                                  for j in (0, 2) for l in range(32)]
                        afr = [ldmatrix_x4(As, a_rows[32 * i: 32 * i + 32]) for i in range(MT)]
                        bq4 = [ldmatrix_x4(Bs, b_rows[32 * h: 32 * h + 32]) for h in range(2)]
                        # b[j] = (r0, r1) of the first n8 tile of a pair, (r2, r3) of the second
                        bfr = [[(bq4[j // 2][l][2 * (j % 2)], bq4[j // 2][l][2 * (j % 2) + 1]) for l in range(32)]
                               for j in range(4)]
                        for i in range(MT):
                            # the mma's A operand from the lanes' a0..a3 (PTX ISA m16n8k16 layout)
                            A = np.full((16, 16), np.nan, np.float32)
                            for lane in range(32):
                                g, t = lane >> 2, lane & 3
                                a0, a1, a2, a3 = afr[i][lane]
                                A[g, 2*t:2*t+2] = a0; A[g+8, 2*t:2*t+2] = a1
                                A[g, 2*t+8:2*t+10] = a2; A[g+8, 2*t+8:2*t+10] = a3
                            for j in range(4):
                                B = np.full((16, 8), np.nan, np.float32)
                                for lane in range(32):
                                    g, t = lane >> 2, lane & 3
                                    b0, b1 = bfr[j][lane]
                                    B[2*t:2*t+2, g] = b0; B[2*t+8:2*t+10, g] = b1
                                C = A @ B
                                for lane in range(32):
                                    g, t = lane >> 2, lane & 3
                                    acc[warp, lane, i, j] += [C[g, 2*t], C[g, 2*t+1], C[g+8, 2*t], C[g+8, 2*t+1]]
            for warp in range(8):
                wm, wn = warp >> 2, warp & 3
                for lane in range(32):
                    g, t = lane >> 2, lane & 3
                    for i in range(MT):
                        row = m0 + wm * (BM // 2) + i * 16 + g
                        for j in range(4):
                            col = n0 + wn * 32 + j * 8 + 2 * t
                            s0, s1 = (wb[col], wb[col + 1]) if fmt == 'int8' else (1, 1)
                            a4 = acc[warp, lane, i, j]
                            if row < m: ys[row * n + col: row * n + col + 2] = [a4[0] * s0, a4[1] * s1]
                            if row + 8 < m: ys[(row + 8) * n + col: (row + 8) * n + col + 2] = [a4[2] * s0, a4[3] * s1]
    return xs, W, ys


# code_value on every byte in every position of a word: exactly byte - 128
bad = sum(code_value(b << (8 * e) | 0x5A5A5A5A & ~(0xFF << (8 * e)), e) != b - 128 for b in range(256) for e in range(4))
print("code_value: %d of 1024 wrong" % bad)
rng = np.random.default_rng(1)
for fmt in ('int8', 'nf4'):
    for BM, BK in [(64, 32), (128, 32), (64, 64), (128, 64)]:
        for (m, n, k) in [(70, 256, 128), (130, 128, 64), (9, 128, 192)]:
            xs, W, ys = run(fmt, BM, BK, m, n, k, rng)
            ref = xs.astype(np.float64) @ W.T.astype(np.float64)
            got = ys.reshape(m, n)
            err = np.abs(got - ref).max() / np.abs(ref).max()
            ok = not np.isnan(got).any() and err < 1e-5
            bad += not ok
            print(fmt, BM, BK, (m, n, k), 'nan' if np.isnan(got).any() else f'{err:.2e}', '' if ok else 'FAIL')
raise SystemExit(1 if bad else 0)
