// What the GEMV harness's experiments share: the plain reference, the weights and their copies, the
// launches of the shipped kernels and of variants, the error and the timing of a graph of launches,
// the copy bandwidth, and the linears of a decode step.
#pragma once
#include <algorithm>
#include <cmath>
#include <map>
#include <vector>

#include "../../src/kernels/cuda/linear.cu"

#include "harness.cuh"

// Element e (row·k + j) of a weight in format fmt, dequantized on its own.
__device__ float ref_weight(int fmt, const uint8_t* a, const float* b, int row, size_t e) {
    if (fmt == gemv::DENSE) return __bfloat162float(reinterpret_cast<const bf16*>(a)[e]);
    if (fmt == gemv::INT8) return ((int)a[e] - 128) * b[row];
    return gemv::NF4_CODES[(e & 1) ? (a[e / 2] & 15) : (a[e / 2] >> 4)] * b[e / 64];
}

// Plain reference: one thread per output, every weight dequantized on its own, f32 sums.
__global__ void reference(int fmt, const bf16* xs, const uint8_t* a, const float* b, float* ys, int m, int n, int k) {
    const int row = blockIdx.x * blockDim.x + threadIdx.x, i = blockIdx.y;
    if (row >= n || i >= m) return;
    float acc = 0.f;
    for (int j = 0; j < k; j++) acc += ref_weight(fmt, a, b, row, (size_t)row * k + j) * __bfloat162float(xs[(size_t)i * k + j]);
    ys[(size_t)i * n + row] = acc;
}

template <int F, int M, int R> __global__ void __launch_bounds__(128) kern(const bf16* xs, gemv::Parts ps) {
    gemv::gemv_parts<bf16, F, M, R>(xs, ps);
}

template <int F, int R, int MINB> __global__ void __launch_bounds__(128, MINB) kb(const bf16* xs, gemv::Parts ps) {
    gemv::gemv_parts<bf16, F, 1, R>(xs, ps);
}
typedef void (*Kern)(const bf16*, gemv::Parts);
struct Variant { const char* name; int r, cap; Kern k[3]; };  // cap: blocks per SM the grid is capped at (0: none)
#define V(R, B) Variant{"R" #R "/" #B, R, 0, {kb<0, R, B>, kb<1, R, B>, kb<2, R, B>}}
static Variant VARIANTS[] = {V(1, 16), V(2, 8), V(2, 12), V(4, 4), V(4, 6), V(4, 8), V(8, 4)};
template <int F, int M> Kern pick_r(int r) { return r == 1 ? kern<F, M, 1> : r == 2 ? kern<F, M, 2> : kern<F, M, 4>; }
template <int F> Kern pick_m(int m, int r) {
    return m <= 1 ? pick_r<F, 1>(r) : m <= 2 ? pick_r<F, 2>(r) : m <= 4 ? pick_r<F, 4>(r) : pick_r<F, 8>(r);
}
Kern pick(int f, int m, int r) { return f == 0 ? pick_m<0>(m, r) : f == 1 ? pick_m<1>(m, r) : pick_m<2>(m, r); }

static const char* FMT[] = {"bf16", "int8", "nf4"};
static int g_sms = 132;

struct Weight {  // one [n, k] weight in a format, `copies` times
    int fmt, n, k, copies;
    size_t a_bytes, b_count;
    uint8_t* a;
    float* b;
    size_t bytes() const { return a_bytes + b_count * 4; }
    const uint8_t* ac(int c) const { return a + (size_t)c * a_bytes; }
    const float* bc(int c) const { return b + (size_t)c * b_count; }
};

