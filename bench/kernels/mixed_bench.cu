// Would a Hopper (wgmma) mixed-input GEMM close the int8/NF4 prefill gap? The question session 13's
// measurements left (BENCHMARKS.md, issue 11): minilab's own mma.sync GEMM (qgemm.cuh) runs at 0.25–0.58×
// the shipped dequantize + cuBLAS, and the target is 0.9× cuBLAS on bf16 weights. Before building a
// wgmma kernel, this times CUTLASS 4.2's sm90 mixed-input GEMM (the register-sourced, warp-specialized
// mainloop: the narrow operand is loaded by TMA, converted in registers and fed to wgmma) on the 3B's
// and 8B's linear shapes against cuBLAS on the bf16 weight, in the layout minilab stores:
// - int8 × bf16, one scale a weight row (CUTLASS "scale only", group = k): the scale in bf16; in f32
//   (minilab's weight bf16(q · s) bit for bit, on signed codes); and in f32 on minilab's stored codes
//   q + 128 (uint8), read back as q by int8_convert.cuh's converter (the `cutlass` feature's int8
//   GEMM: the GPU copy the decode GEMVs read, no zero point);
// - int4 × bf16, one bf16 scale a 64-block of a row (group 64): the shape and traffic of minilab's NF4
//   with CUTLASS's own (cheapest) 4-bit conversion;
// - NF4 itself through nf4_convert.cuh's codebook lookups (CUTLASS has no NF4): with a bf16 absmax
//   (the codebook rounded to bf16, within a bf16 ulp of minilab's weight) and with an f32 absmax
//   (minilab's weight bit for bit, at about twice the conversion instructions).
// The weight [n, k] row-major is CUTLASS's A (K-major), xs [m, k] its B (K-major, column-major k × m),
// ys [m, n] its D (column-major n × m): no copies. Each tile configuration is checked against cuBLAS on
// the dequantized weight (max |Δ| / max |ref| ≤ 1e-2, output poisoned with NaN first), then timed
// (median of 5 rounds of 20 after warm-up), beside cuBLAS bf16. The CUTLASS headers come from the
// `nvidia-cutlass` wheel on PyPI (bench/kernels/fetch-cutlass.sh); built by bench/kernels/build.sh
// (`mixed`), run there by `bash bench/gpu-issue11.sh mixed`. `--shuffled` times the crate's two formats
// and int4 with the weight reordered offline (mixed.cuh's ATOMS: a thread's values contiguous, for wider
// smem → register loads) beside row-major, on the three data-parallel tiles.
#include <cublas_v2.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "cutlass/version.h"
#include "cutlass/gemm/device/gemm_universal_adapter.h"
#include "cutlass/util/packed_stride.hpp"
// mixed.cuh's reordered weight layouts (ATOMS > 0), and cutlass/util/mixed_dtype_utils.hpp (reorder_tensor)
#define MINILAB_MIXED_REORDER
#include "../../src/kernels/cuda/cutlass/int8_convert.cuh"  // in this file a uint8_t weight is q + 128
#include "../../src/kernels/cuda/cutlass/mixed.cuh"
#include "../../src/kernels/cuda/cutlass/nf4_convert.cuh"
#include "../../src/kernels/cuda/gemv_accumulate.cuh"  // gemv::NF4_CODES, the codebook minilab decodes with

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
    const void* scales;  // [n, k / group] of the config's Scale, n contiguous (CUTLASS's scale layout)
    const Mma* xs;
    Mma* ys;
};

