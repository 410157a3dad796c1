// gemv_bench --merged: how much of a decode step's GEMV time its launch boundaries cost. Session 9's
// floor put the NF4 memory pattern alone, every load in flight, at 39 % of the copy bandwidth for a
// 3B step and only 58 % even for the 197 MB head, where launch overhead is nothing: each warp of the
// shipped grid takes one group of rows (1.5 KB a row in NF4) and exits, and each block first fills
// its 4 KB NF4 table. Two ways out are measured here, with the shipped kernels' per-warp code:
// - a resident grid: the shipped kernels launched with at most as many blocks as the GPU holds at
//   once (occupancy × SMs), their warps striding over the row groups (gemv_parts allows it), per
//   shape and per step, in every format; bit-equal to the shipped grid by construction, and checked;
// - a step's linears as ONE launch whose warps walk every weight in step order (gemv.cuh's rows), a
//   warp per row group or a resident grid, at R = 2 and 4. The linears' dependencies are ignored (all
//   read the same xs), so this bounds from above what a step of fewer, longer launches could reach (a
//   persistent kernel waiting between dependent GEMVs, or PDL with the weight loads before its wait).
//
// Checked in the same run: every weight's output against the shipped step's, bit for bit where the
// way took the same rows a warp (R) as the shipped launch; else within one bf16 ulp of the largest
// output (max |Δ| / max |shipped| ≤ 2^-7: a different order of the sums may round the other way).
#pragma once
#include <cstring>
#include <string>

#include "gemv_core.cuh"

