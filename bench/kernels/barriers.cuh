// gemv_bench --barriers: what the grid barriers of a persistent decode step would cost. `--merged`
// put a step's linears as one launch (dependencies ignored) at 1.35× (int8) to 1.75× (NF4) the
// speed of the shipped launches on a 3B step (H100, session 11): the launch boundaries hold the
// quantized steps. A persistent step keeps one launch but must wait between dependent GEMVs, since
// each reads the whole output of the one before. Here the same one-launch walk waits at a grid
// barrier wherever the shipped step starts a new launch (per block: q/k/v, o, gate/up, down; then the
// head), on a resident grid (every block must be running for a barrier to complete).
//
// Session 13 (H100) ran it with 128-thread blocks, 6–8 an SM, and a fenced barrier: about 5 µs a
// barrier in every format and model, against about 2.4 µs a graph launch boundary, so the persistent
// step lost (0.73–0.94×). That barrier is the textbook one: 792–1056 blocks each fence, add to one
// counter and poll it, so the adds serialize at one L2 slice and the polls contend with them. Whether
// the cost is the barrier's or the stages' tails decides whether a persistent step is dead, so:
// - `barrier_cost`: the barrier alone (empty stages), per block shape and kind, µs a barrier;
// - the step with one block an SM (1024 threads at R = 2, 768 at R = 4: the same registers a thread
//   as the 128-thread blocks), 132 arrivals a barrier instead of 1056, and a release-add with relaxed
//   polls and one acquire fence after them instead of full fences.
// (Session 13's third way, asking L2 for the next weights before waiting, was slower still; dropped.)
//
// The math still ignores the dependencies (every weight reads the same xs), so every output must be
// what `--merged` computes: equal to the shipped step's bit for bit at the same R, else within one
// bf16 ulp of the largest output. A barrier that does not complete within about 2^26 polls (a grid
// that is not all resident) sets a flag, and the way fails instead of hanging.
#pragma once
#include <utility>

#include "merged.cuh"

namespace barriers {

using merged::Seg;

// FENCED: session 13's barrier (fence, atomic add, volatile polls, fence). ACQ_REL: a release-add,
// relaxed polls, then one acquire fence (an acquire load in the loop would invalidate the SM's L1 at
// every poll: CCTL.IVALL in the SASS); the block's __syncthreads on either side carries its other
// threads' writes.
enum Kind { FENCED = 0, ACQ_REL = 1 };

// Waits until `target` blocks have arrived at the counter; the whole block waits with its thread 0.
template <int KIND> __device__ __forceinline__ void grid_barrier(unsigned* bar, unsigned target, int* stuck) {
    __syncthreads();
    if (threadIdx.x == 0) {
        if constexpr (KIND == FENCED) {
            __threadfence();
            atomicAdd(bar, 1u);
        } else {
            asm volatile("red.release.gpu.global.add.u32 [%0], 1;" ::"l"(bar) : "memory");
        }
        for (long long polls = 0;; polls++) {
            unsigned v;
            if constexpr (KIND == FENCED) v = *(volatile unsigned*)bar;
            else asm volatile("ld.relaxed.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(bar) : "memory");
            if (v >= target) break;
            if (polls > (1ll << 26)) { atomicExch(stuck, 1); break; }
        }
        if constexpr (KIND == FENCED) __threadfence();
        else asm volatile("fence.acq_rel.gpu;" ::: "memory");
    }
    __syncthreads();
}

// Blocks an SM a block shape asks for: 128-thread blocks as merged.cuh's kernels, else one.
template <int THREADS, int R> constexpr int min_blocks() { return THREADS == 128 ? (R == 2 ? 8 : 6) : 1; }

// Stage st covers the global row groups [stage_g0[st], stage_g0[st + 1]).
template <int F, int R, int THREADS, int KIND>
__global__ void __launch_bounds__(THREADS, min_blocks<THREADS, R>())
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
        if (barriers && st + 1 < stages) grid_barrier<KIND>(bar, (unsigned)(st + 1) * gridDim.x, stuck);
    }
}
typedef void (*BarrierKern)(const bf16*, const Seg*, const int*, int, const int*, int, int, unsigned*, int*);

