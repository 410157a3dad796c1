// gemv_bench --late, second table: a norm's producer and consumer launches together, three ways, at
// the 3B's and the 8B's shapes in every format. The pairs: o_proj, then gate/up with silu·up; and
// down_proj, then q/k/v (three plain parts).
//
// - unfolded (MINILAB_FUSE_NORM=0): the producer's plain GEMV, decode.cu's add_rms_norm (the residual
//   add and the norm in one kernel), then the shipped consumer GEMV;
// - late (MINILAB_FUSE_NORM=late): the producer's GEMV with the residual add (RESID), then the
//   consumer's gemv_ln_ kernel, which normalizes as it loads;
// - stats (the harness's own kernels; minilab ships the design as gemv_ns_, its default since
//   session 27): the producer also stores x·w (the next norm's weight) and each block's sum of the
//   new residual's squares; the consumer loads x·w as the shipped kernel loads xs, sums the
//   producer's partial sums (fixed order, so the same bits every run) and scales its products by the
//   RMS factor at the end. The consumer then carries neither the norm weight's loads nor the
//   squares, which the late way adds to every warp's loop.
//
// Correct first: every way's new residual must equal the unfolded way's bit for bit, and its consumer
// output must sit within 1e-2 of the largest output from an f32 reference of the normalized product.
#pragma once
#include "late.cuh"

