// gemv_bench --late: the two norm launches of a decode block (q/k/v as three plain parts, gate/up with
// silu·up) at the 3B's and the 8B's shapes, in every format, as the unfolded step runs them (decode.cu's
// add_rms_norm, then the shipped GEMV) and folded the late way (linear.cu's gemv_ln_ kernels,
// MINILAB_FUSE_NORM=late): minilab's choice of R, and for NF4 the late kernel at R = 2 (8 blocks an
// SM), at R = 4 with 4 blocks an SM and at R = 4 with 6 (where ptxas spills 12 bytes), beside the
// shipped kernel alone (no norm at all: the floor).
//
// Why: the late fold took every format's decode up on the 3B and the 8B except the 8B's NF4, down
// 3.4 % (BENCHMARKS.md, issue 11 session 26). The reading to test: its gate/up takes the late R = 4
// kernel, which runs 5 blocks an SM where the shipped one runs 6.
//
// Correct first: every way's output against an f32 reference of the normalized product (x·r·w
// unrounded, r the RMS factor; silu(gate)·up on the host), NaN-poisoned first, within 1e-2 of the
// largest output (the unfolded way rounds the normalized x to bf16 before the product).
#pragma once
#include "../../src/kernels/cuda/decode.cu"
#include "gemv_core.cuh"

