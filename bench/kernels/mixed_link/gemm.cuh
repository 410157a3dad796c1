// The one GEMM of the link probe, shared by its host half (params.cu) and device half (kernel.cu): the
// two must agree on it, or the Params bytes would not be the kernel's. mixed_bench.cu's int8 config
// (cooperative, 128 × 128 × 64 tile): one bf16 scale a weight row.
#pragma once
#include "../mixed_config.cuh"

using Int8 = Mixed<int8_t, Shape<_128, _128, _64>, Coop, CoopEpi>;
