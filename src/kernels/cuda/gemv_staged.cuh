// The one-row GEMVs' accumulation staged through shared memory (the gemv_st_ kernels).
#pragma once
#include "gemv_accumulate.cuh"

namespace gemv {

// Staging (the gemv_st_ kernels, MINILAB_GEMV_STAGED=1; one row of xs, 16-bit activations). The
// SASS of the kernels above (bench/kernels/sass.sh) shows ptxas issuing only half of an NF4 loop
// iteration's weight loads, and none of its absmax loads, before the products begin, at every
// register cap tried: each iteration then waits on DRAM round trips in turn. Here each lane copies S
// steps of the warp's R rows (and their absmax) into shared memory with cp.async, then the next S
// steps while it multiplies these (two stages a warp). A cp.async cannot be sunk past the wait that
// needs it. The arithmetic is accumulate's, step for step: the outputs are equal bit for bit.
template <int F, int R, int S> struct Stage {
    uint4 w[2][S][R][32];
    float sc[2][S][R][nf4_like<F>() ? 32 : 1];
};

// A staged kernel's shared memory: the NF4 table and four warps' stages in one object (kept apart,
// ptxas gave the NF4 R = 2 kernel 96 registers and an add before every table lookup).
template <int F, int R, int S> struct StagedSmem {
    float table[table_words<F>()];
    Stage<F, R, S> stages[4];
};
template <int F, int R, int S> __device__ __forceinline__ StagedSmem<F, R, S>& staged_smem() {
    __shared__ StagedSmem<F, R, S> sm;
    return sm;
}
// This warp's stage; one per kernel, whatever the launch's mode.
template <int F, int R, int S> __device__ __forceinline__ Stage<F, R, S>& warp_stage() {
    return staged_smem<F, R, S>().stages[threadIdx.x >> 5];
}

// 16 (weights) or 4 (absmax) bytes from global to shared memory, asynchronously; with ok false the
// destination is zero-filled and nothing is read.
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool ok) {
    const uint32_t d = (uint32_t)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(d), "l"(src), "r"(ok ? 16 : 0) : "memory");
}
__device__ __forceinline__ void cp_async4(void* dst, const void* src, bool ok) {
    const uint32_t d = (uint32_t)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;" ::"r"(d), "l"(src), "r"(ok ? 4 : 0) : "memory");
}
__device__ __forceinline__ void cp_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
// Waits until at most N of this thread's committed groups are in flight.
template <int N> __device__ __forceinline__ void cp_wait() { asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory"); }

// The sums of one step of R rows (this lane's 16 bytes of row r in w[r]) against xs_at, the step's
// xs: accumulate's products in accumulate's order.
template <typename T, int F, int R>
__device__ __forceinline__ void step_sums(const uint4 (&w)[R], const T* xs_at, const char* table, uint32_t lane_off,
                                          float (&sums)[R]) {
    constexpr int SUBS = step_elems<F>() / 8;
#pragma unroll
    for (int r = 0; r < R; r++) sums[r] = 0.f;
#pragma unroll
    for (int s = 0; s < SUBS; s++) {
        float x[8];
        load_x8(xs_at + 8 * s, x);
#pragma unroll
        for (int r = 0; r < R; r++) {
            float wf[8];
            decode8<T, F>(&w[r], s, wf, table, lane_off);
#pragma unroll
            for (int e = 0; e < 8; e++) sums[r] = fmaf(wf[e], x[e], sums[r]);
        }
    }
}

// accumulate for one row of xs through the warp's stage (same rows, same sums, same order). Each lane
// reads back only what it copied itself, so the warp needs no synchronization.
template <typename T, int F, int R, int S, bool SILU>
__device__ __forceinline__ void accumulate_staged(const T* xs, const Part& p, const Part* up, int k, int row0, int stride,
                                                  const char* table, float (&acc)[R][1]) {
    static_assert(sizeof(T) == 2 && S > 0, "staging takes 16-bit activations");
    constexpr int E = step_elems<F>();
    Stage<F, R, S>& st = warp_stage<F, R, S>();
    const int lane = threadIdx.x & 31;
    const uint32_t lane_off = lane * 4;
    const auto row_bytes = [](size_t n) { return weight_bytes<T, F>(n); };
    // where the lane's first step of row r starts: its 16 weight bytes and (NF4) its absmax; step i
    // lies 512 bytes (32 lanes × 16) and, for NF4, 16 absmax further on
    const uint8_t* wp[R];
    const float* sp[R];
#pragma unroll
    for (int r = 0; r < R; r++) {
        const Part& pr = SILU && r >= R / 2 ? *up : p;
        const size_t row = warp_row<R>(SILU, row0, stride, r, p.n);
        const int j0 = lane * E < k ? lane * E : 0;  // a lane past a short row stays at its start
        wp[r] = pr.a + row_bytes(row * k + j0);
        sp[r] = nf4_like<F>() ? pr.b + (row * k + j0) / 64 : nullptr;
    }
    const int steps = (k + 32 * E - 1) / (32 * E), chunks = (steps + S - 1) / S;
    // chunk c (steps c·S …) into stage c & 1; a step past k reads nothing (its first step's address
    // stands in) and is never read back
    const auto issue = [&](int c) {
#pragma unroll
        for (int t = 0; t < S; t++) {
            const int i = c * S + t;
            const bool ok = lane * E + i * 32 * E < k;
#pragma unroll
            for (int r = 0; r < R; r++) {
                cp_async16(&st.w[c & 1][t][r][lane], ok ? wp[r] + (size_t)i * 512 : wp[r], ok);
                if constexpr (nf4_like<F>()) cp_async4(&st.sc[c & 1][t][r][lane], ok ? sp[r] + (size_t)i * 16 : sp[r], ok);
            }
        }
        cp_commit();
    };
#pragma unroll
    for (int r = 0; r < R; r++) acc[r][0] = 0.f;
    issue(0);
    for (int c = 0; c < chunks; c++) {
        if (c + 1 < chunks) {
            issue(c + 1);
            cp_wait<1>();
        } else {
            cp_wait<0>();
        }
#pragma unroll
        for (int t = 0; t < S; t++) {
            // the warp leaves together (a lane-dependent exit costs the table lookups their uniform
            // base register); a lane whose step lies past a short row reads xs in the row and drops
            // its products
            if (c * S + t >= steps) break;
            const int j = lane * E + (c * S + t) * 32 * E;
            const bool ok = j < k;
            const int jx = ok ? j : k - E;
            uint4 w[R];
            float sums[R];
#pragma unroll
            for (int r = 0; r < R; r++) w[r] = st.w[c & 1][t][r][lane];
            step_sums<T, F, R>(w, xs + jx, table, lane_off, sums);
#pragma unroll
            for (int r = 0; r < R; r++) {
                float v;
                if constexpr (nf4_like<F>()) v = fmaf(sums[r], st.sc[c & 1][t][r][lane], acc[r][0]);
                else v = acc[r][0] + sums[r];
                acc[r][0] = ok ? v : acc[r][0];
            }
        }
    }
}

}  // namespace gemv