// SPLITS > 1 (stream-K scheduler only): a split-K of that many k slices a tile instead of stream-K.
template <class G, int SPLITS = 1> struct Runner {
    GemmOf<G> gemm;
    typename GemmOf<G>::Arguments args;
    void* workspace = nullptr;
    bool ready = false;

    explicit Runner(const Problem& p) {
        using K = typename G::Kernel;
        auto sa = G::a_layout(p.n, p.k);  // a stride, or a reordered weight's layout
        auto sb = cutlass::make_cute_packed_stride(cutlass::detail::TagToStrideB_t<typename G::LayoutB>{},
                                                   make_shape(p.m, p.k, 1));
        auto sd = cutlass::make_cute_packed_stride(typename K::StrideD{}, make_shape(p.n, p.m, 1));
        auto sc = cutlass::make_cute_packed_stride(typename K::StrideC{}, make_shape(p.n, p.m, 1));
        auto ss = cutlass::make_cute_packed_stride(typename G::Mainloop::StrideScale{},
                                                   make_shape(p.n, p.k / p.group, 1));
        using ElementA = typename G::Mainloop::ElementA;
        using S = typename G::Scale;
        args = typename GemmOf<G>::Arguments{cutlass::gemm::GemmUniversalMode::kGemm,
                                         {p.n, p.m, p.k, 1},
                                         {static_cast<const ElementA*>(p.wq), sa, p.xs, sb, static_cast<const S*>(p.scales), ss,
                                          p.group},
                                         {{1.f, 0.f}, nullptr, sc, p.ys, sd}};
        if constexpr (SPLITS > 1) args.scheduler.splits = SPLITS;
        if (GemmOf<G>::can_implement(args) != cutlass::Status::kSuccess) return;
        const size_t bytes = GemmOf<G>::get_workspace_size(args);
        if (bytes) CK(cudaMalloc(&workspace, bytes));
        ready = gemm.initialize(args, workspace) == cutlass::Status::kSuccess;
    }
    ~Runner() { if (workspace) cudaFree(workspace); }
    // A GEMM with a workspace (stream-K's partial sums and flags) clears it before each run, as
    // minilab would have to: initialize() zeroes the flags on the stream.
    void run(cudaStream_t s) {
        if (workspace && gemm.initialize(args, workspace, s) != cutlass::Status::kSuccess) {
            fprintf(stderr, "CUTLASS initialize failed\n");
            exit(1);
        }
        if (gemm.run(s) != cutlass::Status::kSuccess) { fprintf(stderr, "CUTLASS run failed\n"); exit(1); }
    }
};

