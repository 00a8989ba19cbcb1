// Exact top-K selection for GPU inference (issue 5). Compiled to PTX by build.rs; launched by
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

#include <mma.h>
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

// One block per (query b = blockIdx.x, split s = blockIdx.y): offers items [lo, hi) of the tile
// (items tile0 .. tile0 + tv, scores at scores[b * tv + j]) to the running top-K kept in
// lists[(b * splits + s) * K ..] / counts[b * splits + s].
extern "C" __global__ void __launch_bounds__(512) topk_tile(
    const float* __restrict__ scores, uint64_t tv, uint32_t tile0,
    const float* __restrict__ queries, const float* __restrict__ items,
    const float* __restrict__ item_norms, float max_item_norm,
    const float* __restrict__ query_norms, float eps,
    const uint64_t* __restrict__ ex_indptr, const uint32_t* __restrict__ ex_items, int k,
    int K, u64* __restrict__ lists, int* __restrict__ counts) {
    u64* keys = topk_smem;
    float* q = reinterpret_cast<float*>(keys + SORT_CAP);
    __shared__ int s_count, s_buf;
    const int b = blockIdx.x, s = blockIdx.y, splits = gridDim.y;
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
    const float* row = scores + (size_t)b * tv;
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
                const uint32_t item = tile0 + (uint32_t)j;
                // Skip only what provably cannot beat the K-th best (NaN screens never skip).
                const bool hopeless =
                    count == K && sc[v] + margin * item_norms[item] < theta_score;
                if (!hopeless && !excluded(ex, n_ex, item)) {
                    const u64 key = make_key(exact_score(q, items + (size_t)item * k, k), item);
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

// Euclidean norms of n rows of k floats, rounded up (they only bound errors).
extern "C" __global__ void topk_row_norms(const float* __restrict__ rows, uint64_t n, int k,
                                          float* __restrict__ norms) {
    const uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        double s = 0.0;
        for (int p = 0; p < k; ++p) {
            const double v = rows[i * k + p];
            s += v * v;
        }
        norms[i] = (float)(sqrt(s) * (1.0 + 1e-6));
    }
}

// ---------------------------------------------------------------------------------------------
// The fused path for larger batches: scores never go to memory.
//
// 1. The usual tile path over a sample (the first tile of items) gives each query an exact
//    running top-K; its K-th best score theta_q is a lower bound on the final K-th best.
// 2. topk_fused_screen: TF32 tensor cores (WMMA m16n16k8) score FQ queries x FI items per step
//    into shared memory; a score can matter only if screened + eps*|q|*|y| >= theta_q, and
//    those (few) items are appended to the query's candidate list.
// 3. topk_candidates: each query's candidates are re-scored exactly and offered to its running
//    top-K, as in topk_tile. A query whose list overflowed is redone by the tile path.
// ---------------------------------------------------------------------------------------------

#define FQ 64   // queries per block (4 warps x 16 rows)
#define FI 64   // items per step (4 accumulator fragments of 16 per warp)

// theta_q = the K-th best exact score of the running list (-inf while it has fewer than K).
extern "C" __global__ void topk_thresholds(const u64* __restrict__ lists,
                                           const int* __restrict__ counts, int B, int K,
                                           float* __restrict__ thresholds) {
    const int b = blockIdx.x * blockDim.x + threadIdx.x;
    if (b < B) {
        thresholds[b] = counts[b] == K ? unord_score((uint32_t)(lists[(uint64_t)b * K + K - 1] >> 32))
                                       : -INFINITY;
    }
}

extern "C" __global__ void __launch_bounds__(128) topk_fused_screen(
    const float* __restrict__ items, uint64_t n, uint64_t item0, int k,
    const float* __restrict__ queries, int B, const float* __restrict__ item_norms,
    const float* __restrict__ query_norms, const float* __restrict__ thresholds, float eps,
    uint32_t* __restrict__ cand, int* __restrict__ cand_count, int cap,
    int* __restrict__ overflow) {
    using namespace nvcuda;
    const int kp = (k + 7) & ~7;
    float* qs = reinterpret_cast<float*>(topk_smem);  // FQ x kp, tf32
    float* ys = qs + FQ * kp;                          // FI x kp, tf32
    float* cs = ys + FI * kp;                          // FQ x FI scores
    float* thr = cs + FQ * FI;                         // FQ
    float* qn = thr + FQ;                              // FQ: eps * |q|
    float* yn = qn + FQ;                               // FI
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int q0 = blockIdx.x * FQ;
    for (int e = threadIdx.x; e < FQ * kp; e += blockDim.x) {
        const int r = e / kp, c = e - r * kp;
        const float v = (q0 + r < B && c < k) ? queries[(size_t)(q0 + r) * k + c] : 0.f;
        qs[e] = wmma::__float_to_tf32(v);
    }
    for (int r = threadIdx.x; r < FQ; r += blockDim.x) {
        const bool live = q0 + r < B;
        thr[r] = live ? thresholds[q0 + r] : INFINITY;
        qn[r] = live ? eps * query_norms[q0 + r] : 0.f;
    }
    for (uint64_t t0 = item0 + (uint64_t)blockIdx.y * FI; t0 < n; t0 += (uint64_t)gridDim.y * FI) {
        __syncthreads();  // the previous step's ys/yn are no longer read
        for (int e = threadIdx.x; e < FI * kp; e += blockDim.x) {
            const int r = e / kp, c = e - r * kp;
            const float v = (t0 + r < n && c < k) ? __ldg(items + (t0 + r) * k + c) : 0.f;
            ys[e] = wmma::__float_to_tf32(v);
        }
        for (int r = threadIdx.x; r < FI; r += blockDim.x) yn[r] = t0 + r < n ? item_norms[t0 + r] : 0.f;
        __syncthreads();
        wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc[FI / 16];
#pragma unroll
        for (int j = 0; j < FI / 16; ++j) wmma::fill_fragment(acc[j], 0.f);
        for (int kk = 0; kk < kp; kk += 8) {
            wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> a;
            wmma::load_matrix_sync(a, qs + warp * 16 * kp + kk, kp);
#pragma unroll
            for (int j = 0; j < FI / 16; ++j) {
                wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::col_major> bf;
                wmma::load_matrix_sync(bf, ys + j * 16 * kp + kk, kp);
                wmma::mma_sync(acc[j], a, bf, acc[j]);
            }
        }
#pragma unroll
        for (int j = 0; j < FI / 16; ++j)
            wmma::store_matrix_sync(cs + warp * 16 * FI + j * 16, acc[j], FI, wmma::mem_row_major);
        __syncwarp();
        // Each warp tests its own 16 rows.
        for (int e = lane; e < 16 * FI; e += 32) {
            const int r = warp * 16 + e / FI, c = e % FI;
            const float sc = cs[r * FI + c];
            if (t0 + c < n && !(sc + qn[r] * yn[c] < thr[r])) {
                const int q = q0 + r;
                const int at = atomicAdd(&cand_count[q], 1);
                if (at < cap) cand[(size_t)q * cap + at] = (uint32_t)(t0 + c);
                else *overflow = 1;
            }
        }
    }
}

// Offers each query's candidates (exactly re-scored) to its running top-K (splits = 1).
extern "C" __global__ void __launch_bounds__(512) topk_candidates(
    const uint32_t* __restrict__ cand, const int* __restrict__ cand_count, int cap,
    const float* __restrict__ queries, const float* __restrict__ items,
    const uint64_t* __restrict__ ex_indptr, const uint32_t* __restrict__ ex_items, int k, int K,
    u64* __restrict__ lists, int* __restrict__ counts) {
    u64* keys = topk_smem;
    float* q = reinterpret_cast<float*>(keys + SORT_CAP);
    __shared__ int s_count, s_buf;
    const int b = blockIdx.x;
    u64* list = lists + (uint64_t)b * K;
    if (threadIdx.x == 0) {
        s_count = counts[b];
        s_buf = 0;
    }
    __syncthreads();
    for (int i = threadIdx.x; i < s_count; i += blockDim.x) keys[i] = list[i];
    for (int p = threadIdx.x; p < k; p += blockDim.x) q[p] = queries[(size_t)b * k + p];
    __syncthreads();
    const uint32_t* ex = ex_items + ex_indptr[b];
    const uint64_t n_ex = ex_indptr[b + 1] - ex_indptr[b];
    const int nc = min(cand_count[b], cap);
    const uint32_t* mine = cand + (size_t)b * cap;
    int count = s_count;
    u64 theta = count == K ? keys[K - 1] : 0;
    for (int base = 0; base < nc; base += blockDim.x) {
        const int j = base + threadIdx.x;
        if (j < nc) {
            const uint32_t item = mine[j];
            if (!excluded(ex, n_ex, item)) {
                const u64 key = make_key(exact_score(q, items + (size_t)item * k, k), item);
                if (key > theta) {
                    const int at = atomicAdd(&s_buf, 1);
                    keys[count + at] = key;
                }
            }
        }
        __syncthreads();
        const int buffered = s_buf;  // read by all before anyone appends again
        __syncthreads();
        if (buffered > BUF_CAP - (int)blockDim.x || (count < K && buffered > 0)) {
            flush(keys, &s_count, &s_buf, K);
            count = s_count;
            theta = count == K ? keys[K - 1] : 0;
        }
    }
    if (s_buf > 0) flush(keys, &s_count, &s_buf, K);
    for (int i = threadIdx.x; i < s_count; i += blockDim.x) list[i] = keys[i];
    if (threadIdx.x == 0) counts[b] = s_count;
}
