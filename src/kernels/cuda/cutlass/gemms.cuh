// The prefill GEMMs the `cutlass` feature runs (MINILAB_QGEMM=cutlass), shared by the device half
// (kernels.cu) and the host half (params.cu): the two must agree, or the Params bytes the host half
// writes would not be the kernel's. Both read the GPU copy of the weight exactly as the decode GEMVs
// do, and both give each weight as the shipped dequantize kernels write it, bit for bit:
// - int8: the stored codes q + 128 as uint8, an f32 scale and a zero point −128·s a row; CUTLASS
//   computes (q + 128)·s − 128·s as one FFMA, which is q·s rounded once: bf16(q·s);
// - NF4: the packed codes in minilab's order through nf4_convert.cuh, an f32 absmax a 64-block
//   (transposed to [k/64, n] for CUTLASS's scale layout): bf16(code·absmax).
// Cooperative 128 × 128 × 64 tiles (bench/kernels/mixed_bench.cu times the others).
#pragma once
#include "mixed.cuh"
#include "nf4_convert.cuh"

using Int8Gemm = Mixed<uint8_t, Shape<_128, _128, _64>, Coop, CoopEpi, float, true>;
using Nf4Gemm = Mixed<cutlass::uint4b_t, Shape<_128, _128, _64>, Coop, CoopEpi, float>;
