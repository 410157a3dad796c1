// The walk of gemv_bench --ahead (ahead_walk.cuh), checked on the CPU: no GPU needed, so every
// harness build runs it (bench/kernels/build.sh). For each way and format, on the 3B's and the 8B's
// step (two blocks and the head), walked by grids of 1, 5 and 132 blocks: each warp's producer
// cursor must yield the pieces of its consumer walk, in order; the producer's bulk copies must bring
// every weight byte and every NF4 absmax into a slot exactly once, each to where the consumer reads
// that row (Slot::weights_at, absmax_at), no two copies of a piece overlapping, each a multiple of
// 16 bytes at 16-byte-aligned addresses inside its slot, and the bytes the slot's mbarrier expects
// equal to the copies' sum; every warp must take its stages in order, each piece whole warp steps
// of k; and an odd shape must be refused (fits). A chain way's launches each walk one stage of this
// walk, so they take the same pieces.
#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <utility>
#include <vector>

#include "ahead_walk.cuh"

namespace {

struct HSeg {
    gemv::Part p;
    int k, warp0;
};
// Fake device addresses: weight i's codes at (i + 1)·2^36, its absmax 2^35 further on.
uintptr_t codes_of(int i) { return (uintptr_t)(i + 1) << 36; }
uintptr_t absmax_of(int i) { return codes_of(i) + ((uintptr_t)1 << 35); }

struct Step {
    std::vector<HSeg> segs;
    std::vector<int> warp0, stage_g0;
    std::vector<size_t> code_bytes, absmax_bytes;
};

// Two blocks of q k v o gate up down and the head, as gemv_core.cuh's step_weights; the stages as
// step_launches (q/k/v, o, gate/up, down, …, head), at R rows a group.
Step step_of(int fmt, int hidden, int kv, int ffn, int r) {
    Step st;
    std::vector<std::pair<int, int>> dims;
    std::vector<int> stage_sizes;
    for (int b = 0; b < 2; b++) {
        for (auto d : {std::pair<int, int>{hidden, hidden}, {kv, hidden}, {kv, hidden}, {hidden, hidden}, {ffn, hidden},
                       {ffn, hidden}, {hidden, ffn}})
            dims.push_back(d);
        for (int n : {3, 1, 2, 1}) stage_sizes.push_back(n);
    }
    dims.push_back({128256, hidden});
    stage_sizes.push_back(1);
    int groups = 0;
    for (size_t i = 0; i < dims.size(); i++) {
        const int n = dims[i].first, k = dims[i].second;
        const size_t elems = (size_t)n * k;
        gemv::Part p{reinterpret_cast<const uint8_t*>(codes_of((int)i)), reinterpret_cast<const float*>(absmax_of((int)i)),
                     nullptr, n, fmt};
        st.segs.push_back(HSeg{p, k, groups});
        st.warp0.push_back(groups);
        st.code_bytes.push_back(fmt == gemv::DENSE ? elems * 2 : fmt == gemv::INT8 ? elems : elems / 2);
        st.absmax_bytes.push_back(fmt == gemv::NF4 ? elems / 64 * 4 : 0);
        groups += (n + r - 1) / r;
    }
    size_t at = 0;
    for (int size : stage_sizes) {
        st.stage_g0.push_back(st.warp0[at]);
        at += size;
    }
    st.stage_g0.push_back(groups);
    return st;
}

int failures = 0;
void fail(const char* what, int fmt, int way, int blocks) {
    if (failures++ < 20) fprintf(stderr, "ahead_walk: %s (format %d, way %d, %d blocks)\n", what, fmt, way, blocks);
}

// Every byte of [0, total) in exactly one of the (offset, bytes) spans.
bool tiles(std::vector<std::pair<size_t, size_t>>& spans, size_t total) {
    std::sort(spans.begin(), spans.end());
    size_t next = 0;
    for (auto& s : spans) {
        if (s.first != next) return false;
        next += s.second;
    }
    return next == total;
}

using Spans = std::vector<std::vector<std::pair<size_t, size_t>>>;  // [weight] (offset, bytes)

// One piece as the producer copies it: each copy checked, its source span added to codes / absmax.
template <int F, int W> void check_piece(const Step& st, const HSeg& s, int row0, int k0, int len, Spans& codes, Spans& absmax,
                                         int blocks) {
    constexpr ahead::Way w = ahead::WAYS[W];
    using S = ahead::Slot<F, w.r, w.piece>;
    if (len <= 0 || len > S::ELEMS || len % ahead::warp_step(F) || row0 + w.r > s.p.n) fail("a piece out of its weight", F, W, blocks);
    ahead::Copy cps[2 * w.r];
    int n = 0;
    const unsigned bytes = ahead::piece_copies<F, w.r, w.piece>(s.p, s.k, row0, k0, len, cps, &n);
    const int i = ahead::seg_at(st.warp0.data(), (int)st.segs.size(), s.warp0);
    unsigned sum = 0;
    std::vector<std::pair<unsigned, unsigned>> in_slot;
    for (int c = 0; c < n; c++) {
        const uintptr_t src = (uintptr_t)cps[c].src;
        sum += cps[c].bytes;
        in_slot.push_back({cps[c].dst, cps[c].dst + cps[c].bytes});
        if (cps[c].bytes % 16 || src % 16 || cps[c].dst % 16 || cps[c].dst + cps[c].bytes > (unsigned)S::BYTES)
            fail("a copy misaligned or past its slot", F, W, blocks);
        // the copy must land where the consumer reads its row: row r of the group at weights_at(r)
        // or absmax_at(r), from element k0 on
        const bool is_absmax = src >= absmax_of(i);
        const size_t off = src - (is_absmax ? absmax_of(i) : codes_of(i));
        const size_t row_bytes = is_absmax ? s.k / 16 : gemv::weight_bytes<__nv_bfloat16, F>(s.k);
        const int r = (int)(off / row_bytes) - row0;
        const size_t col = off % row_bytes, want_col = is_absmax ? k0 / 16 : gemv::weight_bytes<__nv_bfloat16, F>(k0);
        if (r < 0 || r >= w.r || col != want_col || cps[c].dst != (is_absmax ? S::absmax_at(r) : S::weights_at(r)))
            fail("a copy lands where the consumer does not read its row", F, W, blocks);
        (is_absmax ? absmax : codes)[i].push_back({off, cps[c].bytes});
    }
    if (sum != bytes) fail("the expected bytes are not the copies' sum", F, W, blocks);
    std::sort(in_slot.begin(), in_slot.end());
    for (size_t c = 1; c < in_slot.size(); c++)
        if (in_slot[c].first < in_slot[c - 1].second) fail("two copies of a piece overlap in its slot", F, W, blocks);
}

// Every warp's walk (the consumer's) against its cursor (the producer's), piece for piece; the
// cursor's copies must cover every weight exactly once.
template <int F, int W> void check(const Step& st, int blocks) {
    constexpr ahead::Way w = ahead::WAYS[W];
    using S = ahead::Slot<F, w.r, w.piece>;
    const int warps = blocks * w.cw, count = (int)st.segs.size(), stages = (int)st.stage_g0.size() - 1;
    const ahead::Walk<HSeg> wk{st.segs.data(), st.warp0.data(), count, st.stage_g0.data(), stages};
    Spans codes(count), absmax(count);
    for (int me = 0; me < warps; me++) {
        std::vector<std::array<int, 4>> walked;  // weight, row0, k0, len
        int stage = -1;
        bool stage_ok = true;
        ahead::walk<w.r, S::ELEMS>(wk, me, warps,
            [&](const HSeg& s, int row0, int k0, int len) { walked.push_back({s.warp0, row0, k0, len}); },
            [&](int s) { stage_ok = stage_ok && s == stage + 1; stage = s; });
        if (!stage_ok || stage != stages - 1) fail("a warp's stages out of order", F, W, blocks);
        size_t at = 0;
        for (ahead::Cursor<w.r, S::ELEMS, HSeg> cur(wk, me, warps); !cur.done(); cur.next(), at++) {
            if (at >= walked.size() || walked[at] != std::array<int, 4>{cur.s.warp0, cur.row0(), cur.k0, cur.len()}) {
                fail("the producer's cursor leaves the consumer's walk", F, W, blocks);
                break;
            }
            check_piece<F, W>(st, cur.s, cur.row0(), cur.k0, cur.len(), codes, absmax, blocks);
        }
        if (at != walked.size()) fail("the producer's cursor stops before the consumer's walk", F, W, blocks);
    }
    for (int i = 0; i < count; i++) {
        if (!tiles(codes[i], st.code_bytes[i])) fail("a weight's codes not copied exactly once", F, W, blocks);
        if (!tiles(absmax[i], st.absmax_bytes[i])) fail("a weight's absmax not copied exactly once", F, W, blocks);
    }
}

template <int F, size_t... W> void check_ways(std::index_sequence<W...>) {
    for (auto md : {std::array<int, 3>{3072, 1024, 8192}, {4096, 1024, 14336}})
        for (int blocks : {1, 5, 132})
            ((check<F, W>(step_of(F, md[0], md[1], md[2], ahead::WAYS[W].r), blocks)), ...);
}

}  // namespace

int main() {
    const auto ways = std::make_index_sequence<ahead::NWAYS>{};
    check_ways<gemv::DENSE>(ways);
    check_ways<gemv::INT8>(ways);
    check_ways<gemv::NF4>(ways);
    if (ahead::fits(gemv::NF4, 3072, 3000, 2) || ahead::fits(gemv::INT8, 3071, 3072, 2) || !ahead::fits(gemv::DENSE, 1024, 256, 4))
        fail("fits judges a shape wrongly", -1, -1, 0);
    if (failures) {
        fprintf(stderr, "ahead_walk: %d failures\n", failures);
        return 1;
    }
    printf("ahead_walk: every way's walk and copies check out (%d ways, 3 formats, 3B and 8B, 1/5/132 blocks)\n", ahead::NWAYS);
    return 0;
}
