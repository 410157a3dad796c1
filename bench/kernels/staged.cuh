// gemv_bench --staged: the one-row decode GEMV with its weights staged through shared memory by
// cp.async, so that a warp has many steps of its rows in flight at once.
//
// Why: the SASS of the shipped kernels (bench/kernels/sass_table.py) shows ptxas issuing only half
// of an NF4 loop iteration's weight loads, and none of its absmax loads, before the products begin,
// at every register cap and unroll tried (and with the loads written first in the source). Each
// iteration then waits on two or three DRAM round trips in turn, and session 6's "U steps in flight"
// variants never had them in flight. A cp.async cannot be sunk past the wait that needs it: here
// each lane asks for S steps of its R rows (and their absmax) at once, then for the next S steps
// while it multiplies these (two stages a warp).
//
// The arithmetic is the shipped kernel's, step for step (gemv.cuh's decode8, load_x8, the same
// order of sums, warp_sum and store_rows), so the outputs must equal the shipped ones bit for bit.
#pragma once
#include "gemv_core.cuh"

namespace staged {

// 16 (weights) or 4 (absmax) bytes from global to shared memory, asynchronously; with ok false the
// destination is zero-filled and the source is not read.
__device__ __forceinline__ void cp16(void* dst, const void* src, bool ok) {
    const uint32_t d = (uint32_t)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(d), "l"(src), "r"(ok ? 16 : 0) : "memory");
}
__device__ __forceinline__ void cp4(void* dst, const void* src, bool ok) {
    const uint32_t d = (uint32_t)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;" ::"r"(d), "l"(src), "r"(ok ? 4 : 0) : "memory");
}
__device__ __forceinline__ void commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
// Waits until at most N of this thread's committed groups are still in flight.
template <int N> __device__ __forceinline__ void wait_groups() { asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory"); }

// One warp's staging: two stages of S steps × R rows, 16 bytes (and for NF4 one absmax) a lane.
// Each lane reads back only what it copied itself, so no warp synchronization is needed.
template <int F, int R, int S> struct Stage {
    uint4 w[2][S][R][32];
    float sc[2][S][R][F == gemv::NF4 ? 32 : 1];
};

// The warp's R rows row0 … of part p against one row of xs, written as the shipped kernel writes them.
template <int F, int R, int S>
__device__ __forceinline__ void rows(const bf16* xs, const gemv::Part& p, int k, int row0, const char* table, Stage<F, R, S>& st) {
    constexpr int E = gemv::step_elems<F>(), SUBS = E / 8;
    const int lane = threadIdx.x & 31;
    const uint32_t lane_off = lane * 4;
    const auto row_bytes = [](size_t n) { return F == gemv::NF4 ? n / 2 : n * (F == gemv::DENSE ? 2 : 1); };
    const int steps = (k + 32 * E - 1) / (32 * E), chunks = (steps + S - 1) / S;
    size_t row[R];
    const uint8_t* base[R];
#pragma unroll
    for (int r = 0; r < R; r++) {
        row[r] = (size_t)min(row0 + r, p.n - 1);  // tail rows repeat the last and are never stored
        base[r] = p.a + row_bytes(row[r] * k);
    }
    // chunk c (steps c·S …) into stage c & 1; a step past k copies nothing (zero-filled, never read)
    const auto issue = [&](int c) {
#pragma unroll
        for (int t = 0; t < S; t++) {
            const int j = lane * E + (c * S + t) * 32 * E;
            const bool ok = j < k;
            const int jj = ok ? j : 0;
#pragma unroll
            for (int r = 0; r < R; r++) {
                cp16(&st.w[c & 1][t][r][lane], base[r] + row_bytes(jj), ok);
                if constexpr (F == gemv::NF4) cp4(&st.sc[c & 1][t][r][lane], p.b + (row[r] * k + jj) / 64, ok);
            }
        }
        commit();
    };
    float acc[R][1];
#pragma unroll
    for (int r = 0; r < R; r++) acc[r][0] = 0.f;
    issue(0);
    for (int c = 0; c < chunks; c++) {
        if (c + 1 < chunks) {
            issue(c + 1);
            wait_groups<1>();
        } else {
            wait_groups<0>();
        }
#pragma unroll
        for (int t = 0; t < S; t++) {
            const int j = lane * E + (c * S + t) * 32 * E;
            if (j >= k) break;
            uint4 w[R];
            float sums[R];
#pragma unroll
            for (int r = 0; r < R; r++) {
                w[r] = st.w[c & 1][t][r][lane];
                sums[r] = 0.f;
            }
#pragma unroll
            for (int s = 0; s < SUBS; s++) {
                float x[8];
                gemv::load_x8(xs + j + 8 * s, x);
#pragma unroll
                for (int r = 0; r < R; r++) {
                    float wf[8];
                    gemv::decode8<bf16, F>(&w[r], s, wf, table, lane_off);
#pragma unroll
                    for (int e = 0; e < 8; e++) sums[r] = fmaf(wf[e], x[e], sums[r]);
                }
            }
#pragma unroll
            for (int r = 0; r < R; r++) {
                if constexpr (F == gemv::NF4) acc[r][0] = fmaf(sums[r], st.sc[c & 1][t][r][lane], acc[r][0]);
                else acc[r][0] += sums[r];
            }
        }
    }
    gemv::store_rows<bf16, F, 1, R>(acc, p, 1, row0, nullptr);
}

// m = 1, plain parts (up to three weights a launch, as the shipped kernels take them), 4 warps a block.
template <int F, int R, int S> __global__ void __launch_bounds__(128) kernel(const bf16* xs, gemv::Parts ps) {
    __shared__ __align__(16) float table[F == gemv::NF4 ? gemv::NF4_TABLE_WORDS : 4];
    __shared__ Stage<F, R, S> stages[4];
    if constexpr (F == gemv::NF4) gemv::fill_table(table);
    const int g0 = (ps.p[0].n + R - 1) / R, g1 = ps.count > 1 ? (ps.p[1].n + R - 1) / R : 0;
    const int total = g0 + g1 + (ps.count > 2 ? (ps.p[2].n + R - 1) / R : 0);
    const int warps = gridDim.x * (blockDim.x >> 5);
    const char* tb = reinterpret_cast<const char*>(table);
    Stage<F, R, S>& st = stages[threadIdx.x >> 5];
    for (int g = (blockIdx.x * blockDim.x + threadIdx.x) >> 5; g < total; g += warps) {
        if (g < g0) rows<F, R, S>(xs, ps.p[0], ps.k, g * R, tb, st);
        else if (g < g0 + g1) rows<F, R, S>(xs, ps.p[1], ps.k, (g - g0) * R, tb, st);
        else rows<F, R, S>(xs, ps.p[2], ps.k, (g - g0 - g1) * R, tb, st);
    }
}

#define SV(R, S) Variant{"R" #R "/S" #S, R, 0, {kernel<0, R, S>, kernel<1, R, S>, kernel<2, R, S>}}
static Variant VARIANTS[] = {SV(1, 4), SV(2, 2), SV(2, 4), SV(4, 2)};
constexpr int NV = sizeof(VARIANTS) / sizeof(VARIANTS[0]);

// Bit-equality of two bf16 outputs on the device, copied back.
bool same_bits(const void* a, const void* b, size_t count) {
    std::vector<uint16_t> ha(count), hb(count);
    CK(cudaMemcpy(ha.data(), a, count * 2, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(hb.data(), b, count * 2, cudaMemcpyDeviceToHost));
    return ha == hb;
}

// One shape, one format: the shipped kernel and every variant, each checked first (bit-equal to the
// shipped output, error against the reference), then timed over copies past L2 (GB/s).
double shape_row(cudaStream_t s, const Shape& sh, int f, const bf16* xs, void** ys, float* ref, int* failures) {
    const int copies = copies_past_l2(f, sh.n, sh.k), launches = std::max(copies, 24);
    Weight w = make_weight(f, sh.n, sh.k, copies, 71 + f);
    std::vector<void*> want = {ys[1]}, got = {ys[0]};
    CK(cudaMemsetAsync(ys[1], 0xff, (size_t)sh.n * 2, s));
    launch_shipped(s, {&w}, 0, xs, want, 1);
    reference<<<dim3((sh.n + 127) / 128, 1), 128, 0, s>>>(f, xs, w.a, w.b, ref, 1, sh.n, sh.k);
    CK(cudaStreamSynchronize(s));
    const double shipped_err = rel_err((bf16*)ys[1], ref, sh.n);
    const double t0 = time_graph(s, launches, [&](int i) { launch_shipped(s, {&w}, i % copies, xs, got, 1); });
    printf("| %s | %s | %.0f |", sh.name, FMT[f], w.bytes() / t0 / 1e9);
    double best = t0;
    bool equal = true;
    for (const Variant& v : VARIANTS) {
        CK(cudaMemsetAsync(ys[0], 0xff, (size_t)sh.n * 2, s));
        launch_variant(s, v, {&w}, 0, xs, got);
        CK(cudaStreamSynchronize(s));
        CK(cudaGetLastError());
        equal = equal && same_bits(ys[0], ys[1], sh.n);
        const double t = time_graph(s, launches, [&](int i) { launch_variant(s, v, {&w}, i % copies, xs, got); });
        best = std::min(best, t);
        printf(" %.0f |", w.bytes() / t / 1e9);
    }
    printf(" %.2f | %.2e%s | %s |\n", t0 / best, shipped_err, shipped_err < 4e-3 ? "" : " FAIL", equal ? "yes" : "NO");
    *failures += !equal + !(shipped_err < 4e-3);
    free_weight(w);
    return t0 / best;
}

// A step's linears (q/k/v and gate/up fused, one graph): the shipped kernels and every variant,
// alternating 3 times; ms a step (median) and the head's output against the shipped one's bits.
void step_rows(cudaStream_t s, const Model& md, int f, double bw, const bf16* xs, void** ys, int* failures) {
    size_t bytes;
    std::vector<Weight> ws = step_weights(md, f, 700, &bytes);
    std::vector<std::vector<const Weight*>> launches;
    for (int b = 0; b < md.blocks; b++) {
        const Weight* w = &ws[b * 7];
        launches.push_back({&w[0], &w[1], &w[2]});
        launches.push_back({&w[3]});
        launches.push_back({&w[4], &w[5]});
        launches.push_back({&w[6]});
    }
    launches.push_back({&ws.back()});
    const auto step_with = [&](int v) {
        return [&, v](int) {
            std::vector<void*> y3(ys, ys + 3);
            for (auto& l : launches) v < 0 ? launch_shipped(s, l, 0, xs, y3, 1) : launch_variant(s, VARIANTS[v], l, 0, xs, y3);
        };
    };
    std::vector<std::vector<double>> t(NV + 1);
    std::vector<uint16_t> want(128256), got(128256);
    std::vector<bool> equal(NV, true);
    for (int rep = 0; rep < 3; rep++) {
        for (int v = -1; v < NV; v++) {
            CK(cudaMemsetAsync(ys[0], 0xff, (size_t)128256 * 2, s));
            t[v + 1].push_back(time_graph(s, 1, step_with(v)));
            CK(cudaGetLastError());
            CK(cudaMemcpy((v < 0 ? want : got).data(), ys[0], (size_t)128256 * 2, cudaMemcpyDeviceToHost));
            if (v >= 0) equal[v] = equal[v] && want == got;
        }
    }
    for (auto& x : t) std::sort(x.begin(), x.end());
    printf("| %s | %s | %.3f | %.3f (%.1f %%) |", md.name, FMT[f], bytes / 1e9, t[0][1] * 1e3, 100 * bytes / t[0][1] / bw);
    for (int v = 0; v < NV; v++) {
        printf(" %.3f (%.1f %%)%s |", t[v + 1][1] * 1e3, 100 * bytes / t[v + 1][1] / bw, equal[v] ? "" : " NOT EQUAL");
        *failures += !equal[v];
    }
    printf("\n");
    for (auto& w : ws) free_weight(w);
}

// --staged: per shape, then per decode step; exit 3 if any output differs from the shipped one.
int staged_main(cudaStream_t s, double bw, const bf16* xs, void** ys, const std::vector<Shape>& shapes) {
    float* ref;
    CK(cudaMalloc(&ref, (size_t)128256 * 4));
    int failures = 0;
    printf("## m = 1, weights staged through shared memory by cp.async (GB/s; R rows a warp, S steps a stage)\n\n");
    printf("| shape | format | shipped |");
    for (auto& v : VARIANTS) printf(" %s |", v.name);
    printf(" best / shipped | shipped error | all bit-equal |\n| --- | --- | ---: |");
    for (int i = 0; i < NV; i++) printf(" ---: |");
    printf(" ---: | ---: | --- |\n");
    for (auto& sh : shapes)
        for (int f = 0; f < 3; f++) shape_row(s, sh, f, xs, ys, ref, &failures);
    printf("\n## A decode step's linears (m = 1, one graph), ms (%% of copy %.0f GB/s)\n\n", bw / 1e9);
    printf("| model | format | weight GB | shipped |");
    for (auto& v : VARIANTS) printf(" %s |", v.name);
    printf("\n| --- | --- | ---: | ---: |");
    for (int i = 0; i < NV; i++) printf(" ---: |");
    printf("\n");
    for (const Model& md : MODELS)
        for (int f = 0; f < 3; f++) step_rows(s, md, f, bw, xs, ys, &failures);
    cudaFree(ref);
    printf("\n%s\n", failures ? "FAIL: a staged output differs from the shipped kernel's" : "all staged outputs equal the shipped kernels' bit for bit");
    return failures ? 3 : 0;
}

}  // namespace staged
