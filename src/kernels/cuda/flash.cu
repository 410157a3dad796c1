// A prompt's causal attention in one kernel (flash attention, forward only): softmax(scale·q·kᵀ +
// mask)·v without writing the scores. The unfused way (attention.rs's attend_heads) writes q·kᵀ to
// memory (the 3B's pp512: 19 MB a layer), reads it back for the softmax, writes the probabilities
// and reads them again for p·v, and its masked half is multiplied as zeros: on an H100 the two
// products and the softmax took 0.87 ms of the 3B's 6.3 ms of pp512 kernels (BENCHMARKS.md, issue 11
// session 21).
//
// Layout. q [b, kv_heads, rows, D] with rows = group·t (a group's query heads folded into rows, as
// attend_heads folds them: row r is query r % t of the group's head r / t, at position start + r % t);
// k, v [b, kv_heads, cap, D], of which the first start + t positions are filled; out [b, t, heads·D]
// (a token's row, what the o projection reads). One block: 64 rows of one kv head (16 a warp), over
// key tiles of 64 from 0 to its last row's position. Per tile: S = q·kᵀ by mma.sync m16n8k16 from
// shared memory (ldmatrix), the causal mask, the online softmax in f32 (each row's running max and
// sum, in base 2 with scale·log2 e folded in), P rounded to T as the next mma's A operand straight
// from the accumulators, O += P·v. K and v tiles arrive by cp.async, the next k tile while this
// tile's softmax and p·v run. Rows of shared memory are padded by 16 bytes, so ldmatrix's eight
// row addresses fall in distinct banks.
//
// Numerics against the unfused way: the scores stay f32 (the unfused way rounds them to T before
// the softmax), P is rounded to T before p·v as there, and the sum divides once at the end.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "common.cuh"

namespace flash {

constexpr int BM = 64;  // rows a block
constexpr int BN = 64;  // keys a tile
constexpr int WARPS = BM / 16;

// mma.sync m16n8k16 on T inputs with f32 accumulators, and two f32 values rounded into T's pair
// (an A or B fragment register).
template <typename T> struct Mma;
#define FLASH_MMA(T, PTX, PAIR, TO_PAIR)                                                                       \
    template <> struct Mma<T> {                                                                                \
        static __device__ __forceinline__ void run(float* c, const unsigned* a, unsigned b0, unsigned b1) {    \
            asm volatile("mma.sync.aligned.m16n8k16.row.col.f32." PTX "." PTX                                   \
                         ".f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"                        \
                         : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])                                       \
                         : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));                      \
        }                                                                                                      \
        static __device__ __forceinline__ unsigned pack(float lo, float hi) {                                  \
            PAIR v = TO_PAIR(lo, hi);                                                                          \
            return *reinterpret_cast<unsigned*>(&v);                                                           \
        }                                                                                                      \
    };
FLASH_MMA(__nv_bfloat16, "bf16", __nv_bfloat162, __floats2bfloat162_rn)
FLASH_MMA(__half, "f16", __half2, __floats2half2_rn)

__device__ __forceinline__ unsigned smem_addr(const void* p) {
    return static_cast<unsigned>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void ldmatrix_x4(unsigned* r, const void* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p)));
}

__device__ __forceinline__ void ldmatrix_x4_trans(unsigned* r, const void* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p)));
}

// 16 bytes from global to shared memory, or zeros where !valid (cp.async's src-size 0).
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src),
                 "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// Rows [row0, row0 + 64) of a [n, D] matrix into tile (stride D + 8), zeros past row n.
template <typename T, int D>
__device__ __forceinline__ void load_tile(T* tile, const T* src, int row0, int n) {
    constexpr int VECS = D / 8;  // 16-byte vectors a row
    for (int c = threadIdx.x; c < BM * VECS; c += 32 * WARPS) {
        const int r = c / VECS, v = c % VECS;
        const bool valid = row0 + r < n;
        // an invalid row's address is never read (src-size 0) but must still be a global address
        cp_async16(tile + r * (D + 8) + v * 8, src + (size_t)(valid ? row0 + r : 0) * D + v * 8, valid);
    }
}

// S = q·kᵀ for the warp's 16 rows against the 64 keys of s_k: s[n tile of 8 keys][accumulator].
template <typename T, int D>
__device__ __forceinline__ void scores(float (&s)[BN / 8][4], const unsigned (&qa)[D / 16][4], const T* s_k, int lane) {
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) {
#pragma unroll
        for (int nt = 0; nt < BN / 8; nt += 2) {
            unsigned b[4];
            ldmatrix_x4(b, s_k + (nt * 8 + lane % 8 + (lane / 16) * 8) * (D + 8) + kk * 16 + ((lane / 8) % 2) * 8);
            Mma<T>::run(s[nt], qa[kk], b[0], b[1]);
            Mma<T>::run(s[nt + 1], qa[kk], b[2], b[3]);
        }
    }
}

