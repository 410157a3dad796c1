// Prefill of int8 and NF4 weights: where the gap to bf16 comes from and which way closes it.
// Built here by bench/kernels/build.sh, run there by `bash bench/gpu-issue11.sh prefill-ways`.
//
// minilab's prefill dequantizes each quantized weight to bf16 in one pass (linear.cu's dequant_*),
// then multiplies with cuBLAS. At pp512 on the 3B that pass moves 8.5 GB (int8) a prompt, about the
// gap to f16. The linears of a whole prompt (every linear of the model once, distinct weights, m = 512
// rows of xs) are timed in these ways, alternating 3 times, median of 5 timed runs each:
// - bf16: cuBLAS on bf16 weights (the f16 path: the target is 0.9× its time);
// - dequant+gemm: the shipped way, each weight into one buffer, then cuBLAS;
// - chunked C MB: row chunks of at most C MB dequantized into one reused buffer and multiplied at
//   once (ldc = n), so that the GEMM may read the chunk from L2 and the buffer's lines stay there;
// - two streams: the next weight dequantized on a second stream into the other of two buffers while
//   cuBLAS multiplies this one (events order them);
// - qgemm: qgemm.cuh's GEMM, the weight dequantized tile by tile in shared memory (the block rows
//   src/kernels/qgemm.rs picks with the shipped steps of 32 along k, then rows × step 64/128 × 32/64).
// - `--overlap` (overlap.cuh): the pass of every weight as one persistent kernel on S SMs while
//   cuBLAS multiplies on the others, S = 16–32, beside the shipped way; and the bf16
//   GEMMs alone on all but S SMs (what the held-back SMs cost the GEMMs), and the pass alone on S SMs
//   in three shapes (threads × groups in flight a thread); each overlap way's timeline (the GPU's
//   global timer at each weight's start and end in the pass and in its GEMM): how long the pass and
//   the GEMMs worked, and how long they worked at once; and the same overlap without spinning (the
//   pass a launch a weight on S blocks, two streams ordered by events).
// Correct first: each way's output of the last linear against the shipped way's, max |diff| / max |ref|
// (cuBLAS may pick other algorithms for other shapes: limit 1e-2), and no NaN (outputs poisoned first).
// Then the dequantize kernel alone (GB/s against the copy bandwidth) and the bf16 GEMM peak (8192³).
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "../../src/kernels/cuda/linear.cu"

#include "harness.cuh"

#define CB(x)                                                                        \
    do {                                                                             \
        cublasStatus_t s_ = (x);                                                     \
        if (s_ != CUBLAS_STATUS_SUCCESS) {                                           \
            fprintf(stderr, "%s:%d: %s: cuBLAS status %d\n", __FILE__, __LINE__, #x, \
                    (int)s_);                                                        \
            exit(1);                                                                 \
        }                                                                            \
    } while (0)

static const char* FMT[] = {"bf16", "int8", "nf4"};
constexpr int M = 512;
// the largest weight's elements (8B gate, up and down): each dequantize buffer's capacity
constexpr size_t NMAX_ELEMS = (size_t)14336 * 4096;

// One [n, k] weight: bf16 values (fmt 0), int8 codes and row scales (1), NF4 bytes and absmax (2).
struct Weight {
    int fmt, n, k;
    uint8_t* a;
    float* b;
    size_t a_bytes() const { return fmt == 0 ? (size_t)n * k * 2 : fmt == 1 ? (size_t)n * k : (size_t)n * k / 2; }
    size_t b_count() const { return fmt == 0 ? 0 : fmt == 1 ? n : (size_t)n * k / 64; }
};

Weight make_weight(int fmt, int n, int k, uint64_t seed) {
    Weight w{fmt, n, k, nullptr, nullptr};
    CK(cudaMalloc(&w.a, w.a_bytes()));
    CK(cudaMalloc(&w.b, std::max<size_t>(w.b_count(), 1) * 4));
    if (fmt == 0) fill_bf16<<<1024, 256>>>((bf16*)w.a, w.a_bytes() / 2, seed, -0.05f, 0.05f);
    else fill_bytes<<<1024, 256>>>(w.a, w.a_bytes(), seed);
    if (w.b_count()) fill_f32<<<1024, 256>>>(w.b, w.b_count(), seed + 1, 0.001f, 0.004f);
    CK(cudaGetLastError());
    return w;
}