Weight make_weight(int fmt, int n, int k, int copies, uint64_t seed) {
    Weight w{fmt, n, k, copies, 0, 0, nullptr, nullptr};
    w.a_bytes = fmt == 0 ? (size_t)n * k * 2 : fmt == 1 ? (size_t)n * k : (size_t)n * k / 2;
    w.b_count = fmt == 0 ? 0 : fmt == 1 ? n : (size_t)n * k / 64;
    CK(cudaMalloc(&w.a, w.a_bytes * copies));
    CK(cudaMalloc(&w.b, std::max<size_t>(w.b_count, 1) * 4 * copies));
    if (fmt == 0) fill_bf16<<<1024, 256>>>((bf16*)w.a, w.a_bytes / 2 * copies, seed, -0.05f, 0.05f);
    else fill_bytes<<<1024, 256>>>(w.a, w.a_bytes * copies, seed);
    if (w.b_count) fill_f32<<<1024, 256>>>(w.b, w.b_count * copies, seed + 1, 0.001f, 0.004f);
    CK(cudaGetLastError());
    CK(cudaDeviceSynchronize());  // the fills ran on the legacy stream, the kernels run on another
    return w;
}
// Copies of an [n, k] weight in format f that together exceed 400 MB, so that launches rotating
// through them read HBM, not the 60 MB L2.
int copies_past_l2(int f, int n, int k) {
    const size_t one = (size_t)n * k * (f == 0 ? 2.0 : f == 1 ? 1.0 : 0.5);
    return (int)std::max<size_t>(1, (400ull << 20) / one + 1);
}
void free_weight(Weight& w) { cudaFree(w.a); cudaFree(w.b); }

// Whether launch_shipped asks for programmatic dependent launch (--pdl).
static bool g_pdl = false;
// Whether launch_shipped caps its grid at the blocks the GPU holds at once, so that warps stride over
// the row groups (gemv_parts allows it) and each block fills its NF4 table once (--merged).
static bool g_resident = false;
// Asked of the driver once a kernel, outside any capture (resident_warm), so that no occupancy query
// runs while a graph is captured in global mode.
int resident_blocks(Kern k) {
    static std::map<Kern, int> known;
    auto it = known.find(k);
    if (it != known.end()) return it->second;
    int per_sm = 0;
    CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, k, 128, 0));
    return known[k] = std::max(per_sm, 1) * g_sms;
}

// The Parts of one launch over [w0, w1, …] (all of one format, copy c) into ys[i], m rows of xs,
// r rows a warp; its blocks of four warps go to *blocks.
gemv::Parts parts_of(const std::vector<const Weight*>& ws, int c, std::vector<void*>& ys, int m, int r, int* blocks) {
    gemv::Parts ps{};
    ps.count = (int)ws.size(); ps.m = m; ps.k = ws[0]->k;
    int warps = 0;
    for (size_t i = 0; i < ws.size(); i++) {
        ps.p[i] = gemv::Part{ws[i]->ac(c), ws[i]->bc(c), ys[i], ws[i]->n};
        warps += (ws[i]->n + r - 1) / r;
    }
    *blocks = (warps + 3) / 4;
    return ps;
}
// The most rows of any of ws.
int rows_max(const std::vector<const Weight*>& ws) {
    int n = 0;
    for (auto w : ws) n = std::max(n, w->n);
    return n;
}

