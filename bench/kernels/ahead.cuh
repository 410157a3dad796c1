// gemv_bench --ahead: a decode step's linears whose weights stream ahead of the step's dependencies,
// in one persistent launch past its grid barriers or in a chain of launches past their edges.
//
// Session 15 (barriers.cuh) closed the persistent step as it was built there: a stage boundary
// inside one launch cost 3.7–5.7 µs against a graph launch boundary's 1.3–2.5 µs, because at each
// barrier the SMs that finish first idle until the last block's loads return, and then every warp
// starts the next stage's loads cold. But a stage's weights do not depend on the stage before it;
// only its xs does. Here each block is CW consumer warps, which multiply and wait at the grid
// barriers, and one producer warp, which copies the consumers' next weights into rings of
// shared-memory slots with the Hopper bulk copy (cp.async.bulk, its bytes counted on an mbarrier)
// and never waits at a grid barrier, only for a slot to be freed. So the weights keep streaming
// through every barrier, as far ahead as the rings hold (CW warps × D slots × R rows × PIECE bytes).
//
// The chain ways keep the shipped step's shape, a launch a stage, which minilab's graph could take
// without becoming one persistent kernel: each launch is the same producer/consumer block, one an
// SM, small enough that the next launch's block fits beside it. With programmatic dependent launch
// (CHAIN_PDL) the next launch starts at once, its producer fills its ring while this launch computes
// (weights need no wait), and its consumers wait (griddepcontrol.wait) for this launch's outputs.
// Session 6's PDL asked L2 for the next weights (prefetch.global.L2) and lost; here the copies land
// in shared memory where the consumers read them, and no register holds them across the wait
// (session 10's staged kernel lost its table's base register that way). CHAIN is the same launches
// without PDL: what the early start buys.
//
// Lane w of the producer fills consumer warp w's ring; both walk the same row groups (R rows of one
// weight, in the order barriers.cuh's warps take them) and, within a group, the same pieces of k.
// The consumer's products are accumulate's, step for step (gemv_staged.cuh's step_sums), so at the
// shipped launch's R its outputs are the shipped ones bit for bit; else within one bf16 ulp of the
// largest. As in barriers.cuh every weight reads the same xs (the barriers stand in for the
// dependencies). A chain's launches each fetch xs anew, as the shipped step's do; a persistent
// way's consumers may find it in L1 after a barrier, where a real step would fetch the previous
// stage's output from L2: about one L2 round trip a stage (113 a 3B step) that these ways do not pay.
//
// Every wait gives up 50 ms after its block started and flags the run, so a broken way FAILs
// instead of hanging the call.
#pragma once
#include <utility>

#include "ahead_walk.cuh"
#include "barriers.cuh"

namespace ahead {

using merged::Seg;

__device__ __forceinline__ uint32_t smem_u32(const void* p) { return (uint32_t)__cvta_generic_to_shared(p); }
constexpr unsigned long long GIVE_UP_NS = 50000000ull;

__device__ __forceinline__ void mbar_init(uint64_t* b, unsigned count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem_u32(b)), "r"(count) : "memory");
}
// Arrives and adds `bytes` to the transfers the current phase waits for.
__device__ __forceinline__ void mbar_expect_tx(uint64_t* b, unsigned bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_u32(b)), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint64_t* b) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(smem_u32(b)) : "memory");
}
// Whether the phase of `parity` has completed: at once (TRY false: test_wait) or after the hardware
// has waited a while for it (try_wait).
#define AHEAD_MBAR_POLL(OP) \
    "{\n .reg .pred p;\n mbarrier." OP ".parity.shared::cta.b64 p, [%1], %2;\n selp.u32 %0, 1, 0, p;\n}"
