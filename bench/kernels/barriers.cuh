// gemv_bench --barriers: what the grid barriers of a persistent decode step would cost. `--merged`
// put a step's linears as one launch (dependencies ignored) at 1.35× (int8) to 1.75× (NF4) the
// speed of the shipped launches on a 3B step (H100, session 11): the launch boundaries hold the
// quantized steps. A persistent step keeps one launch but must wait between dependent GEMVs, since
// each reads the whole output of the one before. Here the same one-launch walk waits at a grid
// barrier wherever the shipped step starts a new launch (per block: q/k/v, o, gate/up, down; then the
// head), on a resident grid (every block must be running for a barrier to complete). Three ways at
// R = 2 and 4: no barriers (`--merged`'s bound), barriers, and barriers after which a warp finds its
// next weights already on their way: before waiting it asks L2 for the first 8 KB of its next row
// group (`prefetch.global.L2`), which a real step may do since weights never depend on the barrier.
// If barriers cost little against that bound, the persistent step is worth building.
//
// The math still ignores the dependencies (every weight reads the same xs), so every output must be
// what `--merged` computes: equal to the shipped step's bit for bit at the same R, else within one
// bf16 ulp of the largest output. A barrier that does not complete within about 2^26 polls (a grid
// that is not all resident) sets a flag, and the way fails instead of hanging.
#pragma once
#include "merged.cuh"

