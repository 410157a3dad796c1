// gemv_bench --floor: where an NF4 GEMV's time goes, and U steps of the k loop in flight.
#pragma once
#include "gemv_core.cuh"

// A launch's NF4 rows laid end to end over its parts, cut into steps of 512 bytes (spr a row; rows
// must be whole steps, k / 2 a multiple of 512, as every Llama shape here is): step st is row st / spr,
// bytes (st % spr)·512 + lane·16 of it for this lane.
struct NF4Steps {
    const gemv::Parts& ps;
    int row_bytes, spr;
    long long n0, n1;
    __device__ explicit NF4Steps(const gemv::Parts& parts)
        : ps(parts), row_bytes(parts.k / 2), spr(parts.k / 1024), n0(parts.p[0].n),
          n1(parts.count > 1 ? parts.p[1].n : 0) {}
    __device__ long long rows() const { return n0 + n1 + (ps.count > 2 ? ps.p[2].n : 0); }
    // The part of row `row` (counted over all parts) and the row within it.
    __device__ long long part_row(long long row, int* part) const {
        *part = row < n0 ? 0 : row < n0 + n1 ? 1 : 2;
        return row - (*part == 0 ? 0 : *part == 1 ? n0 : n0 + n1);
    }
};

// Runs this warp's steps [first, last) of `at`, U in flight through the warp's slots w and sc
// (cp.async, one commit group a step, empty past the run so the wait counts stay exact), calling
// consume(st, weights, absmax) for each in order. A slot is refilled only after consume has used it.
template <int U, typename Consume>
__device__ __forceinline__ void stream_steps(const NF4Steps& at, long long first, long long last, uint4 (&w)[U][32],
                                             float (&sc)[U][32], Consume consume) {
    const int lane = threadIdx.x & 31;
    const auto issue = [&](long long st, int slot) {
        int part;
        const long long row = at.part_row(st / at.spr, &part);
        const size_t off = (size_t)row * at.row_bytes + (size_t)(st % at.spr) * 512 + lane * 16;
        gemv::cp_async16(&w[slot][lane], at.ps.p[part].a + off, true);
        gemv::cp_async4(&sc[slot][lane], at.ps.p[part].b + off / 32, true);
    };
#pragma unroll
    for (int u = 0; u < U; u++) {
        if (first + u < last) issue(first + u, u);
        gemv::cp_commit();
    }
    for (long long st = first; st < last; st++) {
        const int slot = (int)((st - first) % U);
        gemv::cp_wait<U - 1>();
        consume(st, w[slot][lane], sc[slot][lane]);
        if (st + U < last) issue(st + U, slot);
        gemv::cp_commit();
    }
}

// The floors under a GEMV launch of the shipped grid (R rows a warp, 4 warps a block): `empty` does
// nothing; `loads` streams the weight bytes and scales with the same per-lane 16-byte pattern and
// keeps an xor of them live, so its time is the memory pattern and the launch without any decode.
__global__ void empty_kernel(gemv::Parts) {}

