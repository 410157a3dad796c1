// prefill_bench's `--overlap` ways: the dequantize pass hidden behind the GEMMs on a slice of the GPU.
//
// The shipped int8/NF4 prefill dequantizes each weight to bf16 (a memory-bound pass), then multiplies
// with cuBLAS (compute-bound at 512 rows). Two streams overlapped nothing (session 11): cuBLAS takes
// every SM, so the pass waits for it. Here the pass of every weight of the prompt is ONE persistent
// kernel on S SMs (a 1024-thread block an SM, held to one an SM by its shared memory), writing the
// weights in turn into two buffers, while cuBLAS, told to use the other SMs
// (`cublasSetSmCountTarget`), multiplies. Flags in device memory order them: a block counts itself
// done with weight i in ready[i] (the GEMM of weight i waits for all S, in a one-warp kernel on the
// GEMM's stream), and the GEMM's stream marks done[i] after it, which the pass waits for before it
// writes weight i + 2 into the same buffer. A wait that does not complete within 2^22 polls sets
// `fail` instead of hanging.
//
// The waits assume that the pass and the GEMMs run at the same time. CUDA's lazy loading breaks that:
// a kernel's first launch loads it, and the load waits for the running pass, which waits for that
// kernel (session 31's first run hung so: the flag kernels, and cuBLAS's kernels for a new SM
// target). So Overlap::init launches every kernel of this file once, the held-back GEMMs of each SM
// target run before its overlap ways, and gpu-issue11.sh sets CUDA_MODULE_LOADING=EAGER.
//
// Each block takes a contiguous slice of the weight, each thread OV_GROUPS groups of eight elements a
// round (all loads issued before the stores), with the arithmetic of linear.cu's dequant kernels, so
// a buffer holds exactly the shipped pass's weight. The same kernel on one weight is also launched
// per weight on S blocks (run_launches): the overlap without any spinning.
#pragma once

struct Job {
    const uint8_t* a;
    const float* b;
    int fmt, n, k;
};

__device__ __forceinline__ unsigned ld_acquire(const unsigned* p) {
    unsigned v;
    asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
}

// Spins until *p >= want; false (and *fail set) after 2^22 polls (about a second), or at once once
// another wait failed, so that a deadlock costs one timeout a run, not one a weight.
__device__ bool wait_for(const unsigned* p, unsigned want, unsigned* fail) {
    for (long long polls = 0; polls < (1ll << 22); polls++) {
        if (ld_acquire(p) >= want) return true;
        if (ld_acquire(fail)) return false;
        if (polls > 64) __nanosleep(100);
    }
    atomicExch(fail, 1u);
    return false;
}

// The timeline of one run, in ns of the GPU's global timer, njobs entries each: when the pass began
// each weight (block 0, after its wait), when the last block finished it, when its GEMM's wait was
// met and when its GEMM was done.
struct Stamps {
    unsigned long long *pass_start, *pass_end, *gemm_start, *gemm_end;
};

// dynamic shared memory of the pass: one block an SM, and no GEMM block beside it
constexpr int OV_SMEM = 120 << 10;