// The causal mask and the online softmax of the thread's two rows over one key tile: s becomes
// exp2(s·scale_log2 − m) under the rows' new running max m, this lane's share of each row's sum goes
// to l, and o is rescaled to the new max.
template <int D, bool SPLIT>
__device__ __forceinline__ void online_softmax(float (&s)[BN / 8][4], float (&o)[D / 8][4], float (&m)[2], float (&l)[2],
                                               const int (&pos)[2], int key0, int lane, float scale_log2) {
    float p_scale[2];
#pragma unroll
    for (int h = 0; h < 2; h++) {
        float mx = m[h];
#pragma unroll
        for (int nt = 0; nt < BN / 8; nt++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                const int key = key0 + nt * 8 + (lane % 4) * 2 + e;
                float& x = s[nt][h * 2 + e];
                x = key <= pos[h] ? x * scale_log2 : -INFINITY;
                mx = fmaxf(mx, x);
            }
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        // key 0 is in every row's first tile, so mx is finite from the first tile on; a split's second
        // half starts past it, and a row there may not have met a key yet (mx = −∞, every x = −∞):
        // exp2f(x − 0) gives it zeros instead of NaN
        const float ref = SPLIT && mx == -INFINITY ? 0.f : mx;
        p_scale[h] = exp2f(m[h] - ref);
        m[h] = mx;
        float sum = 0.f;
#pragma unroll
        for (int nt = 0; nt < BN / 8; nt++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                float& x = s[nt][h * 2 + e];
                x = exp2f(x - ref);
                sum += x;
            }
        l[h] = l[h] * p_scale[h] + sum;
    }
#pragma unroll
    for (int dt = 0; dt < D / 8; dt++) {
        o[dt][0] *= p_scale[0];
        o[dt][1] *= p_scale[0];
        o[dt][2] *= p_scale[1];
        o[dt][3] *= p_scale[1];
    }
}