namespace late {

constexpr float EPS = 1e-5f;

template <int F, int R, int MINB> __global__ void __launch_bounds__(128, MINB) kl(const bf16* xs, gemv::Parts ps) {
    gemv::gemv_parts<bf16, F, 1, R, gemv::default_unroll<1>(), 0, gemv::NORM_LATE>(xs, ps);
}

// The reference's input: x·r·w in f32, unrounded, one block.
__global__ void norm_f32(const bf16* x, const bf16* w, float* xn, int k) {
    __shared__ float red[32];
    float ss = 0.f;
    for (int j = threadIdx.x; j < k; j += blockDim.x) ss = fmaf(__bfloat162float(x[j]), __bfloat162float(x[j]), ss);
    const float inv = rsqrtf(block_reduce(ss, false, red) / k + EPS);
    for (int j = threadIdx.x; j < k; j += blockDim.x) xn[j] = __bfloat162float(x[j]) * inv * __bfloat162float(w[j]);
}
// One thread a row: W·xn in f32, every weight dequantized on its own.
__global__ void ref_rows(int fmt, const float* xn, const uint8_t* a, const float* b, float* ys, int n, int k) {
    const int row = blockIdx.x * blockDim.x + threadIdx.x;
    if (row >= n) return;
    float acc = 0.f;
    for (int j = 0; j < k; j++) acc += ref_weight(fmt, a, b, row, (size_t)row * k + j) * xn[j];
    ys[row] = acc;
}

// One norm launch: its weights (copies past L2), whether it is gate/up with silu·up, the norm's weight.
struct Launch {
    const char* name;
    std::vector<Weight> ws;
    bool silu;
};
// A way to run a launch: its kernel and R (nullptr: the shipped kernel after the norm kernel, or alone).
struct Way {
    const char* name;
    Kern k;
    int r;
    bool norm_kernel;
};

// minilab's gemv_ln_ kernel for format f at R (src/kernels/cuda/mod.rs: NF4 at R = 4 from 8192 rows
// without RoPE, else 2).
Kern minilab_late(int f, int r) {
    if (f == 0) return gemv_ln_dense_bf16_m1_r2;
    if (f == 1) return gemv_ln_int8_bf16_m1_r2;
    return r == 4 ? gemv_ln_nf4_bf16_m1_r4 : gemv_ln_nf4_bf16_m1_r2;
}

// xs: the residual row; the unfolded way's norm (decode.cu's add_rms_norm, as the step launches it)
// adds `zeros` to it into `res` and writes xn.
struct Bufs {
    const bf16* xs;
    const bf16* norm_w;
    bf16* xn;
    void** ys;
    const bf16* zeros = nullptr;
    bf16* res = nullptr;
};

// The way's launch (copy c) into ys[0..] (gate/up: silu·up into ys[0]).
void run_way(cudaStream_t s, const Way& w, const Launch& l, int c, const Bufs& b) {
    std::vector<const Weight*> ws;
    for (auto& x : l.ws) ws.push_back(&x);
    std::vector<void*> ys(b.ys, b.ys + ws.size());
    int r = w.r, blocks;
    Kern k = w.k;
    if (!k) k = shipped(ws[0]->fmt, 1, rows_max(ws), &r);
    gemv::Parts ps = parts_of(ws, c, ys, 1, r, &blocks);
    ps.mode = l.silu ? gemv::SILU : 0;
    const bf16* xs = b.xs;
    if (w.norm_kernel) {
        add_rms_norm_bf16<<<1, 1024, 0, s>>>(b.xs, b.zeros, b.norm_w, b.res, b.xn, ws[0]->k, EPS);
        xs = b.xn;
    } else if (w.k) {
        ps.norm = 2;
        ps.norm_w = b.norm_w;
        ps.eps = EPS;
    }
    k<<<blocks, 128, 0, s>>>(xs, ps);
}

// max |got − want| / max |want| over the outputs ys[i] (bf16, on the device) against the f32 reference
// want[i]; NaN if a value is unwritten.
double off_reference(void* const* ys, const std::vector<std::vector<float>>& want) {
    double d = 0, mx = 0;
    for (size_t i = 0; i < want.size(); i++) {
        std::vector<bf16> got(want[i].size());
        CK(cudaMemcpy(got.data(), ys[i], got.size() * 2, cudaMemcpyDeviceToHost));
        for (size_t j = 0; j < got.size(); j++) {
            const float g = __bfloat162float(got[j]);
            if (std::isnan(g)) return NAN;
            d = std::max(d, (double)std::fabs(g - want[i][j]));
            mx = std::max(mx, (double)std::fabs(want[i][j]));
        }
    }
    return d / mx;
}

// off_reference of a way's output (copy 0).
double check_way(cudaStream_t s, const Way& w, const Launch& l, const Bufs& b, const std::vector<std::vector<float>>& want) {
    for (size_t i = 0; i < want.size(); i++) CK(cudaMemsetAsync(b.ys[i], 0xff, want[i].size() * 2, s));
    run_way(s, w, l, 0, b);
    CK(cudaStreamSynchronize(s));
    CK(cudaGetLastError());
    return off_reference(b.ys, want);
}

// The f32 reference of a launch (copy 0): each part's W·(x·r·w), or silu(gate)·up.
std::vector<std::vector<float>> reference_of(cudaStream_t s, const Launch& l, const Bufs& b, float* xn32, float* ref) {
    const int k = l.ws[0].k;
    norm_f32<<<1, 1024, 0, s>>>(b.xs, b.norm_w, xn32, k);
    std::vector<std::vector<float>> parts;
    for (auto& w : l.ws) {
        ref_rows<<<(w.n + 127) / 128, 128, 0, s>>>(w.fmt, xn32, w.ac(0), w.bc(0), ref, w.n, k);
        CK(cudaStreamSynchronize(s));
        parts.emplace_back(w.n);
        CK(cudaMemcpy(parts.back().data(), ref, w.n * 4, cudaMemcpyDeviceToHost));
    }
    if (!l.silu) return parts;
    std::vector<float> act(parts[0].size());
    for (size_t j = 0; j < act.size(); j++) act[j] = parts[0][j] / (1.f + std::exp(-parts[0][j])) * parts[1][j];
    return {act};
}

int late_main(cudaStream_t s, double bw, const bf16* xs, void** ys) {
    bf16 *norm_w, *xn, *zeros, *res;
    float *xn32, *ref;
    for (bf16** p : {&norm_w, &xn, &zeros, &res}) CK(cudaMalloc(p, 14336 * 2));
    CK(cudaMemset(zeros, 0, 14336 * 2));
    CK(cudaMalloc(&xn32, 14336 * 4));
    CK(cudaMalloc(&ref, 128256 * 4));
    fill_bf16<<<64, 256>>>(norm_w, 14336, 91, 0.8f, 1.2f);
    CK(cudaDeviceSynchronize());
    const Bufs b{xs, norm_w, xn, ys, zeros, res};
    printf("## The norm launches, unfolded (norm kernel + shipped GEMV) and folded the late way (µs a launch)\n\n");
    printf("copy bandwidth %.0f GB/s; each way checked against the f32 reference first (max |Δ| / max |ref| ≤ 1e-2)\n\n", bw / 1e9);
    printf("| model | launch | format | shipped alone | unfolded | late (minilab) | late R2/8 | late R4/4 | late R4/6 | late / unfolded | worst error |\n");
    printf("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    int failures = 0;
    for (const Model& md : MODELS) {
        for (int f = 0; f < 3; f++) {
            for (bool silu : {false, true}) {
                const int k = md.hidden;
                std::vector<int> rows = silu ? std::vector<int>{md.ffn, md.ffn} : std::vector<int>{md.hidden, md.kv, md.kv};
                int total = 0;
                for (int n : rows) total += n;
                const int copies = copies_past_l2(f, total, k), launches = std::max(copies, 24);
                Launch l{silu ? "gate/up + silu·up" : "q/k/v", {}, silu};
                for (size_t i = 0; i < rows.size(); i++) l.ws.push_back(make_weight(f, rows[i], k, copies, 300 + 10 * f + i));
                const int r_ml = f == 2 && silu && md.ffn >= 8192 ? 4 : 2;
                std::vector<Way> ways = {{"shipped alone", nullptr, 0, false}, {"unfolded", nullptr, 0, true},
                                         {"late (minilab)", minilab_late(f, r_ml), r_ml, false}};
                if (f == 2 && silu) {
                    ways.push_back({"late R2/8", gemv_ln_nf4_bf16_m1_r2, 2, false});
                    ways.push_back({"late R4/4", kl<2, 4, 4>, 4, false});
                    ways.push_back({"late R4/6", kl<2, 4, 6>, 4, false});
                }
                const auto want = reference_of(s, l, b, xn32, ref);
                printf("| %s | %s | %s |", md.name, l.name, FMT[f]);
                double worst = 0, t_unfolded = 0, t_minilab = 0;
                for (size_t wi = 0; wi < 6; wi++) {
                    if (wi >= ways.size()) { printf(" |"); continue; }
                    const Way& w = ways[wi];
                    if (wi > 0) {  // the shipped kernel alone reads the raw x: no reference for it
                        const double e = check_way(s, w, l, b, want);
                        worst = std::isnan(e) || std::isnan(worst) ? NAN : std::max(worst, e);
                    }
                    const double t = time_graph(s, launches, [&](int i) { run_way(s, w, l, i % copies, b); });
                    if (wi == 1) t_unfolded = t;
                    if (wi == 2) t_minilab = t;
                    printf(" %.2f |", t * 1e6);
                }
                const bool ok = worst <= 1e-2;
                failures += !ok;
                printf(" %.3f | %.2e%s |\n", t_minilab / t_unfolded, worst, ok ? "" : " FAIL");
                for (auto& w : l.ws) free_weight(w);
            }
        }
    }
    printf("\n%s\n", failures ? "FAIL: a way's output is off the reference" : "every way within 1e-2 of the reference");
    for (void* p : {(void*)norm_w, (void*)xn, (void*)zeros, (void*)res, (void*)xn32, (void*)ref}) cudaFree(p);
    return failures ? 3 : 0;
}

}  // namespace late