template <int OV_THREADS, int OV_GROUPS>
__global__ void __launch_bounds__(OV_THREADS, 1)
    dequant_all(const Job* jobs, int njobs, bf16* buf0, bf16* buf1, unsigned* ready, const unsigned* done,
                unsigned* fail, Stamps st) {
    __shared__ float codes[16];
    if (threadIdx.x < 16) codes[threadIdx.x] = gemv::NF4_CODES[threadIdx.x];
    for (int i = 0; i < njobs; i++) {
        const Job j = jobs[i];
        bf16* out = i % 2 ? buf1 : buf0;
        if (i >= 2 && threadIdx.x == 0) wait_for(done + i - 2, 1, fail);
        __syncthreads();
        if (blockIdx.x == 0 && threadIdx.x == 0) st.pass_start[i] = now_ns();
        // this block's slice of the weight's groups of eight
        const size_t groups = (size_t)j.n * j.k / 8, per = (groups + gridDim.x - 1) / gridDim.x;
        const size_t g0 = blockIdx.x * per, g1 = g0 + per < groups ? g0 + per : groups;
        for (size_t g = g0 + threadIdx.x; g < g1; g += (size_t)OV_THREADS * OV_GROUPS) {
            uint2 raw[OV_GROUPS];
            float s[OV_GROUPS];
#pragma unroll
            for (int u = 0; u < OV_GROUPS; u++) {
                const size_t e = (g + (size_t)u * OV_THREADS) * 8;
                if (g + (size_t)u * OV_THREADS >= g1) continue;
                if (j.fmt == 1) {
                    raw[u] = *reinterpret_cast<const uint2*>(j.a + e);
                    s[u] = j.b[e / j.k];
                } else {
                    raw[u].x = *reinterpret_cast<const uint32_t*>(j.a + e / 2);
                    s[u] = j.b[e / 64];
                }
            }
#pragma unroll
            for (int u = 0; u < OV_GROUPS; u++) {
                const size_t e = (g + (size_t)u * OV_THREADS) * 8;
                if (g + (size_t)u * OV_THREADS >= g1) continue;
                float v[8];
                if (j.fmt == 1) {
                    const uint8_t* b = reinterpret_cast<const uint8_t*>(&raw[u]);
#pragma unroll
                    for (int x = 0; x < 8; x++) v[x] = (float)((int)b[x] - 128) * s[u];
                } else {
                    const uint8_t* b = reinterpret_cast<const uint8_t*>(&raw[u].x);
#pragma unroll
                    for (int x = 0; x < 4; x++) {
                        v[2 * x] = codes[b[x] >> 4] * s[u];
                        v[2 * x + 1] = codes[b[x] & 15] * s[u];
                    }
                }
                store8(out + e, v);
            }
        }
        // the block's stores visible GPU-wide before it counts itself done
        __threadfence();
        __syncthreads();
        if (threadIdx.x == 0 && atomicAdd(ready + i, 1u) == gridDim.x - 1) st.pass_end[i] = now_ns();
    }
}

// The pass's shapes (threads a block, groups of eight elements a thread a round): session 30's 1024 × 4,
// and more bytes in flight an SM (session 31: 1024 × 4 kept about 30 GB/s an SM beside the GEMMs,
// about 32 KB of int8 loads in flight an SM at a microsecond's latency).
using PassFn = void (*)(const Job*, int, bf16*, bf16*, unsigned*, const unsigned*, unsigned*, Stamps);
constexpr int OV_VARIANTS = 3;
const PassFn PASSES[OV_VARIANTS] = {dequant_all<1024, 4>, dequant_all<1024, 8>, dequant_all<512, 16>};
const int PASS_THREADS[OV_VARIANTS] = {1024, 1024, 512};
const char* const PASS_NAMES[OV_VARIANTS] = {"1024×4", "1024×8", "512×16"};

__global__ void wait_ready(const unsigned* ready, unsigned want, unsigned* fail, unsigned long long* stamp) {
    if (threadIdx.x == 0) {
        wait_for(ready, want, fail);
        *stamp = now_ns();
    }
}

__global__ void mark_done(unsigned* done, unsigned long long* stamp) {
    if (threadIdx.x == 0) {
        *stamp = now_ns();
        asm volatile("st.release.gpu.global.u32 [%0], %1;" ::"l"(done), "r"(1u) : "memory");
    }
}

// Device state of the overlap ways: the jobs of the prompt's weights and their flags.
struct Overlap {
    Job* jobs = nullptr;
    unsigned *ready = nullptr, *done = nullptr, *fail = nullptr;
    Stamps st{};
    int njobs = 0;
    cudaEvent_t start, end;

