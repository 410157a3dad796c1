// gemv_bench --staged: the one-row decode GEMV with its weights staged through shared memory by
// cp.async (gemv_staged.cuh's accumulate_staged), so that a warp has many steps of its rows in flight.
//
// Why: the SASS of the shipped kernels (bench/kernels/sass.sh) shows ptxas issuing only half of an
// NF4 loop iteration's weight loads, and none of its absmax loads, before the products begin, at
// every register cap and unroll tried (and with the loads written first in the source). Each
// iteration then waits on two or three DRAM round trips in turn, and session 6's "U steps in flight"
// variants never had them in flight. A cp.async cannot be sunk past the wait that needs it.
//
// Ways: the shipped kernels; R rows a warp and S steps a stage without a register cap (R1/S4 …); and
// minilab's gemv_st_ kernels (MINILAB_GEMV_STAGED=1: R2/S2, NF4 R4/S1 at 8192 rows and more). The
// arithmetic is the shipped kernel's, step for step, so every output must equal the shipped one bit
// for bit.
#pragma once
#include "gemv_core.cuh"

namespace staged {

template <int F, int R, int S> __global__ void __launch_bounds__(128) kernel(const bf16* xs, gemv::Parts ps) {
    gemv::gemv_parts<bf16, F, 1, R, 1, S>(xs, ps);
}
#define SV(R, S) Variant{"R" #R "/S" #S, R, 0, {kernel<0, R, S>, kernel<1, R, S>, kernel<2, R, S>}}
static Variant VARIANTS[] = {SV(1, 4), SV(2, 2), SV(2, 4), SV(4, 1), SV(4, 2)};
constexpr int NV = sizeof(VARIANTS) / sizeof(VARIANTS[0]);

// minilab's gemv_st_ kernels, with src/kernels/cuda/mod.rs's choice of R.
void launch_minilab(cudaStream_t s, const std::vector<const Weight*>& ws, int c, const bf16* xs, std::vector<void*>& ys) {
    const int f = ws[0]->fmt, r = f == 2 && rows_max(ws) >= 8192 ? 4 : 2;
    int blocks;
    const gemv::Parts ps = parts_of(ws, c, ys, 1, r, &blocks);
    Kern k = f == 0 ? gemv_st_dense_bf16_m1_r2 : f == 1 ? gemv_st_int8_bf16_m1_r2 : r == 4 ? gemv_st_nf4_bf16_m1_r4 : gemv_st_nf4_bf16_m1_r2;
    k<<<blocks, 128, 0, s>>>(xs, ps);
}
// Way w of a launch: -1 the shipped kernels, 0 … NV − 1 a variant, NV minilab's gemv_st_ kernels.
void launch_way(cudaStream_t s, int w, const std::vector<const Weight*>& ws, int c, const bf16* xs, std::vector<void*>& ys) {
    if (w < 0) launch_shipped(s, ws, c, xs, ys, 1);
    else if (w < NV) launch_variant(s, VARIANTS[w], ws, c, xs, ys);
    else launch_minilab(s, ws, c, xs, ys);
}

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
    for (int v = 0; v <= NV; v++) {
        CK(cudaMemsetAsync(ys[0], 0xff, (size_t)sh.n * 2, s));
        launch_way(s, v, {&w}, 0, xs, got);
        CK(cudaStreamSynchronize(s));
        CK(cudaGetLastError());
        equal = equal && same_bits(ys[0], ys[1], sh.n);
        const double t = time_graph(s, launches, [&](int i) { launch_way(s, v, {&w}, i % copies, xs, got); });
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
    const std::vector<std::vector<const Weight*>> launches = step_launches(md, ws);
    const auto step_with = [&](int v) {
        return [&, v](int) {
            std::vector<void*> y3(ys, ys + 3);
            for (auto& l : launches) launch_way(s, v, l, 0, xs, y3);
        };
    };
    std::vector<std::vector<double>> t;
    std::vector<bool> equal;
    alternate_ways(s, NV + 1, step_with, ys[0], t, equal);
    printf("| %s | %s | %.3f | %.3f (%.1f %%) |", md.name, FMT[f], bytes / 1e9, t[0][1] * 1e3, 100 * bytes / t[0][1] / bw);
    for (int v = 0; v <= NV; v++) {
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
    printf(" gemv_st_ | best / shipped | shipped error | all bit-equal |\n| --- | --- | ---: |");
    for (int i = 0; i <= NV; i++) printf(" ---: |");
    printf(" ---: | ---: | --- |\n");
    for (auto& sh : shapes)
        for (int f = 0; f < 3; f++) shape_row(s, sh, f, xs, ys, ref, &failures);
    printf("\n## A decode step's linears (m = 1, one graph), ms (%% of copy %.0f GB/s)\n\n", bw / 1e9);
    printf("| model | format | weight GB | shipped |");
    for (auto& v : VARIANTS) printf(" %s |", v.name);
    printf(" gemv_st_ |\n| --- | --- | ---: | ---: |");
    for (int i = 0; i <= NV; i++) printf(" ---: |");
    printf("\n");
    for (const Model& md : MODELS)
        for (int f = 0; f < 3; f++) step_rows(s, md, f, bw, xs, ys, &failures);
    cudaFree(ref);
    printf("\n%s\n", failures ? "FAIL: a staged output differs from the shipped kernel's" : "all staged outputs equal the shipped kernels' bit for bit");
    return failures ? 3 : 0;
}

}  // namespace staged
