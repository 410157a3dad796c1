// The walk of gemv_bench --ahead (ahead.cuh), for the host and the GPU: the ways, which pieces of
// which weights each warp takes and in what order, and the bulk copies that bring a piece into a
// ring slot. bench/kernels/ahead_walk.cu checks them on the CPU before every harness build.
#pragma once
#include "../../src/kernels/cuda/gemv_accumulate.cuh"

namespace ahead {

// How a way runs a step: one persistent launch without barriers (the bound) or with a grid barrier
// at each stage's end; or a chain of launches, one a stage, on one block an SM so that the next
// launch's block fits beside it, with programmatic dependent launch (the next launch's producer
// starts copying while this one computes; its consumers wait for this one to finish) or plainly.
enum Mode { FREE = 0, BARRIERS = 1, CHAIN_PDL = 2, CHAIN = 3 };
// One way: R rows a warp, CW consumer warps a block, D slots a warp of PIECE bytes a row.
struct Way {
    int r, cw, d, piece, mode;
    const char* name;
};
constexpr Way WAYS[] = {
    {2, 8, 4, 2048, FREE, "ahead R2, 8 warps, 4 × 2 KB, no barriers"},
    {2, 8, 4, 2048, BARRIERS, "ahead R2, 8 warps, 4 × 2 KB"},
    {2, 16, 3, 1024, FREE, "ahead R2, 16 warps, 3 × 1 KB, no barriers"},
    {2, 16, 3, 1024, BARRIERS, "ahead R2, 16 warps, 3 × 1 KB"},
    {2, 16, 2, 2048, BARRIERS, "ahead R2, 16 warps, 2 × 2 KB"},
    {2, 24, 2, 1024, BARRIERS, "ahead R2, 24 warps, 2 × 1 KB"},
    {4, 8, 3, 1024, BARRIERS, "ahead R4, 8 warps, 3 × 1 KB"},
    {2, 8, 4, 1024, CHAIN_PDL, "chain + PDL, R2, 8 warps, 4 × 1 KB"},
    {2, 12, 3, 1024, CHAIN_PDL, "chain + PDL, R2, 12 warps, 3 × 1 KB"},
    {4, 8, 2, 1024, CHAIN_PDL, "chain + PDL, R4, 8 warps, 2 × 1 KB"},
    {2, 12, 3, 1024, CHAIN, "chain, R2, 12 warps, 3 × 1 KB"}};
constexpr int NWAYS = sizeof(WAYS) / sizeof(WAYS[0]);

// One ring slot: R rows of a piece of at most PIECE bytes each, then (NF4) their absmax, 4 bytes a 32.
template <int F, int R, int PIECE> struct Slot {
    static constexpr int SCALE = gemv::nf4_like<F>() ? PIECE / 8 : 0;
    static constexpr int BYTES = (R * (PIECE + SCALE) + 127) / 128 * 128;
    static constexpr int ELEMS = F == gemv::DENSE ? PIECE / 2 : F == gemv::INT8 ? PIECE : 2 * PIECE;
    // where row r's weights and absmax start in the slot
    __host__ __device__ static constexpr unsigned weights_at(int r) { return r * PIECE; }
    __host__ __device__ static constexpr unsigned absmax_at(int r) { return R * PIECE + r * SCALE; }
};

// Elements of a row one warp step takes (32 lanes × 16 bytes).
__host__ __device__ constexpr int warp_step(int fmt) { return 32 * (fmt == gemv::DENSE ? 8 : fmt == gemv::INT8 ? 16 : 32); }
// Whether a weight suits the walk: k a whole number of warp steps (so every piece is, and every
// copy a multiple of 16 bytes at 16-byte offsets), n a whole number of row groups.
__host__ __device__ constexpr bool fits(int fmt, int n, int k, int r) { return k % warp_step(fmt) == 0 && n % r == 0; }

// The weight that row group g belongs to: the last whose first group is at or before g.
__host__ __device__ inline int seg_at(const int* warp0, int count, int g) {
    int lo = 0, hi = count - 1;
    while (lo < hi) {
        const int mid = (lo + hi + 1) >> 1;
        if (warp0[mid] <= g) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

// A step's weights as the walk takes them: each weight's Seg (its Part p, its k and its first row
// group warp0), those first groups again (for seg_at), and the first group of each stage and past
// the last.
template <typename Seg> struct Walk {
    const Seg* segs;
    const int* warp0;
    int count;
    const int* stage_g0;
    int stages;
};

// Calls piece(seg, row0, k0, len) for each piece of k of each row group that warp `me` of `warps`
// takes, stage by stage (barriers.cuh's order: group g = stage_g0[st] + me, then every `warps`-th),
// and stage_end(st) after every stage, whether the warp had groups in it or not.
#pragma nv_exec_check_disable
template <int R, int ELEMS, typename Seg, typename Piece, typename StageEnd>
__host__ __device__ inline void walk(const Walk<Seg>& wk, int me, int warps, Piece piece, StageEnd stage_end) {
    for (int st = 0; st < wk.stages; st++) {
        for (int g = wk.stage_g0[st] + me; g < wk.stage_g0[st + 1]; g += warps) {
            const Seg s = wk.segs[seg_at(wk.warp0, wk.count, g)];
            const int row0 = (g - s.warp0) * R;
            for (int k0 = 0; k0 < s.k; k0 += ELEMS) piece(s, row0, k0, s.k - k0 < ELEMS ? s.k - k0 : ELEMS);
        }
        stage_end(st);
    }
}

// The same walk one piece at a time, for the producer: its lanes each step a cursor in one loop and
// never block, where a lane blocked inside walk would hold up the warp's other lanes.
template <int R, int ELEMS, typename Seg> struct Cursor {
    Walk<Seg> wk;
    int me, warps;
    int st = 0, g = 0, k0 = 0;
    Seg s{};

    __host__ __device__ Cursor(const Walk<Seg>& wk, int me, int warps) : wk(wk), me(me), warps(warps) {
        g = wk.stages > 0 ? wk.stage_g0[0] + me : 0;
        settle();
    }
    __host__ __device__ bool done() const { return st >= wk.stages; }
    __host__ __device__ int row0() const { return (g - s.warp0) * R; }
    __host__ __device__ int len() const { return s.k - k0 < ELEMS ? s.k - k0 : ELEMS; }
    __host__ __device__ void next() {
        k0 += ELEMS;
        if (k0 < s.k) return;
        k0 = 0;
        g += warps;
        settle();
    }

  private:
    // past the current stage's groups: on to the next stage that has one for this warp
    __host__ __device__ void settle() {
        while (st < wk.stages && g >= wk.stage_g0[st + 1])
            if (++st < wk.stages) g = wk.stage_g0[st] + me;
        if (st < wk.stages) s = wk.segs[seg_at(wk.warp0, wk.count, g)];
    }
};

// One bulk copy: `bytes` from `src` (global memory) to byte `dst` of a slot.
struct Copy {
    const void* src;
    unsigned dst, bytes;
};

// The copies that bring rows row0 … row0 + R − 1 of p (a weight of k columns), elements k0 …
// k0 + len − 1 of each, into a slot (row r's weights at Slot::weights_at(r), its NF4 absmax at
// absmax_at(r)). Returns the bytes of all (what the slot's mbarrier must expect); *count gets how many.
template <int F, int R, int PIECE>
__host__ __device__ inline unsigned piece_copies(const gemv::Part& p, int k, int row0, int k0, int len, Copy (&out)[2 * R],
                                                 int* count) {
    using S = Slot<F, R, PIECE>;
    const unsigned wb = (unsigned)gemv::weight_bytes<__nv_bfloat16, F>(len), sb = gemv::nf4_like<F>() ? len / 16 : 0;
    int c = 0;
    for (int r = 0; r < R; r++) {
        const size_t at = (size_t)(row0 + r) * k + k0;
        out[c++] = Copy{p.a + gemv::weight_bytes<__nv_bfloat16, F>(at), S::weights_at(r), wb};
        if (gemv::nf4_like<F>()) out[c++] = Copy{p.b + at / 64, S::absmax_at(r), sb};
    }
    *count = c;
    return R * (wb + sb);
}

}  // namespace ahead
