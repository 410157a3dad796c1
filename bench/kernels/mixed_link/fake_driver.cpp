// Runs the `cutlass` feature's host half (src/kernels/cuda/cutlass/params.cu, its CUDA references
// renamed as build.rs renames them, with driver.cpp) on a machine with no GPU and no CUDA library:
// the driver entry points it is handed are fakes here (a cuTensorMapEncodeTiled that records its
// arguments, device queries answered as an H100's), then its Params for a 3B gate shape are checked
// against what the problem implies, for int8 and NF4. Exit 0 when every check holds; each failure
// is one line on stderr.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

struct Tma { unsigned dtype, rank; const void* addr; uint64_t dims[5], strides[4]; unsigned box[5]; };
static std::vector<Tma> g_tma;

static int fake_encode(void* map, unsigned dtype, unsigned rank, void* addr, const uint64_t* dims,
                       const uint64_t* strides, const unsigned* box, const unsigned*, unsigned, unsigned, unsigned,
                       unsigned) {
    Tma t{dtype, rank, addr, {}, {}, {}};
    for (unsigned i = 0; i < rank && i < 5; i++) {
        t.dims[i] = dims[i];
        t.box[i] = box[i];
        if (i + 1 < rank) t.strides[i] = strides[i];
    }
    g_tma.push_back(t);
    memset(map, 0xab, 128);
    return 0;
}
static int fake_ctx_get_device(int* d) { *d = 0; return 0; }
// 16: multiprocessors, 97: opt-in shared memory a block
static int fake_device_get_attribute(int* v, int attr, int) { *v = attr == 16 ? 132 : attr == 97 ? 232448 : 0; return 0; }

extern "C" {
void minilab_mixed_set_driver(void*, void*, void*);
int minilab_mixed_params(int, int, int, int, int, const void*, const void*, const void*, void*, int, void*,
                         unsigned long, unsigned*);
}

static int g_fail = 0;
static void expect(bool ok, const char* what) {
    if (!ok) { fprintf(stderr, "FAIL: %s\n", what); g_fail = 1; }
}
static const Tma* tma_of(const void* addr) {
    for (auto& t : g_tma) if (t.addr == addr) return &t;
    return nullptr;
}

static void* const WQ = (void*)0x10000000;
static void* const SCALES = (void*)0x20000000;
static void* const XS = (void*)0x30000000;
static void* const YS = (void*)0x40000000;

// One kind and tile (0 coop 128 × 128, 1 coop 128 × 256, 2 ping-pong 64 × 128) at the 3B gate shape
// (8192 × 3072) and 512 rows; wants the weight descriptor's innermost extent and row stride in bytes,
// and how many descriptors the kind builds.
static void check_kind(int kind, int tile, const char* name, uint64_t a_inner, uint64_t a_row_bytes, size_t descriptors) {
    alignas(64) static unsigned char params[8192];
    unsigned d[6] = {};
    const int n = 8192, m = 512, k = 3072, sms = 132;
    g_tma.clear();
    const int rc = minilab_mixed_params(kind, tile, n, m, k, WQ, SCALES, XS, YS, sms, params, sizeof params, d);
    printf("%s tile %d: rc %d, grid %u × %u × %u, block %u, shared %u bytes, Params %u bytes, %zu TMA descriptors\n", name, tile, rc,
           d[0], d[1], d[2], d[3], d[4], d[5], g_tma.size());
    for (auto& t : g_tma)
        printf("  tma %p: dtype %u, dims %llu × %llu, row stride %llu bytes, box %u × %u\n", t.addr, t.dtype,
               (unsigned long long)t.dims[0], (unsigned long long)t.dims[1], (unsigned long long)t.strides[0], t.box[0],
               t.box[1]);
    expect(rc == 0, "a 3B gate shape at 512 rows is accepted");
    expect(g_tma.size() == descriptors, "one descriptor for each tensor the kind reads or writes");
    const Tma *a = tma_of(WQ), *b = tma_of(XS), *o = tma_of(YS);
    expect(a && a->dims[0] == a_inner && a->dims[1] == (uint64_t)n && a->strides[0] == a_row_bytes,
           "the weight: n rows of its stored codes");
    expect(b && b->dims[0] == (uint64_t)k && b->dims[1] == (uint64_t)m && b->strides[0] == 2ull * k,
           "xs: k × m bf16, a row of 2k bytes");
    expect(tma_of(SCALES) != nullptr, "the scales are read");
    expect(o && o->dims[0] == (uint64_t)n && o->dims[1] == (uint64_t)m && o->strides[0] == 2ull * n,
           "ys: n × m bf16, a row of 2n bytes");
    const int tile_n[3] = {128, 128, 64}, tile_m[3] = {128, 256, 128};
    const unsigned tiles = (n / tile_n[tile]) * (m / tile_m[tile]);
    expect(d[0] * d[1] * d[2] == (tiles < (unsigned)sms ? tiles : (unsigned)sms), "a block a tile, at most one an SM");
    expect(d[3] == 384, "a producer and two consumer warpgroups (ping-pong's on a tile each)");
    expect(d[4] > 48 * 1024 && d[4] <= 232448, "shared memory past 48 KB (an opt-in) and within an H100's");
    expect(d[5] <= 4096, "Params fit a kernel argument (src/kernels/cuda/cutlass.rs: PARAMS_CAP)");
    expect(minilab_mixed_params(kind, tile, n, m, k, WQ, SCALES, XS, YS, sms, params, 16, d) == 3,
           "a short buffer is refused");
    expect(minilab_mixed_params(kind, tile, n, m, 3000, WQ, SCALES, XS, YS, sms, params, sizeof params, d) == 1,
           "k not a multiple of the 16-byte TMA alignment is refused");
}

int main() {
    minilab_mixed_set_driver((void*)fake_encode, (void*)fake_ctx_get_device, (void*)fake_device_get_attribute);
    // int8: codes q + 128, k bytes a row; scales and zero points
    for (int tile = 0; tile < 3; tile++) {
        check_kind(0, tile, "int8", 3072, 3072, 4);
    }
    // NF4: two codes a byte, k/2 bytes a row (CUTLASS describes 4-bit codes to TMA as bytes); the
    // absmax transposed to [k/64, n]
    for (int tile = 0; tile < 3; tile++) {
        check_kind(1, tile, "nf4", 1536, 1536, 4);
        const Tma* s = tma_of(SCALES);
        expect(s && s->dims[0] == 8192 && s->dims[1] == 3072 / 64 && s->strides[0] == 8192ull * 4,
               "the NF4 absmax: k/64 rows of n f32, n contiguous");
    }
    alignas(64) static unsigned char params[8192];
    unsigned d[6];
    expect(minilab_mixed_params(0, 3, 8192, 512, 3072, WQ, SCALES, XS, YS, 132, params, sizeof params, d) == 4,
           "an unknown tile is refused");
    expect(minilab_mixed_params(7, 0, 8192, 512, 3072, WQ, SCALES, XS, YS, 132, params, sizeof params, d) == 4,
           "an unknown kind is refused");
    printf(g_fail ? "link probe: FAIL\n" : "link probe: pass\n");
    return g_fail;
}