template <bool TRY> __device__ __forceinline__ bool mbar_done(uint64_t* b, unsigned parity) {
    uint32_t done;
    if constexpr (TRY) asm volatile(AHEAD_MBAR_POLL("try_wait") : "=r"(done) : "r"(smem_u32(b)), "r"(parity) : "memory");
    else asm volatile(AHEAD_MBAR_POLL("test_wait") : "=r"(done) : "r"(smem_u32(b)), "r"(parity) : "memory");
    return done;
}
#undef AHEAD_MBAR_POLL
// Waits until the phase of `parity` completes; false, with *stuck set, once past the deadline.
__device__ __forceinline__ bool mbar_wait(uint64_t* b, unsigned parity, unsigned long long deadline, int* stuck) {
    while (!mbar_done<true>(b, parity))
        if (now_ns() > deadline) {
            atomicExch(stuck, 1);
            return false;
        }
    return true;
}
// `bytes` (a multiple of 16, both addresses 16-byte aligned) from global into this block's shared
// memory, counted on b when they land.
__device__ __forceinline__ void bulk_copy(void* dst, const void* src, unsigned bytes, uint64_t* b) {
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];"
                 ::"r"(smem_u32(dst)), "l"(src), "r"(bytes), "r"(smem_u32(b))
                 : "memory");
}

// The dynamic shared memory: the NF4 table (4 KB), the full and empty mbarriers, the rings.
constexpr int TABLE_BYTES = gemv::NF4_TABLE_WORDS * 4;
template <int CW, int D> __host__ __device__ constexpr int bars_bytes() { return (2 * CW * D * 8 + 127) / 128 * 128; }
template <int F, int R, int CW, int D, int PIECE> __host__ __device__ constexpr int smem_bytes() {
    return TABLE_BYTES + bars_bytes<CW, D>() + CW * D * Slot<F, R, PIECE>::BYTES;
}

