// Exact top-K selection for GPU inference. Compiled to PTX by build.rs; launched by
// src/infer/gpu.rs after cuBLAS has scored a tile of items for a batch of queries.
//
// Exactness: the GEMM's scores (FP32 or TF32, any summation order) only *screen*. Every item that
// could still enter a query's top-K — its screened score plus a proven error bound
// eps * |q| * |y_i| reaches the current K-th best — is re-scored here as one fused multiply-add
// chain acc = fma(q_p, y_p, acc) from 0 over p (blocks of 256 summed, as matrixmultiply does),
// which is bit for bit the CPU scorer's score. Selection then uses the CPU's order: score
// descending (NaN as -inf, -0 as +0), item index ascending. So the GPU answer equals the CPU's.
//
// Keys: a candidate is one u64, (ord(score) << 32) | (0xFFFFFFFF - item), so "better" is simply
// "larger"; 0 never occurs (the low word is >= 1 for item < 2^32 - 1) and pads sorts.

#include <stdint.h>

typedef unsigned long long u64;

// Keys of the block's running top-K and new candidates (dynamic shared memory, SORT_CAP keys),
// followed by the query vector (k floats).
extern __shared__ __align__(128) u64 topk_smem[];

#define SORT_CAP 4096
// Candidates buffered before a flush; a flush happens once fewer than blockDim slots remain, so
// running (<= K <= 1024) + buffered (<= BUF_CAP) always fits SORT_CAP.
#define BUF_CAP 2048
// Blocks of the CPU's accumulation (matrixmultiply's KC).
#define CHAIN 256
// Scores per thread per scan round.
#define VEC 8