// The part whose rows row0 … row0 + R − 1 this warp takes (one group of R rows a warp, part after
// part), or nullptr for a warp past the last group.
template <int R> __device__ __forceinline__ const gemv::Part* warp_rows(const gemv::Parts& ps, int* row0) {
    const int g0 = (ps.p[0].n + R - 1) / R, g1 = ps.count > 1 ? (ps.p[1].n + R - 1) / R : 0;
    const int total = g0 + g1 + (ps.count > 2 ? (ps.p[2].n + R - 1) / R : 0);
    const int g = (blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    if (g >= total) return nullptr;
    const int part = g < g0 ? 0 : g < g0 + g1 ? 1 : 2;
    *row0 = (g - (part == 0 ? 0 : part == 1 ? g0 : g0 + g1)) * R;
    return &ps.p[part];
}
template <int R> __global__ void __launch_bounds__(128) loads_kernel(gemv::Parts ps, uint32_t* sink) {
    const int lane = threadIdx.x & 31, row_bytes = ps.k / 2;  // NF4: k/2 bytes a row
    int row0;
    const gemv::Part* pp = warp_rows<R>(ps, &row0);
    if (!pp) return;
    const gemv::Part& p = *pp;
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
    if (lane == 0) sink[(blockIdx.x * blockDim.x + threadIdx.x) >> 5] = acc;
}

// `loads` as bench/kernels/sass.sh reads it uses its first value after 2 of its 8 loads, so it waits
// on DRAM several times a row (and ptxas does the same to any register version: it moves the xors up
// between the loads). `flight` copies T steps of its R rows (and their absmax) into shared memory with
// cp.async, which cannot be put off, before it reads any: the memory pattern with its loads in flight,
// the floor that a kernel without those waits could approach.
template <int R, int T> __global__ void __launch_bounds__(128) flight_kernel(gemv::Parts ps, uint32_t* sink) {
    __shared__ uint4 w[4][T][R][32];
    __shared__ float sc[4][T][R][32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, row_bytes = ps.k / 2;
    int row0;
    const gemv::Part* pp = warp_rows<R>(ps, &row0);
    if (!pp) return;
    const gemv::Part& p = *pp;
    uint32_t acc = 0;
    for (int j0 = lane * 16; j0 < row_bytes; j0 += T * 32 * 16) {
#pragma unroll
        for (int t = 0; t < T; t++) {
            const int j = j0 + t * 32 * 16;
            const bool ok = j < row_bytes;
#pragma unroll
            for (int r = 0; r < R; r++) {
                const size_t at = (size_t)min(row0 + r, p.n - 1) * row_bytes + (ok ? j : j0);
                gemv::cp_async16(&w[warp][t][r][lane], p.a + at, ok);
                gemv::cp_async4(&sc[warp][t][r][lane], p.b + at / 32, ok);
            }
        }
        gemv::cp_commit();
        gemv::cp_wait<0>();
#pragma unroll
        for (int t = 0; t < T; t++)
#pragma unroll
            for (int r = 0; r < R; r++) {
                const uint4 v = w[warp][t][r][lane];
                acc ^= v.x ^ v.y ^ v.z ^ v.w ^ __float_as_uint(sc[warp][t][r][lane]);
            }
    }
    acc = __reduce_xor_sync(0xffffffffu, acc);
    if (lane == 0) sink[(blockIdx.x * blockDim.x + threadIdx.x) >> 5] = acc;
}

// `stream`: the same bytes and absmax again, but each warp of a resident grid (as many blocks as the
// GPU holds at once) takes a contiguous run of 512-byte steps of the launch's rows, part after part
// (a row's steps are contiguous, and so are a part's rows), and keeps U of them in flight through
// cp.async into shared memory across row boundaries: no warp exits after one group of rows. The
// memory pattern that a kernel streaming across rows could approach. Rows must be whole steps
// (k / 2 a multiple of 512), as every Llama shape here is.
template <int U> __global__ void __launch_bounds__(128) stream_kernel(gemv::Parts ps, uint32_t* sink) {
    __shared__ uint4 w[4][U][32];
    __shared__ float sc[4][U][32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const long long warps = (long long)gridDim.x * 4, gw = blockIdx.x * 4LL + warp;
    const NF4Steps at(ps);
    const long long steps = at.rows() * at.spr, first = steps * gw / warps, last = steps * (gw + 1) / warps;
    uint32_t acc = 0;
    stream_steps<U>(at, first, last, w[warp], sc[warp], [&](long long, uint4 v, float scale) {
        acc ^= v.x ^ v.y ^ v.z ^ v.w ^ __float_as_uint(scale);
    });
    acc = __reduce_xor_sync(0xffffffffu, acc);
    if (lane == 0) sink[gw] = acc;  // a resident grid has far fewer warps than the sink's 128256 words
}

// The stream kernel's resident grid, asked of the driver once, before any capture (floor_main).
int stream_grid() {
    static int blocks = 0;
    if (!blocks) {
        CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, stream_kernel<8>, 128, 0));
        blocks = std::max(blocks, 1) * g_sms;
    }
    return blocks;
}

// Launches kind 0 (empty), 1 (loads), 2 (the shipped NF4 kernel), 3 (flight) or 4 (stream) over parts
// [w0, …], copy c.
void launch_floor(cudaStream_t s, int kind, const std::vector<const Weight*>& ws, int c, const bf16* xs,
                  std::vector<void*>& ys, uint32_t* sink) {
    if (kind == 2) return launch_shipped(s, ws, c, xs, ys, 1);
    int r = 2, blocks;
    shipped(2, 1, rows_max(ws), &r);
    const gemv::Parts ps = parts_of(ws, c, ys, 1, r, &blocks);
    if (kind == 4) return stream_kernel<8><<<stream_grid(), 128, 0, s>>>(ps, sink);
    if (kind == 0) empty_kernel<<<blocks, 128, 0, s>>>(ps);
    else if (kind == 3 && r == 4) flight_kernel<4, 4><<<blocks, 128, 0, s>>>(ps, sink);
    else if (kind == 3) flight_kernel<2, 8><<<blocks, 128, 0, s>>>(ps, sink);
    else if (r == 4) loads_kernel<4><<<blocks, 128, 0, s>>>(ps, sink);
    else loads_kernel<2><<<blocks, 128, 0, s>>>(ps, sink);
}

// m = 1 with U steps of the k loop in flight (gemv_accumulate.cuh's default is 2): more bytes in flight a warp.
template <int F, int R, int MINB, int U> __global__ void __launch_bounds__(128, MINB) ku(const bf16* xs, gemv::Parts ps) {
    gemv::gemv_parts<bf16, F, 1, R, U>(xs, ps);
}
#define UV(R, B, U) Variant{"R" #R "/U" #U, R, 0, {ku<0, R, B, U>, ku<1, R, B, U>, ku<2, R, B, U>}}
static Variant UNROLLS[] = {UV(2, 4, 4), UV(2, 2, 8), UV(4, 3, 4), UV(1, 8, 4), UV(1, 4, 8)};

// --floor: per NF4 shape (m = 1, each launch on another copy past L2) and for a 3B / 8B step's NF4
// linears (q/k/v and gate/up fused, one graph): the empty launch, the loads alone (as session 6 ran
// them, and with their loads in flight) and the shipped kernel, in µs a launch (ms a step), with GB/s.
int floor_main(cudaStream_t s, double bw, const bf16* xs, void** ys, const std::vector<Shape>& shapes) {
    const int F = 2;
    stream_grid();
    uint32_t* sink;
    CK(cudaMalloc(&sink, (size_t)128256 * 4));
    printf("## Where an NF4 GEMV's time goes (m = 1; copy bandwidth %.0f GB/s)\n\n", bw / 1e9);
    printf("| shape | empty µs | loads µs | flight µs | stream µs | kernel µs | loads GB/s | flight GB/s | stream GB/s | kernel GB/s | kernel − flight µs |\n");
    printf("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for (auto& sh : shapes) {
        const int copies = copies_past_l2(F, sh.n, sh.k);
        Weight w = make_weight(F, sh.n, sh.k, copies, 51);
        const int launches = std::max(copies, 24);
        std::vector<void*> y1 = {ys[0]};
        double t[5];
        for (int kind = 0; kind < 5; kind++)
            t[kind] = time_graph(s, launches, [&](int i) { launch_floor(s, kind, {&w}, i % copies, xs, y1, sink); });
        printf("| %s %dx%d | %.2f | %.2f | %.2f | %.2f | %.2f | %.0f | %.0f | %.0f | %.0f | %.2f |\n", sh.name, sh.n, sh.k,
               t[0] * 1e6, t[1] * 1e6, t[3] * 1e6, t[4] * 1e6, t[2] * 1e6, w.bytes() / t[1] / 1e9, w.bytes() / t[3] / 1e9,
               w.bytes() / t[4] / 1e9, w.bytes() / t[2] / 1e9, (t[2] - t[3]) * 1e6);
        free_weight(w);
    }
    printf("\n| step | empty ms | loads ms | flight ms | stream ms | kernel ms | weight GB | loads GB/s | flight GB/s | stream GB/s | kernel GB/s |\n");
    printf("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for (const Model& md : MODELS) {
        size_t bytes;
        std::vector<Weight> ws = step_weights(md, F, 200, &bytes);
        const std::vector<std::vector<const Weight*>> launches = step_launches(md, ws);
        double t[5];
        for (int kind = 0; kind < 5; kind++) {
            t[kind] = time_graph(s, 1, [&](int) {
                std::vector<void*> y3(ys, ys + 3);
                for (auto& l : launches) launch_floor(s, kind, l, 0, xs, y3, sink);
            });
        }
        printf("| %s | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.0f | %.0f | %.0f | %.0f |\n", md.name, t[0] * 1e3, t[1] * 1e3,
               t[3] * 1e3, t[4] * 1e3, t[2] * 1e3, bytes / 1e9, bytes / t[1] / 1e9, bytes / t[3] / 1e9, bytes / t[4] / 1e9,
               bytes / t[2] / 1e9);
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
