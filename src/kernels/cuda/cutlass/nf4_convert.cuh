// NF4 codes as CUTLASS's 4-bit weight type, for the `cutlass` feature's NF4 GEMMs (gemms.cuh) and
// mixed_bench.cu's NF4 ways: in a translation unit that
// includes this header, cutlass::uint4b_t holds an NF4 code index, and a packed byte holds two codes in
// minilab's order (byte i: element 2i in its HIGH nibble, 2i + 1 in the low one; CUTLASS's own 4-bit
// types put element 2i in the low nibble). The converters read the nibbles as they come and put each
// pair's two values back in minilab's order when they assemble the outputs, at no extra instruction,
// so the GPU copy that the decode GEMVs read serves the prefill GEMM as it is. Converting gives the
// code's value:
// - to bf16: bf16(code), the codebook rounded to bf16 (the mainloop then multiplies by a bf16 absmax:
//   bf16(bf16(code) · bf16(absmax)), within a bf16 ulp of minilab's weight, not equal to it);
// - to f32: the exact code (the mainloop multiplies by an f32 absmax and rounds once: bf16(code ·
//   absmax), minilab's dequantized weight bit for bit).
// A 16-entry table of bytes is four 32-bit words; `prmt` looks up four codes at once in each half
// (codes 0–7, 8–15) and a third `prmt` picks per byte by the code's top bit: 3 instructions a byte
// plane for 4 weights. bf16 has 2 planes, f32 4 (and 8 more `prmt` to reassemble the floats).
// The pairing holds because the mainloop converts whole 32-bit words of codes copied verbatim from
// memory (its converters take arrays of 8, contiguous in memory); an odd count cannot compile here.
// The planes are the codebook's bytes (generated from gemv::NF4_CODES; nf4_convert_check.cpp checks
// every code on the CPU, mixed_bench on the GPU, and mixed_bench's GEMMs check the pairing).
#pragma once
#include <stdint.h>
#ifndef __CUDACC__
#define __host__
#define __device__
#endif

namespace nf4cvt {

// __byte_perm, and its definition on the host (selectors here never set a nibble's bit 3).
__host__ __device__ inline uint32_t prmt(uint32_t a, uint32_t b, uint32_t sel) {
#ifdef __CUDA_ARCH__
    return __byte_perm(a, b, sel);
#else
    const uint64_t pool = (uint64_t)a | ((uint64_t)b << 32);
    uint32_t r = 0;
    for (int i = 0; i < 4; i++) r |= (uint32_t)((pool >> (8 * ((sel >> (4 * i)) & 7))) & 0xff) << (8 * i);
    return r;
#endif
}

// The four codes in the low 16 bits of `v` (a nibble each) looked up in one byte plane: byte j of the
// result is the plane's byte for nibble j. idx: the nibbles without their top bit; pick: per byte j,
// j (codes 0–7) or 4 + j (codes 8–15).
__host__ __device__ inline uint32_t plane4(const uint32_t (&t)[4], uint32_t idx, uint32_t pick) {
    return prmt(prmt(t[0], t[1], idx), prmt(t[2], t[3], idx), pick);
}
__host__ __device__ inline uint32_t pick_of(uint32_t v) { return ((v & 0x8888u) | 0x6420u) >> 1; }

// The codebook's byte planes: plane p, word w holds byte p of codes 4w … 4w + 3 (byte j: code 4w + j).
// Local constants, so that device code may use them (namespace-scope constexpr arrays it may not).

// Four codes (the low 16 bits of v: nibbles 0–3) as two bf16x2 words in minilab's order: elements
// (nibble 1, nibble 0) and (nibble 3, nibble 2), the first of each in the low half.
__host__ __device__ inline void bf16x4(uint32_t v, uint32_t* out) {
    // bf16(code), rounded to nearest even
    constexpr uint32_t BF16[2][4] = {{0xca063280u, 0x00ba3d92u, 0xad7c25a3u, 0x803910e2u},
                                     {0xbebfbfbfu, 0x00bdbebeu, 0x3e3e3e3du, 0x3f3f3f3eu}};
    const uint32_t idx = v & 0x7777u, pick = pick_of(v);
    const uint32_t lo = plane4(BF16[0], idx, pick), hi = plane4(BF16[1], idx, pick);
    out[0] = prmt(lo, hi, 0x4051);
    out[1] = prmt(lo, hi, 0x6273);
}

// Four codes (the low 16 bits of v: nibbles 0–3) as four f32 bit patterns in minilab's order: the
// values of nibbles 1, 0, 3, 2.
__host__ __device__ inline void f32x4(uint32_t v, uint32_t* out) {
    constexpr uint32_t F32[4][4] = {{0xa030b100u, 0x00713f4du, 0x3adde3ffu, 0x00b3abb8u},
                                    {0x326b3900u, 0x007835a2u, 0x0304cafau, 0x001307a4u},
                                    {0xca063280u, 0x00ba3d91u, 0xad7c24a2u, 0x803910e1u},
                                    {0xbebfbfbfu, 0x00bdbebeu, 0x3e3e3e3du, 0x3f3f3f3eu}};
    const uint32_t idx = v & 0x7777u, pick = pick_of(v);
    const uint32_t p0 = plane4(F32[0], idx, pick), p1 = plane4(F32[1], idx, pick);
    const uint32_t p2 = plane4(F32[2], idx, pick), p3 = plane4(F32[3], idx, pick);
    // bytes (p0[j], p1[j], p2[j], p3[j]) form code j's float
    const uint32_t a = prmt(p0, p1, 0x5140), b = prmt(p0, p1, 0x7362);
    const uint32_t c = prmt(p2, p3, 0x5140), d = prmt(p2, p3, 0x7362);
    out[1] = prmt(a, c, 0x5410);
    out[0] = prmt(a, c, 0x7632);
    out[3] = prmt(b, d, 0x5410);
    out[2] = prmt(b, d, 0x7632);
}

}  // namespace nf4cvt

