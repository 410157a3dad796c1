// gemv_bench --pairs: what the NF4 table lookups cost. bench/kernels/sass.sh puts the shipped NF4
// one-row kernels' static ceiling at 77 % (R = 2) and 85 % (R = 4) of the copy bandwidth, because
// each weight takes a 4-byte shared-memory lookup, and shared memory and L1 move 128 bytes a clock
// per SM. gemv_accumulate.cuh's NF4_PAIRS decode looks up a packed byte's two codes as one f16 pair (2 bytes a
// weight, 3.5 instructions a weight against 4.5). It rounds the codebook to f16 (2^-11 of a code at
// most), so its outputs are checked against the plain reference, not against the shipped bits.
//
// Per NF4 shape: the shipped kernel against NF4_PAIRS at R = 2 and 4, with the grid capped at 4
// blocks an SM (each block fills a 32 KB table, so the blocks take their rows grid-stride) or not;
// then a 3B / 8B step's NF4 linears both ways.
#pragma once
#include "gemv_core.cuh"

namespace pairs {

template <int R> __global__ void __launch_bounds__(128) kernel(const bf16* xs, gemv::Parts ps) {
    gemv::gemv_parts<bf16, gemv::NF4_PAIRS, 1, R>(xs, ps);
}
// NF4 weights only: the other formats' slots are never launched.
static Variant VARIANTS[] = {Variant{"pairs R2", 2, 0, {nullptr, nullptr, kernel<2>}},
                             Variant{"pairs R2 cap 4", 2, 4, {nullptr, nullptr, kernel<2>}},
                             Variant{"pairs R4", 4, 0, {nullptr, nullptr, kernel<4>}},
                             Variant{"pairs R4 cap 4", 4, 4, {nullptr, nullptr, kernel<4>}}};
constexpr int NV = sizeof(VARIANTS) / sizeof(VARIANTS[0]);

// One NF4 shape: the shipped kernel and each variant, checked against the reference, then GB/s.
void shape_row(cudaStream_t s, const Shape& sh, double bw, const bf16* xs, void** ys, float* ref, int* failures) {
    const int copies = copies_past_l2(2, sh.n, sh.k), launches = std::max(copies, 24);
    Weight w = make_weight(2, sh.n, sh.k, copies, 81);
    std::vector<void*> y1 = {ys[0]};
    reference<<<dim3((sh.n + 127) / 128, 1), 128, 0, s>>>(2, xs, w.a, w.b, ref, 1, sh.n, sh.k);
    const double t0 = time_graph(s, launches, [&](int i) { launch_shipped(s, {&w}, i % copies, xs, y1, 1); });
    printf("| %s | %.0f (%.1f %%) |", sh.name, w.bytes() / t0 / 1e9, 100 * w.bytes() / t0 / bw);
    double worst = 0;
    for (const Variant& v : VARIANTS) {
        CK(cudaMemsetAsync(ys[0], 0xff, (size_t)sh.n * 2, s));
        launch_variant(s, v, {&w}, 0, xs, y1);
        CK(cudaStreamSynchronize(s));
        CK(cudaGetLastError());
        const double e = rel_err((bf16*)ys[0], ref, sh.n);
        worst = std::isnan(e) || std::isnan(worst) ? NAN : std::max(worst, e);
        const double t = time_graph(s, launches, [&](int i) { launch_variant(s, v, {&w}, i % copies, xs, y1); });
        printf(" %.0f (%.1f %%) |", w.bytes() / t / 1e9, 100 * w.bytes() / t / bw);
    }
    printf(" %.2e%s |\n", worst, worst < 4e-3 ? "" : " FAIL");
    *failures += !(worst < 4e-3);
    free_weight(w);
}

// A step's NF4 linears (q/k/v and gate/up fused, one graph), shipped and each variant alternating 3
// times; ms a step (median).
void step_row(cudaStream_t s, const Model& md, double bw, const bf16* xs, void** ys) {
    size_t bytes;
    std::vector<Weight> ws = step_weights(md, 2, 800, &bytes);
    const std::vector<std::vector<const Weight*>> launches = step_launches(md, ws);
    const auto step_with = [&](int v) {
        return [&, v](int) {
            std::vector<void*> y3(ys, ys + 3);
            for (auto& l : launches) v < 0 ? launch_shipped(s, l, 0, xs, y3, 1) : launch_variant(s, VARIANTS[v], l, 0, xs, y3);
        };
    };
    std::vector<std::vector<double>> t;
    std::vector<bool> equal;  // not asked for: the f16 codebook changes the bits
    alternate_ways(s, NV, step_with, ys[0], t, equal);
    printf("| %s | %.3f | %.3f (%.1f %%) |", md.name, bytes / 1e9, t[0][1] * 1e3, 100 * bytes / t[0][1] / bw);
    for (int v = 0; v < NV; v++) printf(" %.3f (%.1f %%) |", t[v + 1][1] * 1e3, 100 * bytes / t[v + 1][1] / bw);
    printf("\n");
    for (auto& w : ws) free_weight(w);
}

// --pairs: exit 3 if a variant's error passes the limit.
int pairs_main(cudaStream_t s, double bw, const bf16* xs, void** ys, const std::vector<Shape>& shapes) {
    float* ref;
    CK(cudaMalloc(&ref, (size_t)128256 * 4));
    int failures = 0;
    printf("## NF4, m = 1: table lookups of one code (shipped) or of a byte's two codes as f16 (GB/s, %% of copy %.0f GB/s)\n\n", bw / 1e9);
    printf("| shape | shipped |");
    for (auto& v : VARIANTS) printf(" %s |", v.name);
    printf(" worst error (limit 4e-3) |\n| --- | ---: |");
    for (int i = 0; i < NV; i++) printf(" ---: |");
    printf(" ---: |\n");
    for (auto& sh : shapes) shape_row(s, sh, bw, xs, ys, ref, &failures);
    printf("\n## A decode step's NF4 linears (one graph), ms (%% of copy)\n\n| model | weight GB | shipped |");
    for (auto& v : VARIANTS) printf(" %s |", v.name);
    printf("\n| --- | ---: | ---: |");
    for (int i = 0; i < NV; i++) printf(" ---: |");
    printf("\n");
    for (const Model& md : MODELS) step_row(s, md, bw, xs, ys);
    cudaFree(ref);
    return failures ? 3 : 0;
}

}  // namespace pairs
