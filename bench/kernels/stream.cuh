// gemv_bench --stream: an NF4 one-row GEMV whose warps stream across rows. The shipped grid gives a
// warp one group of R rows, and an NF4 row of the 3B is 1.5 KB: the warp issues one or two rounds of
// loads, sums, stores and exits. Here a resident grid (as many blocks as the GPU holds at once) gives
// each warp a run of whole rows, laid end to end over the launch's parts, and the warp keeps U steps
// of 512 bytes (and their absmax) in flight through cp.async into shared memory across the row
// boundaries, so its loads never stop between rows. A row's arithmetic is the shipped kernels' step
// for step (same lanes, same decode, same sums, same warp reduction), so the outputs must be equal to
// theirs bit for bit. Rows must be whole steps (k / 2 a multiple of 512), as every Llama shape here is.
#pragma once
#include "merged.cuh"

namespace stream {

constexpr int U = 8;

__global__ void __launch_bounds__(128) nf4_kernel(const bf16* xs, gemv::Parts ps) {
    __shared__ __align__(16) float table[gemv::NF4_TABLE_WORDS];
    __shared__ uint4 w[4][U][32];
    __shared__ float sc[4][U][32];
    gemv::fill_table<gemv::NF4>(table);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const long long warps = (long long)gridDim.x * 4, gw = blockIdx.x * 4LL + warp;
    const NF4Steps at(ps);
    // whole rows a warp, so that each row's sum is one warp's
    const long long first = at.rows() * gw / warps * at.spr, last = at.rows() * (gw + 1) / warps * at.spr;
    const char* tb = reinterpret_cast<const char*>(table);
    float acc = 0.f;
    stream_steps<U>(at, first, last, w[warp], sc[warp], [&](long long st, uint4 wq, float scale) {
        const int t = (int)(st % at.spr), j = t * 1024 + lane * 32;
        float sums = 0.f;
#pragma unroll
        for (int s = 0; s < 4; s++) {
            float x[8], wf[8];
            gemv::load_x8(xs + j + 8 * s, x);
            gemv::decode8<bf16, gemv::NF4>(&wq, s, wf, tb, lane * 4);
#pragma unroll
            for (int e = 0; e < 8; e++) sums = fmaf(wf[e], x[e], sums);
        }
        acc = fmaf(sums, scale, acc);
        if (t == at.spr - 1) {
            const float v = warp_sum(acc);
            int part;
            const long long row = at.part_row(st / at.spr, &part);
            if (lane == 0) reinterpret_cast<bf16*>(ps.p[part].ys)[row] = from_f<bf16>(v);
            acc = 0.f;
        }
    });
}

// Asked of the driver once, before any capture (stream_main's title asks first).
int resident_grid() {
    static int blocks = 0;
    if (!blocks) {
        CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, nf4_kernel, 128, 0));
        blocks = std::max(blocks, 1) * g_sms;
    }
    return blocks;
}
void launch(cudaStream_t s, const std::vector<const Weight*>& ws, int c, const bf16* xs, std::vector<void*>& ys) {
    int blocks;
    const gemv::Parts ps = parts_of(ws, c, ys, 1, 2, &blocks);
    nf4_kernel<<<resident_grid(), 128, 0, s>>>(xs, ps);
}