// The dequantized weight [n, k] in bf16, as the scale-only mainloop computes it: bf16(q · s).
// Q = uint8_t: minilab's stored int8 code, q + 128 (the biased converter's input).
template <typename Q, typename S> __global__ void dequant_int8(const Q* q, const S* s, bf16* w, int n, int k) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (size_t)n * k; i += (size_t)gridDim.x * blockDim.x)
        w[i] = __float2bfloat16((float)((int)q[i] - (std::is_same<Q, uint8_t>::value ? 128 : 0)) * (float)s[i / k]);
}
// int4b_t: two a byte, element 2j in the low nibble, two's complement; scale [n, k / 64] n-major.
__global__ void dequant_int4(const uint8_t* q, const Mma* s, bf16* w, int n, int k) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (size_t)n * k; i += (size_t)gridDim.x * blockDim.x) {
        const int nib = (q[i / 2] >> (4 * (i & 1))) & 15, v = nib >= 8 ? nib - 16 : nib;
        const size_t row = i / k, g = (i % k) / 64;
        w[i] = __float2bfloat16((float)v * (float)s[row + (size_t)n * g]);
    }
}
template <typename S> __global__ void fill_scale(S* s, size_t count, uint64_t seed, float lo, float hi) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < count; i += (size_t)gridDim.x * blockDim.x)
        s[i] = S(lo + (hi - lo) * (mix(seed * 0x9e3779b97f4a7c15ULL + i) >> 8) * (1.0f / 16777216.0f));
}
// NF4 codes in minilab's order (element 2j in the high nibble of byte j), scale [n, k / 64] n-major.
// EXACT: bf16(code · s) with s in f32 (minilab's weight); else bf16(bf16(code) · s), s in bf16.
template <bool EXACT, typename S> __global__ void dequant_nf4(const uint8_t* q, const S* s, bf16* w, int n, int k) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (size_t)n * k; i += (size_t)gridDim.x * blockDim.x) {
        const int nib = (q[i / 2] >> (4 * (1 - (i & 1)))) & 15;
        const float sc = (float)s[i / k + (size_t)n * ((i % k) / 64)];
        const float code = gemv::NF4_CODES[nib];
        w[i] = __float2bfloat16((EXACT ? code : __bfloat162float(__float2bfloat16(code))) * sc);
    }
}
// nf4_convert.cuh's converters, as the mainloop calls them (8 codes a 32-bit word), against
// gemv::NF4_CODES for every byte pair: the count of wrong values.
__global__ void check_nf4_convert(int* wrong) {
    const uint32_t v = blockIdx.x * blockDim.x + threadIdx.x;  // 65536 words' low halves
    cutlass::Array<cutlass::uint4b_t, 8> src;
    uint32_t word = v | (v << 16);
    memcpy(&src, &word, 4);
    const auto b = cutlass::NumericArrayConverter<Mma, cutlass::uint4b_t, 8>::convert(src);
    const auto f = cutlass::NumericArrayConverter<float, cutlass::uint4b_t, 8>::convert(src);
    for (int e = 0; e < 8; e++) {
        const float want = gemv::NF4_CODES[(word >> (4 * (e ^ 1))) & 15];  // minilab's order: a byte's high nibble first
        if (__float_as_uint(f[e]) != __float_as_uint(want) || (float)b[e] != __bfloat162float(__float2bfloat16(want)))
            atomicAdd(wrong, 1);
    }
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

// One tile configuration of G on problem p, checked against c.ref (a failure counted) and timed:
// false where CUTLASS refuses the problem.
template <class G, int SPLITS = 1> bool measure(Ctx& c, const Problem& p, double& us, double& e) {
    Runner<G, SPLITS> r(p);
    if (!r.ready) return false;
    poison<<<1024, 256, 0, c.s>>>(c.ys, (size_t)p.m * p.n);
    r.run(c.s);
    CK(cudaStreamSynchronize(c.s));
    e = rel_err(c.ys, c.ref, (size_t)p.m * p.n);
    if (!(e <= 1e-2)) c.failures++;
    us = time_us(c.s, [&] { r.run(c.s); });
    return true;
}

// One tile configuration of G on problem p: "µs (rel)" or why not.
template <class G, int SPLITS = 1> std::string try_tile(Ctx& c, const Problem& p, double& best) {
    double us, e;
    if (!measure<G, SPLITS>(c, p, us, e)) return "refused";
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

// The weight formats timed: minilab's int8 (row scale) with the scale rounded to bf16, in f32 (the
// shipped weight bit for bit, signed codes), and in f32 on minilab's stored codes q + 128 read back as
// q by int8_convert.cuh (bit for bit again, on the copy the decode GEMVs read); int4 with a 64-group scale (NF4's
// traffic with CUTLASS's own conversion); NF4 through nf4_convert.cuh with a bf16 absmax (codebook
// rounded to bf16) or an f32 one (minilab's weight bit for bit).
enum Fmt { INT8, INT8_F32, INT8_BIASED, INT4, NF4_BF16, NF4_F32 };
static const char* FMT_NAME[] = {"int8 row", "int8 f32 scale", "int8 q+128 (biased cvt), f32 scale", "int4 g64",
                                 "nf4 bf16 table", "nf4 f32 (exact)"};
// Formats whose scales are f32.
static bool f32_scales(Fmt f) { return f == INT8_F32 || f == INT8_BIASED || f == NF4_F32; }

// The weight's reference dequantization into c.w.
void dequant(Ctx& c, Fmt f, const void* wq, const void* scales, int n, int k) {
    const auto q = (const uint8_t*)wq;
    if (f == INT8) dequant_int8<<<1024, 256, 0, c.s>>>((const int8_t*)wq, (const Mma*)scales, c.w, n, k);
    if (f == INT8_F32) dequant_int8<<<1024, 256, 0, c.s>>>((const int8_t*)wq, (const float*)scales, c.w, n, k);
    if (f == INT8_BIASED) dequant_int8<<<1024, 256, 0, c.s>>>(q, (const float*)scales, c.w, n, k);
    if (f == INT4) dequant_int4<<<1024, 256, 0, c.s>>>(q, (const Mma*)scales, c.w, n, k);
    if (f == NF4_BF16) dequant_nf4<false><<<1024, 256, 0, c.s>>>(q, (const Mma*)scales, c.w, n, k);
    if (f == NF4_F32) dequant_nf4<true><<<1024, 256, 0, c.s>>>(q, (const float*)scales, c.w, n, k);
}

// The tiles of config family Q/S, each "µs (rel)" or why not: the three data-parallel ones, then the
// cooperative 128 × 128 with CUTLASS's stream-K scheduler (its heuristic picks data-parallel, split-K
// or stream-K by the tile count; the pingpong kernel takes no stream-K), then the same forced to a
// split-K of two (each tile's k loop in two halves on two SMs, summed through the workspace).
constexpr int TILES = 5;
template <typename Q, typename S = Mma>
void tiles(Ctx& c, const Problem& p, double& best, std::string* out) {
    out[0] = try_tile<Mixed<Q, T128, Coop, CoopEpi, S>>(c, p, best);
    out[1] = try_tile<Mixed<Q, T128x256, Coop, CoopEpi, S>>(c, p, best);
    out[2] = try_tile<Mixed<Q, T64, Ping, PingEpi, S>>(c, p, best);
    using StreamK = Mixed<Q, T128, Coop, CoopEpi, S, cutlass::gemm::StreamKScheduler>;
    out[3] = try_tile<StreamK>(c, p, best);
    out[4] = try_tile<StreamK, 2>(c, p, best);
}

// A weight of format f [n, k] and its scales, filled on the device (free with release), the reference
// ys in c.ref; the product's problem, and cuBLAS's µs on the bf16 weight.
Problem prepare(Ctx& c, int n, int k, int m, Fmt f, double& bf16_us) {
    const bool four = f == INT4 || f == NF4_BF16 || f == NF4_F32;
    const int group = four ? 64 : k;
    const size_t qbytes = four ? (size_t)n * k / 2 : (size_t)n * k, count = (size_t)n * (k / group);
    void *wq, *scales;
    CK(cudaMalloc(&wq, qbytes));
    CK(cudaMalloc(&scales, count * 4));
    fill_bytes<<<1024, 256, 0, c.s>>>((uint8_t*)wq, qbytes, 3 + n + k);
    // int codes reach ±127 or ±8, NF4 codes ±1: scales that give weights of a like size
    const float lo = f >= NF4_BF16 ? 0.01f : 0.0005f, hi = f >= NF4_BF16 ? 0.08f : 0.002f;
    if (f32_scales(f)) fill_scale<float><<<1024, 256, 0, c.s>>>((float*)scales, count, 5 + n, lo, hi);
    else fill_scale<Mma><<<1024, 256, 0, c.s>>>((Mma*)scales, count, 5 + n, lo, hi);
    dequant(c, f, wq, scales, n, k);
    gemm_bf16(c, c.w, c.ref, n, m, k);
    bf16_us = time_us(c.s, [&] { gemm_bf16(c, c.w, c.ys, n, m, k); });
    return Problem{n, m, k, group, wq, scales, (const Mma*)c.xs, (Mma*)c.ys};
}
void release(const Problem& p) {
    CK(cudaFree(const_cast<void*>(p.wq)));
    CK(cudaFree(const_cast<void*>(p.scales)));
}

void shape_row(Ctx& c, int n, int k, int m, Fmt f) {
    double bf16_us;
    const Problem p = prepare(c, n, k, m, f, bf16_us);
    double best = 1e30;
    std::string t[TILES];
    if (f == INT8) tiles<int8_t>(c, p, best, t);
    if (f == INT8_F32) tiles<int8_t, float>(c, p, best, t);
    if (f == INT8_BIASED) tiles<uint8_t, float>(c, p, best, t);
    if (f == INT4) tiles<cutlass::int4b_t>(c, p, best, t);
    if (f == NF4_BF16) tiles<cutlass::uint4b_t>(c, p, best, t);
    if (f == NF4_F32) tiles<cutlass::uint4b_t, float>(c, p, best, t);
    const double flops = 2.0 * m * (double)n * k;
    char tail[64] = "- | -";  // every tile refused
    if (best < 1e30) snprintf(tail, sizeof tail, "%.2f× | %.0f", bf16_us / best, flops / (best * 1e-6) / 1e12);
    printf("| %dx%d | %s | %d | %.1f | %s | %s | %s | %s | %s | %s |\n", n, k, FMT_NAME[f], m, bf16_us, t[0].c_str(),
           t[1].c_str(), t[2].c_str(), t[3].c_str(), t[4].c_str(), tail);
    release(p);
}

// --shuffled: G (ATOMS > 0: its weight reordered) on a copy of p's row-major weight reordered into
// G::a_layout on the device, as measure; ATOMS = 0, p's weight as it is. Q the element reorder_tensor
// moves (for 4-bit codes CUTLASS's subbyte type: a byte's two codes move together, so NF4's nibble
// order within a byte survives).
template <class G, typename Q, int ATOMS> bool measure_layout(Ctx& c, const Problem& p, double& us, double& e) {
    if constexpr (ATOMS == 0) {
        return measure<G>(c, p, us, e);
    } else {
        void* copy;
        CK(cudaMalloc(&copy, (size_t)p.n * p.k * cutlass::sizeof_bits<Q>::value / 8));
        CK(cudaStreamSynchronize(c.s));  // the weight's fill; reorder_tensor runs on the default stream
        const auto row_major = make_layout(make_shape(p.n, p.k, 1), WeightLayout<0>::of(p.n, p.k));
        cutlass::reorder_tensor(static_cast<const Q*>(p.wq), row_major, static_cast<Q*>(copy), G::a_layout(p.n, p.k));
        Problem q = p;
        q.wq = copy;
        const bool ok = measure<G>(c, q, us, e);
        CK(cudaFree(copy));
        return ok;
    }
}

// The three data-parallel tiles with the weight in layout ATOMS: the fastest, "µs tile (rel)", or why not.
template <typename Q, typename S, int ATOMS> std::string best_tile(Ctx& c, const Problem& p, double& best) {
    static const char* NAME[] = {"coop 128×128", "coop 128×256", "pingpong 64×128"};
    double us[3], e[3];
    bool ok[3];
    ok[0] = measure_layout<Mixed<Q, T128, Coop, CoopEpi, S, void, ATOMS>, Q, ATOMS>(c, p, us[0], e[0]);
    ok[1] = measure_layout<Mixed<Q, T128x256, Coop, CoopEpi, S, void, ATOMS>, Q, ATOMS>(c, p, us[1], e[1]);
    ok[2] = measure_layout<Mixed<Q, T64, Ping, PingEpi, S, void, ATOMS>, Q, ATOMS>(c, p, us[2], e[2]);
    int b = -1;
    for (int i = 0; i < 3; i++)
        if (ok[i] && (b < 0 || us[i] < us[b])) b = i;
    if (b < 0) return "refused";
    best = std::min(best, us[b]);
    char buf[80];
    snprintf(buf, sizeof buf, "%.1f %s (%.1e)", us[b], NAME[b], e[b]);
    return buf;
}

// Row-major, then reordered with 1, 2 (and for 4-bit codes 4) atoms: a thread's 8 values of a wgmma
// k step are 8 bytes of int8 or 4 of a 4-bit code, so 2 atoms make int8's loads 16 bytes, 4 the 4-bit ones.
template <typename Q, typename S> void layouts(Ctx& c, const Problem& p, double& plain, double& shuffled, std::string* out) {
    out[0] = best_tile<Q, S, 0>(c, p, plain);
    out[1] = best_tile<Q, S, 1>(c, p, shuffled);
    out[2] = best_tile<Q, S, 2>(c, p, shuffled);
    if constexpr (cutlass::sizeof_bits<Q>::value == 4) out[3] = best_tile<Q, S, 4>(c, p, shuffled);
    else out[3] = "-";
}

void shuffled_row(Ctx& c, int n, int k, int m, Fmt f) {
    double bf16_us;
    const Problem p = prepare(c, n, k, m, f, bf16_us);
    double plain = 1e30, shuffled = 1e30;
    std::string t[4];
    if (f == INT8_BIASED) layouts<uint8_t, float>(c, p, plain, shuffled, t);
    if (f == INT4) layouts<cutlass::int4b_t, Mma>(c, p, plain, shuffled, t);
    if (f == NF4_F32) layouts<cutlass::uint4b_t, float>(c, p, plain, shuffled, t);
    char a[16] = "-", b[16] = "-";  // "-": every tile refused
    if (plain < 1e30) snprintf(a, sizeof a, "%.2f×", bf16_us / plain);
    if (shuffled < 1e30) snprintf(b, sizeof b, "%.2f×", bf16_us / shuffled);
    printf("| %dx%d | %s | %d | %.1f | %s | %s | %s | %s | %s | %s |\n", n, k, FMT_NAME[f], m, bf16_us, t[0].c_str(),
           t[1].c_str(), t[2].c_str(), t[3].c_str(), a, b);
    release(p);
}

int main(int argc, char** argv) {
    setvbuf(stdout, nullptr, _IOLBF, 0);
    // --fused: the crate's two formats on the products a layer could make one GEMM of (q/k/v stacked,
    // gate/up stacked) beside their parts: do the short-n products lose their tiles' worth once fused?
    const bool fused = argc > 1 && std::string(argv[1]) == "--fused";
    // --shuffled: the weight reordered offline (mixed.cuh's ATOMS) against row-major, per format.
    const bool shuffled = argc > 1 && std::string(argv[1]) == "--shuffled";
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    Ctx c{};
    CK(cudaStreamCreateWithFlags(&c.s, cudaStreamNonBlocking));
    CB(cublasCreate(&c.h));
    CB(cublasSetStream(c.h, c.s));
    // the largest n·k is the 8B's down (14336 × 14336 bounds it), the largest n its stacked gate/up
    const int KMAX = 14336, NMAX = 28672, MMAX = 2048;
    CK(cudaMalloc(&c.xs, (size_t)MMAX * KMAX * 2));
    CK(cudaMalloc(&c.ref, (size_t)MMAX * NMAX * 2));
    CK(cudaMalloc(&c.ys, (size_t)MMAX * NMAX * 2));
    CK(cudaMalloc(&c.w, (size_t)KMAX * KMAX * 2));
    fill_bf16<<<1024, 256, 0, c.s>>>(c.xs, (size_t)MMAX * KMAX, 7, -1.f, 1.f);
    int* wrong;
    CK(cudaMalloc(&wrong, sizeof(int)));
    CK(cudaMemset(wrong, 0, sizeof(int)));
    check_nf4_convert<<<256, 256>>>(wrong);
    int nf4_wrong = 0;
    CK(cudaMemcpy(&nf4_wrong, wrong, sizeof(int), cudaMemcpyDeviceToHost));
    printf("NF4 converters on the GPU: %d of %d values wrong%s\n\n", nf4_wrong, 65536 * 16, nf4_wrong ? " (FAIL)" : "");
    c.failures += nf4_wrong != 0;
    printf("# %s, %d SMs; CUTLASS %d.%d.%d mixed-input (sm90, TMA warp-specialized, register-sourced A)\n\n",
           prop.name, prop.multiProcessorCount, CUTLASS_MAJOR, CUTLASS_MINOR, CUTLASS_PATCH);
    // (out, in): the 3B's q/o, k/v, gate/up and down; the 8B's gate/up and down
    const int shapes[][2] = {{3072, 3072}, {1024, 3072}, {8192, 3072}, {3072, 8192}, {14336, 4096}, {4096, 14336}};
    if (shuffled) {
        // each cell: the best of coop 128×128, coop 128×256 and pingpong 64×128 (no stream-K / split-K)
        printf("| weight n×k | format | rows | cuBLAS bf16 µs | row-major: best µs, tile (rel) | reordered, 1 atom | 2 atoms "
               "| 4 atoms | bf16 / best row-major | bf16 / best reordered |\n");
        printf("| --- | --- | ---: | ---: | --- | --- | --- | --- | ---: | ---: |\n");
        for (int m : {512, 128, 2048})
            for (auto& s : shapes)
                for (Fmt f : {INT8_BIASED, NF4_F32, INT4}) shuffled_row(c, s[0], s[1], m, f);
        printf("\n%d tile run(s) outside 1e-2 of cuBLAS on the dequantized weight\n", c.failures);
        return c.failures ? 1 : 0;
    }
    printf("| weight n×k | format | rows | cuBLAS bf16 µs | coop 128×128 µs (rel) | coop 128×256 | pingpong 64×128 | coop 128×128 stream-K | split-K 2 | bf16 / best | best TFLOP/s |\n");
    printf("| --- | --- | ---: | ---: | --- | --- | --- | --- | --- | ---: | ---: |\n");
    if (fused) {
        // (out, in): the 3B's q, k/v, q/k/v stacked, gate/up, both stacked; the same for the 8B
        const int parts[][2] = {{3072, 3072}, {1024, 3072}, {5120, 3072}, {8192, 3072}, {16384, 3072},
                                {4096, 4096}, {1024, 4096}, {6144, 4096}, {14336, 4096}, {28672, 4096}};
        for (int m : {512, 128, 2048})
            for (auto& s : parts)
                for (Fmt f : {INT8_BIASED, NF4_F32}) shape_row(c, s[0], s[1], m, f);
        printf("\n%d tile run(s) outside 1e-2 of cuBLAS on the dequantized weight\n", c.failures);
        return c.failures ? 1 : 0;
    }
    for (int m : {512, 128, 2048})
        for (auto& s : shapes)
            for (Fmt f : {INT8, INT8_F32, INT8_BIASED, INT4, NF4_BF16, NF4_F32}) shape_row(c, s[0], s[1], m, f);
    CK(cudaDeviceSynchronize());
    printf("\n%d tile run(s) outside 1e-2 of cuBLAS on the dequantized weight\n", c.failures);
    return c.failures ? 1 : 0;
}
