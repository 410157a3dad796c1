#!/usr/bin/env python3
"""Golden vectors for minilab's weight formats, from an independent numpy reference.

This is a from-the-source re-implementation (numpy only, no torch) of

* bitsandbytes ``functional.quantize_4bit(A, blocksize=64, quant_type="nf4")`` as its CUDA kernel
  computes it (``kQuantizeBlockwise`` / ``kQuantizeBlockwiseSmall`` + ``dQuantizeNF4``):
  the tensor is flattened row-major and cut into blocks of 64 (the last one may be partial);
  ``absmax = max |x|`` per block in float32; every value is normalised as ``x * (1.0f / absmax)``
  (a reciprocal then a multiply, not a division) and mapped to a 4-bit code by the
  ``dQuantizeNF4`` decision tree, whose 15 thresholds are float32 literals (midpoints of the
  codebook computed in float64) and whose comparisons are all ``x > t`` (a value exactly on a
  threshold takes the LOWER code). Two codes per byte, the FIRST element in the HIGH nibble;
  an odd count pads the last low nibble with the code of ``0 * (1/absmax)``.
  An all-zero block has ``absmax = 0``, so ``0 * (1/0) = NaN``, every comparison is false and
  the CUDA kernel stores code 0 (the -1.0 entry; it dequantizes to -0.0). We keep that.
* its double quantization (``compress_statistics=True``, QLoRA):
  ``offset = absmax.mean()``, then ``quantize_blockwise(absmax - offset, blocksize=256)`` with
  ``create_dynamic_map(signed=True)``, as ``kQuantizeBlockwise<General8bit>`` + ``dQuantize<0>``
  (binary search over the 256-entry sorted code, then midpoint tests ``(a+b)*0.5f``).
  Dequantized absmax = ``code[q] * absmax2[block] + offset`` (two float32 operations).
* the INT8 weight format of minilab (symmetric, per output row): ``scale = absmax(row) / 127``
  (float32 division), ``q = round_half_away_from_zero(w / scale)`` clamped to [-127, 127];
  an all-zero row has scale 0 and q 0.

Everything that bitsandbytes computes in float32 is computed here with numpy float32 scalars or
arrays (IEEE single, no fused multiply-add), so the results are bit-exact for the float32 path.
Known, documented gaps with the real library:

* CUDA bitsandbytes is built with ``--use_fast_math``: ``1.0f / absmax`` is then an approximate
  reciprocal (<= 1 ulp off). A code can differ only for a value within ~1 ulp of a threshold.
* ``offset = absmax.mean()`` is a torch float32 reduction whose summation order is not
  specified; we use the correctly rounded mean (float64 sum / n, rounded to float32). torch may
  differ by an ulp on long vectors.
* bitsandbytes' pure-torch "default" backend (used for 4-bit quantization on CPU) maps an
  all-zero block to code 7 (0.0) and divides (not reciprocal-multiplies) in a trailing partial
  block; its C++ CPU 8-bit kernel uses a 65536-entry lookup table. Those are approximations of
  the CUDA semantics that this reference follows.

Usage::

    python3 tools/reference/nf4_golden.py            # writes tests/fixtures/nf4_golden.json
    python3 tools/reference/nf4_golden.py --check-bnb # also compares with real bitsandbytes

``--check-bnb`` needs torch and bitsandbytes (and a CUDA GPU for the canonical kernels; the CPU
backends are compared too, and their known deviations are reported, not failed).

Cross-check, run on a lent H200 with bitsandbytes 0.50.2 (PyPI wheel) and torch 2.11.0+cu130
(bitsandbytes does not install on the CPU-only development machine: it needs torch):

* CUDA ``quantize_4bit(nf4, 64)``: packed bytes and absmax bit-identical on all three cases
  (zero block, exact-threshold ties with an odd count, 20000 values / 313 blocks).
* CUDA and CPU double quant: quantized absmax bytes, per-256 scales and the 256-entry
  ``create_dynamic_map(signed=True)`` bit-identical; ``offset`` identical on two cases and one
  float32 ulp apart on the 5-block case (torch's float32 sum order; CPU and CUDA torch themselves
  disagree by an ulp on other lengths).
* CPU bitsandbytes (pure-torch 4-bit path) differs, as its source predicts: the all-zero block is
  stored as 0x77 instead of 0x00, and the four thresholds that double rounding moves
  (t0, t8, t12, t14) flip exact-tie inputs.
* ``int8_vectorwise_quant`` (CPU) differs from minilab's INT8 on the 4 exact .5 ties of the int8
  case: bitsandbytes rounds half to even on ``w * (127/absmax)``; minilab rounds half away from zero
  on ``w / (absmax/127)``. Off-tie values agree.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from fractions import Fraction

import numpy as np

F32 = np.float32

# bitsandbytes functional.get_4bit_type("nf4") / csrc nf4_dequantization_lut, index = code.
NF4_CODE = np.array(
    [
        -1.0,
        -0.6961928009986877,
        -0.5250730514526367,
        -0.39491748809814453,
        -0.28444138169288635,
        -0.18477343022823334,
        -0.09105003625154495,
        0.0,
        0.07958029955625534,
        0.16093020141124725,
        0.24611230194568634,
        0.33791524171829224,
        0.44070982933044434,
        0.5626170039176941,
        0.7229568362236023,
        1.0,
    ],
    dtype=F32,
)


def f32_from_decimal(text: str) -> np.float32:
    """The float32 nearest to a decimal literal, as a C/C++/CUDA compiler reads ``1.234f``.

    ``np.float32(float(text))`` is NOT that: it rounds to float64 first, then to float32. The
    dQuantizeNF4 thresholds are float64 midpoints of float32 codes, so they sit almost exactly
    half-way between two float32 values and that double rounding picks the other neighbour for
    4 of the 15 thresholds (seen on real bitsandbytes/CUDA). This rounds the exact decimal value
    once, ties to even."""
    exact = Fraction(text)
    c = F32(float(exact))
    best = None
    for cand in (np.nextafter(c, F32(-np.inf)), c, np.nextafter(c, F32(np.inf))):
        d = abs(Fraction(float(cand)) - exact)
        key = (d, int(np.array([cand], dtype=F32).view(np.uint32)[0]) & 1)
        if best is None or key < best[0]:
            best = (key, cand)
    return F32(best[1])


# The 15 thresholds of dQuantizeNF4, in increasing order, as written in csrc/kernels.cu.
NF4_THRESHOLD_TEXT = [
    "-0.8480964004993439", "-0.6106329262256622", "-0.4599952697753906", "-0.33967943489551544",
    "-0.23460740596055984", "-0.13791173323988914", "-0.045525018125772476", "0.03979014977812767",
    "0.1202552504837513", "0.2035212516784668", "0.2920137718319893", "0.3893125355243683",
    "0.5016634166240692", "0.6427869200706482", "0.8614784181118011",
]
T = [f32_from_decimal(t) for t in NF4_THRESHOLD_TEXT]


def dquantize_nf4(x: np.float32) -> int:
    """The dQuantizeNF4 decision tree of csrc/kernels.cu, node by node (float32 thresholds)."""
    x = F32(x)
    if x > T[7]:
        if x > T[11]:
            if x > T[13]:
                if x > T[14]:
                    return 0b1111
                return 0b1110
            if x > T[12]:
                return 0b1101
            return 0b1100
        if x > T[9]:
            if x > T[10]:
                return 0b1011
            return 0b1010
        if x > T[8]:
            return 0b1001
        return 0b1000
    if x > T[3]:
        if x > T[5]:
            if x > T[6]:
                return 0b0111
            return 0b0110
        if x > T[4]:
            return 0b0101
        return 0b0100
    if x > T[1]:
        if x > T[2]:
            return 0b0011
        return 0b0010
    if x > T[0]:
        return 0b0001
    return 0b0000


def f32_recip(a: np.float32) -> np.float32:
    with np.errstate(divide="ignore"):
        return F32(F32(1.0) / F32(a))


def f32_mul(a, b) -> np.float32:
    with np.errstate(invalid="ignore", over="ignore"):
        return F32(F32(a) * F32(b))


def quantize_nf4(flat: np.ndarray, blocksize: int = 64):
    """Return (codes per element, packed bytes, absmax per block)."""
    flat = flat.astype(F32)
    n = flat.size
    nblocks = -(-n // blocksize)
    absmax = np.zeros(nblocks, dtype=F32)
    codes = np.zeros(n, dtype=np.uint8)
    inv_per_block = []
    for b in range(nblocks):
        blk = flat[b * blocksize : (b + 1) * blocksize]
        am = F32(np.max(np.abs(blk)))
        absmax[b] = am
        inv = f32_recip(am)
        inv_per_block.append(inv)
        for j, v in enumerate(blk):
            codes[b * blocksize + j] = dquantize_nf4(f32_mul(v, inv))
    padded = list(codes)
    if n % 2:
        padded.append(dquantize_nf4(f32_mul(F32(0.0), inv_per_block[-1])))
    packed = bytes((padded[2 * i] << 4) | padded[2 * i + 1] for i in range(len(padded) // 2))
    return codes, packed, absmax


def dequantize_nf4(packed: bytes, absmax: np.ndarray, n: int, blocksize: int = 64) -> np.ndarray:
    out = np.zeros(n, dtype=F32)
    for i in range(n):
        byte = packed[i // 2]
        c = (byte >> 4) if i % 2 == 0 else (byte & 0x0F)
        out[i] = f32_mul(NF4_CODE[c], absmax[i // blocksize])
    return out


def torch_like_linspace_f32(start: float, end: float, steps: int) -> np.ndarray:
    """torch.linspace(start, end, steps, dtype=float32) on CPU (aten RangeFactoriesKernel.cpp):
    step = (end - start) / (steps - 1) in float32; the first half is start + step*i, the second
    half end - step*(steps-1-i)."""
    s, e = F32(start), F32(end)
    step = F32((e - s) / F32(steps - 1))
    half = steps // 2
    out = np.zeros(steps, dtype=F32)
    # torch's CPU kernel is compiled with FMA contraction: start + step*i is ONE rounding. The
    # float64 expression below is exact here (24-bit operands, exponents within a few bits of
    # each other, i < 2**7), so rounding it once to float32 is exactly fmaf.
    for i in range(steps):
        if i < half:
            out[i] = F32(np.float64(s) + np.float64(step) * i)
        else:
            out[i] = F32(np.float64(e) - np.float64(step) * (steps - i - 1))
    return out


def create_dynamic_map_signed() -> np.ndarray:
    """bitsandbytes functional.create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8).

    For i in 0..7: 2**i means of a float32 linspace(0.1, 1, 2**i + 1), each scaled by the float32
    value of 10**(i-6) (a float32 tensor times a Python scalar multiplies in float32), with both
    signs; plus 0 and 1.0; sorted. 127 negatives, 0, 127 positives, 1.0."""
    data = []
    for i in range(7):
        fraction_items = 2**i + 1
        b = torch_like_linspace_f32(0.1, 1.0, fraction_items)
        means = ((b[:-1] + b[1:]) / F32(2.0)).astype(F32)
        scale = F32(10.0 ** (-(7 - 1) + i))
        pos = (means * scale).astype(F32)
        data += pos.tolist()
        data += (-pos).tolist()
    data.append(0.0)
    data.append(1.0)
    assert len(data) == 256
    return np.array(sorted(data), dtype=F32)


def dquantize_8bit(code: np.ndarray, x: np.float32) -> int:
    """dQuantize<STOCHASTIC=0> of csrc/kernels.cu: 7-step binary search then midpoint tests."""
    x = F32(x)
    pivot, upper_pivot, lower_pivot = 127, 255, 0
    lower, upper = F32(-1.0), F32(1.0)
    val = code[pivot]
    i = 64
    while i > 0:
        if x > val:
            lower_pivot = pivot
            lower = val
            pivot += i
        else:
            upper_pivot = pivot
            upper = val
            pivot -= i
        val = code[pivot]
        i >>= 1
    if upper_pivot == 255:
        upper = code[upper_pivot]
    if lower_pivot == 0:
        lower = code[lower_pivot]
    if x > val:
        midpoint = F32(F32(upper + val) * F32(0.5))
        return upper_pivot if x > midpoint else pivot
    midpoint = F32(F32(lower + val) * F32(0.5))
    return lower_pivot if x < midpoint else pivot


def quantize_blockwise_8bit(values: np.ndarray, code: np.ndarray, blocksize: int = 256):
    values = values.astype(F32)
    n = values.size
    nblocks = -(-n // blocksize)
    absmax = np.zeros(nblocks, dtype=F32)
    q = np.zeros(n, dtype=np.uint8)
    for b in range(nblocks):
        blk = values[b * blocksize : (b + 1) * blocksize]
        am = F32(np.max(np.abs(blk)))
        absmax[b] = am
        inv = f32_recip(am)
        for j, v in enumerate(blk):
            q[b * blocksize + j] = dquantize_8bit(code, f32_mul(v, inv))
    return q, absmax


def double_quant(absmax: np.ndarray, code: np.ndarray):
    offset = F32(np.sum(absmax.astype(np.float64)) / absmax.size)
    centred = (absmax - offset).astype(F32)
    q, scales = quantize_blockwise_8bit(centred, code, 256)
    deq = np.array(
        [F32(f32_mul(code[q[i]], scales[i // 256]) + offset) for i in range(q.size)], dtype=F32
    )
    return offset, q, scales, deq


def quantize_int8(w: np.ndarray):
    w = w.astype(F32)
    absmax = np.max(np.abs(w), axis=1).astype(F32)
    scales = (absmax / F32(127.0)).astype(F32)
    q = np.zeros(w.shape, dtype=np.int8)
    for r in range(w.shape[0]):
        if scales[r] == 0:
            continue
        v = (w[r] / scales[r]).astype(F32).astype(np.float64)  # float32 division, then exact f64
        rounded = np.sign(v) * np.floor(np.abs(v) + 0.5)  # half away from zero
        q[r] = np.clip(rounded, -127, 127).astype(np.int8)
    return q, scales


# ---------------------------------------------------------------- inputs


def xorshift_irwin_hall(rows: int, cols: int, seed: int) -> np.ndarray:
    """Deterministic input also regenerated by the Rust test (exact in float32).

    xorshift32 (x ^= x<<13; x ^= x>>17; x ^= x<<5), four 22-bit draws summed (< 2**24, exact),
    centred by 2**23 and scaled by 2**-23 * 2**-(5 + row % 4); every 997th element times 8."""
    x = seed & 0xFFFFFFFF
    out = np.zeros(rows * cols, dtype=F32)
    for i in range(rows * cols):
        s = 0
        for _ in range(4):
            x ^= (x << 13) & 0xFFFFFFFF
            x ^= x >> 17
            x ^= (x << 5) & 0xFFFFFFFF
            s += x >> 10
        r = i // cols
        v = F32(s - (1 << 23)) * F32(2.0 ** -23) * F32(2.0 ** -(5 + r % 4))
        if i % 997 == 0:
            v = v * F32(8.0)
        out[i] = F32(v)
    return out.reshape(rows, cols)


def case_3x100() -> np.ndarray:
    rng = np.random.default_rng(20240611)
    w = (rng.standard_normal(300) * 0.02).astype(F32)
    w[5] = F32(0.31)  # outliers
    w[140] = F32(-0.27)
    w[299] = F32(0.5)  # in the partial last block (256..300)
    w[64:128] = 0.0  # one all-zero block
    return w.reshape(3, 100)


def case_3x33_ties() -> np.ndarray:
    """99 values (odd: the last byte has a padded nibble); block 0 has absmax exactly 1.0 and holds
    every threshold, its float32 neighbours and every code value, so x*(1/1) hits them exactly."""
    vals = [F32(1.0), F32(-0.0)]
    for t in T:
        vals += [t, np.nextafter(t, F32(2.0)), np.nextafter(t, F32(-2.0))]
    vals += list(NF4_CODE[1:15])
    assert len(vals) <= 64, len(vals)
    rng = np.random.default_rng(7)
    rest = (rng.standard_normal(99 - len(vals)) * 0.05).astype(F32)
    w = np.array(vals + list(rest), dtype=F32)
    w[64:] = (rng.standard_normal(35) * 3.0).astype(F32)  # partial block of 35, large scale
    return w.reshape(3, 33)


def case_int8_4x33() -> np.ndarray:
    rng = np.random.default_rng(99)
    w = (rng.standard_normal((4, 33)) * 0.1).astype(F32)
    w[1, :] = 0.0  # all-zero row
    w[2, 7] = F32(-2.5)  # negative absmax
    # exact half-way points: absmax 127 gives scale 1.0, so w/scale = w exactly
    w[3, :] = (rng.standard_normal(33)).astype(F32)
    w[3, 0] = F32(127.0)
    w[3, 1] = F32(2.5)
    w[3, 2] = F32(-2.5)
    w[3, 3] = F32(0.5)
    w[3, 4] = F32(-0.5)
    w[3, 5] = F32(1.5)
    return w


# ---------------------------------------------------------------- fixture


def bits(a) -> list[int]:
    return [int(v) for v in np.asarray(a, dtype=F32).view(np.uint32)]


def floats(a) -> list[float]:
    return [float(v) for v in np.asarray(a, dtype=F32)]


def nf4_case(name: str, w: np.ndarray, code: np.ndarray, store_input: bool, generator=None):
    flat = w.reshape(-1).astype(F32)
    codes, packed, absmax = quantize_nf4(flat)
    offset, q2, scales2, absmax_dq = double_quant(absmax, code)
    deq = dequantize_nf4(packed, absmax, flat.size)
    deq_dq = dequantize_nf4(packed, absmax_dq, flat.size)
    case = {
        "name": name,
        "shape": list(w.shape),
        "packed_hex": packed.hex(),
        "absmax_bits": bits(absmax),
        "absmax": floats(absmax),
        "dequant_sum_f64": float(np.sum(deq.astype(np.float64))),
        "double_quant": {
            "offset_bits": bits([offset])[0],
            "offset": float(offset),
            "q_hex": bytes(q2.tolist()).hex(),
            "scales_bits": bits(scales2),
            "scales": floats(scales2),
            "absmax_dequant_bits": bits(absmax_dq),
            "dequant_sum_f64": float(np.sum(deq_dq.astype(np.float64))),
        },
    }
    if store_input:
        case["input_bits"] = bits(flat)
        case["input"] = floats(flat)
        case["dequant_bits"] = bits(deq)
        case["double_quant"]["dequant_bits"] = bits(deq_dq)
    else:
        case["generator"] = generator
        case["input_head_bits"] = bits(flat[:8])
    return case


def build():
    code = create_dynamic_map_signed()
    big = xorshift_irwin_hall(40, 500, 0x2545F491)
    cases = [
        nf4_case("normal_3x100_zero_block", case_3x100(), code, True),
        nf4_case("ties_3x33_odd", case_3x33_ties(), code, True),
        nf4_case(
            "xorshift_40x500",
            big,
            code,
            False,
            {"kind": "xorshift_irwin_hall", "rows": 40, "cols": 500, "seed": 0x2545F491},
        ),
    ]
    wi = case_int8_4x33()
    qi, si = quantize_int8(wi)
    return {
        "about": "generated by tools/reference/nf4_golden.py (numpy re-implementation of "
        "bitsandbytes quantize_4bit nf4/blocksize 64 + double quant); do not edit by hand",
        "blocksize": 64,
        "nf4_code_bits": bits(NF4_CODE),
        "dynamic_map_bits": bits(code),
        "dynamic_map": floats(code),
        "nf4": cases,
        "int8": {
            "shape": list(wi.shape),
            "input_bits": bits(wi.reshape(-1)),
            "input": floats(wi.reshape(-1)),
            "q": [int(v) for v in qi.reshape(-1)],
            "scales_bits": bits(si),
            "scales": floats(si),
        },
    }, {"big": big}


# ---------------------------------------------------------------- real bitsandbytes


def check_bnb(fixture: dict, extra: dict) -> bool:
    import torch  # noqa: F401
    import bitsandbytes as bnb
    import bitsandbytes.functional as F

    ok = True
    print(f"bitsandbytes {bnb.__version__}, torch {torch.__version__}, cuda {torch.cuda.is_available()}")
    dm = F.create_dynamic_map(signed=True).numpy().astype(F32)
    same = bits(dm) == fixture["dynamic_map_bits"]
    print(f"create_dynamic_map(signed=True) bit-identical: {same}")
    if not same:
        diff = [i for i, (a, b) in enumerate(zip(bits(dm), fixture["dynamic_map_bits"])) if a != b]
        print(f"  differing entries: {diff[:20]}")
        ok = False
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    inputs = {
        "normal_3x100_zero_block": case_3x100(),
        "ties_3x33_odd": case_3x33_ties(),
        "xorshift_40x500": extra["big"],
    }
    for case in fixture["nf4"]:
        w = inputs[case["name"]]
        for dev in devices:
            A = torch.from_numpy(w.copy()).to(dev)
            packed, st = F.quantize_4bit(A, blocksize=64, quant_type="nf4", compress_statistics=False)
            pk = packed.reshape(-1).cpu().numpy().tobytes().hex()
            am = bits(st.absmax.float().cpu().numpy())
            p_ok = pk == case["packed_hex"]
            a_ok = am == case["absmax_bits"]
            nbad = sum(a != b for a, b in zip(bytes.fromhex(pk), bytes.fromhex(case["packed_hex"])))
            packed2, st2 = F.quantize_4bit(A, blocksize=64, quant_type="nf4", compress_statistics=True)
            dq = case["double_quant"]
            off_bits = bits([st2.offset.float().cpu().item()])[0]
            off_ok = abs(off_bits - dq["offset_bits"]) <= 1  # torch's float32 mean: see docstring
            off_exact = off_bits == dq["offset_bits"]
            q_ok = st2.absmax.reshape(-1).cpu().numpy().tobytes().hex() == dq["q_hex"]
            s_ok = bits(st2.state2.absmax.float().cpu().numpy()) == dq["scales_bits"]
            c_ok = bits(st2.state2.code.float().cpu().numpy()) == fixture["dynamic_map_bits"]
            deq = F.dequantize_4bit(packed2, st2).float().reshape(-1).cpu().numpy()
            deq_sum = float(np.sum(deq.astype(np.float64)))
            print(
                f"[{dev}] {case['name']}: packed {p_ok} ({nbad} bytes differ), absmax {a_ok}; "
                f"dq offset {'exact' if off_exact else ('1ulp' if off_ok else 'DIFFERENT')} q {q_ok} scales {s_ok} code {c_ok}; "
                f"dq dequant sum {deq_sum!r} vs {dq['dequant_sum_f64']!r}"
            )
            if not off_exact:
                print(f"   offset bnb {st2.offset.item()!r} ours {dq['offset']!r}")
            if dev == "cuda" and not (p_ok and a_ok and off_ok and q_ok and s_ok and c_ok):
                ok = False
    cw = fixture["int8"]
    wi = np.array(cw["input"], dtype=F32).reshape(cw["shape"])
    for dev in ["cpu"]:  # the CUDA kernel takes float16 only
        q, stats, _ = F.int8_vectorwise_quant(torch.from_numpy(wi.copy()).to(dev))
        q = q.reshape(-1).cpu().numpy().astype(int).tolist()
        nd = sum(a != b for a, b in zip(q, cw["q"]))
        print(f"[{dev}] int8_vectorwise_quant: {nd} of {len(q)} codes differ from ours (bnb rounds half to even on w*(127/absmax))")
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "nf4_golden.json"))
    ap.add_argument("--check-bnb", action="store_true", help="compare with the installed bitsandbytes")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    fixture, extra = build()
    if not args.no_write:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(fixture, f, separators=(",", ":"))
            f.write("\n")
        print(f"wrote {os.path.abspath(args.out)}")
    if args.check_bnb:
        return 0 if check_bnb(fixture, extra) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