// The consumer warps' grid barrier: barriers.cuh's release/acquire one, with a named barrier for the
// CW warps in place of __syncthreads (the producer warp is elsewhere).
template <int CW>
__device__ __forceinline__ void consumer_barrier(unsigned* bar, unsigned target, unsigned long long deadline, int* stuck) {
    asm volatile("bar.sync 1, %0;" ::"n"(CW * 32) : "memory");
    if (threadIdx.x == 0) {
        asm volatile("red.release.gpu.global.add.u32 [%0], 1;" ::"l"(bar) : "memory");
        for (;;) {
            unsigned v;
            asm volatile("ld.relaxed.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(bar) : "memory");
            if (v >= target) break;
            if (now_ns() > deadline) { atomicExch(stuck, 1); break; }
        }
        asm volatile("fence.acq_rel.gpu;" ::: "memory");
    }
    asm volatile("bar.sync 1, %0;" ::"n"(CW * 32) : "memory");
}

// Producer lane for consumer warp `me`: each piece into the next slot of its ring once the consumer
// has freed it. The lanes poll (test_wait) and never block, so a lane whose consumer lags does not
// hold up the others.
template <int F, int R, int D, int PIECE>
__device__ __forceinline__ void produce(const Walk<Seg>& wk, int me, int warps, unsigned char* ring, uint64_t* full,
                                        uint64_t* empty, unsigned long long deadline, int* stuck) {
    using S = Slot<F, R, PIECE>;
    Cursor<R, S::ELEMS, Seg> cur(wk, me, warps);
    for (int i = 0; !cur.done();) {
        const int slot = i % D;
        const unsigned round = i / D;
        if (round > 0 && !mbar_done<false>(empty + slot, (round - 1) & 1)) {
            if (now_ns() > deadline) {
                atomicExch(stuck, 1);
                return;
            }
            continue;
        }
        Copy cps[2 * R];
        int n = 0;
        const unsigned bytes = piece_copies<F, R, PIECE>(cur.s.p, cur.s.k, cur.row0(), cur.k0, cur.len(), cps, &n);
        unsigned char* dst = ring + slot * S::BYTES;
        mbar_expect_tx(full + slot, bytes);
#pragma unroll
        for (int c = 0; c < 2 * R; c++)
            if (c < n) bulk_copy(dst + cps[c].dst, cps[c].src, cps[c].bytes, full + slot);
        i++;
        cur.next();
    }
}

// What the consumers share: the grid barrier's counter, the flag a wait that gave up sets, and (when
// not null) where the warps add the clock cycles they spent waiting: [0] for their slots, [1] at the
// grid barriers or, in a chain, for the launch before.
struct Sync {
    unsigned* bar;
    int* stuck;
    unsigned long long* stall;
};

// Consumer warp `me`: each piece's products from its slot, the slot freed at once, the rows stored
// after their last piece, a grid barrier after each stage when `barriers`.
template <int F, int R, int CW, int D, int PIECE>
__device__ __forceinline__ void consume(const Walk<Seg>& wk, int me, int warps, const bf16* xs, const char* table,
                                        const unsigned char* ring, uint64_t* full, uint64_t* empty, bool barriers,
                                        const Sync& sy, unsigned long long deadline) {
    using S = Slot<F, R, PIECE>;
    constexpr int E = gemv::step_elems<F>();
    const int lane = threadIdx.x & 31;
    int i = 0;
    float acc[R][1];
    long long for_slots = 0, held = clock64();
    pdl_wait();  // a chained launch's xs is ready once the launch before it has finished
    held = clock64() - held;
    walk<R, S::ELEMS>(wk, me, warps,
        [&](const Seg& s, int row0, int k0, int len) {
            const int slot = i % D;
            const unsigned round = i / D;
            i++;
            if (k0 == 0)
#pragma unroll
                for (int r = 0; r < R; r++) acc[r][0] = 0.f;
            const long long t0 = clock64();
            mbar_wait(full + slot, round & 1, deadline, sy.stuck);
            for_slots += clock64() - t0;
            const unsigned char* src = ring + slot * S::BYTES;
            for (int t = 0; t < len / (32 * E); t++) {
                const int j = t * 32 * E + lane * E;  // within the piece
                uint4 w[R];
                float sums[R];
#pragma unroll
                for (int r = 0; r < R; r++) w[r] = *reinterpret_cast<const uint4*>(src + S::weights_at(r) + t * 512 + lane * 16);
                gemv::step_sums<bf16, F, R>(w, xs + k0 + j, table, lane * 4, sums);
#pragma unroll
                for (int r = 0; r < R; r++) {
                    if constexpr (gemv::nf4_like<F>()) {
                        const float sc = *reinterpret_cast<const float*>(src + S::absmax_at(r) + j / 64 * 4);
                        acc[r][0] = fmaf(sums[r], sc, acc[r][0]);
                    } else {
                        acc[r][0] += sums[r];
                    }
                }
            }
            __syncwarp();
            if (lane == 0) mbar_arrive(empty + slot);
            if (k0 + len == s.k) gemv::store_rows<bf16, F, 1, R>(acc, s.p, 1, row0, nullptr);
        },
        [&](int st) {
            if (!barriers || st + 1 >= wk.stages) return;
            const long long t0 = clock64();
            consumer_barrier<CW>(sy.bar, (unsigned)(st + 1) * gridDim.x, deadline, sy.stuck);
            held += clock64() - t0;
        });
    if (sy.stall && lane == 0) {
        atomicAdd(sy.stall, (unsigned long long)for_slots);
        atomicAdd(sy.stall + 1, (unsigned long long)held);
    }
}

// MINB: blocks an SM the registers must allow (2 for the chains, whose next launch's block must fit).
template <int F, int R, int CW, int D, int PIECE, int MINB>
__global__ void __launch_bounds__((CW + 1) * 32, MINB)
    kernel(const bf16* xs, Walk<Seg> wk, int barriers, Sync sy) {
    static_assert(CW <= 32, "a producer lane a consumer warp");
    extern __shared__ __align__(128) unsigned char smem[];
    float* table = reinterpret_cast<float*>(smem);
    uint64_t* full = reinterpret_cast<uint64_t*>(smem + TABLE_BYTES);
    uint64_t* empty = full + CW * D;
    unsigned char* rings = smem + TABLE_BYTES + bars_bytes<CW, D>();
    const unsigned long long deadline = now_ns() + GIVE_UP_NS;
    pdl_trigger();  // with CHAIN_PDL the next stage's launch may start its copies at once
    if (threadIdx.x < CW * D) {
        mbar_init(full + threadIdx.x, 1);
        mbar_init(empty + threadIdx.x, 1);
    }
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    if constexpr (gemv::nf4_like<F>()) gemv::fill_table<F>(table);
    __syncthreads();
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, warps = gridDim.x * CW;
    constexpr int RING = D * Slot<F, R, PIECE>::BYTES;
    if (warp == CW) {
        if (lane < CW)
            produce<F, R, D, PIECE>(wk, blockIdx.x * CW + lane, warps, rings + lane * RING, full + lane * D, empty + lane * D,
                                    deadline, sy.stuck);
        return;
    }
    consume<F, R, CW, D, PIECE>(wk, blockIdx.x * CW + warp, warps, xs, reinterpret_cast<const char*>(table),
                                rings + warp * RING, full + warp * D, empty + warp * D, barriers, sy, deadline);
}
typedef void (*AheadKern)(const bf16*, Walk<Seg>, int, Sync);

// A way's kernel and dynamic shared memory in format f.
struct Built { AheadKern k; int smem; };
template <int F, int W> Built built_f() {
    constexpr Way w = WAYS[W];
    constexpr int minb = w.mode == CHAIN || w.mode == CHAIN_PDL ? 2 : 1;
    return Built{kernel<F, w.r, w.cw, w.d, w.piece, minb>, smem_bytes<F, w.r, w.cw, w.d, w.piece>()};
}
template <size_t... W> void build_all(int f, Built* out, std::index_sequence<W...>) {
    ((out[W] = f == 0 ? built_f<0, W>() : f == 1 ? built_f<1, W>() : built_f<2, W>()), ...);
}

// Whether every weight of the step suits the walk at R rows a warp.
bool fits_all(const std::vector<Weight>& ws, int r) {
    for (auto& w : ws)
        if (!fits(w.fmt, w.n, w.k, r)) return false;
    return true;
}

// Every way of one format: barriers.cuh's "one launch R2" and "acq-rel R2" (ways 0, 1), then WAYS;
// kernels and grids asked of the driver here, never inside a capture. A way whose shared memory or
// pieces do not fit gets no grid: it runs nothing and FAILs (its outputs stay NaN).
constexpr int OLD_WAY[2] = {0, 2};
constexpr int ALL_WAYS = 2 + NWAYS;
struct Lineup {
    barriers::BarrierKern old[barriers::NWAYS];
    Built kerns[NWAYS];
    int grids[ALL_WAYS], threads[ALL_WAYS], smem[ALL_WAYS];
};
Lineup lineup(int f, const std::vector<Weight>& ws) {
    Lineup lu{};
    barriers::way_kernels(f, lu.old, std::make_index_sequence<barriers::NWAYS>{});
    build_all(f, lu.kerns, std::make_index_sequence<NWAYS>{});
    for (int w = 0; w < ALL_WAYS; w++) {
        int per_sm = 0;
        lu.threads[w] = 128;
        if (w < 2) {
            CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, lu.old[OLD_WAY[w]], 128, 0));
        } else {
            const Way& wy = WAYS[w - 2];
            const Built& b = lu.kerns[w - 2];
            lu.threads[w] = (wy.cw + 1) * 32;
            lu.smem[w] = b.smem;
            if (cudaFuncSetAttribute(b.k, cudaFuncAttributeMaxDynamicSharedMemorySize, b.smem) != cudaSuccess) {
                cudaGetLastError();
                continue;
            }
            if (!fits_all(ws, wy.r)) continue;
            CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, b.k, lu.threads[w], b.smem));
            // a chain's launch takes one block an SM and must leave room for the next one's
            if (wy.mode == CHAIN || wy.mode == CHAIN_PDL) per_sm = per_sm >= 2 ? 1 : 0;
        }
        lu.grids[w] = per_sm * g_sms;
    }
    return lu;
}