// Launch of the new kernel over parts [w0, w1, …] (all of one format), copy c.
void launch_new(cudaStream_t s, const std::vector<const Weight*>& ws, int c, const bf16* xs, std::vector<void*>& ys, int m, int r) {
    int blocks;
    const gemv::Parts ps = parts_of(ws, c, ys, m, r, &blocks);
    pick(ws[0]->fmt, m, r)<<<blocks, 128, 0, s>>>(xs, ps);
}
// The kernels minilab ships (linear.cu), with src/kernels/cuda/mod.rs's choice of (M, R).
Kern shipped(int f, int m, int n_max, int* r) {
    const int mm = m <= 1 ? 1 : m <= 2 ? 2 : m <= 4 ? 4 : 8;
    *r = (f == 2 && mm == 1 && n_max >= 8192) ? 4 : (f == 0 && mm >= 4) ? 1 : 2;
    static Kern table[3][4] = {{gemv_dense_bf16_m1_r2, gemv_dense_bf16_m2_r2, gemv_dense_bf16_m4_r1, gemv_dense_bf16_m8_r1},
                               {gemv_int8_bf16_m1_r2, gemv_int8_bf16_m2_r2, gemv_int8_bf16_m4_r2, gemv_int8_bf16_m8_r2},
                               {gemv_nf4_bf16_m1_r2, gemv_nf4_bf16_m2_r2, gemv_nf4_bf16_m4_r2, gemv_nf4_bf16_m8_r2}};
    if (*r == 4) return gemv_nf4_bf16_m1_r4;
    return table[f][mm == 1 ? 0 : mm == 2 ? 1 : mm == 4 ? 2 : 3];
}
// The resident grids of every shipped one-row kernel.
void resident_warm() {
    int r;
    for (int f = 0; f < 3; f++)
        for (int n : {1024, 8192}) resident_blocks(shipped(f, 1, n, &r));
}
// Kernel k on `blocks` blocks of 128 threads, with programmatic dependent launch when pdl.
void launch_kern(cudaStream_t s, Kern k, int blocks, bool pdl, const bf16* xs, const gemv::Parts& ps) {
    if (!pdl) {
        k<<<blocks, 128, 0, s>>>(xs, ps);
        return;
    }
    cudaLaunchAttribute attr{};
    attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr.val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t cfg{};
    cfg.gridDim = dim3(blocks);
    cfg.blockDim = dim3(128);
    cfg.stream = s;
    cfg.attrs = &attr;
    cfg.numAttrs = 1;
    CK(cudaLaunchKernelEx(&cfg, k, xs, ps));
}
void launch_shipped(cudaStream_t s, const std::vector<const Weight*>& ws, int c, const bf16* xs, std::vector<void*>& ys, int m) {
    int r = 2, blocks;
    Kern k = shipped(ws[0]->fmt, m, rows_max(ws), &r);
    const gemv::Parts ps = parts_of(ws, c, ys, m, r, &blocks);
    if (g_resident) blocks = std::min(blocks, resident_blocks(k));
    launch_kern(s, k, blocks, g_pdl, xs, ps);
}
void launch_dec(cudaStream_t s, const std::vector<const Weight*>& ws, int c, const bf16* xs, std::vector<void*>& ys) {
    launch_shipped(s, ws, c, xs, ys, 1);
}
void launch_variant(cudaStream_t s, const Variant& v, const std::vector<const Weight*>& ws, int c, const bf16* xs,
                    std::vector<void*>& ys) {
    int blocks;
    const gemv::Parts ps = parts_of(ws, c, ys, 1, v.r, &blocks);
    v.k[ws[0]->fmt]<<<v.cap ? std::min(blocks, v.cap * g_sms) : blocks, 128, 0, s>>>(xs, ps);
}
void launch_old(cudaStream_t s, const Weight& w, int c, const bf16* xs, void* ys, int m) {
    std::vector<void*> y1 = {ys};
    launch_shipped(s, {&w}, c, xs, y1, m);
}

__global__ void to_f32(const bf16* x, float* y, size_t n) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < n) y[i] = __bfloat162float(x[i]);
}

// max |got − ref| / max |ref|; NaN anywhere (a poisoned output left unwritten) gives NaN.
double rel_err(const bf16* got, const float* ref, size_t count) {
    float* g;
    CK(cudaMalloc(&g, count * 4));
    to_f32<<<(count + 255) / 256, 256>>>(got, g, count);
    CK(cudaDeviceSynchronize());
    std::vector<float> hg(count), hr(count);
    CK(cudaMemcpy(hg.data(), g, count * 4, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(hr.data(), ref, count * 4, cudaMemcpyDeviceToHost));
    cudaFree(g);
    double d = 0, mx = 0;
    for (size_t i = 0; i < count; i++) {
        if (std::isnan(hg[i])) return NAN;
        d = std::max(d, (double)std::fabs(hg[i] - hr[i]));
        mx = std::max(mx, (double)std::fabs(hr[i]));
    }
    return d / mx;
}

template <typename F> double time_graph(cudaStream_t s, int launches, F body) {
    cudaGraph_t g;
    cudaGraphExec_t ge;
    CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
    for (int i = 0; i < launches; i++) body(i);
    CK(cudaStreamEndCapture(s, &g));
    CK(cudaGraphInstantiate(&ge, g, 0));
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0); cudaEventCreate(&e1);
    std::vector<double> t;
    for (int rep = 0; rep < 11; rep++) {
        CK(cudaEventRecord(e0, s));
        CK(cudaGraphLaunch(ge, s));
        CK(cudaEventRecord(e1, s));
        CK(cudaEventSynchronize(e1));
        float ms;
        cudaEventElapsedTime(&ms, e0, e1);
        if (rep >= 2) t.push_back(ms * 1e-3 / launches);
    }
    std::sort(t.begin(), t.end());
    cudaGraphExecDestroy(ge); cudaGraphDestroy(g);
    cudaEventDestroy(e0); cudaEventDestroy(e1);
    return t[t.size() / 2];
}

