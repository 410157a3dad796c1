// The decode GEMV kernels of src/kernels/cuda against a plain reference on the GPU that runs them,
// then timed on every Llama-3.2-3B and Llama-3.1-8B linear shape as a fraction of the measured
// device-to-device copy bandwidth. Built here by bench/kernels/build.sh, run there by bench/gpu-issue11.sh.
//
// - Correct: random weights (dense bf16, int8 codes with scales, NF4 bytes with absmax) and random
//   xs for m = 1, 2, 3, 5, 8; outputs poisoned with NaN first; max |kernel − reference| / max
//   |reference| must stay under 4e-3 (bf16 output rounding is 2^-9 of the largest value).
// - Timed: each launch reads a different copy of the weight (≥ 400 MB of copies, past the 50 MB L2),
//   the launches captured in one CUDA graph so host launch cost is not measured; median of 9 replays.
// - A decode step: every linear of the model once, in order, distinct weights, as one graph.
//
// Usage: gemv_bench [--quick | --floor | --pdl | --prefetch]. Prints markdown tables. --floor: where an
// NF4 GEMV's time goes (launch floor, the loads alone, the whole kernel), per shape and for a decode
// step's linears. --pdl: a decode step's linears (shipped kernels) launched plainly and with
// programmatic dependent launch, in one process. --prefetch: the same step where each launch first
// asks L2 for the next launch's weights (see prefetch_main).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "../../src/kernels/cuda/linear.cu"

#include "harness.cuh"