// The step's weights as the ways walk them, at R = 2 and 4: plans[r == 4], g0[r == 4] (on the GPU).
struct StepPlan {
    merged::Plan plans[2];
    int* g0[2];
    int stages;
};

// Way w's step (its stall pair zeroed first, so that it holds the last replay's); the launches'
// first error.
cudaError_t launch_way(cudaStream_t s, const Lineup& lu, const StepPlan& sp, int w, const bf16* xs, Sync sy) {
    CK(cudaMemsetAsync(sy.bar, 0, sizeof(unsigned), s));
    if (lu.grids[w] == 0) return cudaSuccess;
    if (w < 2) {
        const merged::Plan& p = sp.plans[0];
        lu.old[OLD_WAY[w]]<<<lu.grids[w], 128, 0, s>>>(xs, p.segs, p.warp0, p.count, sp.g0[0], sp.stages, w == 1, sy.bar,
                                                       sy.stuck);
        return cudaGetLastError();
    }
    const Way& wy = WAYS[w - 2];
    const merged::Plan& p = sp.plans[wy.r == 4];
    CK(cudaMemsetAsync(sy.stall, 0, 2 * sizeof(unsigned long long), s));
    if (wy.mode == FREE || wy.mode == BARRIERS) {
        const Walk<Seg> wk{p.segs, p.warp0, p.count, sp.g0[wy.r == 4], sp.stages};
        lu.kerns[w - 2].k<<<lu.grids[w], lu.threads[w], lu.smem[w], s>>>(xs, wk, wy.mode == BARRIERS, sy);
        return cudaGetLastError();
    }
    cudaLaunchAttribute pdl{};
    pdl.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    pdl.val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t cfg{};
    cfg.gridDim = dim3(lu.grids[w]);
    cfg.blockDim = dim3(lu.threads[w]);
    cfg.dynamicSmemBytes = lu.smem[w];
    cfg.stream = s;
    cfg.attrs = &pdl;
    cfg.numAttrs = wy.mode == CHAIN_PDL ? 1 : 0;
    for (int st = 0; st < sp.stages; st++) {
        const Walk<Seg> wk{p.segs, p.warp0, p.count, sp.g0[wy.r == 4] + st, 1};
        const cudaError_t e = cudaLaunchKernelEx(&cfg, lu.kerns[w - 2].k, xs, wk, 0, sy);
        if (e != cudaSuccess) return e;
    }
    return cudaSuccess;
}