struct Model { const char* name; int hidden, kv, ffn, blocks; };
static const Model MODELS[] = {{"3B", 3072, 1024, 8192, 28}, {"8B", 4096, 1024, 14336, 32}};

std::vector<Weight> prompt_weights(const Model& md, int f) {
    std::vector<Weight> ws;
    for (int b = 0; b < md.blocks; b++) {
        const int dims[7][2] = {{md.hidden, md.hidden}, {md.kv, md.hidden}, {md.kv, md.hidden}, {md.hidden, md.hidden},
                                {md.ffn, md.hidden}, {md.ffn, md.hidden}, {md.hidden, md.ffn}};
        for (auto& d : dims) ws.push_back(make_weight(f, d[0], d[1], 100 + ws.size()));
    }
    CK(cudaDeviceSynchronize());
    return ws;
}

// Rows [r0, r0 + rows) of w dequantized into out [rows, k] (linear.cu's kernels, mod.rs's grid).
void dequant(cudaStream_t s, const Weight& w, int r0, int rows, bf16* out) {
    const size_t len = (size_t)rows * w.k, threads = len / 8;
    const unsigned grid = (unsigned)((threads + 255) / 256);
    if (w.fmt == 1) dequant_int8_bf16<<<grid, 256, 0, s>>>(w.a + (size_t)r0 * w.k, w.b + r0, out, rows, w.k);
    else dequant_nf4_bf16<<<grid, 256, 0, s>>>(w.a + (size_t)r0 * w.k / 2, w.b + (size_t)r0 * w.k / 64, out, len);
}

// ys[:, n0 : n0 + rows] = xs[M, k]·W[rows, k]ᵀ, ys row-major [M, n] (column-major [n, M], ld n).
void gemm(cublasHandle_t h, const bf16* w, int rows, int k, const bf16* xs, bf16* ys, int n, int n0) {
    const float one = 1.f, zero = 0.f;
    CB(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, rows, M, k, &one, w, CUDA_R_16BF, k, xs, CUDA_R_16BF, k, &zero,
                    ys + n0, CUDA_R_16BF, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

struct Overlap;

struct Ctx {
    int sms;
    cudaStream_t s, s2;
    cublasHandle_t h;
    bf16 *xs, *ys, *buf[2];
    cudaEvent_t deq[2], used[2];
    Overlap* ov;                       // the `--overlap` ways' flags
    const std::vector<Weight>* dense;  // the bf16 weights of the model being timed
    bool stamp;                        // the overlap ways' GEMM stamps (checked runs only)
};

#include "overlap.cuh"

// qgemm.cuh's GEMM in steps of 64 along k, beside linear.cu's steps of 32 (bf16 only).
#define QGEMM64(F, FNAME, BM)                                                                              \
    extern "C" __global__ void __launch_bounds__(qgemm::THREADS, 2)                                        \
        qgemm_##FNAME##_bf16_bm##BM##_bk64(const bf16* xs, const uint8_t* wq, const float* wb, bf16* ys, int m, \
                                           int n, int k) {                                                 \
        qgemm::qgemm<bf16, F, BM, 64>(xs, wq, wb, ys, m, n, k);                                            \
    }
QGEMM64(qgemm::INT8, int8, 64)
QGEMM64(qgemm::INT8, int8, 128)
QGEMM64(qgemm::NF4, nf4, 64)
QGEMM64(qgemm::NF4, nf4, 128)

using QgemmFn = void (*)(const bf16*, const uint8_t*, const float*, bf16*, int, int, int);

// ys[M, n] = xs·Wᵀ by qgemm.cuh's GEMM, bm rows of xs a block (0: the rule of src/kernels/qgemm.rs's
// tile_rows), steps of bk along k.
void qgemm_launch(cudaStream_t s, const Weight& w, const bf16* xs, bf16* ys, int bm, int bk, int sms) {
    if (bm == 0) bm = ((M + 127) / 128) * (w.n / 128) >= 2 * sms ? 128 : 64;
    const int i8 = w.fmt == 1, big = bm == 128, deep = bk == 64;
    // [int8][bm128][bk64]
    const QgemmFn kernels[2][2][2] = {
        {{qgemm_nf4_bf16_bm64, qgemm_nf4_bf16_bm64_bk64}, {qgemm_nf4_bf16_bm128, qgemm_nf4_bf16_bm128_bk64}},
        {{qgemm_int8_bf16_bm64, qgemm_int8_bf16_bm64_bk64}, {qgemm_int8_bf16_bm128, qgemm_int8_bf16_bm128_bk64}}};
    const int smem[2][2][2] = {
        {{qgemm::smem_bytes<qgemm::NF4, 64, 32>(), qgemm::smem_bytes<qgemm::NF4, 64, 64>()},
         {qgemm::smem_bytes<qgemm::NF4, 128, 32>(), qgemm::smem_bytes<qgemm::NF4, 128, 64>()}},
        {{qgemm::smem_bytes<qgemm::INT8, 64, 32>(), qgemm::smem_bytes<qgemm::INT8, 64, 64>()},
         {qgemm::smem_bytes<qgemm::INT8, 128, 32>(), qgemm::smem_bytes<qgemm::INT8, 128, 64>()}}};
    const QgemmFn kernel = kernels[i8][big][deep];
    CK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem[i8][big][deep]));
    const dim3 grid((M + bm - 1) / bm, w.n / qgemm::BN);
    kernel<<<grid, qgemm::THREADS, smem[i8][big][deep], s>>>(xs, w.a, w.b, ys, M, w.n, w.k);
}