// O += P·v over the 64 keys of s_v, P rounded to T from the score accumulators.
template <typename T, int D>
__device__ __forceinline__ void accumulate(float (&o)[D / 8][4], const float (&s)[BN / 8][4], const T* s_v, int lane) {
#pragma unroll
    for (int kk = 0; kk < BN / 16; kk++) {
        // P's A fragment for keys 16·kk..: the accumulators of score tiles 2kk and 2kk + 1
        const unsigned pa[4] = {Mma<T>::pack(s[2 * kk][0], s[2 * kk][1]), Mma<T>::pack(s[2 * kk][2], s[2 * kk][3]),
                                Mma<T>::pack(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                                Mma<T>::pack(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
        for (int dt = 0; dt < D / 8; dt += 2) {
            unsigned b[4];
            ldmatrix_x4_trans(b, s_v + (kk * 16 + lane % 8 + ((lane / 8) % 2) * 8) * (D + 8) + dt * 8 + (lane / 16) * 8);
            Mma<T>::run(o[dt], pa, b[0], b[1]);
            Mma<T>::run(o[dt + 1], pa, b[2], b[3]);
        }
    }
}

// The thread's two rows of O divided by their sums into out [b, t, heads·D]: row r of kv head h
// is token r % t of head h·group + r / t.
template <typename T, int D>
__device__ __forceinline__ void store_rows(T* out, const float (&o)[D / 8][4], const float (&l)[2], int row0, int rows,
                                           int t, int bh, int kv_heads, int warp, int lane) {
    const int b = bh / kv_heads, h = bh % kv_heads, group = rows / t;
#pragma unroll
    for (int hh = 0; hh < 2; hh++) {
        // a row's sum: each of the quad's four lanes summed its own columns (under the shared max)
        float sum = l[hh] + __shfl_xor_sync(0xffffffffu, l[hh], 1);
        sum += __shfl_xor_sync(0xffffffffu, sum, 2);
        const int r = row0 + warp * 16 + lane / 4 + hh * 8;
        if (r >= rows) continue;
        const float inv = 1.f / sum;
        const int head = h * group + r / t;
        T* dst = out + ((size_t)(b * t + r % t) * kv_heads * group + head) * D + (lane % 4) * 2;
#pragma unroll
        for (int dt = 0; dt < D / 8; dt++)
            *reinterpret_cast<unsigned*>(dst + dt * 8) = Mma<T>::pack(o[dt][hh * 2] * inv, o[dt][hh * 2 + 1] * inv);
    }
}

// A split row block's two halves meet here (split-KV): each writes its unnormalised rows, their
// running maxima and sums to its slot of part (64 rows × (D + 2) floats) and counts itself in at
// counter; the first to arrive is done, the second reads the other's slot (from L2) and merges it
// into its own registers, o and l, which store_rows then writes. Returns whether this block stores.
template <int D>
__device__ __forceinline__ bool merge_halves(float (&o)[D / 8][4], float (&l)[2], const float (&m)[2], float* part,
                                             unsigned* counter, int slot, int warp, int lane) {
    constexpr int STRIDE = D + 2;  // a row: D sums, its max, its sum
    __shared__ unsigned s_arrived;
    float* mine = part + (size_t)slot * BM * STRIDE;
    const float* other = part + (size_t)(slot ^ 1) * BM * STRIDE;
#pragma unroll
    for (int h = 0; h < 2; h++) {
        float* row = mine + (warp * 16 + lane / 4 + h * 8) * STRIDE;
#pragma unroll
        for (int dt = 0; dt < D / 8; dt++)
            *reinterpret_cast<float2*>(row + dt * 8 + (lane % 4) * 2) = make_float2(o[dt][h * 2], o[dt][h * 2 + 1]);
        float sum = l[h] + __shfl_xor_sync(0xffffffffu, l[h], 1);
        sum += __shfl_xor_sync(0xffffffffu, sum, 2);
        if (lane % 4 == 0) {
            row[D] = m[h];
            row[D + 1] = sum;
        }
    }
    __threadfence();  // this block's slot is visible to the other before it can see the count
    __syncthreads();
    if (threadIdx.x == 0) s_arrived = atomicAdd(counter, 1u);
    __syncthreads();
    if (s_arrived == 0) return false;
    __threadfence();
#pragma unroll
    for (int h = 0; h < 2; h++) {
        const float* row = other + (warp * 16 + lane / 4 + h * 8) * STRIDE;
        const float mo = __ldcg(row + D), lo = __ldcg(row + D + 1);
        // the first half holds key 0, so one of the two maxima is finite
        const float mx = fmaxf(m[h], mo);
        const float fa = m[h] == -INFINITY ? 0.f : exp2f(m[h] - mx);
        const float fb = mo == -INFINITY ? 0.f : exp2f(mo - mx);
#pragma unroll
        for (int dt = 0; dt < D / 8; dt++) {
            const float2 x = __ldcg(reinterpret_cast<const float2*>(row + dt * 8 + (lane % 4) * 2));
            o[dt][h * 2] = o[dt][h * 2] * fa + x.x * fb;
            o[dt][h * 2 + 1] = o[dt][h * 2 + 1] * fa + x.y * fb;
        }
        // store_rows sums the quad's four shares: the other half's whole sum goes in one of them
        l[h] = l[h] * fa + (lane % 4 == 0 ? lo * fb : 0.f);
    }
    return true;
}

// SPLIT: the grid holds two blocks a row block (blockIdx.x = 2·order + half); a row block of at
// least split_min key tiles has its tiles dealt between them, halving the longest walk of a short
// prompt, whose few blocks all run at once (the 3B's pp512: 192 blocks, the longest 8 tiles); the
// other row blocks' second block leaves at once.
template <typename T, int D, bool SPLIT>
__device__ void attention(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                          T* __restrict__ out, int rows, int t, int start, long long kv_stride, int kv_heads,
                          float scale_log2, float* part, unsigned* counters, int split_min) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    __shared__ __align__(16) T s_k[BN * (D + 8)];
    __shared__ __align__(16) T s_v[BN * (D + 8)];  // q first (BM = BN), then each v tile
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    // the longest rows (the last positions) first: they take the most tiles
    const int row_blocks = SPLIT ? gridDim.x / 2 : gridDim.x;
    const int rb = row_blocks - 1 - (SPLIT ? blockIdx.x / 2 : blockIdx.x);
    const int row0 = rb * BM;
    const int bh = blockIdx.y;  // b · kv_heads + kv head
    q += (size_t)bh * rows * D;
    k += (size_t)bh * kv_stride;
    v += (size_t)bh * kv_stride;
    // the block's keys: up to the largest position among its rows
    const int last = min(row0 + BM, rows) - 1;
    const int last_pos = start + (row0 / t == last / t ? last % t : t - 1);
    const int tiles = last_pos / BN + 1;
    // this block's key tiles [j0, j1)
    int j0 = 0, j1 = tiles;
    const bool split = SPLIT && tiles >= split_min;
    if (SPLIT) {
        const int half = blockIdx.x % 2;
        if (!split && half == 1) return;
        if (split) (half == 0 ? j1 : j0) = (tiles + 1) / 2;
    }

    // q through s_v (free until the first v tile), with the first k tile
    load_tile<T, D>(s_v, q, row0, rows);
    load_tile<T, D>(s_k, k, j0 * BN, last_pos + 1);
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();
    // q's A fragments: the warp's 16 rows × D, 4 registers a k step of 16
    unsigned qa[D / 16][4];
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++)
        ldmatrix_x4(qa[kk], s_v + (warp * 16 + lane % 16) * (D + 8) + kk * 16 + (lane / 16) * 8);
    __syncthreads();
    load_tile<T, D>(s_v, v, j0 * BN, last_pos + 1);
    cp_async_commit();

    // this thread's two rows (lane / 4 and lane / 4 + 8 of the warp's 16) and their positions
    int pos[2];
#pragma unroll
    for (int h = 0; h < 2; h++) pos[h] = start + min(row0 + warp * 16 + lane / 4 + h * 8, rows - 1) % t;
    float o[D / 8][4] = {};
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
    for (int j = j0; j < j1; j++) {
        float s[BN / 8][4] = {};
        scores<T, D>(s, qa, s_k, lane);
        __syncthreads();  // every warp is done with this k tile
        if (j + 1 < j1) load_tile<T, D>(s_k, k, (j + 1) * BN, last_pos + 1);
        cp_async_commit();
        online_softmax<D, SPLIT>(s, o, m, l, pos, j * BN, lane, scale_log2);
        cp_async_wait<1>();  // this tile's v (the next k tile may still be in flight)
        __syncthreads();
        accumulate<T, D>(o, s, s_v, lane);
        __syncthreads();  // every warp is done with this v tile
        if (j + 1 < j1) load_tile<T, D>(s_v, v, (j + 1) * BN, last_pos + 1);
        cp_async_commit();
        cp_async_wait<1>();  // the next k tile
        __syncthreads();
    }
    if (split && !merge_halves<D>(o, l, m, part, counters + (size_t)bh * row_blocks + rb,
                                  (bh * row_blocks + rb) * 2 + blockIdx.x % 2, warp, lane))
        return;
    store_rows<T, D>(out, o, l, row0, rows, t, bh, kv_heads, warp, lane);
#else
    __trap();  // mma.sync on 16-bit inputs needs sm_80; the host launches this only there
#endif
}

}  // namespace flash