// Each ahead way once, outside any capture: a way whose launch the driver refuses (its shape, its
// attributes) loses its grid and FAILs, instead of ending the run at its capture. A fault in a
// kernel is named here before the run ends.
void preflight(cudaStream_t s, Lineup& lu, const StepPlan& sp, const bf16* xs, Sync sy) {
    for (int w = 2; w < ALL_WAYS; w++) {
        if (lu.grids[w] == 0) continue;
        cudaError_t e = launch_way(s, lu, sp, w, xs, Sync{sy.bar, sy.stuck, sy.stall + 2 * w});
        if (e == cudaSuccess) e = cudaStreamSynchronize(s);
        if (e == cudaSuccess) continue;
        fprintf(stderr, "gemv_bench --ahead: %s: %s\n", WAYS[w - 2].name, cudaGetErrorString(e));
        cudaGetLastError();
        lu.grids[w] = 0;
    }
}

// The table's rows of one model and format: the shipped step, then each way.
void print_rows(const Model& md, int f, size_t bytes, double bw, int stages, const Lineup& lu,
                const std::vector<std::vector<double>>& t, const std::vector<std::string>& cell,
                const std::vector<unsigned long long>& stall, double mhz) {
    const auto ms = [&](int i) { return t[i][1] * 1e3; };
    printf("| %s | %s | shipped | %d launches | | %.3f (%.1f %%) | 1 | | |\n", md.name, FMT[f], stages, ms(0),
           100 * bytes / ms(0) / bw / 1e-3);
    for (int w = 0; w < ALL_WAYS; w++) {
        const char* name = w < 2 ? barriers::WAYS[OLD_WAY[w]].name : WAYS[w - 2].name;
        char waits[64] = "";
        if (w >= 2 && lu.grids[w] > 0) {
            const double warps = (double)lu.grids[w] * WAYS[w - 2].cw;
            snprintf(waits, sizeof waits, "%.1f, %.1f", stall[2 * w] / warps / mhz, stall[2 * w + 1] / warps / mhz);
        }
        printf("| %s | %s | %s | %d × %d | %d | %.3f (%.1f %%) | %.2f× | %s |%s|\n", md.name, FMT[f], name, lu.grids[w],
               lu.threads[w], lu.smem[w] >> 10, ms(w + 1), 100 * bytes / ms(w + 1) / bw / 1e-3, ms(0) / ms(w + 1), waits,
               cell[w].c_str());
    }
}

