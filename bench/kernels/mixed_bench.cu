// Would a Hopper (wgmma) mixed-input GEMM close the int8/NF4 prefill gap? The question session 13's
// measurements left (BENCHMARKS.md, issue 11): minilab's own mma.sync GEMM (qgemm.cuh) runs at 0.25–0.58×
// the shipped dequantize + cuBLAS, and the target is 0.9× cuBLAS on bf16 weights. Before building a
// wgmma kernel, this times CUTLASS 4.2's sm90 mixed-input GEMM (the register-sourced, warp-specialized
// mainloop: the narrow operand is loaded by TMA, converted in registers and fed to wgmma) on the 3B's
// and 8B's linear shapes against cuBLAS on the bf16 weight, in the layout minilab stores:
// - int8 × bf16, one bf16 scale a weight row (CUTLASS "scale only", group = k): minilab's int8 format
//   with its row scale rounded to bf16;
// - int4 × bf16, one bf16 scale a 64-block of a row (group 64): the shape and traffic of minilab's NF4,
//   whose codebook CUTLASS cannot decode (a 4-bit integer is the closest it has).
// The weight [n, k] row-major is CUTLASS's A (K-major), xs [m, k] its B (K-major, column-major k × m),
// ys [m, n] its D (column-major n × m): no copies. Each tile configuration is checked against cuBLAS on
// the dequantized weight (max |Δ| / max |ref| ≤ 1e-2, output poisoned with NaN first), then timed
// (median of 5 rounds of 20 after warm-up), beside cuBLAS bf16. The CUTLASS headers come from the
// `nvidia-cutlass` wheel on PyPI (bench/kernels/fetch-cutlass.sh); built by bench/kernels/build.sh
// (`mixed`), run there by `bash bench/gpu-issue11.sh mixed`.
#include <cublas_v2.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "cutlass/version.h"
#include "cutlass/gemm/device/gemm_universal_adapter.h"
#include "cutlass/util/packed_stride.hpp"
#include "mixed_config.cuh"

#include "harness.cuh"

#define CB(x)                                                                                     \
    do {                                                                                          \
        cublasStatus_t s_ = (x);                                                                  \
        if (s_ != CUBLAS_STATUS_SUCCESS) {                                                        \
            fprintf(stderr, "%s:%d: %s: cuBLAS status %d\n", __FILE__, __LINE__, #x, (int)s_);    \
            exit(1);                                                                              \
        }                                                                                         \
    } while (0)

// The device-level adapter (host launch through the CUDA runtime) over a config's kernel.
template <class G> using GemmOf = cutlass::gemm::device::GemmUniversalAdapter<typename G::Kernel>;

// ys[m, n] = xs[m, k]·(q·s)ᵀ for a weight of n rows; false where CUTLASS refuses the problem.
struct Problem {
    int n, m, k, group;
    const void* wq;
    const Mma* scales;  // [n, k / group], n contiguous (CUTLASS's scale layout)
    const Mma* xs;
    Mma* ys;
};

template <class G> struct Runner {
    GemmOf<G> gemm;
    void* workspace = nullptr;
    bool ready = false;

    explicit Runner(const Problem& p) {
        using K = typename G::Kernel;
        auto sa = cutlass::make_cute_packed_stride(cutlass::detail::TagToStrideA_t<typename G::LayoutA>{},
                                                   make_shape(p.n, p.k, 1));
        auto sb = cutlass::make_cute_packed_stride(cutlass::detail::TagToStrideB_t<typename G::LayoutB>{},
                                                   make_shape(p.m, p.k, 1));
        auto sd = cutlass::make_cute_packed_stride(typename K::StrideD{}, make_shape(p.n, p.m, 1));
        auto sc = cutlass::make_cute_packed_stride(typename K::StrideC{}, make_shape(p.n, p.m, 1));
        auto ss = cutlass::make_cute_packed_stride(typename G::Mainloop::StrideScale{},
                                                   make_shape(p.n, p.k / p.group, 1));
        using ElementA = typename G::Mainloop::ElementA;
        typename GemmOf<G>::Arguments args{cutlass::gemm::GemmUniversalMode::kGemm,
                                         {p.n, p.m, p.k, 1},
                                         {static_cast<const ElementA*>(p.wq), sa, p.xs, sb, p.scales, ss, p.group},
                                         {{1.f, 0.f}, nullptr, sc, p.ys, sd}};
        if (GemmOf<G>::can_implement(args) != cutlass::Status::kSuccess) return;
        const size_t bytes = GemmOf<G>::get_workspace_size(args);
        if (bytes) CK(cudaMalloc(&workspace, bytes));
        ready = gemm.initialize(args, workspace) == cutlass::Status::kSuccess;
    }
    ~Runner() { if (workspace) cudaFree(workspace); }
    void run(cudaStream_t s) {
        if (gemm.run(s) != cutlass::Status::kSuccess) { fprintf(stderr, "CUTLASS run failed\n"); exit(1); }
    }
};

// The dequantized weight [n, k] in bf16, as the scale-only mainloop computes it: bf16(q · s).
__global__ void dequant_int8(const int8_t* q, const Mma* s, bf16* w, int n, int k) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (size_t)n * k; i += (size_t)gridDim.x * blockDim.x)
        w[i] = __float2bfloat16((float)q[i] * (float)s[i / k]);
}
// int4b_t: two a byte, element 2j in the low nibble, two's complement; scale [n, k / 64] n-major.
__global__ void dequant_int4(const uint8_t* q, const Mma* s, bf16* w, int n, int k) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (size_t)n * k; i += (size_t)gridDim.x * blockDim.x) {
        const int nib = (q[i / 2] >> (4 * (i & 1))) & 15, v = nib >= 8 ? nib - 16 : nib;
        const size_t row = i / k, g = (i % k) / 64;
        w[i] = __float2bfloat16((float)v * (float)s[row + (size_t)n * g]);
    }
}
__global__ void fill_scale(Mma* s, size_t count, uint64_t seed, float lo, float hi) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < count; i += (size_t)gridDim.x * blockDim.x)
        s[i] = Mma(lo + (hi - lo) * (mix(seed * 0x9e3779b97f4a7c15ULL + i) >> 8) * (1.0f / 16777216.0f));
}
__global__ void poison(bf16* p, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        p[i] = __float2bfloat16(NAN);
}