// The prompt's linears in one way: 0 bf16 (fmt 0 weights), 1 dequant+gemm, 2 chunked (cap bytes),
// 3 two streams, 4 qgemm (cap = block rows + 256 · k step; block rows 0: the shipped rule), 5 the
// pass on cap SMs beside cuBLAS on the rest, 6 the bf16 GEMMs alone on all but cap SMs, 7 the pass
// alone, 8 the pass a launch a weight on cap blocks beside cuBLAS on the rest (cap: SMs + 256 · shape).
void run_way(Ctx& c, const std::vector<Weight>& ws, int way, size_t cap) {
    const int held = (int)(cap & 255), shape = (int)(cap >> 8);
    if (way == 5) return run_overlap(c, ws, *c.ov, held, shape);
    if (way == 6) return run_held_back(c, *c.dense, (int)cap);
    if (way == 7) return run_pass_alone(c, ws, *c.ov, held, shape);
    if (way == 8) return run_launches(c, ws, *c.ov, held, shape);
    if (way == 3) return run_two_streams(c, ws, [&](size_t i) { dequant(c.s2, ws[i], 0, ws[i].n, c.buf[i % 2]); }, nullptr);
    for (size_t i = 0; i < ws.size(); i++) {
        const Weight& w = ws[i];
        if (way == 0) {
            gemm(c.h, (const bf16*)w.a, w.n, w.k, c.xs, c.ys, w.n, 0);
        } else if (way == 1) {
            dequant(c.s, w, 0, w.n, c.buf[0]);
            gemm(c.h, c.buf[0], w.n, w.k, c.xs, c.ys, w.n, 0);
        } else if (way == 4) {
            qgemm_launch(c.s, w, c.xs, c.ys, (int)(cap & 255), (int)(cap >> 8), c.sms);
        } else if (way == 2) {
            const int step = std::max(64, (int)(cap / (2 * (size_t)w.k)) / 64 * 64);
            for (int r0 = 0; r0 < w.n; r0 += step) {
                const int rows = std::min(step, w.n - r0);
                dequant(c.s, w, r0, rows, c.buf[0]);
                gemm(c.h, c.buf[0], rows, w.k, c.xs, c.ys, w.n, r0);
            }
        }
    }
}

template <typename F> double time_ms(cudaStream_t s, F body, int reps = 7) {
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0); cudaEventCreate(&e1);
    std::vector<double> t;
    for (int r = 0; r < reps; r++) {
        CK(cudaEventRecord(e0, s));
        body();
        CK(cudaEventRecord(e1, s));
        CK(cudaEventSynchronize(e1));
        float ms;
        cudaEventElapsedTime(&ms, e0, e1);
        if (r >= 2) t.push_back(ms);
    }
    cudaEventDestroy(e0); cudaEventDestroy(e1);
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
}