// Plain reference: one thread per output, every weight dequantized on its own, f32 sums.
__global__ void reference(int fmt, const bf16* xs, const uint8_t* a, const float* b, float* ys, int m, int n, int k) {
    const int row = blockIdx.x * blockDim.x + threadIdx.x, i = blockIdx.y;
    if (row >= n || i >= m) return;
    float acc = 0.f;
    for (int j = 0; j < k; j++) {
        const size_t e = (size_t)row * k + j;
        float w;
        if (fmt == gemv::DENSE) w = __bfloat162float(reinterpret_cast<const bf16*>(a)[e]);
        else if (fmt == gemv::INT8) w = ((int)a[e] - 128) * b[row];
        else w = gemv::NF4_CODES[(e & 1) ? (a[e / 2] & 15) : (a[e / 2] >> 4)] * b[e / 64];
        acc += w * __bfloat162float(xs[(size_t)i * k + j]);
    }
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
void launch_shipped(cudaStream_t s, const std::vector<const Weight*>& ws, int c, const bf16* xs, std::vector<void*>& ys, int m) {
    int r = 2, blocks;
    Kern k = shipped(ws[0]->fmt, m, rows_max(ws), &r);
    const gemv::Parts ps = parts_of(ws, c, ys, m, r, &blocks);
    if (!g_pdl) {
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

// --profile: a few launches of chosen kernels, without graphs, for Nsight Compute.
int profile(cudaStream_t s, const bf16* xs, std::vector<void*>& ys) {
    for (auto sh : {std::pair<int, int>{8192, 3072}, {128256, 3072}}) {
        for (int f = 0; f < 3; f++) {
            Weight w = make_weight(f, sh.first, sh.second, 1, 5);
            for (int i = 0; i < 2; i++) {
                launch_new(s, {&w}, 0, xs, ys, 1, f == 0 ? 1 : f == 1 ? 2 : 4);
                launch_dec(s, {&w}, 0, xs, ys);
                launch_old(s, w, 0, xs, ys[0], 1);
            }
            CK(cudaStreamSynchronize(s));
            free_weight(w);
        }
    }
    return 0;
}

// The floors under a GEMV launch of the shipped grid (R rows a warp, 4 warps a block): `empty` does
// nothing; `loads` streams the weight bytes and scales with the same per-lane 16-byte pattern and
// keeps an xor of them live, so its time is the memory pattern and the launch without any decode.
__global__ void empty_kernel(gemv::Parts) {}
template <int R> __global__ void __launch_bounds__(128) loads_kernel(gemv::Parts ps, uint32_t* sink) {
    const int lane = threadIdx.x & 31, row_bytes = ps.k / 2;  // NF4: k/2 bytes a row
    const int g0 = (ps.p[0].n + R - 1) / R, g1 = ps.count > 1 ? (ps.p[1].n + R - 1) / R : 0;
    const int total = g0 + g1 + (ps.count > 2 ? (ps.p[2].n + R - 1) / R : 0);
    const int g = (blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    if (g >= total) return;
    const int part = g < g0 ? 0 : g < g0 + g1 ? 1 : 2, row0 = (g - (part == 0 ? 0 : part == 1 ? g0 : g0 + g1)) * R;
    const gemv::Part& p = ps.p[part];
    uint32_t acc = 0;
    for (int j = lane * 16; j < row_bytes; j += 32 * 16) {
#pragma unroll
        for (int r = 0; r < R; r++) {
            const size_t row = (size_t)min(row0 + r, p.n - 1);
            const uint4 w = gemv::ld_stream(p.a + row * row_bytes + j);
            acc ^= w.x ^ w.y ^ w.z ^ w.w ^ __float_as_uint(__ldg(p.b + (row * row_bytes + j) / 32));
        }
    }
    acc = __reduce_xor_sync(0xffffffffu, acc);
    if (lane == 0) sink[g] = acc;
}

// Launches kind 0 (empty), 1 (loads) or 2 (the shipped NF4 kernel) over parts [w0, …], copy c.
void launch_floor(cudaStream_t s, int kind, const std::vector<const Weight*>& ws, int c, const bf16* xs,
                  std::vector<void*>& ys, uint32_t* sink) {
    if (kind == 2) return launch_shipped(s, ws, c, xs, ys, 1);
    int r = 2, blocks;
    shipped(2, 1, rows_max(ws), &r);
    const gemv::Parts ps = parts_of(ws, c, ys, 1, r, &blocks);
    if (kind == 0) empty_kernel<<<blocks, 128, 0, s>>>(ps);
    else if (r == 4) loads_kernel<4><<<blocks, 128, 0, s>>>(ps, sink);
    else loads_kernel<2><<<blocks, 128, 0, s>>>(ps, sink);
}

// m = 1 with U steps of the k loop in flight (gemv.cuh's default is 2): more bytes in flight a warp.
template <int F, int R, int MINB, int U> __global__ void __launch_bounds__(128, MINB) ku(const bf16* xs, gemv::Parts ps) {
    gemv::gemv_parts<bf16, F, 1, R, U>(xs, ps);
}
#define UV(R, B, U) Variant{"R" #R "/U" #U, R, 0, {ku<0, R, B, U>, ku<1, R, B, U>, ku<2, R, B, U>}}
static Variant UNROLLS[] = {UV(2, 4, 4), UV(2, 2, 8), UV(4, 3, 4), UV(1, 8, 4), UV(1, 4, 8)};

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

struct Shape;
int floor_main(cudaStream_t s, double bw, const bf16* xs, void** ys, const std::vector<Shape>& shapes);
int pdl_main(cudaStream_t s, double bw, const bf16* xs, void** ys);
int prefetch_main(cudaStream_t s, double bw, const bf16* xs, void** ys);

int main(int argc, char** argv) {
    bool quick = argc > 1 && std::string(argv[1]) == "--quick";
    bool prof = argc > 1 && std::string(argv[1]) == "--profile";
    bool floors = argc > 1 && std::string(argv[1]) == "--floor";
    bool pdl = argc > 1 && std::string(argv[1]) == "--pdl";
    bool prefetch = argc > 1 && std::string(argv[1]) == "--prefetch";
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    g_sms = prop.multiProcessorCount;
    cudaStream_t s;
    CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    const double bw = copy_bandwidth(s);
    printf("# %s, %d SMs, L2 %d MB; copy bandwidth %.0f GB/s\n\n", prop.name, g_sms, prop.l2CacheSize >> 20, bw / 1e9);
    const int KMAX = 14336, MMAX = 8;
    bf16* xs;
    float* ref;
    void* ys[3];
    CK(cudaMalloc(&xs, (size_t)MMAX * KMAX * 2));
    fill_bf16<<<256, 256>>>(xs, (size_t)MMAX * KMAX, 7, -1.f, 1.f);
    CK(cudaMalloc(&ref, (size_t)MMAX * 128256 * 4));
    for (auto& y : ys) CK(cudaMalloc(&y, (size_t)MMAX * 128256 * 2));
    CK(cudaDeviceSynchronize());
    if (prof) {
        std::vector<void*> y1 = {ys[0]};
        return profile(s, xs, y1);
    }

    std::vector<Shape> shapes = {
        {"3B q/o", 3072, 3072}, {"3B k/v", 1024, 3072}, {"3B gate/up", 8192, 3072}, {"3B down", 3072, 8192},
        {"3B head", 128256, 3072}, {"8B q/o", 4096, 4096}, {"8B k/v", 1024, 4096}, {"8B gate/up", 14336, 4096},
        {"8B down", 4096, 14336}, {"8B head", 128256, 4096}};
    if (floors) return floor_main(s, bw, xs, ys, shapes);
    if (pdl) return pdl_main(s, bw, xs, ys);
    if (prefetch) return prefetch_main(s, bw, xs, ys);
    // Correctness first: every format, R and m against the reference, on every shape.
    printf("## Correctness: max |kernel − reference| / max |reference| (bf16 out; limit 4e-3)\n\n");
    printf("| shape | format | shipped m=1 | worst (m = 1,2,3,5,8; R = 1,2,4; decode kernel at m = 1) |\n| --- | --- | ---: | ---: |\n");
    double worst_all = 0;
    for (auto& sh : shapes) {
        for (int f = 0; f < 3; f++) {
            Weight w = make_weight(f, sh.n, sh.k, 1, 11 + f);
            double worst = 0, old_err = 0;
            for (int m : {1, 2, 3, 5, 8}) {
                reference<<<dim3((sh.n + 127) / 128, m), 128, 0, s>>>(f, xs, w.a, w.b, ref, m, sh.n, sh.k);
                for (int r : {0, 1, 2, 4, 9}) {
                    if (r == 9 && m != 1) continue;
                    CK(cudaMemsetAsync(ys[0], 0xff, (size_t)m * sh.n * 2, s));  // NaN
                    std::vector<void*> y1 = {ys[0]};
                    if (r == 0) launch_old(s, w, 0, xs, ys[0], m);
                    else if (r == 9) launch_dec(s, {&w}, 0, xs, y1);
                    else launch_new(s, {&w}, 0, xs, y1, m, r);
                    CK(cudaStreamSynchronize(s));
                    CK(cudaGetLastError());
                    double e = rel_err((bf16*)ys[0], ref, (size_t)m * sh.n);
                    if (r == 0) { if (m == 1) old_err = e; }
                    else worst = std::isnan(e) || std::isnan(worst) ? NAN : std::max(worst, e);
                }
            }
            worst_all = std::isnan(worst) || std::isnan(worst_all) ? NAN : std::max(worst_all, worst);
            printf("| %s %dx%d | %s | %.2e | %.2e%s |\n", sh.name, sh.n, sh.k, FMT[f], old_err, worst,
                   !(worst < 4e-3) ? " FAIL" : "");
            free_weight(w);
        }
    }
    // The fused launch: q, k, v as three parts of one launch against three separate references.
    for (int f = 0; f < 3; f++) {
        Weight q = make_weight(f, 3072, 3072, 1, 21), kk = make_weight(f, 1024, 3072, 1, 22), v = make_weight(f, 1024, 3072, 1, 23);
        double worst = 0;
        for (int m : {1, 3, 8}) for (int r : {1, 2, 4, 9}) {
            if (r == 9 && m != 1) continue;
            std::vector<void*> yv(ys, ys + 3);
            for (auto y : yv) CK(cudaMemsetAsync(y, 0xff, (size_t)m * 3072 * 2, s));
            if (r == 9) launch_dec(s, {&q, &kk, &v}, 0, xs, yv);
            else launch_new(s, {&q, &kk, &v}, 0, xs, yv, m, r);
            CK(cudaStreamSynchronize(s));
            const Weight* parts[3] = {&q, &kk, &v};
            for (int i = 0; i < 3; i++) {
                reference<<<dim3((parts[i]->n + 127) / 128, m), 128, 0, s>>>(f, xs, parts[i]->a, parts[i]->b, ref, m, parts[i]->n, 3072);
                CK(cudaStreamSynchronize(s));
                double e = rel_err((bf16*)ys[i], ref, (size_t)m * parts[i]->n);
                worst = std::isnan(e) ? NAN : std::max(worst, e);
            }
        }
        worst_all = std::isnan(worst) || std::isnan(worst_all) ? NAN : std::max(worst_all, worst);
        printf("| 3B q+k+v in one launch | %s | | %.2e%s |\n", FMT[f], worst, !(worst < 4e-3) ? " FAIL" : "");
        free_weight(q); free_weight(kk); free_weight(v);
    }
    printf("\nworst relative error of the new kernels: %.2e (%s)\n\n", worst_all, worst_all < 4e-3 ? "pass" : "FAIL");

    // Occupancy sweep at m = 1 (checked against the reference first).
    printf("## m = 1: rows per warp R / minimum blocks per SM (GB/s)\n\n| shape | format |");
    for (auto& v : VARIANTS) printf(" %s |", v.name);
    printf("\n| --- | --- |");
    for (size_t i = 0; i < sizeof(VARIANTS) / sizeof(VARIANTS[0]); i++) printf(" ---: |");
    printf("\n");
    std::vector<std::vector<int>> best_var(shapes.size(), std::vector<int>(3, 0));
    for (size_t si = 0; si < shapes.size(); si++) {
        auto& sh = shapes[si];
        for (int f = 0; f < 3; f++) {
            const int copies = copies_past_l2(f, sh.n, sh.k);
            Weight w = make_weight(f, sh.n, sh.k, copies, 31);
            double best = 0;
            reference<<<dim3((sh.n + 127) / 128, 1), 128, 0, s>>>(f, xs, w.a, w.b, ref, 1, sh.n, sh.k);
            printf("| %s | %s |", sh.name, FMT[f]);
            std::vector<void*> y1 = {ys[0]};
            for (int vi = 0; vi < (int)(sizeof(VARIANTS) / sizeof(VARIANTS[0])); vi++) {
                const Variant& v = VARIANTS[vi];
                CK(cudaMemsetAsync(ys[0], 0xff, (size_t)sh.n * 2, s));
                launch_variant(s, v, {&w}, 0, xs, y1);
                CK(cudaStreamSynchronize(s));
                double e = rel_err((bf16*)ys[0], ref, sh.n);
                double t = time_graph(s, std::max(copies, 24), [&](int i) { launch_variant(s, v, {&w}, i % copies, xs, y1); });
                printf(" %.0f%s |", w.bytes() / t / 1e9, e < 4e-3 ? "" : " FAIL");
                if (w.bytes() / t > best) { best = w.bytes() / t; best_var[si][f] = vi; }
                if (!(e < 4e-3)) worst_all = NAN;
            }
            printf("\n");
            free_weight(w);
        }
    }
    printf("\n");
    // Speed, one shape at a time.
    printf("## One weight per launch, each launch on another copy (GB/s of weight bytes; %% of copy bandwidth)\n\n");
    printf("| shape | format | m | shipped | R=1 | R=2 | R=4 | shipped | best %% |\n| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    // best R per (shape, format, m=1) for the step
    std::vector<std::vector<int>> best_r(shapes.size(), std::vector<int>(3, 1));
    for (size_t si = 0; si < shapes.size(); si++) {
        auto& sh = shapes[si];
        for (int f = 0; f < 3; f++) {
            const int copies = copies_past_l2(f, sh.n, sh.k);
            Weight w = make_weight(f, sh.n, sh.k, copies, 31);
            int launches = std::max(copies, 24);
            for (int m : quick ? std::vector<int>{} : std::vector<int>{1, 2, 4, 8}) {
                double gbs[5] = {0, 0, 0, 0, 0};
                for (int r : {0, 1, 2, 4, 9}) {
                    if (r == 9 && m != 1) continue;
                    std::vector<void*> y1 = {ys[0]};
                    double t = time_graph(s, launches, [&](int i) {
                        if (r == 0) launch_old(s, w, i % copies, xs, ys[0], m);
                        else if (r == 9) launch_dec(s, {&w}, i % copies, xs, y1);
                        else launch_new(s, {&w}, i % copies, xs, y1, m, r);
                    });
                    gbs[r == 9 ? 4 : r == 4 ? 3 : r] = w.bytes() / t / 1e9;
                }
                int b = 1;
                for (int i = 2; i < 5; i++) if (gbs[i] > gbs[b]) b = i;
                if (m == 1) best_r[si][f] = b == 4 ? 9 : b == 3 ? 4 : b;
                printf("| %s %dx%d | %s | %d | %.0f | %.0f | %.0f | %.0f | %.0f | %.1f |\n", sh.name, sh.n, sh.k, FMT[f], m, gbs[0],
                       gbs[1], gbs[2], gbs[3], gbs[4], 100 * gbs[b] * 1e9 / bw);
            }
            free_weight(w);
        }
    }

    // A decode step's linears: every linear of every block, distinct weights, one graph.
    printf("\n## The linears of one decode step (m = 1), distinct weights, one graph (--quick: the best variant per shape above)\n\n");
    printf("| model | format | shipped ms | best-R ms | best-R fused ms | weight GB | new fused GB/s | %% of copy |\n| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for (const Model& md : MODELS) {
        for (int f = 0; f < 3; f++) {
            size_t bytes;
            std::vector<Weight> ws = step_weights(md, f, 100, &bytes);
            // R per role from the per-shape table (q/o, k/v, gate/up, down, head)
            int role[7] = {0, 1, 1, 0, 2, 2, 3};
            auto r_of = [&](int li) { return best_r[md.shape0 + (li == (int)ws.size() - 1 ? 4 : role[li % 7])][f]; };
            std::vector<void*> y1 = {ys[0]};
            auto launch_best = [&](std::vector<const Weight*> parts, std::vector<void*>& y, int r) {
                if (quick) {
                    const int shape = md.shape0 + (parts[0]->n == 128256 ? 4 : parts[0]->k != md.hidden ? 3 : parts[0]->n == md.ffn ? 2 : parts[0]->n == md.kv ? 1 : 0);
                    launch_variant(s, VARIANTS[best_var[shape][f]], parts, 0, xs, y);
                } else if (r == 9) launch_dec(s, parts, 0, xs, y);
                else launch_new(s, parts, 0, xs, y, 1, r);
            };
            double t_old = time_graph(s, 1, [&](int) { for (auto& w : ws) launch_old(s, w, 0, xs, ys[0], 1); });
            double t_new = time_graph(s, 1, [&](int) {
                for (size_t i = 0; i < ws.size(); i++) launch_best({&ws[i]}, y1, r_of((int)i));
            });
            double t_fused = time_graph(s, 1, [&](int) {
                std::vector<void*> y3(ys, ys + 3);
                for (int b = 0; b < md.blocks; b++) {
                    Weight* w = &ws[b * 7];
                    launch_best({&w[0], &w[1], &w[2]}, y3, r_of(0));
                    launch_best({&w[3]}, y1, r_of(3));
                    launch_best({&w[4], &w[5]}, y3, r_of(4));
                    launch_best({&w[6]}, y1, r_of(6));
                }
                launch_best({&ws.back()}, y1, r_of((int)ws.size() - 1));
            });
            printf("| %s | %s | %.3f | %.3f | %.3f | %.3f | %.0f | %.1f |\n", md.name, FMT[f], t_old * 1e3, t_new * 1e3,
                   t_fused * 1e3, bytes / 1e9, bytes / t_fused / 1e9, 100 * bytes / t_fused / bw);
            for (auto& w : ws) free_weight(w);
        }
    }
    CK(cudaGetLastError());
    return worst_all < 4e-3 ? 0 : 3;
}

// --floor: per NF4 shape (m = 1, each launch on another copy past L2) and for a 3B / 8B step's NF4
// linears (q/k/v and gate/up fused, one graph): the empty launch, the loads alone and the shipped
// kernel, in µs a launch (ms a step), with the loads' and the kernel's GB/s.
int floor_main(cudaStream_t s, double bw, const bf16* xs, void** ys, const std::vector<Shape>& shapes) {
    const int F = 2;
    uint32_t* sink;
    CK(cudaMalloc(&sink, (size_t)128256 * 4));
    printf("## Where an NF4 GEMV's time goes (m = 1; copy bandwidth %.0f GB/s)\n\n", bw / 1e9);
    printf("| shape | empty µs | loads µs | kernel µs | loads GB/s | kernel GB/s | kernel − loads µs |\n");
    printf("| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for (auto& sh : shapes) {
        const int copies = copies_past_l2(F, sh.n, sh.k);
        Weight w = make_weight(F, sh.n, sh.k, copies, 51);
        const int launches = std::max(copies, 24);
        std::vector<void*> y1 = {ys[0]};
        double t[3];
        for (int kind = 0; kind < 3; kind++)
            t[kind] = time_graph(s, launches, [&](int i) { launch_floor(s, kind, {&w}, i % copies, xs, y1, sink); });
        printf("| %s %dx%d | %.2f | %.2f | %.2f | %.0f | %.0f | %.2f |\n", sh.name, sh.n, sh.k, t[0] * 1e6, t[1] * 1e6,
               t[2] * 1e6, w.bytes() / t[1] / 1e9, w.bytes() / t[2] / 1e9, (t[2] - t[1]) * 1e6);
        free_weight(w);
    }
    printf("\n| step | empty ms | loads ms | kernel ms | weight GB | loads GB/s | kernel GB/s |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for (const Model& md : MODELS) {
        size_t bytes;
        std::vector<Weight> ws = step_weights(md, F, 200, &bytes);
        double t[3];
        for (int kind = 0; kind < 3; kind++) {
            t[kind] = time_graph(s, 1, [&](int) {
                std::vector<void*> y1 = {ys[0]}, y3(ys, ys + 3);
                for (int b = 0; b < md.blocks; b++) {
                    Weight* w = &ws[b * 7];
                    launch_floor(s, kind, {&w[0], &w[1], &w[2]}, 0, xs, y3, sink);
                    launch_floor(s, kind, {&w[3]}, 0, xs, y1, sink);
                    launch_floor(s, kind, {&w[4], &w[5]}, 0, xs, y3, sink);
                    launch_floor(s, kind, {&w[6]}, 0, xs, y1, sink);
                }
                launch_floor(s, kind, {&ws.back()}, 0, xs, y1, sink);
            });
        }
        printf("| %s | %.3f | %.3f | %.3f | %.3f | %.0f | %.0f |\n", md.name, t[0] * 1e3, t[1] * 1e3, t[2] * 1e3, bytes / 1e9,
               bytes / t[1] / 1e9, bytes / t[2] / 1e9);
        for (auto& w : ws) free_weight(w);
    }
    // Unrolled variants against the shipped kernel, every format, checked against the reference.
    printf("\n## m = 1, U steps of the k loop in flight (GB/s; the shipped kernels unroll 2)\n\n| shape | format | shipped |");
    for (auto& v : UNROLLS) printf(" %s |", v.name);
    printf(" worst error |\n| --- | --- | ---: |");
    for (size_t i = 0; i <= sizeof(UNROLLS) / sizeof(UNROLLS[0]); i++) printf(" ---: |");
    printf("\n");
    float* ref;
    CK(cudaMalloc(&ref, (size_t)128256 * 4));
    double worst_all = 0;
    for (auto& sh : shapes) {
        for (int f = 0; f < 3; f++) {
            const int copies = copies_past_l2(f, sh.n, sh.k);
            Weight w = make_weight(f, sh.n, sh.k, copies, 61);
            const int launches = std::max(copies, 24);
            std::vector<void*> y1 = {ys[0]};
            reference<<<dim3((sh.n + 127) / 128, 1), 128, 0, s>>>(f, xs, w.a, w.b, ref, 1, sh.n, sh.k);
            const double t0 = time_graph(s, launches, [&](int i) { launch_shipped(s, {&w}, i % copies, xs, y1, 1); });
            printf("| %s | %s | %.0f |", sh.name, FMT[f], w.bytes() / t0 / 1e9);
            double worst = 0;
            for (auto& v : UNROLLS) {
                CK(cudaMemsetAsync(ys[0], 0xff, (size_t)sh.n * 2, s));
                launch_variant(s, v, {&w}, 0, xs, y1);
                CK(cudaStreamSynchronize(s));
                const double e = rel_err((bf16*)ys[0], ref, sh.n);
                worst = std::isnan(e) || std::isnan(worst) ? NAN : std::max(worst, e);
                const double t = time_graph(s, launches, [&](int i) { launch_variant(s, v, {&w}, i % copies, xs, y1); });
                printf(" %.0f |", w.bytes() / t / 1e9);
            }
            printf(" %.2e%s |\n", worst, worst < 4e-3 ? "" : " FAIL");
            worst_all = std::isnan(worst) || std::isnan(worst_all) ? NAN : std::max(worst_all, worst);
            free_weight(w);
        }
    }
    cudaFree(ref);
    CK(cudaGetLastError());
    cudaFree(sink);
    return worst_all < 4e-3 ? 0 : 3;
}

// --pdl: the shipped kernels of a decode step's linears (q/k/v and gate/up fused, one graph), launched
// plainly and with programmatic dependent launch, alternating 3 times; ms a step (median of 9 replays
// each) and GB/s. The outputs of the last launch of both ways are compared.
int pdl_main(cudaStream_t s, double bw, const bf16* xs, void** ys) {
    printf("## A decode step's linears, plain launches against PDL (m = 1, copy bandwidth %.0f GB/s)\n\n", bw / 1e9);
    printf("| model | format | plain ms | pdl ms | pdl / plain | weight GB | plain GB/s | pdl GB/s | pdl %% of copy | head equal |\n");
    printf("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n");
    std::vector<bf16> first(128256), second(128256);
    for (const Model& md : MODELS) {
        for (int f = 0; f < 3; f++) {
            size_t bytes;
            std::vector<Weight> ws = step_weights(md, f, 300, &bytes);
            auto step = [&](int) {
                std::vector<void*> y1 = {ys[0]}, y3(ys, ys + 3);
                for (int b = 0; b < md.blocks; b++) {
                    Weight* w = &ws[b * 7];
                    launch_shipped(s, {&w[0], &w[1], &w[2]}, 0, xs, y3, 1);
                    launch_shipped(s, {&w[3]}, 0, xs, y1, 1);
                    launch_shipped(s, {&w[4], &w[5]}, 0, xs, y3, 1);
                    launch_shipped(s, {&w[6]}, 0, xs, y1, 1);
                }
                launch_shipped(s, {&ws.back()}, 0, xs, y1, 1);
            };
            std::vector<double> plain, with;
            bool equal = true;
            for (int rep = 0; rep < 3; rep++) {
                for (int p = 0; p < 2; p++) {
                    g_pdl = p == 1;
                    CK(cudaMemsetAsync(ys[0], 0xff, (size_t)128256 * 2, s));
                    (p ? with : plain).push_back(time_graph(s, 1, step));
                    CK(cudaMemcpy((p ? second : first).data(), ys[0], (size_t)128256 * 2, cudaMemcpyDeviceToHost));
                }
                for (int i = 0; i < 128256; i++) equal &= *(uint16_t*)&first[i] == *(uint16_t*)&second[i];
            }
            g_pdl = false;
            std::sort(plain.begin(), plain.end());
            std::sort(with.begin(), with.end());
            const double a = plain[1], b = with[1];
            printf("| %s | %s | %.3f (%.3f–%.3f) | %.3f (%.3f–%.3f) | %.3f | %.3f | %.0f | %.0f | %.1f | %s |\n", md.name, FMT[f],
                   a * 1e3, plain[0] * 1e3, plain[2] * 1e3, b * 1e3, with[0] * 1e3, with[2] * 1e3, b / a, bytes / 1e9,
                   bytes / a / 1e9, bytes / b / 1e9, 100 * bytes / b / bw, equal ? "yes" : "NO");
            for (auto& w : ws) free_weight(w);
        }
    }
    CK(cudaGetLastError());
    return 0;
}

// --prefetch: software pipelining across launches. A decode step's GEMVs are each too small to keep
// enough loads in flight to reach the copy bandwidth (--floor: the loads alone run at 1.1-1.8 TB/s on
// 3B shapes), so DRAM idles through each launch's ramp-up and tail. Here every launch of the step also
// asks L2 for the next launch's weights (the head's next is the first q/k/v: the step repeats), so
// that the next launch reads them from L2 while the DRAM streams the one after. Ways:
// - line: every thread of the grid issues prefetch.global.L2 for its share of 128-byte lines;
// - bulk: thread 0 of each block issues cp.async.bulk.prefetch.L2 (sm_90) for its block's slice.
// At most `cap` bytes of the next launch are asked for (L2 holds this launch's weights too).
// The prefetch itself is gemv.cuh's (gemv::Prefetch, gemv::prefetch_next), which minilab's gemv_pf_
// kernels run with MINILAB_PREFETCH=line|bulk.

// The shipped m = 1 kernels (linear.cu's GEMVS: same R and register cap) with the prefetch first.
template <int F, int R, int MINB>
__global__ void __launch_bounds__(128, MINB) kpf(const bf16* xs, gemv::Parts ps, gemv::Prefetch pf) {
    gemv::prefetch_next(pf);
    gemv::gemv_parts<bf16, F, 1, R>(xs, ps);
}

// One launch of the step: its parts, and the regions (weights and scales) it asks L2 for.
void launch_pf(cudaStream_t s, const std::vector<const Weight*>& ws, const std::vector<const Weight*>& next,
               const bf16* xs, std::vector<void*>& ys, int how, size_t cap) {
    int r = 2, blocks;
    shipped(ws[0]->fmt, 1, rows_max(ws), &r);
    const gemv::Parts ps = parts_of(ws, 0, ys, 1, r, &blocks);
    gemv::Prefetch pf{};
    pf.how = how;
    for (auto w : next) {
        for (int j = 0; j < 2 && cap > 0; j++) {
            const size_t bytes = std::min(cap, j == 0 ? w->a_bytes : w->b_count * 4);
            if (!bytes) continue;
            pf.p[pf.count] = j == 0 ? (const char*)w->ac(0) : (const char*)w->bc(0);
            pf.n[pf.count++] = bytes;
            cap -= bytes;
        }
    }
    const int f = ws[0]->fmt;
    if (f == 0) kpf<gemv::DENSE, 2, 8><<<blocks, 128, 0, s>>>(xs, ps, pf);
    else if (f == 1) kpf<gemv::INT8, 2, 8><<<blocks, 128, 0, s>>>(xs, ps, pf);
    else if (r == 4) kpf<gemv::NF4, 4, 6><<<blocks, 128, 0, s>>>(xs, ps, pf);
    else kpf<gemv::NF4, 2, 8><<<blocks, 128, 0, s>>>(xs, ps, pf);
}

// A step's linears (q/k/v and gate/up fused, one graph) in six ways, alternating 3 times: the shipped
// kernels, and the prefetching ones (none, line with a 24 MB cap, bulk with 8, 24 and 48 MB caps); ms a
// step (median of 9 replays each) and GB/s. The head's output of each way is compared with the shipped
// kernels' (prefetching changes no arithmetic: equal bits).
int prefetch_main(cudaStream_t s, double bw, const bf16* xs, void** ys) {
    struct Way { const char* name; int how; size_t cap; };
    const Way ways[] = {{"pf none", 0, 0}, {"line 24MB", 1, 24u << 20}, {"bulk 8MB", 2, 8u << 20},
                        {"bulk 24MB", 2, 24u << 20}, {"bulk 48MB", 2, 48u << 20}};
    const int W = sizeof(ways) / sizeof(ways[0]);
    printf("## A decode step's linears, each launch prefetching the next one's weights into L2 (m = 1, copy %.0f GB/s)\n\n", bw / 1e9);
    printf("| model | format | weight GB | shipped ms | way | ms (min–max) | way / shipped | GB/s | %% of copy | head equal |\n");
    printf("| --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | --- |\n");
    std::vector<uint16_t> want(128256), got(128256);
    int failures = 0;
    for (const Model& md : MODELS) {
        for (int f = 0; f < 3; f++) {
            size_t bytes;
            std::vector<Weight> ws = step_weights(md, f, 500, &bytes);
            // the step's launches, in order, as lists of parts
            std::vector<std::vector<const Weight*>> launches;
            for (int b = 0; b < md.blocks; b++) {
                const Weight* w = &ws[b * 7];
                launches.push_back({&w[0], &w[1], &w[2]});
                launches.push_back({&w[3]});
                launches.push_back({&w[4], &w[5]});
                launches.push_back({&w[6]});
            }
            launches.push_back({&ws.back()});
            auto step_with = [&](int way) {
                return [&, way](int) {
                    std::vector<void*> y3(ys, ys + 3);
                    for (size_t i = 0; i < launches.size(); i++) {
                        if (way < 0) launch_shipped(s, launches[i], 0, xs, y3, 1);
                        else launch_pf(s, launches[i], launches[(i + 1) % launches.size()], xs, y3, ways[way].how, ways[way].cap);
                    }
                };
            };
            std::vector<std::vector<double>> t(W + 1);
            std::vector<bool> equal(W, true);
            for (int rep = 0; rep < 3; rep++) {
                for (int way = -1; way < W; way++) {
                    CK(cudaMemsetAsync(ys[0], 0xff, (size_t)128256 * 2, s));
                    t[way + 1].push_back(time_graph(s, 1, step_with(way)));
                    CK(cudaGetLastError());
                    CK(cudaMemcpy((way < 0 ? want : got).data(), ys[0], (size_t)128256 * 2, cudaMemcpyDeviceToHost));
                    if (way >= 0) equal[way] = equal[way] && want == got;
                }
            }
            for (auto& v : t) std::sort(v.begin(), v.end());
            const double base = t[0][1];
            for (int way = 0; way < W; way++) {
                const double a = t[way + 1][1];
                failures += !equal[way];
                printf("| %s | %s | %.3f | %.3f | %s | %.3f (%.3f–%.3f) | %.3f | %.0f | %.1f | %s |\n", md.name, FMT[f], bytes / 1e9,
                       base * 1e3, ways[way].name, a * 1e3, t[way + 1][0] * 1e3, t[way + 1][2] * 1e3, a / base, bytes / a / 1e9,
                       100 * bytes / a / bw, equal[way] ? "yes" : "NO");
            }
            for (auto& w : ws) free_weight(w);
        }
    }
    CK(cudaGetLastError());
    return failures ? 3 : 0;
}
