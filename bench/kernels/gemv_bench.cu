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
// Usage: gemv_bench [--quick | --floor | --pdl | --prefetch | --staged | --pairs | --merged | --stream |
// --barriers | --ahead | --late]. Prints
// markdown tables. --floor: where an NF4 GEMV's time goes (launch floor, the loads alone as grouped or
// streamed across rows, the whole kernel), per shape and for a decode step's linears. --pdl: a decode
// step's linears (shipped kernels) launched plainly and with programmatic dependent launch, in one
// process. --prefetch: the same step where each launch first
// asks L2 for the next launch's weights (see prefetch_main). --staged: the one-row kernels with their
// weights staged through shared memory by cp.async, per shape and per step (see staged.cuh).
// --pairs: NF4 decoded through a table of f16 code pairs, half the lookup bytes (see pairs.cuh).
// --merged: the shipped kernels on a resident grid, and a decode step's linears as one launch: what
// short-lived warps and launch boundaries cost (see merged.cuh). --stream: minilab's streaming one-row
// GEMVs (MINILAB_GEMV_GRID=stream) against the shipped kernels, with and without PDL, in every format,
// bit-equal to the shipped ones (see stream.cuh). --barriers: a step's linears in one resident launch
// with a grid barrier where each shipped launch starts: what a persistent step's waits cost (see
// barriers.cuh). --ahead: the same persistent step with a producer warp a block that streams the
// weights into shared memory ahead of the barriers (see ahead.cuh). --late: the norm launches of a
// block unfolded (a norm kernel, then the shipped GEMV)
// against the late fold's gemv_ln_ kernels, and NF4's at other R and block caps (see late.cuh); then
// each norm's producer and consumer launches together, unfolded, late, and with the producer
// handing the consumer x·w and its sums of squares (see stats.cuh).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "cross_launch.cuh"
#include "floor.cuh"
#include "gemv_core.cuh"
#include "stats.cuh"
#include "merged.cuh"
#include "barriers.cuh"
#include "ahead.cuh"
#include "pairs.cuh"
#include "staged.cuh"
#include "stream.cuh"

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

// What the sections of the default run share.
struct Run {
    cudaStream_t s;
    double bw;
    const bf16* xs;
    float* ref;
    void** ys;
    bool quick;
    std::vector<Shape> shapes;
};
typedef std::vector<std::vector<int>> PerShape;  // [shape][format]

// Every format, R and m against the reference, on every shape; the worst error.
double check_shapes(const Run& run) {
    cudaStream_t s = run.s;
    const bf16* xs = run.xs;
    float* ref = run.ref;
    void** ys = run.ys;
    const std::vector<Shape>& shapes = run.shapes;
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
    return worst_all;
}

// q, k, v as three parts of one launch against three separate references; the worst error.
double check_qkv(const Run& run) {
    cudaStream_t s = run.s;
    const bf16* xs = run.xs;
    float* ref = run.ref;
    void** ys = run.ys;
    double worst_all = 0;
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
    return worst_all;
}

// The occupancy sweep at m = 1 (each variant checked against the reference first): the best variant
// per shape and format into best_var; the worst error (0, or NaN when a variant fails).
double sweep_variants(const Run& run, PerShape& best_var) {
    cudaStream_t s = run.s;
    const bf16* xs = run.xs;
    float* ref = run.ref;
    void** ys = run.ys;
    const std::vector<Shape>& shapes = run.shapes;
    double worst_all = 0;
    // Occupancy sweep at m = 1 (checked against the reference first).
    printf("## m = 1: rows per warp R / minimum blocks per SM (GB/s)\n\n| shape | format |");
    for (auto& v : VARIANTS) printf(" %s |", v.name);
    printf("\n| --- | --- |");
    for (size_t i = 0; i < sizeof(VARIANTS) / sizeof(VARIANTS[0]); i++) printf(" ---: |");
    printf("\n");
    best_var.assign(shapes.size(), std::vector<int>(3, 0));
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
    return worst_all;
}

// GB/s one shape at a time, every R and m; the best R per shape and format at m = 1 into best_r.
void speed_table(const Run& run, PerShape& best_r) {
    cudaStream_t s = run.s;
    const bf16* xs = run.xs;
    void** ys = run.ys;
    const std::vector<Shape>& shapes = run.shapes;
    const double bw = run.bw;
    const bool quick = run.quick;
    // Speed, one shape at a time.
    printf("## One weight per launch, each launch on another copy (GB/s of weight bytes; %% of copy bandwidth)\n\n");
    printf("| shape | format | m | shipped | R=1 | R=2 | R=4 | shipped | best %% |\n| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    // best R per (shape, format, m=1) for the step
    best_r.assign(shapes.size(), std::vector<int>(3, 1));
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

}

// A decode step's linears: every linear of every block, distinct weights, one graph.
void step_table(const Run& run, const PerShape& best_r, const PerShape& best_var) {
    cudaStream_t s = run.s;
    const bf16* xs = run.xs;
    void** ys = run.ys;
    const double bw = run.bw;
    const bool quick = run.quick;
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
}

int main(int argc, char** argv) {
    // line by line, so that a run cut short by its time limit keeps the rows it printed
    setvbuf(stdout, nullptr, _IOLBF, 0);
    bool quick = argc > 1 && std::string(argv[1]) == "--quick";
    bool prof = argc > 1 && std::string(argv[1]) == "--profile";
    bool floors = argc > 1 && std::string(argv[1]) == "--floor";
    bool pdl = argc > 1 && std::string(argv[1]) == "--pdl";
    bool prefetch = argc > 1 && std::string(argv[1]) == "--prefetch";
    bool staged_run = argc > 1 && std::string(argv[1]) == "--staged";
    bool pairs_run = argc > 1 && std::string(argv[1]) == "--pairs";
    bool merged_run = argc > 1 && std::string(argv[1]) == "--merged";
    bool stream_run = argc > 1 && std::string(argv[1]) == "--stream";
    bool barriers_run = argc > 1 && std::string(argv[1]) == "--barriers";
    bool late_run = argc > 1 && std::string(argv[1]) == "--late";
    bool ahead_run = argc > 1 && std::string(argv[1]) == "--ahead";
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
    if (staged_run) return staged::staged_main(s, bw, xs, ys, shapes);
    if (pairs_run) return pairs::pairs_main(s, bw, xs, ys, shapes);
    if (merged_run) return merged::merged_main(s, bw, xs, ys, shapes);
    if (stream_run) return stream::stream_main(s, bw, xs, ys, shapes);
    if (barriers_run) return barriers::barriers_main(s, bw, xs);
    if (ahead_run) return ahead::ahead_main(s, bw, xs);
    if (late_run) {
        const int singles = late::late_main(s, bw, xs, ys), pairs = stats::pairs_main(s, ys);
        return singles ? singles : pairs;
    }
    const Run run{s, bw, xs, ref, ys, quick, shapes};
    const double e_shapes = check_shapes(run), e_qkv = check_qkv(run);
    double worst_all = std::isnan(e_shapes) || std::isnan(e_qkv) ? NAN : std::max(e_shapes, e_qkv);
    printf("\nworst relative error of the new kernels: %.2e (%s)\n\n", worst_all, worst_all < 4e-3 ? "pass" : "FAIL");
    PerShape best_var, best_r;
    if (std::isnan(sweep_variants(run, best_var))) worst_all = NAN;
    speed_table(run, best_r);
    step_table(run, best_r, best_var);
    CK(cudaGetLastError());
    return worst_all < 4e-3 ? 0 : 3;
}
