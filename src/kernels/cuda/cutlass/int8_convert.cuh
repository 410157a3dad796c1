// minilab's stored int8 codes as CUTLASS's 8-bit weight type: in a translation unit that includes this
// header, a cutlass uint8_t weight holds q + 128 (the byte the GPU copy keeps, which the decode GEMVs
// read), and converting it to f32 gives q. CUTLASS's own converter puts each byte in the low mantissa
// bits of 2^23 (one `prmt` against 0x4B000000) and subtracts 2^23; this one subtracts 2^23 + 128, so
// the bias goes at no extra instruction, and every step is exact (integers below 2^24). The mainloop
// then multiplies by the f32 row scale and rounds once to bf16: bf16(q · s), the weight the shipped
// dequantize kernel writes, with neither a zero point nor a flipped copy. On an H100 (issue 11
// session 16) its outputs equal the zero-point GEMM's bit for bit, and dropping the per-call kernel
// that made the zero points −128·s gave the 3B's int8 pp512 1.07× (mixed_bench's "q+128 (biased cvt)"
// way, `device_check cuda qgemm`).
#pragma once
#include "cutlass/numeric_conversion.h"

namespace cutlass {
template <int N> struct NumericArrayConverter<float, uint8_t, N, FloatRoundStyle::round_to_nearest> {
    using result_type = Array<float, N>;
    using source_type = Array<uint8_t, N>;
    static FloatRoundStyle const round_style = FloatRoundStyle::round_to_nearest;
    CUTLASS_DEVICE static result_type convert(source_type const& source) {
        result_type r;
        uint32_t* out = reinterpret_cast<uint32_t*>(&r);
        uint32_t words[(N + 3) / 4] = {};
        memcpy(words, &source, N);  // registers: the copy compiles away
        CUTLASS_PRAGMA_UNROLL
        for (int i = 0; i < N; i++) out[i] = __byte_perm(words[i / 4], 0x4B000000u, 0x7650 + (i % 4));
        CUTLASS_PRAGMA_UNROLL
        for (int i = 0; i < N; i++) r[i] -= 8388736.f;  // 2^23 + 128
        return r;
    }
    CUTLASS_DEVICE result_type operator()(source_type const& s) const { return convert(s); }
};
}  // namespace cutlass