// One NF4 shape, a launch on another copy past L2 each time: shipped against streamed, and whether
// the outputs are equal bit for bit.
bool shape_row(cudaStream_t s, const Shape& sh, double bw, const bf16* xs, void* y, void* y_ref) {
    const int copies = copies_past_l2(2, sh.n, sh.k), launches = std::max(copies, 24);
    Weight w = make_weight(2, sh.n, sh.k, copies, 71);
    std::vector<void*> y1 = {y}, y1_ref = {y_ref};
    CK(cudaMemsetAsync(y_ref, 0xff, (size_t)sh.n * 2, s));
    CK(cudaMemsetAsync(y, 0xff, (size_t)sh.n * 2, s));
    launch_shipped(s, {&w}, 0, xs, y1_ref, 1);
    launch(s, {&w}, 0, xs, y1);
    CK(cudaStreamSynchronize(s));
    CK(cudaGetLastError());
    const std::vector<size_t> off = {0};
    const merged::Agreement a = merged::compare({w}, off, (const bf16*)y, (const bf16*)y_ref);
    const double t0 = time_graph(s, launches, [&](int i) { launch_shipped(s, {&w}, i % copies, xs, y1, 1); });
    const double t1 = time_graph(s, launches, [&](int i) { launch(s, {&w}, i % copies, xs, y1); });
    const bool equal = a.equal == 1;
    printf("| %s | %.0f (%.1f %%) | %.0f (%.1f %%) | %.2f | %s |\n", sh.name, w.bytes() / t0 / 1e9, 100 * w.bytes() / t0 / bw,
           w.bytes() / t1 / 1e9, 100 * w.bytes() / t1 / bw, t0 / t1, equal ? "yes" : "NO");
    free_weight(w);
    return equal;
}

// A step's NF4 linears (the shipped launches' grouping), shipped against streamed, alternating three
// times; every weight's output compared bit for bit.
bool step_row(cudaStream_t s, const Model& md, double bw, const bf16* xs) {
    size_t bytes;
    std::vector<Weight> ws = step_weights(md, 2, 700, &bytes);
    std::vector<size_t> off;
    bf16 *y, *y_ref;
    const size_t rows = merged::step_outputs(ws, off, &y, &y_ref);
    const auto streamed = [&](bf16* out) {
        for (auto& l : step_launches(md, ws)) {
            std::vector<void*> ys;
            for (const Weight* w : l) ys.push_back(out + off[w - ws.data()]);
            launch(s, l, 0, xs, ys);
        }
    };
    CK(cudaMemsetAsync(y_ref, 0xff, rows * 2, s));
    CK(cudaMemsetAsync(y, 0xff, rows * 2, s));
    merged::shipped_step(s, md, ws, off, y_ref, xs);
    streamed(y);
    CK(cudaStreamSynchronize(s));
    CK(cudaGetLastError());
    const merged::Agreement a = merged::compare(ws, off, y, y_ref);
    std::vector<double> t[2];
    for (int rep = 0; rep < 3; rep++) {
        t[0].push_back(time_graph(s, 1, [&](int) { merged::shipped_step(s, md, ws, off, y, xs); }));
        t[1].push_back(time_graph(s, 1, [&](int) { streamed(y); }));
    }
    for (auto& v : t) std::sort(v.begin(), v.end());
    const bool equal = a.equal == (int)ws.size();
    printf("| %s | %.3f | %.3f (%.1f %%) | %.3f (%.1f %%) | %.2f | %d / %zu%s |\n", md.name, bytes / 1e9, t[0][1] * 1e3,
           100 * bytes / t[0][1] / bw, t[1][1] * 1e3, 100 * bytes / t[1][1] / bw, t[0][1] / t[1][1], a.equal, ws.size(),
           equal ? "" : " FAIL");
    cudaFree(y); cudaFree(y_ref);
    for (auto& w : ws) free_weight(w);
    return equal;
}

// --stream: exit 3 if a streamed output differs from the shipped one.
int stream_main(cudaStream_t s, double bw, const bf16* xs, void** ys, const std::vector<Shape>& shapes) {
    printf("## NF4, m = 1: the shipped grid against warps streaming across rows on a resident grid (%d blocks; GB/s, "
           "%% of copy %.0f GB/s)\n\n", resident_grid(), bw / 1e9);
    printf("| shape | shipped | streamed | shipped / streamed time | outputs equal |\n| --- | ---: | ---: | ---: | --- |\n");
    bool ok = true;
    for (const Shape& sh : shapes) ok = shape_row(s, sh, bw, xs, ys[0], ys[1]) && ok;
    printf("\n## A decode step's NF4 linears, ms (%% of copy)\n\n| model | weight GB | shipped | streamed | shipped / "
           "streamed | outputs equal |\n| --- | ---: | ---: | ---: | ---: | --- |\n");
    for (const Model& md : MODELS) ok = step_row(s, md, bw, xs) && ok;
    return ok ? 0 : 3;
}

}  // namespace stream