template <typename F> double time_us(cudaStream_t s, F body) {
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    for (int i = 0; i < 5; i++) body();
    std::vector<double> t;
    for (int r = 0; r < 5; r++) {
        CK(cudaEventRecord(e0, s));
        for (int i = 0; i < 20; i++) body();
        CK(cudaEventRecord(e1, s));
        CK(cudaEventSynchronize(e1));
        float ms;
        CK(cudaEventElapsedTime(&ms, e0, e1));
        t.push_back(ms * 1e3 / 20);
    }
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    std::sort(t.begin(), t.end());
    return t[2];
}

struct Ctx {
    cudaStream_t s;
    cublasHandle_t h;
    bf16 *xs, *ref, *ys, *w;
    int failures = 0;
};

// One tile configuration of G on problem p: "µs (rel)" or why not.
template <class G> std::string try_tile(Ctx& c, const Problem& p, double& best) {
    Runner<G> r(p);
    if (!r.ready) return "refused";
    poison<<<1024, 256, 0, c.s>>>(c.ys, (size_t)p.m * p.n);
    r.run(c.s);
    CK(cudaStreamSynchronize(c.s));
    const double e = rel_err(c.ys, c.ref, (size_t)p.m * p.n);
    if (!(e <= 1e-2)) c.failures++;
    const double us = time_us(c.s, [&] { r.run(c.s); });
    best = std::min(best, us);
    char buf[64];
    snprintf(buf, sizeof buf, "%.1f (%.1e)", us, e);
    return buf;
}

