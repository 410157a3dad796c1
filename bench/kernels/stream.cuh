// gemv_bench --stream: minilab's streaming one-row GEMVs (src/kernels/cuda/gemv_stream.cuh, the
// gemv_sm_ kernels that MINILAB_GEMV_GRID=stream picks) against the shipped kernels, per shape and per
// decode step, in every format. The shipped grid gives a warp one group of rows and the warp exits;
// the streaming kernels run on a resident grid, each warp taking a run of whole row groups and keeping
// 4 KB of weights in flight by cp.async across the groups' boundaries, and put their first copies out
// before they wait on the previous kernel; the gemv_sr_ kernels (MINILAB_GEMV_GRID=stream-regs) hold
// those steps in registers instead of shared memory. Seven ways, side by side in one run:
//   shipped; shipped on a resident grid (g_resident); streamed (shared slots); streamed (register
//   slots); and the shipped and both streamed kernels launched with programmatic dependent launch
//   (PDL), where a launch may start while the previous one finishes (the streaming kernels' early
//   loads then overlap it).
// A row's arithmetic is the shipped kernels' step for step, so every output must equal the shipped
// one bit for bit, and is checked for each way, each shape and each weight of a 3B and an 8B step.
#pragma once
#include "merged.cuh"

namespace stream {

constexpr int WAYS = 7;
static const char* WAY_NAMES[WAYS] = {"shipped", "resident", "streamed", "streamed regs", "shipped PDL", "streamed PDL",
                                      "streamed regs PDL"};

// The streaming kernel of format f (shared slots, or register slots with regs) with the R the
// shipped kernel of these rows takes.
Kern kernel(int f, int n_max, bool regs, int* r) {
    shipped(f, 1, n_max, r);
    if (f == 0) return regs ? gemv_sr_dense_bf16_m1_r2 : gemv_sm_dense_bf16_m1_r2;
    if (f == 1) return regs ? gemv_sr_int8_bf16_m1_r2 : gemv_sm_int8_bf16_m1_r2;
    if (*r == 4) return regs ? gemv_sr_nf4_bf16_m1_r4 : gemv_sm_nf4_bf16_m1_r4;
    return regs ? gemv_sr_nf4_bf16_m1_r2 : gemv_sm_nf4_bf16_m1_r2;
}
// Their resident grids, asked of the driver before any capture.
void warm() {
    int r;
    resident_warm();
    for (int f = 0; f < 3; f++)
        for (int n : {1024, 8192})
            for (bool regs : {false, true}) resident_blocks(kernel(f, n, regs, &r));
}

// One launch over parts [w0, w1, …] (copy c) the way `way` says.
void launch_way(cudaStream_t s, int way, const std::vector<const Weight*>& ws, int c, const bf16* xs, std::vector<void*>& ys) {
    if (way == 2 || way == 3 || way == 5 || way == 6) {
        int r, blocks;
        const Kern k = kernel(ws[0]->fmt, rows_max(ws), way == 3 || way == 6, &r);
        const gemv::Parts ps = parts_of(ws, c, ys, 1, r, &blocks);
        launch_kern(s, k, std::min(blocks, resident_blocks(k)), way >= 5, xs, ps);
        return;
    }
    g_resident = way == 1;
    g_pdl = way == 4;
    launch_shipped(s, ws, c, xs, ys, 1);
    g_resident = g_pdl = false;
}

// One shape and format, launches rotating over copies past L2: GB/s a way, and whether every way's
// output equals the shipped one bit for bit (poisoned before each way's run).
bool shape_row(cudaStream_t s, const Shape& sh, int f, double bw, const bf16* xs, void* y, void* y_ref) {
    const int copies = copies_past_l2(f, sh.n, sh.k), launches = std::max(copies, 24);
    Weight w = make_weight(f, sh.n, sh.k, copies, 81 + f);
    std::vector<void*> y1 = {y}, y1_ref = {y_ref};
    CK(cudaMemsetAsync(y_ref, 0xff, (size_t)sh.n * 2, s));
    launch_way(s, 0, {&w}, 0, xs, y1_ref);
    int equal = 0;
    printf("| %s | %s |", sh.name, FMT[f]);
    double t0 = 0;
    for (int way = 0; way < WAYS; way++) {
        CK(cudaMemsetAsync(y, 0xff, (size_t)sh.n * 2, s));
        launch_way(s, way, {&w}, 0, xs, y1);
        CK(cudaStreamSynchronize(s));
        CK(cudaGetLastError());
        equal += merged::compare({w}, {0}, (const bf16*)y, (const bf16*)y_ref).equal;
        const double t = time_graph(s, launches, [&](int i) { launch_way(s, way, {&w}, i % copies, xs, y1); });
        if (way == 0) t0 = t;
        printf(" %.0f (%.1f %%, %.2f×) |", w.bytes() / t / 1e9, 100 * w.bytes() / t / bw, t0 / t);
    }
    printf(" %d / %d%s |\n", equal, WAYS, equal == WAYS ? "" : " FAIL");
    free_weight(w);
    return equal == WAYS;
}

// A step's linears (the shipped launches' grouping), every way, alternating three times; every
// weight's output compared bit for bit with the shipped step's.
bool step_row(cudaStream_t s, const Model& md, int f, double bw, const bf16* xs) {
    size_t bytes;
    std::vector<Weight> ws = step_weights(md, f, 1100 + f, &bytes);
    std::vector<size_t> off;
    bf16 *y, *y_ref;
    const size_t rows = merged::step_outputs(ws, off, &y, &y_ref);
    const auto step = [&](int way, bf16* out) {
        for (auto& l : step_launches(md, ws)) {
            std::vector<void*> ys;
            for (const Weight* w : l) ys.push_back(out + off[w - ws.data()]);
            launch_way(s, way, l, 0, xs, ys);
        }
    };
    CK(cudaMemsetAsync(y_ref, 0xff, rows * 2, s));
    step(0, y_ref);
    std::vector<double> t[WAYS];
    int equal[WAYS];
    for (int way = 0; way < WAYS; way++) {
        CK(cudaMemsetAsync(y, 0xff, rows * 2, s));
        step(way, y);
        CK(cudaStreamSynchronize(s));
        CK(cudaGetLastError());
        equal[way] = merged::compare(ws, off, y, y_ref).equal;
    }
    for (int rep = 0; rep < 3; rep++)
        for (int way = 0; way < WAYS; way++) t[way].push_back(time_graph(s, 1, [&](int) { step(way, y); }));
    bool ok = true;
    printf("| %s | %s | %.3f |", md.name, FMT[f], bytes / 1e9);
    for (int way = 0; way < WAYS; way++) {
        std::sort(t[way].begin(), t[way].end());
        printf(" %.3f (%.1f %%, %.2f×) |", t[way][1] * 1e3, 100 * bytes / t[way][1] / bw, t[0][1] / t[way][1]);
    }
    for (int way = 1; way < WAYS; way++) {
        ok = ok && equal[way] == (int)ws.size();
        printf(" %d / %zu%s |", equal[way], ws.size(), equal[way] == (int)ws.size() ? "" : " FAIL");
    }
    printf("\n");
    cudaFree(y); cudaFree(y_ref);
    for (auto& w : ws) free_weight(w);
    return ok;
}

// --stream: exit 3 if any way's output differs from the shipped one.
int stream_main(cudaStream_t s, double bw, const bf16* xs, void** ys, const std::vector<Shape>& shapes) {
    warm();
    printf("## m = 1, per shape: GB/s (%% of copy %.0f GB/s, shipped / way time)\n\n| shape | format |", bw / 1e9);
    for (const char* n : WAY_NAMES) printf(" %s |", n);
    printf(" ways equal to shipped |\n| --- | --- |");
    for (int way = 0; way <= WAYS; way++) printf(" ---: |");
    printf("\n");
    bool ok = true;
    for (const Shape& sh : shapes)
        for (int f = 0; f < 3; f++) ok = shape_row(s, sh, f, bw, xs, ys[0], ys[1]) && ok;
    printf("\n## A decode step's linears, ms (%% of copy, shipped / way), median of 3 alternating\n\n| model | format | "
           "weight GB |");
    for (const char* n : WAY_NAMES) printf(" %s |", n);
    for (int way = 1; way < WAYS; way++) printf(" %s equal |", WAY_NAMES[way]);
    printf("\n| --- | --- | ---: |");
    for (int way = 0; way < 2 * WAYS - 1; way++) printf(way < WAYS ? " ---: |" : " --- |");
    printf("\n");
    for (const Model& md : MODELS)
        for (int f = 0; f < 3; f++) ok = step_row(s, md, f, bw, xs) && ok;
    return ok ? 0 : 3;
}

}  // namespace stream