namespace merged {

// One weight of the step: its Part, its k, and the first warp (row group) of the launch it takes.
struct Seg {
    gemv::Part p;
    int k, warp0;
};

// The weight that row group g belongs to: the last whose first group is at or before g.
__device__ __forceinline__ int seg_of(const int* warp0, int count, int g) {
    int lo = 0, hi = count - 1;
    while (lo < hi) {
        const int mid = (lo + hi + 1) >> 1;
        if (__ldg(warp0 + mid) <= g) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

template <int F, int R>
__global__ void __launch_bounds__(128, R == 2 ? 8 : 6)
    kernel(const bf16* xs, const Seg* segs, const int* warp0, int count, int total) {
    __shared__ __align__(16) float table[gemv::table_words<F>()];
    if constexpr (gemv::nf4_like<F>()) gemv::fill_table<F>(table);
    const int warps = gridDim.x * (blockDim.x >> 5);
    for (int g = (blockIdx.x * blockDim.x + threadIdx.x) >> 5; g < total; g += warps) {
        const Seg& s = segs[seg_of(warp0, count, g)];
        gemv::rows<bf16, F, 1, R>(xs, s.p, 1, s.k, (g - s.warp0) * R, reinterpret_cast<const char*>(table));
    }
}
typedef void (*MergedKern)(const bf16*, const Seg*, const int*, int, int);
template <int R> MergedKern pick(int f) { return f == 0 ? kernel<0, R> : f == 1 ? kernel<1, R> : kernel<2, R>; }

// The step's weights as one launch at R rows a warp, weight i writing y + off[i].
struct Plan {
    int r, total, count, grid_one, grid_persistent;
    MergedKern k;
    Seg* segs;
    int* warp0;
};
Plan plan_of(const std::vector<Weight>& ws, const std::vector<size_t>& off, bf16* y, int r) {
    std::vector<Seg> segs;
    std::vector<int> warp0;
    int total = 0;
    for (size_t i = 0; i < ws.size(); i++) {
        segs.push_back(Seg{gemv::Part{ws[i].a, ws[i].b, y + off[i], ws[i].n}, ws[i].k, total});
        warp0.push_back(total);
        total += (ws[i].n + r - 1) / r;
    }
    Plan p{r, total, (int)ws.size(), (total + 3) / 4, 0, r == 2 ? pick<2>(ws[0].fmt) : pick<4>(ws[0].fmt), nullptr, nullptr};
    int per_sm = 0;
    CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, p.k, 128, 0));
    p.grid_persistent = std::min(p.grid_one, per_sm * g_sms);
    CK(cudaMalloc(&p.segs, segs.size() * sizeof(Seg)));
    CK(cudaMalloc(&p.warp0, warp0.size() * sizeof(int)));
    CK(cudaMemcpy(p.segs, segs.data(), segs.size() * sizeof(Seg), cudaMemcpyHostToDevice));
    CK(cudaMemcpy(p.warp0, warp0.data(), warp0.size() * sizeof(int), cudaMemcpyHostToDevice));
    return p;
}
void launch(cudaStream_t s, const Plan& p, bool persistent, const bf16* xs) {
    p.k<<<persistent ? p.grid_persistent : p.grid_one, 128, 0, s>>>(xs, p.segs, p.warp0, p.count, p.total);
}

// The shipped step (step_launches) with weight i writing y + off[i].
void shipped_step(cudaStream_t s, const Model& md, const std::vector<Weight>& ws, const std::vector<size_t>& off,
                  bf16* y, const bf16* xs) {
    for (auto& l : step_launches(md, ws)) {
        std::vector<void*> ys;
        for (const Weight* w : l) ys.push_back(y + off[w - ws.data()]);
        launch_shipped(s, l, 0, xs, ys, 1);
    }
}

// Weights whose merged output equals the shipped one bit for bit, and the worst other difference;
// NaN when an output is NaN (the buffers are poisoned before each run).
struct Agreement { int equal; double worst; };
Agreement compare(const std::vector<Weight>& ws, const std::vector<size_t>& off, const bf16* got, const bf16* want) {
    const size_t count = off.back() + ws.back().n;
    std::vector<uint16_t> g(count), w(count);
    CK(cudaMemcpy(g.data(), got, count * 2, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(w.data(), want, count * 2, cudaMemcpyDeviceToHost));
    const auto f = [](uint16_t h) { uint32_t u = (uint32_t)h << 16; float x; memcpy(&x, &u, 4); return x; };
    Agreement a{0, 0};
    for (size_t i = 0; i < ws.size(); i++) {
        double d = 0, mx = 0;
        bool same = true;
        for (size_t j = off[i]; j < off[i] + ws[i].n; j++) {
            const float x = f(g[j]), y = f(w[j]);
            if (std::isnan(x) || std::isnan(y)) return Agreement{a.equal, NAN};
            same = same && g[j] == w[j];
            d = std::max(d, (double)std::fabs(x - y));
            mx = std::max(mx, (double)std::fabs(y));
        }
        a.equal += same;
        a.worst = std::max(a.worst, mx > 0 ? d / mx : d);
    }
    return a;
}

// Weight i of a step writes its n rows at off[i] of two buffers (a way's and the shipped step's),
// allocated here; returns the rows of all.
size_t step_outputs(const std::vector<Weight>& ws, std::vector<size_t>& off, bf16** y, bf16** y_ref) {
    size_t rows = 0;
    for (auto& w : ws) { off.push_back(rows); rows += w.n; }
    CK(cudaMalloc(y, rows * 2));
    CK(cudaMalloc(y_ref, rows * 2));
    return rows;
}

// Times `ways` ways of a step after the shipped one (way −1), alternating 3 times, y poisoned before
// each; in the first round each way's outputs are compared with the shipped step's (y_ref) and
// `pass(w, agreement)` judges them. `t[w + 1]`: the sorted seconds of way w; `cells[w]`: way w's
// table cell (" equal / weights, worst Δ", FAIL appended), without the bars. Returns whether every
// way passed.
template <typename Way, typename Pass>
bool alternate_checked(cudaStream_t s, int ways, Way way, bf16* y, size_t rows, std::vector<std::vector<double>>& t,
                       std::vector<std::string>& cells, Pass pass, const std::vector<Weight>& ws, const std::vector<size_t>& off,
                       const bf16* y_ref) {
    t.assign(ways + 1, {});
    bool ok = true;
    for (int rep = 0; rep < 3; rep++) {
        for (int w = -1; w < ways; w++) {
            CK(cudaMemsetAsync(y, 0xff, rows * 2, s));
            t[w + 1].push_back(time_graph(s, 1, way(w)));
            CK(cudaGetLastError());
            if (rep > 0 || w < 0) continue;
            const Agreement a = compare(ws, off, y, y_ref);
            const bool good = pass(w, a);
            ok = ok && good;
            char cell[96];
            snprintf(cell, sizeof cell, " %d / %zu, %.1e%s", a.equal, ws.size(), a.worst, good ? "" : " FAIL");
            cells.push_back(cell);
        }
    }
    for (auto& v : t) std::sort(v.begin(), v.end());
    return ok;
}

constexpr int WAYS = 5;

// One model and format: the shipped step against the five other ways, alternating three times.
bool step_row(cudaStream_t s, const Model& md, int f, double bw, const bf16* xs) {
    size_t bytes;
    std::vector<Weight> ws = step_weights(md, f, 900 + f, &bytes);
    std::vector<size_t> off;
    bf16 *y, *y_ref;
    const size_t rows = step_outputs(ws, off, &y, &y_ref);
    const Plan plans[2] = {plan_of(ws, off, y, 2), plan_of(ws, off, y, 4)};
    // −1 the shipped step; 0–3 one launch at R = 2, 4, then resident at R = 2, 4; 4 the shipped step
    // with resident grids
    const auto way = [&](int w) { return [&, w](int) {
        g_resident = w == WAYS - 1;
        if (w < 0 || w == WAYS - 1) shipped_step(s, md, ws, off, y, xs);
        else launch(s, plans[w & 1], w >= 2, xs);
        g_resident = false;
    }; };
    CK(cudaMemsetAsync(y_ref, 0xff, rows * 2, s));
    shipped_step(s, md, ws, off, y_ref, xs);
    std::vector<std::vector<double>> t;
    std::vector<std::string> agreement;
    // R = 2 everywhere but the shipped NF4 launches of 8192 rows or more (R = 4); the resident
    // shipped grid runs the shipped warps' code on the same rows: every bit equal
    const bool ok = alternate_checked(s, WAYS, way, y, rows, t, agreement, [&](int w, const Agreement& a) {
        return a.worst <= 0x1p-7 && (w < WAYS - 1 || a.equal == (int)ws.size());
    }, ws, off, y_ref);
    const auto ms = [&](int i) { return t[i][1]; };
    printf("| %s | %s | %.3f | %.3f (%.1f %%) |", md.name, FMT[f], bytes / 1e9, ms(0) * 1e3, 100 * bytes / ms(0) / bw);
    for (int w = 1; w <= WAYS; w++) printf(" %.3f (%.1f %%, %.2f×) |", ms(w) * 1e3, 100 * bytes / ms(w) / bw, ms(0) / ms(w));
    for (const std::string& cell : agreement) printf("%s |", cell.c_str());
    printf("\n");
    for (auto& p : plans) { cudaFree(p.segs); cudaFree(p.warp0); }
    cudaFree(y); cudaFree(y_ref);
    for (auto& w : ws) free_weight(w);
    return ok;
}

// One shape and format, a launch on another copy past L2 each time: the shipped grid against the
// resident one, GB/s, and whether the outputs are equal bit for bit.
bool shape_row(cudaStream_t s, const Shape& sh, int f, double bw, const bf16* xs, void* y, void* y_ref) {
    const int copies = copies_past_l2(f, sh.n, sh.k), launches = std::max(copies, 24);
    Weight w = make_weight(f, sh.n, sh.k, copies, 61 + f);
    std::vector<void*> y1 = {y}, y1_ref = {y_ref};
    CK(cudaMemsetAsync(y_ref, 0xff, (size_t)sh.n * 2, s));
    CK(cudaMemsetAsync(y, 0xff, (size_t)sh.n * 2, s));
    launch_shipped(s, {&w}, 0, xs, y1_ref, 1);
    g_resident = true;
    launch_shipped(s, {&w}, 0, xs, y1, 1);
    g_resident = false;
    CK(cudaStreamSynchronize(s));
    CK(cudaGetLastError());
    // one weight, equal bit for bit and neither side NaN (left poisoned)
    const bool equal = compare({w}, {0}, (const bf16*)y, (const bf16*)y_ref).equal == 1;
    double t[2];
    for (int way = 0; way < 2; way++) {
        g_resident = way == 1;
        t[way] = time_graph(s, launches, [&](int i) { launch_shipped(s, {&w}, i % copies, xs, y1, 1); });
        g_resident = false;
    }
    int r = 2;
    const Kern k = shipped(f, 1, sh.n, &r);
    const int blocks = ((sh.n + r - 1) / r + 3) / 4;
    printf("| %s | %s | %d → %d | %.0f (%.1f %%) | %.0f (%.1f %%) | %.2f | %s |\n", sh.name, FMT[f], blocks,
           std::min(blocks, resident_blocks(k)), w.bytes() / t[0] / 1e9, 100 * w.bytes() / t[0] / bw, w.bytes() / t[1] / 1e9, 100 * w.bytes() / t[1] / bw,
           t[0] / t[1], equal ? "yes" : "NO");
    free_weight(w);
    return equal;
}

// --merged: exit 3 if a resident-grid output differs from the shipped one, or a merged output is NaN
// or differs past 2^-7.
int merged_main(cudaStream_t s, double bw, const bf16* xs, void** ys, const std::vector<Shape>& shapes) {
    printf("## m = 1, the shipped kernels on their grid (a warp per row group) or a resident one (GB/s, %% of copy "
           "%.0f GB/s)\n\n", bw / 1e9);
    printf("| shape | format | blocks: shipped → resident | shipped grid | resident grid | shipped / resident time | outputs equal |\n");
    printf("| --- | --- | ---: | ---: | ---: | ---: | --- |\n");
    resident_warm();
    bool ok = true;
    for (const Shape& sh : shapes)
        for (int f = 0; f < 3; f++) ok = shape_row(s, sh, f, bw, xs, ys[0], ys[1]) && ok;
    printf("\n## A decode step's linears, shipped, as one launch (dependencies ignored), or shipped on resident grids "
           "(m = 1), ms (%% of copy, shipped / way)\n\n");
    printf("| model | format | weight GB | shipped | one launch R2 | one launch R4 | resident one launch R2 |"
           " resident one launch R4 | shipped, resident grids | equal to shipped, worst Δ: one R2 | one R4 |"
           " resident R2 | resident R4 | shipped resident |\n");
    printf("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | --- | --- | --- |\n");
    for (const Model& md : MODELS)
        for (int f = 0; f < 3; f++) ok = step_row(s, md, f, bw, xs) && ok;
    return ok ? 0 : 3;
}

}  // namespace merged