    void init(const std::vector<Weight>& ws) {
        std::vector<Job> host;
        for (auto& w : ws) host.push_back({w.a, w.b, w.fmt, w.n, w.k});
        njobs = (int)host.size();
        CK(cudaMalloc(&jobs, host.size() * sizeof(Job)));
        CK(cudaMemcpy(jobs, host.data(), host.size() * sizeof(Job), cudaMemcpyHostToDevice));
        CK(cudaMalloc(&ready, (2 * host.size() + 1) * sizeof(unsigned)));
        done = ready + host.size();
        fail = done + host.size();
        CK(cudaMemset(fail, 0, sizeof(unsigned)));
        CK(cudaMalloc(&st.pass_start, 4 * host.size() * sizeof(unsigned long long)));
        st.pass_end = st.pass_start + host.size();
        st.gemm_start = st.pass_end + host.size();
        st.gemm_end = st.gemm_start + host.size();
        CK(cudaEventCreateWithFlags(&start, cudaEventDisableTiming));
        CK(cudaEventCreateWithFlags(&end, cudaEventDisableTiming));
        // loaded now, not at their first launch beside a running pass (see the top)
        CK(cudaMemset(ready, 0, 2 * host.size() * sizeof(unsigned)));
        wait_ready<<<1, 32>>>(ready, 0, fail, st.gemm_start);
        mark_done<<<1, 32>>>(done, st.gemm_end);
        for (int v = 0; v < OV_VARIANTS; v++) {
            CK(cudaFuncSetAttribute(PASSES[v], cudaFuncAttributeMaxDynamicSharedMemorySize, OV_SMEM));
            PASSES[v]<<<1, PASS_THREADS[v], OV_SMEM>>>(jobs, 0, nullptr, nullptr, ready, done, fail, st);
        }
        CK(cudaDeviceSynchronize());
    }
    void free() {
        cudaFree(jobs);
        cudaFree(ready);
        cudaFree(st.pass_start);
        cudaEventDestroy(start);
        cudaEventDestroy(end);
    }
    bool failed() const {
        unsigned f = 0;
        CK(cudaMemcpy(&f, fail, sizeof f, cudaMemcpyDeviceToHost));
        return f != 0;
    }
};

// The prompt's linears with the pass on `held` SMs and cuBLAS on the rest; the GEMM stream s waits
// for the pass's stream at the end, so that timing s covers both.
void run_overlap(Ctx& c, const std::vector<Weight>& ws, Overlap& ov, int held, int v) {
    CK(cudaMemsetAsync(ov.ready, 0, 2 * ws.size() * sizeof(unsigned), c.s));
    CK(cudaEventRecord(ov.start, c.s));
    CK(cudaStreamWaitEvent(c.s2, ov.start));
    PASSES[v]<<<held, PASS_THREADS[v], OV_SMEM, c.s2>>>(ov.jobs, ov.njobs, c.buf[0], c.buf[1], ov.ready, ov.done, ov.fail, ov.st);
    CK(cudaGetLastError());
    CB(cublasSetSmCountTarget(c.h, c.sms - held));
    for (size_t i = 0; i < ws.size(); i++) {
        wait_ready<<<1, 32, 0, c.s>>>(ov.ready + i, (unsigned)held, ov.fail, ov.st.gemm_start + i);
        gemm(c.h, c.buf[i % 2], ws[i].n, ws[i].k, c.xs, c.ys, ws[i].n, 0);
        mark_done<<<1, 32, 0, c.s>>>(ov.done + i, ov.st.gemm_end + i);
    }
    CB(cublasSetSmCountTarget(c.h, 0));
    CK(cudaEventRecord(ov.end, c.s2));
    CK(cudaStreamWaitEvent(c.s, ov.end));
}

// The bf16 GEMMs alone on all but `held` SMs: what the overlap ways' GEMMs cost without the pass.
void run_held_back(Ctx& c, const std::vector<Weight>& dense, int held) {
    CB(cublasSetSmCountTarget(c.h, c.sms - held));
    for (auto& w : dense) gemm(c.h, (const bf16*)w.a, w.n, w.k, c.xs, c.ys, w.n, 0);
    CB(cublasSetSmCountTarget(c.h, 0));
}

// The pass alone on `held` SMs, every wait already met: how fast the held SMs dequantize without the
// GEMMs beside them.
void run_pass_alone(Ctx& c, const std::vector<Weight>& ws, Overlap& ov, int held, int v) {
    CK(cudaMemsetAsync(ov.ready, 0, ws.size() * sizeof(unsigned), c.s));
    // every byte 1: each done flag reads 0x01010101, past the 1 the pass waits for
    CK(cudaMemsetAsync(ov.done, 1, ws.size() * sizeof(unsigned), c.s));
    PASSES[v]<<<held, PASS_THREADS[v], OV_SMEM, c.s>>>(ov.jobs, ov.njobs, c.buf[0], c.buf[1], ov.ready, ov.done, ov.fail, ov.st);
    CK(cudaGetLastError());
}

// What one overlap run's timeline says, in ms: its span, the time the pass and the GEMMs each worked,
// and the time both worked at once (the overlap that the way exists for).
struct Timeline {
    double span, pass, gemm, both;
};