// One way: R rows a warp, barriers or not, the block shape and the barrier's kind, on a resident grid.
struct Way { int r; bool barriers; int threads, kind; const char* name; };
constexpr Way WAYS[] = {
    {2, false, 128, FENCED, "one launch R2"},       {2, true, 128, FENCED, "barriers R2 (s13)"},
    {2, true, 128, ACQ_REL, "acq-rel R2"},          {2, false, 1024, ACQ_REL, "one launch, 1 block/SM R2"},
    {2, true, 1024, ACQ_REL, "acq-rel, 1 block/SM R2"}, {4, false, 128, FENCED, "one launch R4"},
    {4, true, 128, FENCED, "barriers R4 (s13)"},    {4, false, 768, ACQ_REL, "one launch, 1 block/SM R4"},
    {4, true, 768, ACQ_REL, "acq-rel, 1 block/SM R4"}};
constexpr int NWAYS = sizeof(WAYS) / sizeof(WAYS[0]);

template <int F, int W> BarrierKern way_kernel_f() {
    constexpr Way w = WAYS[W];
    return kernel<F, w.r, w.threads, w.kind>;
}
template <size_t... W> void way_kernels(int f, BarrierKern* out, std::index_sequence<W...>) {
    ((out[W] = f == 0 ? way_kernel_f<0, W>() : f == 1 ? way_kernel_f<1, W>() : way_kernel_f<2, W>()), ...);
}

// The barrier alone: `stages` empty stages with a barrier between each two.
template <int THREADS, int KIND> __global__ void __launch_bounds__(THREADS) empty_stages(unsigned* bar, int stages, int* stuck) {
    for (int st = 0; st + 1 < stages; st++) grid_barrier<KIND>(bar, (unsigned)(st + 1) * gridDim.x, stuck);
}
typedef void (*EmptyKern)(unsigned*, int, int*);
template <int KIND> EmptyKern empty_kernel_k(int threads) {
    return threads == 128 ? empty_stages<128, KIND> : threads == 256 ? empty_stages<256, KIND>
         : threads == 512 ? empty_stages<512, KIND> : threads == 768 ? empty_stages<768, KIND> : empty_stages<1024, KIND>;
}
EmptyKern empty_kernel(int threads, int kind) { return kind == FENCED ? empty_kernel_k<FENCED>(threads) : empty_kernel_k<ACQ_REL>(threads); }

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

// The barrier alone, per block shape and kind: µs a barrier, from `stages` = 1 and 114 (a 3B step's
// 113 barriers) on a resident grid. Returns false if a barrier gave up.
bool barrier_cost(cudaStream_t s, unsigned* bar, int* stuck) {
    printf("## The grid barrier alone (empty stages, resident grid), µs a barrier: (time of 114 stages − 1) / 113\n\n");
    printf("| block | blocks an SM | arrivals | fenced (s13) | acq-rel |\n| ---: | ---: | ---: | ---: | ---: |\n");
    const std::pair<int, int> shapes[] = {{128, 8}, {128, 6}, {256, 4}, {512, 2}, {768, 1}, {1024, 1}};
    bool ok = true;
    for (const auto& shape : shapes) {
        const int threads = shape.first, per_sm = shape.second;
        printf("| %d | %d | %d |", threads, per_sm, per_sm * g_sms);
        for (int kind = 0; kind < 2; kind++) {
            const EmptyKern k = empty_kernel(threads, kind);
            int fits = 0;
            CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&fits, k, threads, 0));
            if (fits < per_sm) { printf(" does not fit |"); continue; }
            const int grid = per_sm * g_sms;
            CK(cudaMemset(stuck, 0, sizeof(int)));
            const auto run = [&](int stages) { return [&, stages](int) {
                CK(cudaMemsetAsync(bar, 0, sizeof(unsigned), s));
                k<<<grid, threads, 0, s>>>(bar, stages, stuck);
            }; };
            const double t1 = time_graph(s, 1, run(1)), t114 = time_graph(s, 1, run(114));
            int hung = 0;
            CK(cudaMemcpy(&hung, stuck, sizeof(int), cudaMemcpyDeviceToHost));
            ok = ok && !hung;
            printf(hung ? " STUCK |" : " %.2f |", (t114 - t1) / 113 * 1e6);
        }
        printf("\n");
    }
    printf("\n");
    return ok;
}