namespace stats {

constexpr int R = 2;  // the producer's rows a warp (hidden < 8192 rows: R = 2 in every format)

// res' = res + W·xs (rounded as add_rms_norm rounds it) into ps.p[0].ys, xw = bf16(res'·w), and the
// block's sum of res'² into partial[blockIdx.x]. One row of xs.
template <int F>
__global__ void __launch_bounds__(128, 8) producer(const bf16* xs, gemv::Parts ps, const bf16* res, const bf16* w, bf16* xw,
                                                   float* partial) {
    __shared__ __align__(16) float table[gemv::table_words<F>()];
    __shared__ float red[32];
    if constexpr (gemv::nf4_like<F>()) gemv::fill_table<F>(table);
    const gemv::Part& p = ps.p[0];
    const int groups = (p.n + R - 1) / R, warps = gridDim.x * (blockDim.x >> 5);
    bf16* ys = reinterpret_cast<bf16*>(p.ys);
    float sq = 0.f;
    for (int g = (blockIdx.x * blockDim.x + threadIdx.x) >> 5; g < groups; g += warps) {
        float acc[R][1];
        gemv::accumulate<bf16, F, 1, R, gemv::default_unroll<1>(), false>(xs, p, nullptr, 1, ps.k, g * R, 1,
                                                                          reinterpret_cast<const char*>(table), acc);
#pragma unroll
        for (int r = 0; r < R; r++) {
            const int row = g * R + r;
            const float v = warp_sum(acc[r][0]) * gemv::row_scale<F>(p, row);
            if ((threadIdx.x & 31) != 0 || row >= p.n) continue;
            const bf16 y = from_f<bf16>(to_f(res[row]) + to_f(from_f<bf16>(v)));
            ys[row] = y;
            xw[row] = from_f<bf16>(to_f(y) * to_f(w[row]));
            sq = fmaf(to_f(y), to_f(y), sq);
        }
    }
    const float total = block_reduce(sq, false, red);
    if (threadIdx.x == 0) partial[blockIdx.x] = total;
}

// The consumer over xw (= res'·w): the shipped accumulation, then the products scaled by
// rsqrt(Σ partial / k + eps); gate/up with silu·up (SILU) or plain parts.
template <int F, int RC, int MINB, bool SILU>
__global__ void __launch_bounds__(128, MINB) consumer(const bf16* xw, gemv::Parts ps, const float* partial, int count) {
    __shared__ __align__(16) float table[gemv::table_words<F>()];
    if constexpr (gemv::nf4_like<F>()) gemv::fill_table<F>(table);
    const char* tb = reinterpret_cast<const char*>(table);
    // issued before the weight loop, reduced after it
    float ss = 0.f;
    for (int i = threadIdx.x & 31; i < count; i += 32) ss += __ldg(partial + i);
    const int warps = gridDim.x * (blockDim.x >> 5), first = (blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    if constexpr (SILU) {
        constexpr int H = RC / 2;
        for (int g = first; g < (ps.p[0].n + H - 1) / H; g += warps) {
            float acc[RC][1];
            gemv::accumulate<bf16, F, 1, RC, gemv::default_unroll<1>(), true>(xw, ps.p[0], &ps.p[1], 1, ps.k, g * H, 1, tb, acc);
            const float inv = rsqrtf(warp_sum(ss) / ps.k + late::EPS);
#pragma unroll
            for (int r = 0; r < RC; r++) acc[r][0] *= inv;
            gemv::store_silu<bf16, F, 1, RC>(acc, ps.p[0], ps.p[1], 1, g * H);
        }
    } else {
        const int g0 = (ps.p[0].n + RC - 1) / RC, g1 = ps.count > 1 ? (ps.p[1].n + RC - 1) / RC : 0;
        const int total = g0 + g1 + (ps.count > 2 ? (ps.p[2].n + RC - 1) / RC : 0);
        // the part by a branch, as gemv_parts does: a runtime index into the parameters spills
        const auto rows = [&](const gemv::Part& pt, int row0) {
            float acc[RC][1];
            gemv::accumulate<bf16, F, 1, RC, gemv::default_unroll<1>(), false>(xw, pt, nullptr, 1, ps.k, row0, 1, tb, acc);
            const float inv = rsqrtf(warp_sum(ss) / ps.k + late::EPS);
#pragma unroll
            for (int r = 0; r < RC; r++) acc[r][0] *= inv;
            gemv::store_rows<bf16, F, 1, RC>(acc, pt, 1, row0, nullptr);
        };
        for (int g = first; g < total; g += warps) {
            if (g < g0) rows(ps.p[0], g * RC);
            else if (g < g0 + g1) rows(ps.p[1], (g - g0) * RC);
            else rows(ps.p[2], (g - g0 - g1) * RC);
        }
    }
}

typedef void (*Consumer)(const bf16*, gemv::Parts, const float*, int);
// The consumer at minilab's R for format f (NF4 gate/up at R = 4 from 8192 rows, else 2), with the
// shipped kernels' block caps.
Consumer consumer_of(int f, bool silu, int rows) {
    if (silu) {
        if (f == 2 && rows >= 8192) return consumer<2, 4, 6, true>;
        return f == 0 ? consumer<0, 2, 8, true> : f == 1 ? consumer<1, 2, 8, true> : consumer<2, 2, 8, true>;
    }
    return f == 0 ? consumer<0, 2, 8, false> : f == 1 ? consumer<1, 2, 8, false> : consumer<2, 2, 8, false>;
}

// One pair's weights (copies past L2) and buffers.
struct Pair {
    const char* name;
    Weight prod;
    std::vector<Weight> cons;
    bool silu;
    int copies;
    bf16 *xs, *res, *norm_w, *y, *res_out, *xn;
    float* partial;
};

std::vector<const Weight*> cons_ptrs(const Pair& p) {
    std::vector<const Weight*> ws;
    for (auto& w : p.cons) ws.push_back(&w);
    return ws;
}

// Way 0 unfolded, 1 late, 2 stats, on copy c; the consumer's outputs into ys.
void run_pair(cudaStream_t s, int way, const Pair& p, int c, void** ys) {
    const int n = p.prod.n, k = p.cons[0].k;
    std::vector<void*> py = {way == 0 ? (void*)p.y : (void*)p.res_out};
    int blocks_p, blocks_c, r = 2;
    gemv::Parts pp = parts_of({&p.prod}, c, py, 1, R, &blocks_p);
    auto cws = cons_ptrs(p);
    std::vector<void*> cy(ys, ys + cws.size());
    Kern shipped_c = shipped(cws[0]->fmt, 1, rows_max(cws), &r);
    gemv::Parts pc = parts_of(cws, c, cy, 1, r, &blocks_c);
    pc.mode = p.silu ? gemv::SILU : 0;
    if (way == 0) {
        launch_shipped(s, {&p.prod}, c, p.xs, py, 1);
        add_rms_norm_bf16<<<1, 1024, 0, s>>>(p.res, p.y, p.norm_w, p.res_out, p.xn, n, late::EPS);
        shipped_c<<<blocks_c, 128, 0, s>>>(p.xn, pc);
    } else if (way == 1) {
        int rp;
        Kern kp = shipped(p.prod.fmt, 1, n, &rp);
        pp.mode = gemv::RESID;
        pp.res = p.res;
        kp<<<blocks_p, 128, 0, s>>>(p.xs, pp);
        pc.norm = 2;
        pc.norm_w = p.norm_w;
        pc.eps = late::EPS;
        late::minilab_late(cws[0]->fmt, r)<<<blocks_c, 128, 0, s>>>(p.res_out, pc);
    } else {
        auto kp = p.prod.fmt == 0 ? producer<0> : p.prod.fmt == 1 ? producer<1> : producer<2>;
        kp<<<blocks_p, 128, 0, s>>>(p.xs, pp, p.res, p.norm_w, p.xn, p.partial);
        consumer_of(cws[0]->fmt, p.silu, rows_max(cws))<<<blocks_c, 128, 0, s>>>(p.xn, pc, p.partial, blocks_p);
    }
}

// The bits of n bf16 values on the device.
std::vector<uint16_t> bits(const bf16* a, int n) {
    std::vector<uint16_t> h(n);
    CK(cudaMemcpy(h.data(), a, n * 2, cudaMemcpyDeviceToHost));
    return h;
}

// One way, copy 0: its new residual against the unfolded way's (`want_res`), its consumer output
// against the f32 reference; NaN (unwritten or a residual that differs) on failure.
double check_pair_way(cudaStream_t s, int way, const Pair& p, void** ys, const std::vector<uint16_t>& want_res,
                      const std::vector<std::vector<float>>& want) {
    CK(cudaMemsetAsync(p.res_out, 0xff, p.prod.n * 2, s));
    for (size_t i = 0; i < want.size(); i++) CK(cudaMemsetAsync(ys[i], 0xff, want[i].size() * 2, s));
    run_pair(s, way, p, 0, ys);
    CK(cudaStreamSynchronize(s));
    CK(cudaGetLastError());
    if (!want_res.empty() && bits(p.res_out, p.prod.n) != want_res) return NAN;
    return late::off_reference(ys, want);
}

Pair make_pair(const Model& md, int f, bool silu) {
    Pair p{};
    p.name = silu ? "o_proj → gate/up + silu·up" : "down_proj → q/k/v";
    p.silu = silu;
    const int h = md.hidden, kp = silu ? md.hidden : md.ffn;
    std::vector<int> rows = silu ? std::vector<int>{md.ffn, md.ffn} : std::vector<int>{h, md.kv, md.kv};
    size_t one = (size_t)h * kp;
    for (int n : rows) one += (size_t)n * h;
    p.copies = (int)std::max<size_t>(1, (400ull << 20) / (size_t)(one * (f == 0 ? 2.0 : f == 1 ? 1.0 : 0.5)) + 1);
    p.prod = make_weight(f, h, kp, p.copies, 500 + f);
    for (size_t i = 0; i < rows.size(); i++) p.cons.push_back(make_weight(f, rows[i], h, p.copies, 510 + 10 * f + i));
    CK(cudaMalloc(&p.xs, (size_t)kp * 2));
    for (bf16** b : {&p.res, &p.norm_w, &p.y, &p.res_out, &p.xn}) CK(cudaMalloc(b, (size_t)h * 2));
    CK(cudaMalloc(&p.partial, 4096 * 4));
    fill_bf16<<<64, 256>>>(p.xs, kp, 600 + f, -1.f, 1.f);
    fill_bf16<<<64, 256>>>(p.res, h, 610 + f, -4.f, 4.f);
    fill_bf16<<<64, 256>>>(p.norm_w, h, 620 + f, 0.8f, 1.2f);
    CK(cudaDeviceSynchronize());
    return p;
}

void free_pair(Pair& p) {
    free_weight(p.prod);
    for (auto& w : p.cons) free_weight(w);
    for (void* b : {(void*)p.xs, (void*)p.res, (void*)p.norm_w, (void*)p.y, (void*)p.res_out, (void*)p.xn, (void*)p.partial})
        cudaFree(b);
}

int pairs_main(cudaStream_t s, void** ys) {
    float *xn32, *ref;
    CK(cudaMalloc(&xn32, 14336 * 4));
    CK(cudaMalloc(&ref, 128256 * 4));
    printf("\n## A norm's producer and consumer launches together (µs a pair)\n\n");
    printf("| model | pair | format | unfolded | late | stats | late / unfolded | stats / unfolded | worst error |\n");
    printf("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    int failures = 0;
    for (const Model& md : MODELS) {
        for (int f = 0; f < 3; f++) {
            for (bool silu : {true, false}) {
                Pair p = make_pair(md, f, silu);
                // the unfolded way's residual, then the reference from it
                CK(cudaMemsetAsync(p.res_out, 0xff, p.prod.n * 2, s));
                run_pair(s, 0, p, 0, ys);
                CK(cudaStreamSynchronize(s));
                const std::vector<uint16_t> want_res = bits(p.res_out, p.prod.n);
                late::Launch l{p.name, {}, silu};
                l.ws = p.cons;  // shallow: the same device buffers, not freed through l
                const late::Bufs b{p.res_out, p.norm_w, p.xn, ys};
                const auto want = late::reference_of(s, l, b, xn32, ref);
                printf("| %s | %s | %s |", md.name, p.name, FMT[f]);
                double worst = 0, t[3];
                for (int way = 0; way < 3; way++) {
                    const double e = check_pair_way(s, way, p, ys, way == 0 ? std::vector<uint16_t>{} : want_res, want);
                    worst = std::isnan(e) || std::isnan(worst) ? NAN : std::max(worst, e);
                    t[way] = time_graph(s, std::max(p.copies, 24), [&](int i) { run_pair(s, way, p, i % p.copies, ys); });
                    printf(" %.2f |", t[way] * 1e6);
                }
                const bool ok = worst <= 1e-2;
                failures += !ok;
                printf(" %.3f | %.3f | %.2e%s |\n", t[1] / t[0], t[2] / t[0], worst, ok ? "" : " FAIL");
                free_pair(p);
            }
        }
    }
    printf("\n%s\n", failures ? "FAIL: a way's residual or output is off" : "every way's residual equal, outputs within 1e-2");
    cudaFree(xn32);
    cudaFree(ref);
    return failures ? 3 : 0;
}

}  // namespace stats
