// The streaming one-row GEMVs (MINILAB_GEMV_GRID=stream: the gemv_sm_ kernels; stream-regs: the
// gemv_sr_ kernels; one row of 16-bit xs).
//
// The shipped grid gives a warp one group of rows and the warp exits after it. A 3B row is 1.5 KB in
// NF4, 3 KB in int8, 6 KB in bf16: one to six rounds of loads, then the sums, the store and the exit,
// and every block fills its NF4 table (and normalizes xs, with a folded norm) first. On the H200 even
// the NF4 head's loads alone reach only 58 % of the copy bandwidth that way (BENCHMARKS.md, issue 11
// session 9). Here the grid is resident (as many blocks as the GPU holds at once), each warp takes a
// run of whole units laid end to end over the launch's parts (a unit: the R rows a warp of the shipped
// grid takes, so that one xs load still serves R rows), and keeps 4 KB of steps (512 bytes of each of
// its R rows, and their NF4 absmax) in flight across the unit boundaries, so its loads do not stop
// between units: in shared memory through cp.async (gemv_stream), or in registers (gemv_stream_regs).
// The first slots go out before the kernel waits on the previous one (pdl_wait) and before the table
// and the norm: weights are never written by a kernel, so with MINILAB_PDL=1 they stream while the
// previous kernel finishes.
//
// A row's arithmetic is accumulate's, step for step (same lanes, same decode, same sums in the same
// order, the same warp reduction and stores), so the outputs equal the shipped kernels' bit for bit.
// Rows must be whole steps: k a multiple of 32 · step_elems (every Llama shape is).
#pragma once
#include "gemv.cuh"