namespace barriers {

using merged::Seg;

// Waits until `target` blocks have arrived at the counter; the whole block waits with its thread 0.
__device__ __forceinline__ void grid_barrier(unsigned* bar, unsigned target, int* stuck) {
    __syncthreads();
    if (threadIdx.x == 0) {
        __threadfence();
        atomicAdd(bar, 1u);
        for (long long polls = 0; *(volatile unsigned*)bar < target; polls++) {
            if (polls > (1ll << 26)) { atomicExch(stuck, 1); break; }
        }
        __threadfence();
    }
    __syncthreads();
}

// Asks L2 for the first 8 KB of row group g's weights (lane i: lines i and i + 32 of 128 bytes).
template <int F, int R>
__device__ __forceinline__ void prefetch_group(const Seg* segs, const int* warp0, int count, int g, int end) {
    if (g >= end) return;
    const Seg& s = segs[merged::seg_of(warp0, count, g)];
    const size_t row_bytes = F == gemv::DENSE ? (size_t)s.k * 2 : F == gemv::INT8 ? s.k : s.k / 2;
    const int row0 = (g - s.warp0) * R, rows = min(R, s.p.n - row0);
    const size_t bytes = min(rows * row_bytes, (size_t)8192);
    const int lane = threadIdx.x & 31;
    for (size_t at = (size_t)lane * 128; at < bytes; at += 32 * 128)
        asm volatile("prefetch.global.L2 [%0];" ::"l"(s.p.a + row0 * row_bytes + at));
}

// Stage st covers the global row groups [stage_g0[st], stage_g0[st + 1]).
template <int F, int R, bool PREFETCH>
__global__ void __launch_bounds__(128, R == 2 ? 8 : 6)
    kernel(const bf16* xs, const Seg* segs, const int* warp0, int count, const int* stage_g0, int stages,
           int barriers, unsigned* bar, int* stuck) {
    __shared__ __align__(16) float table[gemv::table_words<F>()];
    if constexpr (gemv::nf4_like<F>()) gemv::fill_table<F>(table);
    const int warps = gridDim.x * (blockDim.x >> 5), me = (blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    for (int st = 0; st < stages; st++) {
        for (int g = stage_g0[st] + me; g < stage_g0[st + 1]; g += warps) {
            const Seg& s = segs[merged::seg_of(warp0, count, g)];
            gemv::rows<bf16, F, 1, R>(xs, s.p, 1, s.k, (g - s.warp0) * R, reinterpret_cast<const char*>(table));
        }
        if (!barriers || st + 1 == stages) continue;
        if constexpr (PREFETCH) prefetch_group<F, R>(segs, warp0, count, stage_g0[st + 1] + me, stage_g0[st + 2]);
        grid_barrier(bar, (unsigned)(st + 1) * gridDim.x, stuck);
    }
}
typedef void (*BarrierKern)(const bf16*, const Seg*, const int*, int, const int*, int, int, unsigned*, int*);
template <int F, int R> BarrierKern pick_f(bool prefetch) { return prefetch ? kernel<F, R, true> : kernel<F, R, false>; }
template <int R> BarrierKern pick(int f, bool prefetch) {
    return f == 0 ? pick_f<0, R>(prefetch) : f == 1 ? pick_f<1, R>(prefetch) : pick_f<2, R>(prefetch);
}

// One way: R rows a warp, barriers or not, prefetching or not, on a resident grid.
struct Way { int r; bool barriers, prefetch; };
static const Way WAYS[] = {{2, false, false}, {2, true, false}, {2, true, true},
                           {4, false, false}, {4, true, false}, {4, true, true}};
constexpr int NWAYS = sizeof(WAYS) / sizeof(WAYS[0]);

// The step's stages (its shipped launches) as first row groups at R rows a warp, then the total.
std::vector<int> stage_starts(const Model& md, const std::vector<Weight>& ws, int r) {
    std::vector<int> g0;
    int total = 0;
    size_t next = 0;
    for (auto& l : step_launches(md, ws)) {
        g0.push_back(total);
        for (size_t i = 0; i < l.size(); i++, next++) total += (ws[next].n + r - 1) / r;
    }
    g0.push_back(total);
    return g0;
}

bool step_row(cudaStream_t s, const Model& md, int f, double bw, const bf16* xs, unsigned* bar, int* stuck) {
    size_t bytes;
    std::vector<Weight> ws = step_weights(md, f, 900 + f, &bytes);
    std::vector<size_t> off;
    bf16 *y, *y_ref;
    const size_t rows = merged::step_outputs(ws, off, &y, &y_ref);
    const merged::Plan plans[2] = {merged::plan_of(ws, off, y, 2), merged::plan_of(ws, off, y, 4)};
    int* g0[2];
    int stages = 0;
    for (int i = 0; i < 2; i++) {
        const std::vector<int> st = stage_starts(md, ws, plans[i].r);
        stages = (int)st.size() - 1;
        CK(cudaMalloc(&g0[i], st.size() * sizeof(int)));
        CK(cudaMemcpy(g0[i], st.data(), st.size() * sizeof(int), cudaMemcpyHostToDevice));
    }
    // each way's kernel and resident grid, asked of the driver here: no query inside a graph capture
    BarrierKern kerns[NWAYS];
    int grids[NWAYS];
    for (int w = 0; w < NWAYS; w++) {
        kerns[w] = WAYS[w].r == 2 ? pick<2>(f, WAYS[w].prefetch) : pick<4>(f, WAYS[w].prefetch);
        int per_sm = 0;
        CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kerns[w], 128, 0));
        grids[w] = per_sm * g_sms;
    }
    const auto way = [&](int w) { return [&, w](int) {
        if (w < 0) return merged::shipped_step(s, md, ws, off, y, xs);
        const Way& wy = WAYS[w];
        const merged::Plan& p = plans[wy.r == 4];
        CK(cudaMemsetAsync(bar, 0, sizeof(unsigned), s));
        kerns[w]<<<grids[w], 128, 0, s>>>(xs, p.segs, p.warp0, p.count, g0[wy.r == 4], stages, wy.barriers, bar, stuck);
    }; };
    CK(cudaMemsetAsync(y_ref, 0xff, rows * 2, s));
    merged::shipped_step(s, md, ws, off, y_ref, xs);
    CK(cudaMemset(stuck, 0, sizeof(int)));
    std::vector<std::vector<double>> t;
    std::string agreement;
    // a barrier that gave up leaves its way FAIL, whatever its outputs
    const bool ok = merged::alternate_checked(s, NWAYS, way, y, rows, t, agreement, [&](int, const merged::Agreement& a) {
        int hung = 0;
        CK(cudaMemcpy(&hung, stuck, sizeof(int), cudaMemcpyDeviceToHost));
        return a.worst <= 0x1p-7 && !hung;
    }, ws, off, y_ref);
    const auto ms = [&](int i) { return t[i][1]; };
    printf("| %s | %s | %.3f | %d | %.3f (%.1f %%) |", md.name, FMT[f], bytes / 1e9, stages, ms(0) * 1e3, 100 * bytes / ms(0) / bw);
    for (int w = 1; w <= NWAYS; w++) printf(" %.3f (%.1f %%, %.2f×) |", ms(w) * 1e3, 100 * bytes / ms(w) / bw, ms(0) / ms(w));
    printf("%s\n", agreement.c_str());
    for (auto& p : plans) { cudaFree(p.segs); cudaFree(p.warp0); }
    for (int* g : g0) cudaFree(g);
    cudaFree(y); cudaFree(y_ref);
    for (auto& w : ws) free_weight(w);
    return ok;
}

// --barriers: exit 3 if a way's output is NaN, differs past 2^-7 from the shipped step's, or a
// barrier stuck.
int barriers_main(cudaStream_t s, double bw, const bf16* xs) {
    unsigned* bar;
    int* stuck;
    CK(cudaMalloc(&bar, sizeof(unsigned)));
    CK(cudaMalloc(&stuck, sizeof(int)));
    printf("## A decode step's linears in one resident launch: no barriers, a grid barrier at each shipped launch's "
           "start, and barriers with the next row group asked of L2 first (m = 1), ms (%% of copy, shipped / way)\n\n");
    printf("| model | format | weight GB | stages | shipped | one launch R2 | barriers R2 | barriers + L2 R2 |"
           " one launch R4 | barriers R4 | barriers + L2 R4 | equal to shipped, worst Δ: R2 | barriers R2 |"
           " barriers + L2 R2 | R4 | barriers R4 | barriers + L2 R4 |\n");
    printf("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | --- | --- | --- | --- |\n");
    bool ok = true;
    for (const Model& md : MODELS)
        for (int f = 0; f < 3; f++) ok = step_row(s, md, f, bw, xs, bar, stuck) && ok;
    cudaFree(bar);
    cudaFree(stuck);
    return ok ? 0 : 3;
}

}  // namespace barriers