// Each kernel three times: as the compiler lays it out (171 registers at d = 128 on sm_90: two
// blocks an SM); with three blocks an SM asked of it (`_b3`, at most 168 registers, no spills on
// sm_90): more resident warps to hide the latency of a long prompt's many key tiles, at the price of
// the registers ptxas would rather keep (the default; MINILAB_FLASH_B3=0 takes the first); and
// split-KV (`_split`, MINILAB_FLASH_SPLIT, opt-in: slower on an H100), with part a scratch of two
// slots a row block and counters one zeroed count a row block.
#define FLASH(T, NAME, D, SUFFIX, BOUNDS)                                                                          \
    extern "C" __global__ void __launch_bounds__ BOUNDS                                                            \
        flash_attention_##NAME##_d##D##SUFFIX(const T* q, const T* k, const T* v, T* out, int rows, int t,       \
                                              int start, long long kv_stride, int kv_heads, float scale_log2) {  \
        flash::attention<T, D, false>(q, k, v, out, rows, t, start, kv_stride, kv_heads, scale_log2, nullptr,   \
                                      nullptr, 0);                                                                \
    }
#define FLASH_SPLIT(T, NAME, D)                                                                                    \
    extern "C" __global__ void __launch_bounds__(32 * flash::WARPS) flash_attention_##NAME##_d##D##_split(       \
        const T* q, const T* k, const T* v, T* out, int rows, int t, int start, long long kv_stride, int kv_heads, \
        float scale_log2, float* part, unsigned* counters, int split_min) {                                       \
        flash::attention<T, D, true>(q, k, v, out, rows, t, start, kv_stride, kv_heads, scale_log2, part,        \
                                     counters, split_min);                                                       \
    }
#define FLASH_ALL(T, NAME, D) \
    FLASH(T, NAME, D, , (32 * flash::WARPS)) FLASH(T, NAME, D, _b3, (32 * flash::WARPS, 3)) FLASH_SPLIT(T, NAME, D)
FLASH_ALL(__nv_bfloat16, bf16, 64)
FLASH_ALL(__nv_bfloat16, bf16, 128)
FLASH_ALL(__half, f16, 64)
FLASH_ALL(__half, f16, 128)