Timeline timeline(const Overlap& ov) {
    const size_t n = ov.njobs;
    std::vector<unsigned long long> t(4 * n);
    CK(cudaMemcpy(t.data(), ov.st.pass_start, t.size() * sizeof t[0], cudaMemcpyDeviceToHost));
    const unsigned long long *ps = t.data(), *pe = ps + n, *gs = pe + n, *ge = gs + n;
    Timeline r{};
    unsigned long long lo = ~0ull, hi = 0;
    for (size_t i = 0; i < n; i++) {
        lo = std::min({lo, ps[i], gs[i]});
        hi = std::max({hi, pe[i], ge[i]});
        r.pass += (double)(pe[i] - ps[i]);
        r.gemm += (double)(ge[i] - gs[i]);
        // each set's intervals follow one another, so the pairwise intersections sum to the overlap
        for (size_t j = 0; j < n; j++) {
            const unsigned long long a = std::max(ps[i], gs[j]), b = std::min(pe[i], ge[j]);
            if (b > a) r.both += (double)(b - a);
        }
    }
    r.span = (double)(hi - lo);
    r.span /= 1e6; r.pass /= 1e6; r.gemm /= 1e6; r.both /= 1e6;
    return r;
}

// The prompt's linears on two streams: deq(i) enqueues weight i's dequantize into buf[i % 2] on s2
// while s multiplies weight i - 1, events ordering them; s joins s2 at the end, so that timing s
// covers both. With `stamps`, each GEMM is stamped in its timeline (two one-warp launches a weight:
// the checked run only).
template <typename Deq>
void run_two_streams(Ctx& c, const std::vector<Weight>& ws, Deq deq, const Overlap* stamps) {
    CK(cudaEventRecord(c.used[1], c.s));
    CK(cudaStreamWaitEvent(c.s2, c.used[1]));
    deq(0);
    CK(cudaEventRecord(c.deq[0], c.s2));
    for (size_t i = 0; i < ws.size(); i++) {
        const int b = i % 2;
        if (i + 1 < ws.size()) {
            // buf[1 - b] is free once the GEMM of weight i - 1 has read it
            CK(cudaStreamWaitEvent(c.s2, c.used[1 - b]));
            deq(i + 1);
            CK(cudaEventRecord(c.deq[1 - b], c.s2));
        }
        CK(cudaStreamWaitEvent(c.s, c.deq[b]));
        if (stamps) wait_ready<<<1, 32, 0, c.s>>>(stamps->ready, 0, stamps->fail, stamps->st.gemm_start + i);
        gemm(c.h, c.buf[b], ws[i].n, ws[i].k, c.xs, c.ys, ws[i].n, 0);
        if (stamps) mark_done<<<1, 32, 0, c.s>>>(stamps->done + i, stamps->st.gemm_end + i);
        CK(cudaEventRecord(c.used[b], c.s));
    }
    CK(cudaEventRecord(c.deq[0], c.s2));
    CK(cudaStreamWaitEvent(c.s, c.deq[0]));
}

// The overlap without a persistent kernel or spinning: the shipped harness's two streams, but each
// weight's pass this file's kernel on one job (so no waits; its own ready counter, whose last block
// stamps the end) launched on `held` blocks, and cuBLAS told to use the other SMs. Nothing waits on
// a flag, so no kernel load can deadlock it, and minilab could run it with streams and events alone.
void run_launches(Ctx& c, const std::vector<Weight>& ws, Overlap& ov, int held, int v) {
    CK(cudaMemsetAsync(ov.ready, 0, ws.size() * sizeof(unsigned), c.s));
    CB(cublasSetSmCountTarget(c.h, c.sms - held));
    run_two_streams(c, ws, [&](size_t i) {
        const Stamps st{ov.st.pass_start + i, ov.st.pass_end + i, ov.st.gemm_start + i, ov.st.gemm_end + i};
        PASSES[v]<<<held, PASS_THREADS[v], OV_SMEM, c.s2>>>(ov.jobs + i, 1, c.buf[i % 2], nullptr, ov.ready + i,
                                                            ov.done, ov.fail, st);
        CK(cudaGetLastError());
    }, c.stamp ? &ov : nullptr);
    CB(cublasSetSmCountTarget(c.h, 0));
}