#ifdef __CUDACC__
#include "cutlass/numeric_conversion.h"

namespace nf4cvt {

// N codes from their packed bytes into words: W = 2 words (bf16 pairs) or 4 (f32) a group of four,
// then a last byte's pair (N % 4 == 2) into the first W / 2 words of its group.
template <int W, int N> __device__ inline void codes_to_words(const uint8_t* in, uint32_t* out) {
    static_assert(N % 2 == 0, "NF4 codes convert a byte at a time");
    const auto words4 = [](uint32_t v, uint32_t* o) {
        if constexpr (W == 2) bf16x4(v, o);
        else f32x4(v, o);
    };
#pragma unroll
    for (int i = 0; i < N / 4; i++) words4((uint32_t)in[2 * i] | ((uint32_t)in[2 * i + 1] << 8), out + W * i);
    if constexpr (N % 4 == 2) {
        uint32_t last[W];
        words4(in[N / 2 - 1], last);
#pragma unroll
        for (int j = 0; j < W / 2; j++) out[W * (N / 4) + j] = last[j];
    }
}

// CUTLASS's converter interface over codes_to_words, for T = bf16 (W = 2) or f32 (W = 4).
template <typename T, int W, int N> struct Converter {
    using result_type = cutlass::Array<T, N>;
    using source_type = cutlass::Array<cutlass::uint4b_t, N>;
    static cutlass::FloatRoundStyle const round_style = cutlass::FloatRoundStyle::round_to_nearest;
    CUTLASS_DEVICE static result_type convert(source_type const& source) {
        result_type result;
        codes_to_words<W, N>(reinterpret_cast<const uint8_t*>(&source), reinterpret_cast<uint32_t*>(&result));
        return result;
    }
    CUTLASS_DEVICE result_type operator()(source_type const& s) const { return convert(s); }
};

}  // namespace nf4cvt

namespace cutlass {

// N NF4 codes (as uint4b_t) to bf16 or f32.
template <int N>
struct NumericArrayConverter<bfloat16_t, uint4b_t, N, FloatRoundStyle::round_to_nearest>
    : nf4cvt::Converter<bfloat16_t, 2, N> {};
template <int N>
struct NumericArrayConverter<float, uint4b_t, N, FloatRoundStyle::round_to_nearest> : nf4cvt::Converter<float, 4, N> {};

}  // namespace cutlass
#endif