__device__ __forceinline__ uint32_t ord_score(float f) {
    if (f != f) f = -INFINITY;  // NaN ranks as -inf
    if (f == 0.f) f = 0.f;      // -0 ties with +0, as the CPU's == does
    const uint32_t b = __float_as_uint(f);
    return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

__device__ __forceinline__ float unord_score(uint32_t o) {
    const uint32_t b = (o & 0x80000000u) ? (o & 0x7fffffffu) : ~o;
    return __uint_as_float(b);
}

__device__ __forceinline__ u64 make_key(float score, uint32_t item) {
    return ((u64)ord_score(score) << 32) | (u64)(0xFFFFFFFFu - item);
}

// The CPU's score: fused chains of up to CHAIN terms from zero, the chains added in order.
__device__ __forceinline__ float exact_score(const float* __restrict__ q,
                                             const float* __restrict__ y, int k) {
    float total = 0.f;
    for (int p0 = 0; p0 < k; p0 += CHAIN) {
        const int p1 = min(k, p0 + CHAIN);
        float acc = 0.f;
        for (int p = p0; p < p1; ++p) acc = fmaf(q[p], __ldg(y + p), acc);
        total = p0 == 0 ? acc : total + acc;
    }
    return total;
}

// Whether `item` is in the sorted list ex[0..n).
__device__ __forceinline__ bool excluded(const uint32_t* __restrict__ ex, uint64_t n,
                                         uint32_t item) {
    uint64_t lo = 0, hi = n;
    while (lo < hi) {
        const uint64_t mid = (lo + hi) >> 1;
        if (ex[mid] < item) lo = mid + 1; else hi = mid;
    }
    return lo < n && ex[lo] == item;
}

// Sorts keys[0..n2) descending (n2 a power of two) with the whole block.
__device__ void bitonic_desc(u64* keys, int n2) {
    for (int size = 2; size <= n2; size <<= 1) {
        for (int stride = size >> 1; stride > 0; stride >>= 1) {
            for (int i = threadIdx.x; i < n2; i += blockDim.x) {
                const int j = i ^ stride;
                if (j > i) {
                    const u64 a = keys[i], b = keys[j];
                    const bool desc = (i & size) == 0;
                    if (desc ? (a < b) : (a > b)) {
                        keys[i] = b;
                        keys[j] = a;
                    }
                }
            }
            __syncthreads();
        }
    }
}

// Sorts running + buffered keys and keeps the best K; pads with 0 up to a power of two.
__device__ void flush(u64* keys, int* count, int* n_buf, int K) {
    const int total = *count + *n_buf;
    int n2 = 2;
    while (n2 < total) n2 <<= 1;
    for (int i = total + threadIdx.x; i < n2; i += blockDim.x) keys[i] = 0;
    __syncthreads();
    bitonic_desc(keys, n2);
    if (threadIdx.x == 0) {
        *count = min(K, total);
        *n_buf = 0;
    }
    __syncthreads();
}

// One block per (scored row i = blockIdx.x, split s = blockIdx.y): offers positions [lo, hi) of
// the tile (positions tile0 .. tile0 + tv, scores at scores[i * tv + j]) to the running top-K of
// query b = slots[i] (i itself when slots is null) kept in lists[(b * splits + s) * K ..] /
// counts[b * splits + s]. Items sit in the scorer's visiting order: the item id at position p is
// perm[p] (p when perm is null), and ids, not positions, decide ties and exclusions.
extern "C" __global__ void __launch_bounds__(512) topk_tile(
    const float* __restrict__ scores, uint64_t tv, uint32_t tile0,
    const float* __restrict__ queries, const float* __restrict__ items,
    const float* __restrict__ item_norms, float max_item_norm,
    const float* __restrict__ query_norms, float eps,
    const uint64_t* __restrict__ ex_indptr, const uint32_t* __restrict__ ex_items, int k,
    int K, u64* __restrict__ lists, int* __restrict__ counts,
    const uint32_t* __restrict__ perm, const uint32_t* __restrict__ slots) {
    u64* keys = topk_smem;
    float* q = reinterpret_cast<float*>(keys + SORT_CAP);
    __shared__ int s_count, s_buf;
    const int i_row = blockIdx.x, s = blockIdx.y, splits = gridDim.y;
    const int b = slots ? (int)slots[i_row] : i_row;
    const uint64_t slot = (uint64_t)b * splits + s;
    u64* list = lists + slot * K;
    if (threadIdx.x == 0) {
        s_count = counts[slot];
        s_buf = 0;
    }
    __syncthreads();
    for (int i = threadIdx.x; i < s_count; i += blockDim.x) keys[i] = list[i];
    for (int p = threadIdx.x; p < k; p += blockDim.x) q[p] = queries[(size_t)b * k + p];
    __syncthreads();
    const uint64_t lo = tv * s / splits, hi = tv * (s + 1) / splits;
    const uint32_t* ex = ex_items + ex_indptr[b];
    const uint64_t n_ex = ex_indptr[b + 1] - ex_indptr[b];
    const float margin = eps * query_norms[b];
    const float* row = scores + (size_t)i_row * tv;
    int count = s_count;
    u64 theta = count == K ? keys[K - 1] : 0;
    float theta_score = count == K ? unord_score((uint32_t)(theta >> 32)) : -INFINITY;
    // Each thread reads VEC scores per round (VEC loads in flight, coalesced for each v); one
    // block-wide count decides whether any of the round's scores needs a closer look, so the
    // common round (nothing can beat the K-th best) costs one barrier per VEC·blockDim scores.
    // The cheap screen uses the largest item norm; only survivors read their own norm.
    const float margin_max = margin * max_item_norm;
    for (uint64_t base = lo; base < hi; base += (uint64_t)blockDim.x * VEC) {
        float sc[VEC];
        bool pass[VEC];
        int any = 0;
#pragma unroll
        for (int v = 0; v < VEC; ++v) {
            const uint64_t j = base + (uint64_t)v * blockDim.x + threadIdx.x;
            sc[v] = j < hi ? row[j] : 0.f;
            pass[v] = j < hi && (count < K || !(sc[v] + margin_max < theta_score));
            any |= pass[v];
        }
        if (__syncthreads_or(any) == 0) continue;
        for (int v = 0; v < VEC; ++v) {
            if (pass[v]) {
                const uint64_t j = base + (uint64_t)v * blockDim.x + threadIdx.x;
                const uint32_t pos = tile0 + (uint32_t)j;
                // Skip only what provably cannot beat the K-th best (NaN screens never skip).
                const bool hopeless =
                    count == K && sc[v] + margin * item_norms[pos] < theta_score;
                const uint32_t item = hopeless ? 0u : (perm ? perm[pos] : pos);
                if (!hopeless && !excluded(ex, n_ex, item)) {
                    const u64 key = make_key(exact_score(q, items + (size_t)pos * k, k), item);
                    if (key > theta) {
                        const int at = atomicAdd(&s_buf, 1);
                        keys[count + at] = key;
                    }
                }
            }
            __syncthreads();
            // Every thread reads the count, then a barrier: no thread may append for the next
            // round before all have decided, or they could disagree about flushing.
            const int buffered = s_buf;
            __syncthreads();
            // Flush when the buffer nears capacity, and also while the running list is not yet
            // full: the sooner K entries are known, the sooner the threshold starts rejecting.
            if (buffered > BUF_CAP - (int)blockDim.x || (count < K && buffered > 0)) {
                flush(keys, &s_count, &s_buf, K);
                count = s_count;
                theta = count == K ? keys[K - 1] : 0;
                theta_score = count == K ? unord_score((uint32_t)(theta >> 32)) : -INFINITY;
            }
        }
    }
    if (s_buf > 0) flush(keys, &s_count, &s_buf, K);
    for (int i = threadIdx.x; i < s_count; i += blockDim.x) list[i] = keys[i];
    if (threadIdx.x == 0) counts[slot] = s_count;
}

// One block per query: merges its `splits` lists into the final top-K, best first.
extern "C" __global__ void __launch_bounds__(512) topk_merge(
    const u64* __restrict__ lists, const int* __restrict__ counts, int splits, int K,
    uint32_t* __restrict__ out_items, float* __restrict__ out_scores, int* __restrict__ out_counts) {
    u64* keys = topk_smem;
    const int b = blockIdx.x;
    // Split s's list goes to keys[s*K ..], the unused tail of each list zero (0 sorts last), so
    // every thread loads in parallel with no per-split barrier.
    const int total = splits * K;
    for (int i = threadIdx.x; i < total; i += blockDim.x) {
        const int s = i / K, j = i - s * K;
        const uint64_t slot = (uint64_t)b * splits + s;
        keys[i] = j < counts[slot] ? lists[slot * K + j] : 0;
    }
    int n2 = 2;
    while (n2 < total) n2 <<= 1;
    for (int i = total + threadIdx.x; i < n2; i += blockDim.x) keys[i] = 0;
    __syncthreads();
    bitonic_desc(keys, n2);
    __shared__ int s_kept;
    if (threadIdx.x == 0) {
        int c = 0;
        for (int s = 0; s < splits; ++s) c += counts[(uint64_t)b * splits + s];
        s_kept = c;
    }
    __syncthreads();
    const int kept = min(K, s_kept);
    for (int i = threadIdx.x; i < kept; i += blockDim.x) {
        const u64 key = keys[i];
        out_items[(size_t)b * K + i] = 0xFFFFFFFFu - (uint32_t)key;
        out_scores[(size_t)b * K + i] = unord_score((uint32_t)(key >> 32));
    }
    if (threadIdx.x == 0) out_counts[b] = kept;
}

// Scores of a few queries (B <= SMALL_MAX) against items [0, n), computed as the CPU's chains, so
// for small batches the screen is already exact. A block stages SMALL_ROWS item rows in shared
// memory with coalesced 16-byte loads (rows padded to k + 1 floats so that thread t reading row
// t is bank-conflict free), then each thread scores one row for every query. Scores go to
// out[b * n + i]. Shared memory: SMALL_ROWS * (k + 1) + B * k floats.
#define SMALL_ROWS 128
#define SMALL_MAX 4
extern "C" __global__ void __launch_bounds__(SMALL_ROWS) topk_scores_small(
    const float* __restrict__ items, uint64_t n, int k, const float* __restrict__ queries,
    int B, float* __restrict__ out) {
    float* rows = reinterpret_cast<float*>(topk_smem);
    float* q = rows + SMALL_ROWS * (k + 1);
    for (int i = threadIdx.x; i < B * k; i += blockDim.x) q[i] = queries[i];
    for (uint64_t r0 = (uint64_t)blockIdx.x * SMALL_ROWS; r0 < n; r0 += (uint64_t)gridDim.x * SMALL_ROWS) {
        const int m = (int)min((uint64_t)SMALL_ROWS, n - r0);
        __syncthreads();  // the previous tile's rows are no longer read
        const float* src = items + r0 * k;
        const int total = m * k;
        if ((k & 3) == 0) {
            for (int e = threadIdx.x * 4; e < total; e += blockDim.x * 4) {
                const float4 v = __ldg(reinterpret_cast<const float4*>(src + e));
                const int r = e / k, c = e - r * k;
                float* d = rows + r * (k + 1) + c;
                d[0] = v.x;
                d[1] = v.y;
                d[2] = v.z;
                d[3] = v.w;
            }
        } else {
            for (int e = threadIdx.x; e < total; e += blockDim.x) {
                const int r = e / k, c = e - r * k;
                rows[r * (k + 1) + c] = __ldg(src + e);
            }
        }
        __syncthreads();
        const int t = threadIdx.x;
        if (t < m) {
            const float* y = rows + t * (k + 1);
            for (int b = 0; b < B; ++b) {
                const float* qb = q + b * k;
                float total_s = 0.f;
                for (int p0 = 0; p0 < k; p0 += CHAIN) {
                    const int p1 = min(k, p0 + CHAIN);
                    float acc = 0.f;
                    for (int p = p0; p < p1; ++p) acc = fmaf(qb[p], y[p], acc);
                    total_s = p0 == 0 ? acc : total_s + acc;
                }
                out[(uint64_t)b * n + r0 + t] = total_s;
            }
        }
    }
}