namespace gemv {

// Steps a warp keeps in flight: 4 KB of weights (512 bytes a row and step), so a resident grid holds
// some 15 MB in flight, more than a 3B q/k/v launch reads in NF4.
template <int R> __host__ __device__ constexpr int stream_depth() { return R >= 4 ? 2 : 8 / R; }

// A streaming block's shared memory in one object (apart, ptxas may give up the table's uniform base
// register, gemv_staged.cuh): the NF4 table, then each warp's slots of weights and absmax.
template <int F, int R> struct StreamSmem {
    float table[table_words<F>()];
    uint4 w[4][stream_depth<R>()][R][32];
    float sc[4][stream_depth<R>()][R][nf4_like<F>() ? 32 : 1];
};

// The launch's units: the R rows one warp of the shipped grid takes (gemv_parts hands them out in
// the same order). PLAIN/RESID: R consecutive rows of a part (the last ones repeat the part's last
// row, never stored), part after part. SILU: R/2 rows of gate and the same rows of up. ROPE (R = 2):
// the q pairs, the k pairs (head h, index i < d/2: rows h·d + i and h·d + i + d/2), then v two by two.
template <int R> struct Units {
    int mode, count, half, g0, g1, gq, gk;
    __host__ __device__ explicit Units(const Parts& ps) : mode(ps.mode), half(ps.rope.d / 2), g0(0), g1(0), gq(0), gk(0) {
        const int n0 = ps.p[0].n, n1 = ps.count > 1 ? ps.p[1].n : 0, n2 = ps.count > 2 ? ps.p[2].n : 0;
        if (mode == SILU) {
            count = (n0 + R / 2 - 1) / (R / 2);
        } else if (mode == ROPE) {
            gq = n0 / 2;
            gk = n1 / 2;
            count = gq + gk + (n2 + 1) / 2;
        } else {
            g0 = (n0 + R - 1) / R;
            g1 = (n1 + R - 1) / R;
            count = g0 + g1 + (n2 + R - 1) / R;
        }
    }
    // Unit u's part (returned), first row and the stride between its rows.
    __host__ __device__ __forceinline__ int at(int u, int* row0, int* stride) const {
        *stride = 1;
        if (mode == ROPE) {
            if (u < gq + gk) {
                const int g = u < gq ? u : u - gq;
                *row0 = g / half * 2 * half + g % half;
                *stride = half;
                return u < gq ? 0 : 1;
            }
            *row0 = 2 * (u - gq - gk);
            return 2;
        }
        if (mode == SILU) {
            *row0 = u * (R / 2);
            return 0;
        }
        const int part = u < g0 ? 0 : u < g0 + g1 ? 1 : 2;
        *row0 = (u - (part == 0 ? 0 : part == 1 ? g0 : g0 + g1)) * R;
        return part;
    }
};

// The issuing side's walk over a warp's steps: unit u, the step t of its rows, and where lane's 16
// bytes of each row (and NF4 absmax) lie for step t; the addresses advance step by step. (Host code
// too: bench/kernels/stream_walk.cu checks the walk on the CPU.)
template <typename T, int F, int R> struct StreamAt {
    int u, t, spr, end, lane;
    const uint8_t* w[R];
    const float* sc[R];
    __host__ __device__ __forceinline__ void locate(const Parts& ps, const Units<R>& un) {
        int row0, stride;
        const int part = un.at(u, &row0, &stride);
#pragma unroll
        for (int r = 0; r < R; r++) {
            const bool silu = ps.mode == SILU;
            const Part& p = ps.p[silu && r >= R / 2 ? 1 : part];
            const size_t first = (size_t)warp_row<R>(silu, row0, stride, r, ps.p[part].n) * ps.k;
            w[r] = p.a + weight_bytes<T, F>(first) + lane * 16;
            // a lane's 32 NF4 weights share one absmax of 64
            if constexpr (nf4_like<F>()) sc[r] = p.b + first / 64 + lane / 2;
        }
    }
    __host__ __device__ __forceinline__ void next(const Parts& ps, const Units<R>& un) {
        if (++t < spr) {
#pragma unroll
            for (int r = 0; r < R; r++) {
                w[r] += 512;
                if constexpr (nf4_like<F>()) sc[r] += 16;
            }
            return;
        }
        t = 0;
        if (++u < end) locate(ps, un);
    }
};

// Unit u's sums stored as the launch's mode says (gemv.cuh's stores, as the shipped kernels call them).
template <typename T, int F, int R>
__device__ __forceinline__ void store_unit(const Parts& ps, const Units<R>& un, int u, const float (&acc)[R][1]) {
    int row0, stride;
    const int part = un.at(u, &row0, &stride);
    if (ps.mode == SILU) {
        if constexpr (R >= 2) store_silu<T, F, 1, R>(acc, ps.p[0], ps.p[1], 1, row0);
    } else if (ps.mode == ROPE) {
        if constexpr (R == 2) {
            if (part == 0) store_rope<T, F, 1, OUT_ROPE_Q>(acc, ps.p[0], 1, row0, row0 + stride, ps.rope);
            else if (part == 1) store_rope<T, F, 1, OUT_ROPE_K>(acc, ps.p[1], 1, row0, row0 + stride, ps.rope);
            else store_rope<T, F, 1, OUT_V_CACHE>(acc, ps.p[2], 1, row0, row0 + stride, ps.rope);
        }
    } else {
        store_rows<T, F, 1, R>(acc, ps.p[part], 1, row0, ps.mode == RESID ? static_cast<const T*>(ps.res) : nullptr);
    }
}

// A warp's run: the launch's units split evenly over the grid's warps, a run of whole units each;
// the issuing walk (in), and the consuming side's unit u, step t and sums.
template <typename T, int F, int R> struct StreamRun {
    Units<R> un;
    int spr, steps, u, t;
    StreamAt<T, F, R> in;
    float acc[R][1];
    __device__ __forceinline__ StreamRun(const Parts& ps, int lane, long long gw, long long warps) : un(ps) {
        spr = ps.k / (32 * step_elems<F>());
        const int u0 = (int)(un.count * gw / warps), u1 = (int)(un.count * (gw + 1) / warps);
        steps = (u1 - u0) * spr;
        u = u0;
        t = 0;
        in = StreamAt<T, F, R>{u0, 0, spr, u1, lane, {}, {}};
        if (steps > 0) in.locate(ps, un);
#pragma unroll
        for (int r = 0; r < R; r++) acc[r][0] = 0.f;
    }
    // Where this lane's xs of the step being consumed start.
    __device__ __forceinline__ int x_at(int lane) const { return t * 32 * step_elems<F>() + lane * step_elems<F>(); }
    // The step's sums (and NF4 absmax) into the unit's; its stores at the unit's last step.
    __device__ __forceinline__ void consumed(const Parts& ps, const float (&sums)[R], const float (&scale)[R]) {
#pragma unroll
        for (int r = 0; r < R; r++) {
            if constexpr (nf4_like<F>()) acc[r][0] = fmaf(sums[r], scale[r], acc[r][0]);
            else acc[r][0] += sums[r];
        }
        if (++t < spr) return;
        store_unit<T, F, R>(ps, un, u, acc);
        t = 0;
        ++u;
#pragma unroll
        for (int r = 0; r < R; r++) acc[r][0] = 0.f;
    }
};

// What comes between a streaming warp's first copies and its loop: the block's NF4 table, the wait
// on the previous kernel, and the folded norm; returns the xs to read.
template <typename T, int F> __device__ __forceinline__ const T* stream_inputs(const T* xs, const Parts& ps, float* table, T* normed) {
    if constexpr (nf4_like<F>()) fill_table<F>(table);
    pdl_wait();
    if (!ps.norm) return xs;
    norm_into(xs, static_cast<const T*>(ps.norm_w), ps.eps, ps.k, normed);
    return normed;
}

// The slots in shared memory, filled by cp.async (the gemv_sm_ kernels).
template <typename T, int F, int R> __device__ __forceinline__ void gemv_stream(const T* xs, const Parts& ps) {
    static_assert(sizeof(T) == 2, "streaming takes 16-bit activations");
    constexpr int U = stream_depth<R>();
    __shared__ StreamSmem<F, R> sm;
    extern __shared__ __align__(16) unsigned char normed[];
    pdl_trigger();
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const long long warps = (long long)gridDim.x * (blockDim.x >> 5), gw = blockIdx.x * (long long)(blockDim.x >> 5) + warp;
    StreamRun<T, F, R> run(ps, lane, gw, warps);
    auto& w = sm.w[warp];
    auto& sc = sm.sc[warp];
    const auto issue = [&](int slot) {
#pragma unroll
        for (int r = 0; r < R; r++) {
            cp_async16(&w[slot][r][lane], run.in.w[r], true);
            if constexpr (nf4_like<F>()) cp_async4(&sc[slot][r][lane], run.in.sc[r], true);
        }
        run.in.next(ps, run.un);
    };
    // Step i goes to slot i % U. Weights only before the wait: no kernel writes them.
#pragma unroll
    for (int i = 0; i < U - 1; i++) {
        if (i < run.steps) issue(i);
        cp_commit();
    }
    xs = stream_inputs<T, F>(xs, ps, sm.table, reinterpret_cast<T*>(normed));
    const char* tb = reinterpret_cast<const char*>(sm.table);
    for (int i = 0; i < run.steps; i++) {
        // Refill the slot the previous step used: its products have read it (one commit group a
        // step, empty past the run, so that the wait counts stay exact).
        if (i + U - 1 < run.steps) issue((i + U - 1) % U);
        cp_commit();
        cp_wait<U - 1>();
        const int slot = i % U;
        uint4 wq[R];
        float sums[R], scale[R];
#pragma unroll
        for (int r = 0; r < R; r++) {
            wq[r] = w[slot][r][lane];
            scale[r] = 1.f;
            if constexpr (nf4_like<F>()) scale[r] = sc[slot][r][lane];
        }
        step_sums<T, F, R>(wq, xs + run.x_at(lane), tb, lane * 4, sums);
        run.consumed(ps, sums, scale);
    }
}

// The slots in registers, filled by 16-byte loads past L1 (the gemv_sr_ kernels): no shared-memory
// pass for the weights, so about 1.25 fewer L1/shared bytes a weight than gemv_stream; the loop is
// unrolled by the slots, so that each slot is a register array of its own.
template <typename T, int F, int R> __device__ __forceinline__ void gemv_stream_regs(const T* xs, const Parts& ps) {
    static_assert(sizeof(T) == 2, "streaming takes 16-bit activations");
    constexpr int U = stream_depth<R>();
    __shared__ __align__(16) float table[table_words<F>()];
    extern __shared__ __align__(16) unsigned char normed[];
    pdl_trigger();
    const int lane = threadIdx.x & 31;
    const long long warps = (long long)gridDim.x * (blockDim.x >> 5), gw = (blockIdx.x * (long long)blockDim.x + threadIdx.x) >> 5;
    StreamRun<T, F, R> run(ps, lane, gw, warps);
    uint4 w[U][R];
    float sc[U][R];
    const auto load = [&](int slot) {
#pragma unroll
        for (int r = 0; r < R; r++) {
            w[slot][r] = ld_stream_early(run.in.w[r]);
            sc[slot][r] = 1.f;
            if constexpr (nf4_like<F>()) sc[slot][r] = ld_f32_early(run.in.sc[r]);
        }
        run.in.next(ps, run.un);
    };
#pragma unroll
    for (int s = 0; s < U; s++)
        if (s < run.steps) load(s);
    xs = stream_inputs<T, F>(xs, ps, table, reinterpret_cast<T*>(normed));
    const char* tb = reinterpret_cast<const char*>(table);
    for (int i0 = 0; i0 < run.steps; i0 += U) {
#pragma unroll
        for (int s = 0; s < U; s++) {
            if (i0 + s >= run.steps) break;
            uint4 wq[R];
            float scale[R], sums[R];
#pragma unroll
            for (int r = 0; r < R; r++) {
                wq[r] = w[s][r];
                scale[r] = sc[s][r];
            }
            if (i0 + s + U < run.steps) load(s);
            step_sums<T, F, R>(wq, xs + run.x_at(lane), tb, lane * 4, sums);
            run.consumed(ps, sums, scale);
        }
    }
}

}  // namespace gemv