std::string fmt_err(double e) {
    char b[32];
    snprintf(b, sizeof b, "%.1e", e);
    return b;
}

double copy_bandwidth(cudaStream_t s) {
    const size_t bytes = 2ull << 30;
    void *a, *b;
    CK(cudaMalloc(&a, bytes)); CK(cudaMalloc(&b, bytes));
    CK(cudaMemset(a, 1, bytes));
    const double ms = time_ms(s, [&] { CK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, s)); }, 12);
    cudaFree(a); cudaFree(b);
    return 2.0 * bytes / (ms * 1e-3);
}

double gemm_peak(Ctx& c) {
    const int n = 8192;
    bf16 *a, *b, *y;
    CK(cudaMalloc(&a, (size_t)n * n * 2)); CK(cudaMalloc(&b, (size_t)n * n * 2)); CK(cudaMalloc(&y, (size_t)n * n * 2));
    fill_bf16<<<1024, 256, 0, c.s>>>(a, (size_t)n * n, 1, -1.f, 1.f);
    fill_bf16<<<1024, 256, 0, c.s>>>(b, (size_t)n * n, 2, -1.f, 1.f);
    const float one = 1.f, zero = 0.f;
    const double ms = time_ms(c.s, [&] {
        CB(cublasGemmEx(c.h, CUBLAS_OP_T, CUBLAS_OP_N, n, n, n, &one, a, CUDA_R_16BF, n, b, CUDA_R_16BF, n, &zero, y,
                        CUDA_R_16BF, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    }, 12);
    cudaFree(a); cudaFree(b); cudaFree(y);
    return 2.0 * n * (double)n * n / (ms * 1e-3);
}

// `--profile`: for Nsight Compute, one launch each (after a warm-up) of the 3B's gate (8192×3072)
// and down (3072×8192) shapes: cuBLAS on bf16 weights, then qgemm int8 and NF4 at 64 and 128 rows
// a block, steps of 32 and 64 along k.
void profile(Ctx& c) {
    for (auto [n, k] : {std::pair{8192, 3072}, std::pair{3072, 8192}}) {
        Weight dense = make_weight(0, n, k, 1);
        for (int rep = 0; rep < 2; rep++) gemm(c.h, (const bf16*)dense.a, n, k, c.xs, c.ys, n, 0);
        for (int f = 1; f < 3; f++) {
            Weight w = make_weight(f, n, k, 2 + f);
            for (int bm : {64, 128})
                for (int bk : {32, 64})
                    for (int rep = 0; rep < 2; rep++) qgemm_launch(c.s, w, c.xs, c.ys, bm, bk, c.sms);
            cudaFree(w.a); cudaFree(w.b);
        }
        cudaFree(dense.a); cudaFree(dense.b);
    }
    CK(cudaDeviceSynchronize());
    CK(cudaGetLastError());
}

int main(int argc, char** argv) {
    // line by line, so that a run cut short by its time limit keeps the rows it printed
    setvbuf(stdout, nullptr, _IOLBF, 0);
    const bool profiling = argc > 1 && std::string(argv[1]) == "--profile";
    const bool overlapping = argc > 1 && std::string(argv[1]) == "--overlap";
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    Ctx c{};
    c.sms = prop.multiProcessorCount;
    CK(cudaStreamCreateWithFlags(&c.s, cudaStreamNonBlocking));
    CK(cudaStreamCreateWithFlags(&c.s2, cudaStreamNonBlocking));
    CB(cublasCreate(&c.h));
    CB(cublasSetStream(c.h, c.s));
    for (int b = 0; b < 2; b++) {
        CK(cudaEventCreateWithFlags(&c.deq[b], cudaEventDisableTiming));
        CK(cudaEventCreateWithFlags(&c.used[b], cudaEventDisableTiming));
    }
    const int KMAX = 14336, NMAX = 14336;
    CK(cudaMalloc(&c.xs, (size_t)M * KMAX * 2));
    CK(cudaMalloc(&c.ys, (size_t)M * NMAX * 2));
    bf16* ref;
    CK(cudaMalloc(&ref, (size_t)M * NMAX * 2));
    for (auto& b : c.buf) CK(cudaMalloc(&b, (size_t)NMAX_ELEMS * 2));
    fill_bf16<<<1024, 256>>>(c.xs, (size_t)M * KMAX, 7, -1.f, 1.f);
    CK(cudaDeviceSynchronize());
    if (profiling) {
        profile(c);
        return 0;
    }
    const double bw = copy_bandwidth(c.s), peak = gemm_peak(c);
    printf("# %s, %d SMs, L2 %d MB; copy bandwidth %.0f GB/s; bf16 GEMM 8192³ %.0f TFLOP/s\n\n", prop.name,
           prop.multiProcessorCount, prop.l2CacheSize >> 20, bw / 1e9, peak / 1e12);

    struct Way { std::string name; int way; size_t cap; };
    std::vector<Way> ways = {{"dequant+gemm", 1, 0}, {"chunked 8MB", 2, 8u << 20}, {"chunked 16MB", 2, 16u << 20},
                             {"chunked 32MB", 2, 32u << 20}, {"two streams", 3, 0}, {"qgemm (shipped)", 4, 32 << 8},
                             {"qgemm 64x32", 4, 64 + (32 << 8)}, {"qgemm 128x32", 4, 128 + (32 << 8)},
                             {"qgemm 64x64", 4, 64 + (64 << 8)}, {"qgemm 128x64", 4, 128 + (64 << 8)}};
    if (overlapping) {
        ways = {{"dequant+gemm", 1, 0}};
        for (int held : {16, 24, 32}) {
            const std::string on = std::to_string(held) + " SMs";
            // the held-back GEMMs first: cuBLAS's kernels for this SM target load before the pass runs
            ways.push_back({"bf16 GEMMs alone on all but " + on, 6, (size_t)held});
            for (int v = 0; v < OV_VARIANTS; v++) {
                const size_t cap = held + ((size_t)v << 8);
                ways.push_back({"pass " + std::string(PASS_NAMES[v]) + " alone on " + on, 7, cap});
                ways.push_back({"pass " + std::string(PASS_NAMES[v]) + " on " + on + ", cuBLAS on the rest", 5, cap});
                ways.push_back({"launches " + std::string(PASS_NAMES[v]) + " on " + on + ", cuBLAS on the rest", 8, cap});
            }
        }
    }
    const int W = (int)ways.size();
    // ways 6 (bf16 weights) and 7 (no GEMM) write no product of the quantized weights to check
    auto checked = [&](int i) { return ways[i].way != 6 && ways[i].way != 7; };
    auto overlapped = [&](int i) { return ways[i].way == 5 || ways[i].way == 8; };
    printf("## The linears of a %d-token prompt (every linear once, distinct weights)\n\n", M);
    printf("| model | format | bf16 ms | way | ms (min–max of 3 rounds) | bf16 / way | TFLOP/s | last output vs shipped |\n");
    printf("| --- | --- | ---: | --- | ---: | ---: | ---: | ---: |\n");
    int failures = 0;
    for (const Model& md : MODELS) {
        std::vector<Weight> dense = prompt_weights(md, 0);
        double flops = 0;
        for (auto& w : dense) flops += 2.0 * M * w.n * (double)w.k;
        std::vector<double> t_dense;
        for (int f = 1; f < 3; f++) {
            std::vector<Weight> ws = prompt_weights(md, f);
            const Weight& last = ws.back();
            Overlap ov;
            ov.init(ws);
            c.ov = &ov;
            c.dense = &dense;
            std::vector<std::vector<double>> t(W);
            std::vector<double> err(W, 0);
            std::vector<Timeline> tl(W);
            fprintf(stderr, "%s %s:", md.name, FMT[f]);
            for (int rep = 0; rep < 3; rep++) {
                fprintf(stderr, " round %d", rep + 1);
                t_dense.push_back(time_ms(c.s, [&] { run_way(c, dense, 0, 0); }, 5));
                for (int i = 0; i < W; i++) {
                    // checked on its own run first: the output and both buffers poisoned (NaN), so
                    // that a GEMM reading a buffer before its weight is written cannot pass
                    CK(cudaMemsetAsync(c.ys, 0xff, (size_t)M * last.n * 2, c.s));
                    for (auto* b : c.buf) CK(cudaMemsetAsync(b, 0xff, (size_t)NMAX_ELEMS * 2, c.s));
                    c.stamp = true;
                    run_way(c, ws, ways[i].way, ways[i].cap);
                    c.stamp = false;
                    CK(cudaStreamSynchronize(c.s));
                    CK(cudaGetLastError());
                    if (overlapped(i)) tl[i] = timeline(ov);
                    if (i == 0) CK(cudaMemcpy(ref, c.ys, (size_t)M * last.n * 2, cudaMemcpyDeviceToDevice));
                    else if (checked(i)) {
                        const double e = rel_err(c.ys, ref, (size_t)M * last.n);
                        err[i] = std::isnan(e) || std::isnan(err[i]) ? NAN : std::max(err[i], e);
                    }
                    t[i].push_back(time_ms(c.s, [&] { run_way(c, ws, ways[i].way, ways[i].cap); }, 5));
                    CK(cudaStreamSynchronize(c.s));
                    CK(cudaGetLastError());
                    // the failure flag is sticky: a wait that timed out in the check or the timing
                    if (ways[i].way == 5 && ov.failed()) err[i] = NAN;
                }
            }
            fprintf(stderr, "\n");
            ov.free();
            std::sort(t_dense.begin(), t_dense.end());
            const double base = t_dense[t_dense.size() / 2];
            for (int i = 0; i < W; i++) {
                std::sort(t[i].begin(), t[i].end());
                const double ms = t[i][1];
                const bool bad = checked(i) && !(err[i] < 1e-2);
                failures += bad;
                printf("| %s | %s | %.3f | %s | %.3f (%.3f–%.3f) | %.3f | %.0f | %s%s |\n", md.name, FMT[f], base,
                       ways[i].name.c_str(), ms, t[i][0], t[i][2], base / ms, flops / (ms * 1e-3) / 1e12,
                       ways[i].way == 6 ? "(bf16 weights)" : ways[i].way == 7 ? "(no GEMM)" : fmt_err(err[i]).c_str(), bad ? " FAIL" : "");
            }
            // the overlap ways' timelines (the last round's checked run)
            for (int i = 0; i < W; i++)
                if (overlapped(i))
                    fprintf(stdout, "| %s | %s | | timeline of %s | span %.3f | pass busy %.3f, GEMMs busy %.3f | both at once %.3f | |\n",
                            md.name, FMT[f], ways[i].name.c_str(), tl[i].span, tl[i].pass, tl[i].gemm, tl[i].both);
            // The dequantize pass alone over the prompt's weights: codes/absmax read, bf16 written.
            double bytes = 0;
            for (auto& w : ws) bytes += w.a_bytes() + w.b_count() * 4.0 + 2.0 * w.n * w.k;
            const double ms = time_ms(c.s, [&] { for (auto& w : ws) dequant(c.s, w, 0, w.n, c.buf[0]); }, 5);
            printf("| %s | %s | | dequantize alone | %.3f | | | %.0f GB/s, %.1f %% of copy |\n", md.name, FMT[f], ms,
                   bytes / (ms * 1e-3) / 1e9, 100 * bytes / (ms * 1e-3) / bw);
            for (auto& w : ws) { cudaFree(w.a); cudaFree(w.b); }
        }
        std::sort(t_dense.begin(), t_dense.end());
        const double base = t_dense[t_dense.size() / 2];
        printf("| %s | bf16 | %.3f | cuBLAS, bf16 weights | | 1.000 | %.0f (%.1f %% of the 8192³ peak) | |\n", md.name, base,
               flops / (base * 1e-3) / 1e12, 100 * flops / (base * 1e-3) / peak);
        for (auto& w : dense) { cudaFree(w.a); cudaFree(w.b); }
    }
    CK(cudaGetLastError());
    return failures ? 3 : 0;
}
