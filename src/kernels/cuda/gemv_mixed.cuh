// One decode launch for q/k/v or gate/up whose layers hold different formats (the gemv_mx_ and
// gemv_ns_mx_ kernels).
//
// A sensitivity plan promotes single projections: the chosen 3B plan of issue 11 session 28 held two
// formats in the q/k/v of 22 of its 28 blocks. Without this launch such a group falls back to one
// launch a layer, with the norm, RoPE and the KV writes or silu·up as launches of their own: about
// 17 µs a split group on the H100, 17 % of that plan's step. Here each part carries its format
// (Part::format) and every unit of work (Units, gemv_stream.cuh: the rows one warp takes) lies in one
// part, or (SILU) takes the same rows of gate and of up: the format branch is the same for the whole
// warp, and each row is summed as the one-format kernels sum it, step for step.
//
// One row of 16-bit xs, two rows a warp (SILU: two rows of gate and two of up). The norm the block
// way (Parts' norm = 1, or none) or the stats way (NORM_STATS); the late way's launches of mixed
// formats take the block way (src/kernels/many.rs).
#pragma once
#include "gemv_stream.cuh"

namespace gemv {

// rows() of one row of xs, two rows a warp, in the part's own format.
template <typename T, int OUT, int NORM>
__device__ __forceinline__ void rows_as_stored(const T* xs, const Part& p, int k, int row0, const char* tb, int stride,
                                               const Rope* rope, LateNorm<T> ln) {
    constexpr int U = default_unroll<1>();
    if (p.format == NF4) rows<T, NF4, 1, 2, U, OUT, 0, NORM>(xs, p, 1, k, row0, tb, nullptr, stride, rope, nullptr, ln);
    else if (p.format == INT8) rows<T, INT8, 1, 2, U, OUT, 0, NORM>(xs, p, 1, k, row0, tb, nullptr, stride, rope, nullptr, ln);
    else rows<T, DENSE, 1, 2, U, OUT, 0, NORM>(xs, p, 1, k, row0, tb, nullptr, stride, rope, nullptr, ln);
}

// Rows row0, row0 + 1 of p as store_silu takes them: the warp's sums (times the stats way's RMS
// factor, as rows() applies it) times the int8 row scale, in every lane.
template <typename T, int F, int NORM>
__device__ __forceinline__ void silu_inputs(const T* xs, const Part& p, int k, int row0, const char* tb,
                                            const LateNorm<T>& ln, float (&out)[2]) {
    float acc[2][1];
    accumulate<T, F, 1, 2, default_unroll<1>(), false>(xs, p, nullptr, 1, k, row0, 1, tb, acc);
    const float inv = NORM == NORM_STATS ? rsqrtf(warp_sum(ln.ss) / k + ln.eps) : 1.f;
#pragma unroll
    for (int r = 0; r < 2; r++) out[r] = warp_sum(NORM == NORM_STATS ? acc[r][0] * inv : acc[r][0]) * row_scale<F>(p, row0 + r);
}

template <typename T, int NORM>
__device__ __forceinline__ void silu_inputs_as_stored(const T* xs, const Part& p, int k, int row0, const char* tb,
                                                      const LateNorm<T>& ln, float (&out)[2]) {
    if (p.format == NF4) silu_inputs<T, NF4, NORM>(xs, p, k, row0, tb, ln, out);
    else if (p.format == INT8) silu_inputs<T, INT8, NORM>(xs, p, k, row0, tb, ln, out);
    else silu_inputs<T, DENSE, NORM>(xs, p, k, row0, tb, ln, out);
}

// silu(gate)·up of rows row0, row0 + 1 into gate's ys, rounded as store_silu rounds it.
template <typename T, int NORM>
__device__ __forceinline__ void silu_mixed(const T* xs, const Parts& ps, int row0, const char* tb, const LateNorm<T>& ln) {
    float g[2], u[2];
    silu_inputs_as_stored<T, NORM>(xs, ps.p[0], ps.k, row0, tb, ln, g);
    silu_inputs_as_stored<T, NORM>(xs, ps.p[1], ps.k, row0, tb, ln, u);
    if ((threadIdx.x & 31) != 0) return;
    T* ys = reinterpret_cast<T*>(ps.p[0].ys);
#pragma unroll
    for (int r = 0; r < 2; r++) {
        const float gr = to_f(from_f<T>(g[r])), ur = to_f(from_f<T>(u[r]));
        if (row0 + r < ps.p[0].n) ys[row0 + r] = from_f<T>(gr / (1.f + __expf(-gr)) * ur);
    }
}

// The launch: PLAIN, SILU or ROPE (gemv_accumulate.cuh's Parts), one row of xs.
template <typename T, int NORM>
__device__ __forceinline__ void gemv_parts_mixed(const T* xs, const Parts& ps) {
    __shared__ __align__(16) float table[NF4_TABLE_WORDS];
    extern __shared__ __align__(16) unsigned char normed[];
    pdl_trigger();
    bool nf4 = false;
    for (int i = 0; i < ps.count; i++) nf4 |= ps.p[i].format == NF4;
    if (nf4) fill_table<NF4>(table);  // the same for every thread of the block
    pdl_wait();
    if (NORM == NORM_BLOCK && ps.norm) {
        norm_into(xs, static_cast<const T*>(ps.norm_w), ps.eps, ps.k, reinterpret_cast<T*>(normed));
        xs = reinterpret_cast<const T*>(normed);
    }
    LateNorm<T> ln;
    if constexpr (NORM == NORM_STATS) {
        ln.eps = ps.eps;
        for (int i = threadIdx.x & 31; i < ps.partials; i += 32) ln.ss += __ldg(ps.partial + i);
    }
    const char* tb = reinterpret_cast<const char*>(table);
    const int warps = gridDim.x * (blockDim.x >> 5), first = (blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    if (ps.mode == SILU) {
        // two rows of gate and of up a warp: the units of a four-row SILU grid
        const Units<4> un(ps);
        for (int u = first; u < un.count; u += warps) silu_mixed<T, NORM>(xs, ps, 2 * u, tb, ln);
        return;
    }
    const Units<2> un(ps);
    for (int u = first; u < un.count; u += warps) {
        int row0, stride;
        const int part = un.at(u, &row0, &stride);
        const Part& p = ps.p[part];
        if (ps.mode != ROPE) rows_as_stored<T, OUT_PLAIN, NORM>(xs, p, ps.k, row0, tb, stride, nullptr, ln);
        else if (part == 0) rows_as_stored<T, OUT_ROPE_Q, NORM>(xs, p, ps.k, row0, tb, stride, &ps.rope, ln);
        else if (part == 1) rows_as_stored<T, OUT_ROPE_K, NORM>(xs, p, ps.k, row0, tb, stride, &ps.rope, ln);
        else rows_as_stored<T, OUT_V_CACHE, NORM>(xs, p, ps.k, row0, tb, stride, &ps.rope, ln);
    }
}

}  // namespace gemv