// One model and format: the shipped step, then each way, alternating three times; a row a way.
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
    // each way's kernel and resident grid, asked of the driver here: no query inside a graph capture;
    // a way whose block does not fit runs no kernel and fails its check (its outputs stay NaN)
    BarrierKern kerns[NWAYS];
    way_kernels(f, kerns, std::make_index_sequence<NWAYS>{});
    int grids[NWAYS];
    for (int w = 0; w < NWAYS; w++) {
        int per_sm = 0;
        CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kerns[w], WAYS[w].threads, 0));
        grids[w] = per_sm * g_sms;
    }
    const auto way = [&](int w) { return [&, w](int) {
        if (w < 0) return merged::shipped_step(s, md, ws, off, y, xs);
        const Way& wy = WAYS[w];
        const merged::Plan& p = plans[wy.r == 4];
        CK(cudaMemsetAsync(bar, 0, sizeof(unsigned), s));
        if (grids[w] > 0)
            kerns[w]<<<grids[w], wy.threads, 0, s>>>(xs, p.segs, p.warp0, p.count, g0[wy.r == 4], stages, wy.barriers, bar, stuck);
    }; };
    CK(cudaMemsetAsync(y_ref, 0xff, rows * 2, s));
    merged::shipped_step(s, md, ws, off, y_ref, xs);
    CK(cudaMemset(stuck, 0, sizeof(int)));
    std::vector<std::vector<double>> t;
    std::vector<std::string> cell;
    // a barrier that gave up leaves its way FAIL, whatever its outputs
    const bool ok = merged::alternate_checked(s, NWAYS, way, y, rows, t, cell, [&](int w, const merged::Agreement& a) {
        int hung = 0;
        CK(cudaMemcpy(&hung, stuck, sizeof(int), cudaMemcpyDeviceToHost));
        CK(cudaMemset(stuck, 0, sizeof(int)));
        return a.worst <= 0x1p-7 && !hung && grids[w] > 0;
    }, ws, off, y_ref);
    const auto ms = [&](int i) { return t[i][1] * 1e3; };
    printf("| %s | %s | shipped | %d launches | %.3f (%.1f %%) | 1 | |\n", md.name, FMT[f], stages, ms(0), 100 * bytes / ms(0) / bw / 1e-3);
    for (int w = 0; w < NWAYS; w++)
        printf("| %s | %s | %s | %d | %.3f (%.1f %%) | %.2f× |%s|\n", md.name, FMT[f], WAYS[w].name, grids[w], ms(w + 1),
               100 * bytes / ms(w + 1) / bw / 1e-3, ms(0) / ms(w + 1), cell[w].c_str());
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
    bool ok = barrier_cost(s, bar, stuck);
    printf("## A decode step's linears in one resident launch, with and without a grid barrier at each shipped "
           "launch's start (m = 1): ms (%% of copy), shipped / way, and the outputs against the shipped step's\n\n");
    printf("| model | format | way | grid | ms (%% of copy) | shipped / way | equal, worst Δ |\n");
    printf("| --- | --- | --- | ---: | ---: | ---: | --- |\n");
    for (const Model& md : MODELS)
        for (int f = 0; f < 3; f++) ok = step_row(s, md, f, bw, xs, bar, stuck) && ok;
    cudaFree(bar);
    cudaFree(stuck);
    return ok ? 0 : 3;
}

}  // namespace barriers