// One model and format: the shipped step, session 11's one-launch bound, session 15's barrier way,
// then each ahead way, alternating three times; a row a way, with the µs a consumer warp waited (the
// last replay; cycles at the SM's top clock, `mhz`).
bool step_row(cudaStream_t s, const Model& md, int f, double bw, const bf16* xs, Sync sy, double mhz) {
    size_t bytes;
    std::vector<Weight> ws = step_weights(md, f, 900 + f, &bytes);
    std::vector<size_t> off;
    bf16 *y, *y_ref;
    const size_t rows = merged::step_outputs(ws, off, &y, &y_ref);
    StepPlan sp{{merged::plan_of(ws, off, y, 2), merged::plan_of(ws, off, y, 4)}, {nullptr, nullptr}, 0};
    for (int i = 0; i < 2; i++) {
        const std::vector<int> st = barriers::stage_starts(md, ws, sp.plans[i].r);
        sp.stages = (int)st.size() - 1;
        CK(cudaMalloc(&sp.g0[i], st.size() * sizeof(int)));
        CK(cudaMemcpy(sp.g0[i], st.data(), st.size() * sizeof(int), cudaMemcpyHostToDevice));
    }
    Lineup lu = lineup(f, ws);
    preflight(s, lu, sp, xs, sy);
    CK(cudaMemset(sy.stuck, 0, sizeof(int)));
    const auto way = [&](int w) { return [&, w](int) {
        if (w < 0) return merged::shipped_step(s, md, ws, off, y, xs);
        CK(launch_way(s, lu, sp, w, xs, Sync{sy.bar, sy.stuck, sy.stall + 2 * w}));
    }; };
    CK(cudaMemsetAsync(y_ref, 0xff, rows * 2, s));
    merged::shipped_step(s, md, ws, off, y_ref, xs);
    CK(cudaMemset(sy.stuck, 0, sizeof(int)));
    std::vector<std::vector<double>> t;
    std::vector<std::string> cells;
    // a wait that gave up leaves its way FAIL, whatever its outputs
    const bool ok = merged::alternate_checked(s, ALL_WAYS, way, y, rows, t, cells, [&](int w, const merged::Agreement& a) {
        int hung = 0;
        CK(cudaMemcpy(&hung, sy.stuck, sizeof(int), cudaMemcpyDeviceToHost));
        CK(cudaMemset(sy.stuck, 0, sizeof(int)));
        return a.worst <= 0x1p-7 && !hung && lu.grids[w] > 0;
    }, ws, off, y_ref);
    std::vector<unsigned long long> stall(2 * ALL_WAYS);
    CK(cudaMemcpy(stall.data(), sy.stall, stall.size() * sizeof(unsigned long long), cudaMemcpyDeviceToHost));
    print_rows(md, f, bytes, bw, sp.stages, lu, t, cells, stall, mhz);
    for (auto& p : sp.plans) { cudaFree(p.segs); cudaFree(p.warp0); }
    for (int* g : sp.g0) cudaFree(g);
    cudaFree(y); cudaFree(y_ref);
    for (auto& w : ws) free_weight(w);
    return ok;
}

// --ahead: exit 3 if a way's output is NaN, differs past 2^-7 from the shipped step's, or a wait
// gave up.
int ahead_main(cudaStream_t s, double bw, const bf16* xs) {
    Sync sy{};
    CK(cudaMalloc(&sy.bar, sizeof(unsigned)));
    CK(cudaMalloc(&sy.stuck, sizeof(int)));
    CK(cudaMalloc(&sy.stall, 2 * ALL_WAYS * sizeof(unsigned long long)));
    CK(cudaMemset(sy.stall, 0, 2 * ALL_WAYS * sizeof(unsigned long long)));
    int khz = 0;
    CK(cudaDeviceGetAttribute(&khz, cudaDevAttrClockRate, 0));
    printf("## A decode step's linears with producer warps that stream the weights ahead: in one resident launch "
           "with grid barriers, or a launch a stage chained by PDL (m = 1): ms (%% of copy), shipped / way, and the "
           "outputs against the shipped step's\n\n");
    printf("Waits: µs a consumer warp spent waiting for its slots, and at the grid barriers or (chains) for the launch "
           "before, in the last replay, from clock64 at the top SM clock (%d MHz).\n\n", khz / 1000);
    printf("| model | format | way | grid × threads | shared KB | ms (%% of copy) | shipped / way | waits: slots, barriers |"
           " equal, worst Δ |\n");
    printf("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |\n");
    bool ok = true;
    for (const Model& md : MODELS)
        for (int f = 0; f < 3; f++) ok = step_row(s, md, f, bw, xs, sy, khz / 1000.0) && ok;
    cudaFree(sy.bar);
    cudaFree(sy.stuck);
    cudaFree(sy.stall);
    return ok ? 0 : 3;
}

}  // namespace ahead