double copy_bandwidth(cudaStream_t s) {
    size_t bytes = 2ull << 30;
    void *a, *b;
    CK(cudaMalloc(&a, bytes)); CK(cudaMalloc(&b, bytes));
    CK(cudaMemset(a, 1, bytes));
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0); cudaEventCreate(&e1);
    std::vector<double> t;
    for (int i = 0; i < 12; i++) {
        CK(cudaEventRecord(e0, s));
        CK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, s));
        CK(cudaEventRecord(e1, s));
        CK(cudaEventSynchronize(e1));
        float ms;
        cudaEventElapsedTime(&ms, e0, e1);
        if (i >= 2) t.push_back(ms * 1e-3);
    }
    std::sort(t.begin(), t.end());
    cudaFree(a); cudaFree(b);
    return 2.0 * bytes / t[t.size() / 2];
}

struct Shape { const char* name; int n, k; };

// The linear shapes of a model, and every linear of its decode step as distinct weights in format f:
// per block q k v o gate up down, then the head; `bytes` gets their total.
struct Model { const char* name; int hidden, kv, ffn, blocks, shape0; };
static const Model MODELS[] = {{"3B", 3072, 1024, 8192, 28, 0}, {"8B", 4096, 1024, 14336, 32, 5}};
std::vector<Weight> step_weights(const Model& md, int f, uint64_t seed, size_t* bytes) {
    std::vector<Weight> ws;
    *bytes = 0;
    for (int b = 0; b < md.blocks; b++) {
        int dims[7][2] = {{md.hidden, md.hidden}, {md.kv, md.hidden}, {md.kv, md.hidden}, {md.hidden, md.hidden},
                          {md.ffn, md.hidden}, {md.ffn, md.hidden}, {md.hidden, md.ffn}};
        for (auto& d : dims) { ws.push_back(make_weight(f, d[0], d[1], 1, seed + ws.size())); *bytes += ws.back().bytes(); }
    }
    ws.push_back(make_weight(f, 128256, md.hidden, 1, seed - 1));
    *bytes += ws.back().bytes();
    CK(cudaDeviceSynchronize());
    return ws;
}

// A step's launches in order, as lists of parts: per block q/k/v in one launch, o, gate/up in one,
// down; then the head.
std::vector<std::vector<const Weight*>> step_launches(const Model& md, const std::vector<Weight>& ws) {
    std::vector<std::vector<const Weight*>> launches;
    for (int b = 0; b < md.blocks; b++) {
        const Weight* w = &ws[b * 7];
        launches.push_back({&w[0], &w[1], &w[2]});
        launches.push_back({&w[3]});
        launches.push_back({&w[4], &w[5]});
        launches.push_back({&w[6]});
    }
    launches.push_back({&ws.back()});
    return launches;
}

// A step in `ways` ways besides the reference (way −1), alternating 3 times with the reference first
// each time. times[w + 1]: the seconds a step of way w, sorted; equal[w]: whether way w's head
// output (in y0) equaled the reference's bit for bit every time.
template <typename StepWith>
void alternate_ways(cudaStream_t s, int ways, StepWith step_with, void* y0, std::vector<std::vector<double>>& times,
                    std::vector<bool>& equal) {
    times.assign(ways + 1, {});
    equal.assign(ways, true);
    std::vector<uint16_t> want(128256), got(128256);
    for (int rep = 0; rep < 3; rep++) {
        for (int w = -1; w < ways; w++) {
            CK(cudaMemsetAsync(y0, 0xff, (size_t)128256 * 2, s));
            times[w + 1].push_back(time_graph(s, 1, step_with(w)));
            CK(cudaGetLastError());
            CK(cudaMemcpy((w < 0 ? want : got).data(), y0, (size_t)128256 * 2, cudaMemcpyDeviceToHost));
            if (w >= 0) equal[w] = equal[w] && want == got;
        }
    }
    for (auto& v : times) std::sort(v.begin(), v.end());
}
