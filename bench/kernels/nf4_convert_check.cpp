// nf4_convert.cuh's lookups on the CPU (its prmt emulated as PTX defines it): every 16-bit group of
// four codes converted to bf16 and to f32 must give each code's value in minilab's order (output j is
// nibble j ^ 1: a byte's high nibble first), f32 bit for bit and bf16 as f32 rounded to nearest even. Built and run by bench/kernels/build.sh (g++ only); exit 1 on a miss.
#include <cstdio>
#include <cstring>

#include "../../src/kernels/cuda/cutlass/nf4_convert.cuh"

// bitsandbytes' NF4 codebook (src/quant/nf4.rs; gemv_accumulate.cuh's NF4_CODES), index = 4-bit code
static const float CODES[16] = {-1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
                                -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
                                0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f,
                                0.33791524171829224f, 0.44070982933044434f, 0.5626170039176941f,
                                0.7229568362236023f, 1.0f};

static uint32_t bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static uint32_t bf16_rne(uint32_t u) { return (u + 0x7fffu + ((u >> 16) & 1u)) >> 16; }

int main() {
    long misses = 0;
    for (uint32_t v = 0; v < 65536; v++) {
        uint32_t b[2], f[4];
        nf4cvt::bf16x4(v, b);
        nf4cvt::f32x4(v, f);
        for (int j = 0; j < 4; j++) {
            const uint32_t code = (v >> (4 * (j ^ 1))) & 15, want = bits(CODES[code]);
            const uint32_t got_bf16 = (b[j / 2] >> (16 * (j % 2))) & 0xffffu;
            if (f[j] != want || got_bf16 != bf16_rne(want)) {
                if (misses++ < 5) printf("miss: group %04x, code %u: f32 %08x want %08x, bf16 %04x want %04x\n", v, code,
                                         f[j], want, got_bf16, bf16_rne(want));
            }
        }
    }
    printf("nf4_convert: %ld of %d lookups wrong\n", misses, 65536 * 4 * 2);
    return misses ? 1 : 0;
}
