// The streaming GEMVs' walk over their steps (src/kernels/cuda/gemv_stream.cuh), checked on the CPU:
// no GPU needed, so every harness build runs it (bench/kernels/build.sh). For launches of every mode
// and format, with Llama shapes and odd ones, split over grids of 1 to 5000 warps, each warp's issue
// walk (StreamAt) must visit, step after step, exactly the addresses its consume loop reads (unit
// u0 + i / spr, step i % spr), and the units (Units::at) must be the shipped grid's row groups
// (gemv.cuh's gemv_parts): every row of every part taken by exactly one warp, in the shipped order.
// The expected rows below are written from gemv_parts, not from gemv_stream.cuh.
#include <cstdio>
#include <cstdlib>
#include <set>
#include <tuple>
#include <vector>

#include "../../src/kernels/cuda/gemv_stream.cuh"

namespace {

// Fake device addresses: part i's weights at (i + 1)·2^40, its absmax at (i + 5)·2^40.
const uint8_t* weights_of(int part) { return reinterpret_cast<const uint8_t*>((uintptr_t)(part + 1) << 40); }
const float* absmax_of(int part) { return reinterpret_cast<const float*>((uintptr_t)(part + 5) << 40); }

// What gemv_parts hands warp group g: the part and rows (in the warp's order r = 0 … R − 1).
template <int R> int shipped_rows(const gemv::Parts& ps, int g, int* rows) {
    const int n0 = ps.p[0].n, n1 = ps.count > 1 ? ps.p[1].n : 0;
    if (ps.mode == gemv::SILU) {  // R/2 rows of gate, then the same of up (part 1)
        for (int r = 0; r < R; r++) rows[r] = std::min(g * (R / 2) + r % (R / 2), n0 - 1);
        return 0;
    }
    if (ps.mode == gemv::ROPE) {
        const int half = ps.rope.d / 2, gq = n0 / 2, gk = n1 / 2;
        if (g < gq + gk) {
            const int h = g < gq ? g : g - gq, r0 = h / half * 2 * half + h % half;
            rows[0] = r0;
            rows[1] = r0 + half;
            return g < gq ? 0 : 1;
        }
        const int r0 = (g - gq - gk) * 2;
        rows[0] = r0;
        rows[1] = std::min(r0 + 1, ps.p[2].n - 1);
        return 2;
    }
    int part = 0, first = g;
    while (part < ps.count - 1 && first >= (ps.p[part].n + R - 1) / R) first -= (ps.p[part++].n + R - 1) / R;
    for (int r = 0; r < R; r++) rows[r] = std::min(first * R + r, ps.p[part].n - 1);
    return part;
}

template <int R> int shipped_groups(const gemv::Parts& ps) {
    if (ps.mode == gemv::SILU) return (ps.p[0].n + R / 2 - 1) / (R / 2);
    if (ps.mode == gemv::ROPE) return ps.p[0].n / 2 + ps.p[1].n / 2 + (ps.p[2].n + 1) / 2;
    int g = 0;
    for (int i = 0; i < ps.count; i++) g += (ps.p[i].n + R - 1) / R;
    return g;
}

// One launch split over `warps` warps: returns the failures (and prints the first few).
template <typename T, int F, int R> int check(const gemv::Parts& ps, long long warps, const char* what) {
    constexpr int E = gemv::step_elems<F>();
    const gemv::Units<R> un(ps);
    const int spr = ps.k / (32 * E);
    int fails = 0;
    const auto fail = [&](const char* why, long long w, long long i) {
        if (fails++ < 5) printf("FAIL %s, %lld warps: warp %lld step %lld: %s\n", what, warps, w, i, why);
    };
    if (un.count != shipped_groups<R>(ps)) fail("unit count differs from the shipped groups", -1, -1);
    std::vector<int> taken(un.count, 0);
    for (long long gw = 0; gw < warps; gw++) {
        const int u0 = (int)(un.count * gw / warps), u1 = (int)(un.count * (gw + 1) / warps);
        const int steps = (u1 - u0) * spr;
        for (int lane : {0, 13, 31}) {
            gemv::StreamAt<T, F, R> in{u0, 0, spr, u1, lane, {}, {}};
            if (steps > 0) in.locate(ps, un);
            for (int i = 0; i < steps; i++) {
                const int u = u0 + i / spr, t = i % spr;
                int rows[R];
                const int part = shipped_rows<R>(ps, u, rows);
                for (int r = 0; r < R; r++) {
                    const int p = ps.mode == gemv::SILU && r >= R / 2 ? 1 : part;
                    const size_t first = (size_t)rows[r] * ps.k;
                    const uint8_t* w = weights_of(p) + gemv::weight_bytes<T, F>(first) + t * 512 + lane * 16;
                    if (in.w[r] != w) fail("weight address", gw, i);
                    if (gemv::nf4_like<F>() && in.sc[r] != absmax_of(p) + first / 64 + t * 16 + lane / 2) fail("absmax address", gw, i);
                }
                in.next(ps, un);
            }
        }
        for (int u = u0; u < u1; u++) {
            taken[u]++;
            int row0, stride, rows[R];
            const int part = un.at(u, &row0, &stride), want = shipped_rows<R>(ps, u, rows);
            // the second row of a pair (SILU's is up's row0, checked by the addresses above)
            const bool second = R == 2 && ps.mode != gemv::SILU;
            if (part != want || row0 != rows[0] || (second && std::min(row0 + stride, ps.p[part].n - 1) != rows[1]))
                fail("unit's part and rows (the store's) differ from the shipped group's", gw, u);
        }
    }
    for (int u = 0; u < un.count; u++)
        if (taken[u] != 1) fail("a unit taken other than once", -1, u);
    return fails;
}

gemv::Parts parts(int mode, int k, std::vector<int> ns, int d = 0) {
    gemv::Parts ps{};
    ps.count = (int)ns.size();
    ps.m = 1;
    ps.k = k;
    ps.mode = mode;
    ps.rope.d = d;
    for (int i = 0; i < ps.count; i++) ps.p[i] = gemv::Part{weights_of(i), absmax_of(i), nullptr, ns[i]};
    return ps;
}

template <int F> int check_format(const char* fmt) {
    int fails = 0;
    struct Case { const char* name; gemv::Parts ps; };
    const std::vector<Case> cases = {
        {"3B q/k/v plain", parts(gemv::PLAIN, 3072, {3072, 1024, 1024})},
        {"odd rows, three parts", parts(gemv::PLAIN, 4096, {7, 1, 5})},
        {"3B head", parts(gemv::PLAIN, 3072, {128256})},
        {"8B down residual", parts(gemv::RESID, 14336, {4096})},
        {"3B gate/up silu", parts(gemv::SILU, 3072, {8192, 8192})},
        {"odd silu", parts(gemv::SILU, 2048, {9, 9})},
        {"3B q/k/v rope", parts(gemv::ROPE, 3072, {3072, 1024, 1024}, 128)},
        {"8B q/k/v rope", parts(gemv::ROPE, 4096, {4096, 1024, 1024}, 128)},
        {"small rope", parts(gemv::ROPE, 2048, {64, 32, 32}, 16)},
    };
    for (const Case& c : cases) {
        for (long long warps : {1LL, 3LL, 97LL, 1056LL, 4752LL, 5000LL}) {
            char what[96];
            snprintf(what, sizeof what, "%s %s R2", fmt, c.name);
            fails += check<__nv_bfloat16, F, 2>(c.ps, warps, what);
            if (F == gemv::NF4 && c.ps.mode != gemv::ROPE) {
                snprintf(what, sizeof what, "%s %s R4", fmt, c.name);
                fails += check<__nv_bfloat16, F, 4>(c.ps, warps, what);
            }
        }
    }
    return fails;
}

}  // namespace

int main() {
    const int fails = check_format<gemv::DENSE>("bf16") + check_format<gemv::INT8>("int8") + check_format<gemv::NF4>("nf4");
    printf("stream walk: %s (%d failures)\n", fails ? "FAIL" : "every step's address and every unit as shipped", fails);
    return fails ? 1 : 0;
}