// ys = xs·wᵀ by cuBLAS on the bf16 weight w [n, k] (column-major view: ysᵀ[n, m] = w[n, k]·xsᵀ).
void gemm_bf16(Ctx& c, const bf16* w, bf16* ys, int n, int m, int k) {
    const float one = 1.f, zero = 0.f;
    CB(cublasGemmEx(c.h, CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, &one, w, CUDA_R_16BF, k, c.xs, CUDA_R_16BF, k, &zero, ys,
                    CUDA_R_16BF, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

using T128 = Shape<_128, _128, _64>;
using T128x256 = Shape<_128, _256, _64>;
using T64 = Shape<_64, _128, _64>;

void shape_row(Ctx& c, int n, int k, int m, bool int4) {
    const int group = int4 ? 64 : k;
    const size_t qbytes = int4 ? (size_t)n * k / 2 : (size_t)n * k;
    void* wq;
    Mma* scales;
    CK(cudaMalloc(&wq, qbytes));
    CK(cudaMalloc(&scales, (size_t)n * (k / group) * 2));
    fill_bytes<<<1024, 256, 0, c.s>>>((uint8_t*)wq, qbytes, 3 + n + k);
    fill_scale<<<1024, 256, 0, c.s>>>(scales, (size_t)n * (k / group), 5 + n, 0.0005f, 0.002f);
    if (int4) dequant_int4<<<1024, 256, 0, c.s>>>((const uint8_t*)wq, scales, c.w, n, k);
    else dequant_int8<<<1024, 256, 0, c.s>>>((const int8_t*)wq, scales, c.w, n, k);
    gemm_bf16(c, c.w, c.ref, n, m, k);
    const double bf16_us = time_us(c.s, [&] { gemm_bf16(c, c.w, c.ys, n, m, k); });
    Problem p{n, m, k, group, wq, scales, (const Mma*)c.xs, (Mma*)c.ys};
    double best = 1e30;
    std::string a, b, d;
    if (int4) {
        a = try_tile<Mixed<cutlass::int4b_t, T128, Coop, CoopEpi>>(c, p, best);
        b = try_tile<Mixed<cutlass::int4b_t, T128x256, Coop, CoopEpi>>(c, p, best);
        d = try_tile<Mixed<cutlass::int4b_t, T64, Ping, PingEpi>>(c, p, best);
    } else {
        a = try_tile<Mixed<int8_t, T128, Coop, CoopEpi>>(c, p, best);
        b = try_tile<Mixed<int8_t, T128x256, Coop, CoopEpi>>(c, p, best);
        d = try_tile<Mixed<int8_t, T64, Ping, PingEpi>>(c, p, best);
    }
    const double flops = 2.0 * m * (double)n * k;
    char tail[64] = "- | -";  // every tile refused
    if (best < 1e30) snprintf(tail, sizeof tail, "%.2f× | %.0f", bf16_us / best, flops / (best * 1e-6) / 1e12);
    printf("| %dx%d | %s | %d | %.1f | %s | %s | %s | %s |\n", n, k, int4 ? "int4 g64" : "int8 row", m, bf16_us,
           a.c_str(), b.c_str(), d.c_str(), tail);
    CK(cudaFree(wq));
    CK(cudaFree(scales));
}

int main() {
    setvbuf(stdout, nullptr, _IOLBF, 0);
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    Ctx c{};
    CK(cudaStreamCreateWithFlags(&c.s, cudaStreamNonBlocking));
    CB(cublasCreate(&c.h));
    CB(cublasSetStream(c.h, c.s));
    const int KMAX = 14336, NMAX = 14336, MMAX = 2048;
    CK(cudaMalloc(&c.xs, (size_t)MMAX * KMAX * 2));
    CK(cudaMalloc(&c.ref, (size_t)MMAX * NMAX * 2));
    CK(cudaMalloc(&c.ys, (size_t)MMAX * NMAX * 2));
    CK(cudaMalloc(&c.w, (size_t)NMAX * KMAX * 2));
    fill_bf16<<<1024, 256, 0, c.s>>>(c.xs, (size_t)MMAX * KMAX, 7, -1.f, 1.f);
    printf("# %s, %d SMs; CUTLASS %d.%d.%d mixed-input (sm90, TMA warp-specialized, register-sourced A)\n\n",
           prop.name, prop.multiProcessorCount, CUTLASS_MAJOR, CUTLASS_MINOR, CUTLASS_PATCH);
    printf("| weight n×k | format | rows | cuBLAS bf16 µs | coop 128×128 µs (rel) | coop 128×256 | pingpong 64×128 | bf16 / best | best TFLOP/s |\n");
    printf("| --- | --- | ---: | ---: | --- | --- | --- | ---: | ---: |\n");
    // (out, in): the 3B's q/o, k/v, gate/up and down; the 8B's gate/up and down
    const int shapes[][2] = {{3072, 3072}, {1024, 3072}, {8192, 3072}, {3072, 8192}, {14336, 4096}, {4096, 14336}};
    for (int m : {512, 128, 2048})
        for (auto& s : shapes)
            for (bool int4 : {false, true}) shape_row(c, s[0], s[1], m, int4);
    CK(cudaDeviceSynchronize());
    printf("\n%d tile run(s) outside 1e-2 of cuBLAS on the dequantized weight\n", c.failures);
    return c.failures ? 1 : 0;
}
