// Runs params.cu's host half on a machine with no GPU and no CUDA library: the symbols it needs are
// defined here (a cuTensorMapEncodeTiled that records its arguments, device queries answered as an
// H100's, no-op registration hooks), then its Params for a 3B gate shape are checked against what the
// problem implies. Exit 0 when every check holds; each failure is one line on stderr.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

struct Tma { int dtype; unsigned rank; const void* addr; uint64_t dims[5], strides[4]; unsigned box[5]; };
static std::vector<Tma> g_tma;

extern "C" {
int cuTensorMapEncodeTiled(void* map, int dtype, unsigned rank, void* addr, const uint64_t* dims,
                           const uint64_t* strides, const unsigned* box, const unsigned*, int, int, int, int) {
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
int cudaGetDevice(int* d) { *d = 0; return 0; }
// 16: multiprocessors, 97: opt-in shared memory a block (the runtime's and the driver's numbers agree)
int cudaDeviceGetAttribute(int* v, int attr, int) { *v = attr == 16 ? 132 : attr == 97 ? 232448 : 0; return 0; }
void** __cudaRegisterFatBinary(void*) { static void* h; return &h; }
void __cudaRegisterFatBinaryEnd(void**) {}
void __cudaUnregisterFatBinary(void**) {}
void __cudaRegisterVar(void**, char*, char*, const char*, int, size_t, int, int) {}
int minilab_mixed_int8_params(int, int, int, const void*, const void*, const void*, void*, int, void*, unsigned long,
                              unsigned*);
}

static int g_fail = 0;
static void expect(bool ok, const char* what) {
    if (!ok) { fprintf(stderr, "FAIL: %s\n", what); g_fail = 1; }
}

// The descriptor over `addr`, or null.
static const Tma* tma_of(const void* addr) {
    for (auto& t : g_tma) if (t.addr == addr) return &t;
    return nullptr;
}

int main() {
    alignas(64) static unsigned char params[8192];
    unsigned d[6];
    const int n = 8192, m = 512, k = 3072, sms = 132;
    void *wq = (void*)0x10000000, *sc = (void*)0x20000000, *xs = (void*)0x30000000, *ys = (void*)0x40000000;
    const int rc = minilab_mixed_int8_params(n, m, k, wq, sc, xs, ys, sms, params, sizeof params, d);
    expect(rc == 0, "a 3B gate shape at 512 rows is accepted");
    printf("grid %u × %u × %u, block %u, shared %u bytes, Params %u bytes, %zu TMA descriptors\n", d[0], d[1], d[2],
           d[3], d[4], d[5], g_tma.size());
    for (auto& t : g_tma)
        printf("  tma %p: dtype %d, dims %llu × %llu, row stride %llu bytes, box %u × %u\n", t.addr, t.dtype,
               (unsigned long long)t.dims[0], (unsigned long long)t.dims[1], (unsigned long long)t.strides[0], t.box[0],
               t.box[1]);
    const Tma *a = tma_of(wq), *b = tma_of(xs), *s = tma_of(sc), *o = tma_of(ys);
    expect(a && a->dims[0] == (uint64_t)k && a->dims[1] == (uint64_t)n && a->strides[0] == (uint64_t)k,
           "the weight: k × n int8 codes, a row of k bytes");
    expect(b && b->dims[0] == (uint64_t)k && b->dims[1] == (uint64_t)m && b->strides[0] == 2ull * k,
           "xs: k × m bf16, a row of 2k bytes");
    expect(s && s->dims[0] == (uint64_t)n, "the scales: n of them");
    expect(o && o->dims[0] == (uint64_t)n && o->dims[1] == (uint64_t)m && o->strides[0] == 2ull * n,
           "ys: n × m bf16, a row of 2n bytes");
    // a persistent grid: one block an SM while there are more tiles (64 × 4 = 256 here) than SMs
    expect(d[0] * d[1] * d[2] == (unsigned)sms, "one block an SM");
    expect(d[3] == 384, "a producer and two consumer warpgroups");
    expect(d[4] > 48 * 1024 && d[4] <= 232448, "shared memory past 48 KB (an opt-in) and within an H100's");
    expect(d[5] <= 4096, "Params fit a kernel argument");
    expect(minilab_mixed_int8_params(n, m, k, wq, sc, xs, ys, sms, params, 16, d) == 3, "a short buffer is refused");
    expect(minilab_mixed_int8_params(n, m, 3000, wq, sc, xs, ys, sms, params, sizeof params, d) == 1,
           "k not a multiple of the 16-byte TMA alignment is refused");
    printf(g_fail ? "link probe: FAIL\n" : "link probe: pass\n");
    return g_fail;
}
