// The prefill GEMMs the `cutlass` feature runs (int8 by default, NF4 too with MINILAB_QGEMM=cutlass;
// src/kernels/qgemm.rs), shared by the device half
// (kernels.cu) and the host half (params.cu): the two must agree, or the Params bytes the host half
// writes would not be the kernel's. Both read the GPU copy of the weight exactly as the decode GEMVs
// do, and both give each weight as the shipped dequantize kernels write it, bit for bit:
// - int8: the stored codes q + 128 as uint8, read back as q by int8_convert.cuh's converter, times an
//   f32 scale a row, rounded once: bf16(q·s);
// - NF4: the packed codes in minilab's order through nf4_convert.cuh, an f32 absmax a 64-block
//   (transposed to [k/64, n] for CUTLASS's scale layout): bf16(code·absmax).
// Each in three tiles (weight rows × xs rows × k), the three mixed_bench times: cooperative
// 128 × 128 and 128 × 256, and ping-pong 64 × 128. None is best at every shape (mixed_bench, H100,
// issue 11 session 15): src/kernels/qgemm.rs's `cutlass_tile` picks one a product.
#pragma once
#include "int8_convert.cuh"
#include "mixed.cuh"
#include "nf4_convert.cuh"

template <typename Tile, class Schedule, class Epi>
using Int8Gemm = Mixed<uint8_t, Tile, Schedule, Epi, float>;
template <typename Tile, class Schedule, class Epi>
using Nf4Gemm = Mixed<cutlass::uint4b_t, Tile, Schedule, Epi, float>;
using TileCoop = Shape<_128, _128, _64>;
using TileWide = Shape<_128, _256, _64>;
using TilePing = Shape<_64, _128, _64>;

using Int8Coop = Int8Gemm<TileCoop, Coop, CoopEpi>;
using Int8Wide = Int8Gemm<TileWide, Coop, CoopEpi>;
using Int8Ping = Int8Gemm<TilePing, Ping, PingEpi>;
using Nf4Coop = Nf4Gemm<TileCoop, Coop, CoopEpi>;
using Nf4Wide = Nf4Gemm<TileWide, Coop, CoopEpi>;
using Nf4Ping = Nf4Gemm<TilePing, Ping, PingEpi>;

// The six as X(name, type, kind, tile): kernels.cu names its kernels minilab_mixed_<name>, params.cu
// dispatches on (kind, tile); kind 0 int8, 1 NF4; tile 0 coop, 1 wide, 2 ping (src/kernels/cuda/cutlass.rs).
#define MINILAB_CUTLASS_GEMMS(X)  \
    X(int8_coop, Int8Coop, 0, 0) \
    X(int8_wide, Int8Wide, 0, 1) \
    X(int8_ping, Int8Ping, 0, 2) \
    X(nf4_coop, Nf4Coop, 1, 0)   \
    X(nf4_wide, Nf4Wide, 1, 1)   \
    X(nf4_ping, Nf4Ping, 1, 2)
