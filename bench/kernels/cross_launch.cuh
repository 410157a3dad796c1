// gemv_bench --pdl and --prefetch: a decode step's launches overlapped, by programmatic dependent
// launch or by each launch asking L2 for the next one's weights.
#pragma once
#include "gemv_core.cuh"

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
// The prefetch itself is gemv_prefetch.cuh's (gemv::Prefetch, gemv::prefetch_next), which minilab's gemv_pf_
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
    int failures = 0;
    for (const Model& md : MODELS) {
        for (int f = 0; f < 3; f++) {
            size_t bytes;
            std::vector<Weight> ws = step_weights(md, f, 500, &bytes);
            const std::vector<std::vector<const Weight*>> launches = step_launches(md, ws);
            auto step_with = [&](int way) {
                return [&, way](int) {
                    std::vector<void*> y3(ys, ys + 3);
                    for (size_t i = 0; i < launches.size(); i++) {
                        if (way < 0) launch_shipped(s, launches[i], 0, xs, y3, 1);
                        else launch_pf(s, launches[i], launches[(i + 1) % launches.size()], xs, y3, ways[way].how, ways[way].cap);
                    }
                };
            };
            std::vector<std::vector<double>> t;
            std::vector<bool> equal;
            alternate_ways(s, W, step_with, ys[0], t, equal);
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
