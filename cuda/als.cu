// ALS half-step kernels. Compiled to PTX by build.rs (nvcc -ptx -arch=compute_80) and
// embedded in the binary; src/gpu/als.rs launches them, src/als/gpu.rs drives them.
//
// Every kernel solves rows of one CSR chunk against the fixed factors Y (n_fixed x k, row-major):
//
//   (G + reg*I + sum_i w_i y_i y_i^T) x = sum_i (1 + w_i) y_i,      G = Y^T Y (k x k, from cuBLAS)
// with reg = lambda * (n_row / mean row)^nu (see row_reg; nu = 0 is plain lambda)
//
// where w_i = c_ui - 1 is the stored value. A chunk is rows [row0, row0 + n_rows) of the matrix:
// `indptr` points at the chunk's n_rows + 1 offsets (global values), and `indices`/`conf` at the
// chunk's non-zeros, so entry e of row r lives at indices[indptr[r] - nnz_base]. When the whole
// matrix is resident, nnz_base is 0 and the pointers are the full arrays; when it is streamed, they
// are the double-buffered chunk copies. All offsets are 64-bit (LFM-1b has ~2^28 non-zeros per
// side, the next scale up passes 2^31).

#include <stdint.h>

// Dynamic shared memory of every kernel here (sized by the launch; layouts in each kernel).
extern __shared__ __align__(16) float smem[];

// ---------------------------------------------------------------------------------------------
// Conjugate gradient, one warp per row (Takacs, Pilaszy & Tikk 2011; warm-started from target).
//
// The fixed factors Y are read either as the fp32 matrix itself or as a bf16 copy (half the
// bytes; `als_to_bf16` makes it before each half-step, rows padded to an even length). Sums are
// always fp32; the bf16 copy only feeds the row's own correction term, G = YᵀY comes from fp32.
//
// Work per row, for each of the 1 + steps products A v = (G + reg I) v + sum_i w_i (y_i.v) y_i:
// - The row's factor rows are staged in shared memory, 32 at a time (one per lane). A row with
//   at most 32 entries (most item rows) is staged once and reused by every product, so its
//   gathers are made once instead of 1 + steps times.
// - s_i = y_i . v is computed by lane i alone, over the whole row, with v broadcast from shared
//   memory: no warp reduction per entry (the old kernel spent 10 shuffle/add per entry and pass).
// - acc += coef_i y_i is computed dimension-parallel: coef_i by shuffle, y_i from shared memory.
// - (G + reg I) v reads v[j] four at a time from shared memory instead of one shuffle each.
//
// Lane l holds P of the k dimensions in registers: dimensions q*32 + l for fp32 storage, and
// pairs (64 m + 2 l, 64 m + 2 l + 1) for bf16 (one 32-bit word per pair), so that both the
// staged rows and G are read conflict-free.
//
// Shared memory: G (k*k floats, padded to a multiple of 4) when `g_shared`, then per warp
// v (round4(k) floats) and the staged rows (32 x SW words, SW odd so that lane i reading row i
// hits its own bank). The host computes the same sizes (cg_shared_bytes in src/gpu/als.rs).
// ---------------------------------------------------------------------------------------------

#define FULL_MASK 0xffffffffu
#define CG_WARPS 8

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(FULL_MASK, v, o);
    return v;
}

__device__ __forceinline__ float bf_lo(uint32_t w) { return __uint_as_float(w << 16); }
__device__ __forceinline__ float bf_hi(uint32_t w) { return __uint_as_float(w & 0xffff0000u); }

// lambda of a row with n entries: reg * (max(n, 1) * inv_mean)^nu, the frequency-scaled
// regularisation of the CPU solvers (HalfStep::row_regularization); nu = 0 is plain reg.
__device__ __forceinline__ float row_reg(float reg, float nu, float inv_mean, uint64_t n) {
    return nu == 0.f ? reg : reg * powf(fmaxf((float)n, 1.f) * inv_mean, nu);
}

// Words of one factor row of the gathered matrix: k floats, or ceil(k / 2) bf16 pairs.
template <bool Bf16>
__device__ __forceinline__ int row_words(int k) {
    return Bf16 ? (k + 1) >> 1 : k;
}

// Dimension of register q of this lane (see the layout above).
template <bool Bf16, int P>
__device__ __forceinline__ int dim_of(int q, int lane) {
    return (Bf16 && P >= 2) ? (q >> 1) * 64 + 2 * lane + (q & 1) : q * 32 + lane;
}

// out = (G + reg I) v, with v also in vbuf (zero-padded to round4(k)).
template <bool Bf16, int P>
__device__ __forceinline__ void gram_times(const float* __restrict__ g, int k, float reg,
                                           const float* vbuf, const float (&v)[P],
                                           float (&out)[P]) {
    const int lane = threadIdx.x & 31;
    int dq[P];
#pragma unroll
    for (int q = 0; q < P; ++q) {
        dq[q] = dim_of<Bf16, P>(q, lane);
        out[q] = reg * v[q];
    }
    int j = 0;
    for (; j + 4 <= k; j += 4) {
        const float4 v4 = *reinterpret_cast<const float4*>(vbuf + j);
        const float* gj = g + (size_t)j * k;
#pragma unroll
        for (int q = 0; q < P; ++q) {
            if (dq[q] < k) {
                const float* c = gj + dq[q];
                out[q] = fmaf(c[0], v4.x, out[q]);
                out[q] = fmaf(c[k], v4.y, out[q]);
                out[q] = fmaf(c[2 * k], v4.z, out[q]);
                out[q] = fmaf(c[3 * k], v4.w, out[q]);
            }
        }
    }
    for (; j < k; ++j) {
        const float vj = vbuf[j];
#pragma unroll
        for (int q = 0; q < P; ++q) {
            if (dq[q] < k) out[q] = fmaf(g[(size_t)j * k + dq[q]], vj, out[q]);
        }
    }
}

// Copies the factor rows of entries 0..n (n <= 32) of a chunk into `rows` (stride sw words).
// Lane e holds entry e's column in `my_col`.
template <bool Bf16, int P>
__device__ __forceinline__ void stage_rows(const uint32_t* __restrict__ y, int rw, int n,
                                           uint32_t my_col, uint32_t* rows, int sw) {
    constexpr int RW = Bf16 ? (P >= 2 ? P / 2 : 1) : P;  // words of a row per lane
    const int lane = threadIdx.x & 31;
    for (int r0 = 0; r0 < n; r0 += 8) {
        uint32_t t[8][RW];
#pragma unroll
        for (int u = 0; u < 8; ++u) {
            const int r = r0 + u;
            const uint32_t c = __shfl_sync(FULL_MASK, my_col, r & 31);
            const uint32_t* src = y + (size_t)c * rw;
#pragma unroll
            for (int q = 0; q < RW; ++q) {
                const int w = q * 32 + lane;
                t[u][q] = (r < n && w < rw) ? __ldg(src + w) : 0u;
            }
        }
#pragma unroll
        for (int u = 0; u < 8; ++u) {
            if (r0 + u < n) {
#pragma unroll
                for (int q = 0; q < RW; ++q) {
                    const int w = q * 32 + lane;
                    if (w < rw) rows[(r0 + u) * sw + w] = t[u][q];
                }
            }
        }
    }
}

// y_e . v for this lane's entry e (< n), over the staged row e; 0 for lanes >= n.
template <bool Bf16>
__device__ __forceinline__ float entry_dot(const uint32_t* rows, int sw, int rw, int n,
                                           const float* vbuf) {
    const int lane = threadIdx.x & 31;
    if (lane >= n) return 0.f;
    const uint32_t* yr = rows + lane * sw;
    float s0 = 0.f, s1 = 0.f, s2 = 0.f, s3 = 0.f;
    int w = 0;
    if (Bf16) {
        for (; w + 2 <= rw; w += 2) {
            const float4 v4 = *reinterpret_cast<const float4*>(vbuf + 2 * w);
            const uint32_t a = yr[w], b = yr[w + 1];
            s0 = fmaf(bf_lo(a), v4.x, s0);
            s1 = fmaf(bf_hi(a), v4.y, s1);
            s2 = fmaf(bf_lo(b), v4.z, s2);
            s3 = fmaf(bf_hi(b), v4.w, s3);
        }
        if (w < rw) {
            const uint32_t a = yr[w];
            s0 = fmaf(bf_lo(a), vbuf[2 * w], s0);
            s1 = fmaf(bf_hi(a), vbuf[2 * w + 1], s1);
        }
    } else {
        for (; w + 4 <= rw; w += 4) {
            const float4 v4 = *reinterpret_cast<const float4*>(vbuf + w);
            s0 = fmaf(__uint_as_float(yr[w]), v4.x, s0);
            s1 = fmaf(__uint_as_float(yr[w + 1]), v4.y, s1);
            s2 = fmaf(__uint_as_float(yr[w + 2]), v4.z, s2);
            s3 = fmaf(__uint_as_float(yr[w + 3]), v4.w, s3);
        }
        for (; w < rw; ++w) s0 = fmaf(__uint_as_float(yr[w]), vbuf[w], s0);
    }
    return (s0 + s1) + (s2 + s3);
}

// acc += sum_{e < n} coef_e y_e (coef_e in lane e), dimension-parallel over the staged rows.
template <bool Bf16, int P>
__device__ __forceinline__ void rows_axpy(const uint32_t* rows, int sw, int rw, int n, float coef,
                                          float (&acc)[P]) {
    const int lane = threadIdx.x & 31;
#pragma unroll 4
    for (int e = 0; e < n; ++e) {
        const float c = __shfl_sync(FULL_MASK, coef, e);
        const uint32_t* yr = rows + e * sw;
        if (Bf16 && P >= 2) {
#pragma unroll
            for (int m = 0; m < P / 2; ++m) {
                const int w = m * 32 + lane;
                if (w < rw) {
                    const uint32_t a = yr[w];
                    acc[2 * m] = fmaf(c, bf_lo(a), acc[2 * m]);
                    acc[2 * m + 1] = fmaf(c, bf_hi(a), acc[2 * m + 1]);
                }
            }
        } else if (Bf16) {
            // P == 1 (k <= 32): dimension `lane` is half of word lane / 2.
            if (lane < 2 * rw) {
                const uint32_t a = yr[lane >> 1];
                acc[0] = fmaf(c, (lane & 1) ? bf_hi(a) : bf_lo(a), acc[0]);
            }
        } else {
#pragma unroll
            for (int q = 0; q < P; ++q) {
                const int w = q * 32 + lane;
                if (w < rw) acc[q] = fmaf(c, __uint_as_float(yr[w]), acc[q]);
            }
        }
    }
}

// For every non-zero e of the row: s = y_e . v (v in vbuf), then acc += coef(w_e, s) y_e, with
// coef = (1 + w) - w s when `Residual` (b - A x's data term), else w s. `cached`: the row has at
// most 32 entries, already staged in `rows`, with their weights in `cached_w`.
template <bool Bf16, int P, bool Residual>
__device__ __forceinline__ void sparse_pass(const uint32_t* __restrict__ indices,
                                            const float* __restrict__ conf, uint64_t begin,
                                            uint64_t end, const uint32_t* __restrict__ y, int k,
                                            const float* vbuf, uint32_t* rows, int sw,
                                            bool cached, float cached_w, float (&acc)[P]) {
    const int lane = threadIdx.x & 31;
    const int rw = row_words<Bf16>(k);
    for (uint64_t base = begin; base < end; base += 32) {
        const int n = (int)min((uint64_t)32, end - base);
        float my_w = cached_w;
        if (!cached) {
            uint32_t my_col = 0;
            my_w = 0.f;
            if (lane < n) {
                my_col = indices[base + lane];
                my_w = conf[base + lane];
            }
            __syncwarp();  // every lane is done reading the previous chunk
            stage_rows<Bf16, P>(y, rw, n, my_col, rows, sw);
            __syncwarp();
        }
        const float s = entry_dot<Bf16>(rows, sw, rw, n, vbuf);
        const float coef = lane < n ? (Residual ? (1.f + my_w) - my_w * s : my_w * s) : 0.f;
        rows_axpy<Bf16, P>(rows, sw, rw, n, coef, acc);
    }
}

// Writes this lane's registers of v into vbuf (whose padding [k, round4(k)) stays zero).
template <bool Bf16, int P>
__device__ __forceinline__ void publish(float* vbuf, int k, const float (&v)[P]) {
    const int lane = threadIdx.x & 31;
    __syncwarp();  // every lane is done reading the previous vector
#pragma unroll
    for (int q = 0; q < P; ++q) {
        const int d = dim_of<Bf16, P>(q, lane);
        if (d < k) vbuf[d] = v[q];
    }
    __syncwarp();
}

__device__ __forceinline__ int round4(int k) { return (k + 3) & ~3; }

template <bool Bf16, int P>
__device__ void cg_rows(const uint64_t* __restrict__ indptr, uint64_t nnz_base,
                        const uint32_t* __restrict__ indices, const float* __restrict__ conf,
                        uint64_t n_rows, uint64_t row0, const uint32_t* __restrict__ y,
                        const float* __restrict__ gram, float* __restrict__ x_out, int k,
                        float reg0, float nu, float inv_mean, int steps, int g_shared) {
    const int kv = round4(k);
    const int sw = row_words<Bf16>(k) | 1;
    const int g_words = g_shared ? round4(k * k) : 0;
    if (g_shared) {
        for (int e = threadIdx.x; e < k * k; e += blockDim.x) smem[e] = gram[e];
    }
    const int lane = threadIdx.x & 31;
    const int warp_in_block = threadIdx.x >> 5;
    float* vbuf = smem + g_words + warp_in_block * (kv + 32 * sw);
    uint32_t* rows = reinterpret_cast<uint32_t*>(vbuf + kv);
    for (int d = lane; d < kv; d += 32) vbuf[d] = 0.f;
    __syncthreads();
    const float* g = g_shared ? smem : gram;
    const uint64_t warps_per_block = blockDim.x >> 5;
    const uint64_t warp = (uint64_t)blockIdx.x * warps_per_block + warp_in_block;
    const uint64_t n_warps = (uint64_t)gridDim.x * warps_per_block;
    for (uint64_t r = warp; r < n_rows; r += n_warps) {
        const uint64_t begin = indptr[r] - nnz_base;
        const uint64_t end = indptr[r + 1] - nnz_base;
        const float reg = row_reg(reg0, nu, inv_mean, end - begin);
        float* xr = x_out + (size_t)(row0 + r) * k;
        // A row of at most 32 entries is staged once for all products.
        const bool cached = end - begin <= 32;
        float cached_w = 0.f;
        if (cached && end > begin) {
            const int n = (int)(end - begin);
            uint32_t my_col = 0;
            if (lane < n) {
                my_col = indices[begin + lane];
                cached_w = conf[begin + lane];
            }
            __syncwarp();
            stage_rows<Bf16, P>(y, row_words<Bf16>(k), n, my_col, rows, sw);
            __syncwarp();
        }
        float x[P], res[P], p[P], ap[P];
#pragma unroll
        for (int q = 0; q < P; ++q) {
            const int d = dim_of<Bf16, P>(q, lane);
            x[q] = d < k ? xr[d] : 0.f;
        }
        // res = b - A x = sum_i ((1 + w) - w y.x) y_i - (G + reg I) x
        publish<Bf16, P>(vbuf, k, x);
        gram_times<Bf16, P>(g, k, reg, vbuf, x, ap);
#pragma unroll
        for (int q = 0; q < P; ++q) res[q] = -ap[q];
        sparse_pass<Bf16, P, true>(indices, conf, begin, end, y, k, vbuf, rows, sw, cached,
                                   cached_w, res);
        float rs = 0.f;
#pragma unroll
        for (int q = 0; q < P; ++q) {
            p[q] = res[q];
            rs = fmaf(res[q], res[q], rs);
        }
        rs = warp_sum(rs);
        for (int s = 0; s < steps; ++s) {
            // Non-finite residual (overflowed confidences or factors): poison the row so the
            // finiteness check after the iteration reports it, rather than keeping stale values.
            if (!isfinite(rs)) {
#pragma unroll
                for (int q = 0; q < P; ++q) x[q] = __int_as_float(0x7fc00000);
                break;
            }
            if (!(rs > 1e-20f)) break;  // converged (uniform across the warp)
            publish<Bf16, P>(vbuf, k, p);
            gram_times<Bf16, P>(g, k, reg, vbuf, p, ap);
            sparse_pass<Bf16, P, false>(indices, conf, begin, end, y, k, vbuf, rows, sw, cached,
                                        cached_w, ap);
            float pap = 0.f;
#pragma unroll
            for (int q = 0; q < P; ++q) pap = fmaf(p[q], ap[q], pap);
            pap = warp_sum(pap);
            if (!isfinite(pap)) {
#pragma unroll
                for (int q = 0; q < P; ++q) x[q] = __int_as_float(0x7fc00000);
                break;
            }
            if (!(pap > 0.f)) break;
            const float alpha = rs / pap;
            float rs_new = 0.f;
#pragma unroll
            for (int q = 0; q < P; ++q) {
                x[q] = fmaf(alpha, p[q], x[q]);
                res[q] = fmaf(-alpha, ap[q], res[q]);
                rs_new = fmaf(res[q], res[q], rs_new);
            }
            rs_new = warp_sum(rs_new);
            const float beta = rs_new / rs;
#pragma unroll
            for (int q = 0; q < P; ++q) p[q] = fmaf(beta, p[q], res[q]);
            rs = rs_new;
        }
#pragma unroll
        for (int q = 0; q < P; ++q) {
            const int d = dim_of<Bf16, P>(q, lane);
            if (d < k) xr[d] = x[q];
        }
    }
}

// y: the fixed factors as 32-bit words: the fp32 matrix (n x k) or the bf16 copy (n x 2 rw).
#define CG_ENTRY(NAME, BF16, P)                                                                  \
    extern "C" __global__ void __launch_bounds__(CG_WARPS * 32) NAME(                           \
        const uint64_t* indptr, uint64_t nnz_base, const uint32_t* indices, const float* conf,  \
        uint64_t n_rows, uint64_t row0, const uint32_t* y, const float* gram, float* x_out,     \
        int k, float reg, float nu, float inv_mean, int steps, int g_shared) {                   \
        cg_rows<BF16, P>(indptr, nnz_base, indices, conf, n_rows, row0, y, gram, x_out, k, reg, \
                         nu, inv_mean, steps, g_shared);                                         \
    }
CG_ENTRY(als_cg_p1, false, 1)
CG_ENTRY(als_cg_p2, false, 2)
CG_ENTRY(als_cg_p4, false, 4)
CG_ENTRY(als_cg_p8, false, 8)
CG_ENTRY(als_cg_bf16_p1, true, 1)
CG_ENTRY(als_cg_bf16_p2, true, 2)
CG_ENTRY(als_cg_bf16_p4, true, 4)
CG_ENTRY(als_cg_bf16_p8, true, 8)

// dst (n_rows x ks bf16, ks = k rounded up to even, padding zero) = src (n_rows x k fp32),
// rounded to nearest even; NaN stays NaN. Matches als::bf16_round on the CPU bit for bit.
extern "C" __global__ void als_to_bf16(const float* src, uint16_t* dst, uint64_t n_rows, int k,
                                       int ks) {
    const uint64_t total = n_rows * (uint64_t)ks;
    const uint64_t stride = (uint64_t)gridDim.x * blockDim.x;
    for (uint64_t e = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += stride) {
        const uint64_t r = e / ks;
        const int d = (int)(e - r * ks);
        uint16_t out = 0;
        if (d < k) {
            const uint32_t b = __float_as_uint(src[r * k + d]);
            if ((b & 0x7fffffffu) > 0x7f800000u) {
                out = (uint16_t)((b >> 16) | 0x40u);  // quiet NaN
            } else {
                out = (uint16_t)((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
            }
        }
        dst[e] = out;
    }
}

// ---------------------------------------------------------------------------------------------
// Exact solves: one thread block per row builds A and b in shared memory.
//
// kp = k rounded up to a multiple of 4; the block has (kp/4)^2 threads and thread (ty, tx) owns
// the 4x4 tile of A at rows 4ty.., columns 4tx.., accumulated in registers: each non-zero costs
// two float4 shared loads for 16 FMAs. Factor rows come in tiles of TILE rows (TILE*kp floats
// of shared memory), loaded cooperatively and coalesced.
//
// Shared layout (floats): a[kp][kp+1] (odd stride: column walks of the Cholesky are
// conflict-free), ytile[TILE][kp], w[TILE], b[kp], z[kp].
// ---------------------------------------------------------------------------------------------

#define TILE 32

// Builds a (with G + reg I, padded with the identity) and b for global row `row` of the chunk.
__device__ void build_system(const uint64_t* __restrict__ indptr, uint64_t nnz_base,
                             const uint32_t* __restrict__ indices,
                             const float* __restrict__ conf, uint64_t r,
                             const float* __restrict__ y, const float* __restrict__ gram, int k,
                             float reg0, float nu, float inv_mean, float* a, float* ytile,
                             float* wt, float* b) {
    const int kp = round4(k);
    const int lda = kp + 1;
    const int t = threadIdx.x;
    const int nt = blockDim.x;
    const int side = kp >> 2;
    // The block may have more threads than tiles (small k): the extra ones only load and build b.
    const bool owner = t < side * side;
    const int tx = t % side, ty = owner ? t / side : 0;
    float acc[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = 0.f;
    float bacc = 0.f;
    const uint64_t begin = indptr[r] - nnz_base;
    const uint64_t end = indptr[r + 1] - nnz_base;
    const float reg = row_reg(reg0, nu, inv_mean, end - begin);
    for (uint64_t base = begin; base < end; base += TILE) {
        const int n = (int)min((uint64_t)TILE, end - base);
        for (int e = t; e < n * kp; e += nt) {
            const int j = e / kp;
            const int d = e - j * kp;
            const uint32_t c = indices[base + j];
            ytile[e] = d < k ? __ldg(y + (size_t)c * k + d) : 0.f;
        }
        if (t < n) wt[t] = conf[base + t];
        __syncthreads();
        for (int j = 0; owner && j < n; ++j) {
            const float w = wt[j];
            const float4 yr = *reinterpret_cast<const float4*>(ytile + j * kp + 4 * ty);
            const float4 yc = *reinterpret_cast<const float4*>(ytile + j * kp + 4 * tx);
            const float wr[4] = {w * yr.x, w * yr.y, w * yr.z, w * yr.w};
            const float cc[4] = {yc.x, yc.y, yc.z, yc.w};
#pragma unroll
            for (int i2 = 0; i2 < 4; ++i2)
#pragma unroll
                for (int j2 = 0; j2 < 4; ++j2) acc[i2][j2] = fmaf(wr[i2], cc[j2], acc[i2][j2]);
        }
        if (t < kp) {
            for (int j = 0; j < n; ++j) bacc = fmaf(1.f + wt[j], ytile[j * kp + t], bacc);
        }
        __syncthreads();
    }
#pragma unroll
    for (int i2 = 0; i2 < 4 && owner; ++i2) {
#pragma unroll
        for (int j2 = 0; j2 < 4; ++j2) {
            const int rr = 4 * ty + i2, cc = 4 * tx + j2;
            float v;
            if (rr < k && cc < k) {
                v = acc[i2][j2] + gram[rr * k + cc] + (rr == cc ? reg : 0.f);
            } else {
                v = rr == cc ? 1.f : 0.f;
            }
            a[rr * lda + cc] = v;
        }
    }
    if (t < kp) b[t] = t < k ? bacc : 0.f;
    __syncthreads();
}

// Solves a x = b in place (a: lower Cholesky factor overwrites it; x overwrites b). Returns false
// (in every thread) when a pivot is not positive.
__device__ bool cholesky_solve_shared(float* a, float* b, float* z, int kp, int* bad) {
    const int lda = kp + 1;
    const int t = threadIdx.x;
    const int side = kp >> 2;
    const bool owner = t < side * side;
    const int tx = t % side, ty = t / side;
    for (int j = 0; j < kp; ++j) {
        const float d = a[j * lda + j];
        if (!(d > 0.f)) {
            if (t == 0) *bad = 1;
            return false;  // uniform: every thread read the same pivot
        }
        const float s = sqrtf(d);
        __syncthreads();  // every thread has read the pivot before it changes
        if (t == 0) a[j * lda + j] = s;
        for (int i = j + 1 + t; i < kp; i += blockDim.x) a[i * lda + j] /= s;
        __syncthreads();
        for (int i = j + 1 + ty; owner && i < kp; i += side) {
            const float lij = a[i * lda + j];
            for (int c = j + 1 + tx; c <= i; c += side) a[i * lda + c] -= lij * a[c * lda + j];
        }
        __syncthreads();
    }
    // Forward and back substitution by warp 0 (warp-synchronous, no block barriers).
    if (t < 32) {
        for (int j = 0; j < kp; ++j) {
            const float zj = b[j] / a[j * lda + j];
            __syncwarp();
            if (t == 0) z[j] = zj;
            for (int i = j + 1 + t; i < kp; i += 32) b[i] -= a[i * lda + j] * zj;
            __syncwarp();
        }
        for (int j = kp - 1; j >= 0; --j) {
            const float xj = z[j] / a[j * lda + j];
            __syncwarp();
            if (t == 0) b[j] = xj;
            for (int i = t; i < j; i += 32) z[i] -= a[j * lda + i] * xj;
            __syncwarp();
        }
    }
    __syncthreads();
    return true;
}

// cholesky-fused: build, factor and solve each row without writing k x k matrices to memory.
extern "C" __global__ void __launch_bounds__(1024) als_fused_cholesky(const uint64_t* indptr, uint64_t nnz_base,
                                              const uint32_t* indices, const float* conf,
                                              uint64_t n_rows, uint64_t row0, const float* y,
                                              const float* gram, float* x_out, int k, float reg,
                                              float nu, float inv_mean, int* bad) {
    const int kp = round4(k);
    float* a = smem;
    float* ytile = a + kp * (kp + 1) + ((4 - (kp * (kp + 1)) % 4) % 4);  // 16-byte aligned
    float* wt = ytile + TILE * kp;
    float* b = wt + TILE;
    float* z = b + kp;
    for (uint64_t r = blockIdx.x; r < n_rows; r += gridDim.x) {
        build_system(indptr, nnz_base, indices, conf, r, y, gram, k, reg, nu, inv_mean, a, ytile,
                     wt, b);
        if (cholesky_solve_shared(a, b, z, kp, bad)) {
            for (int d = threadIdx.x; d < k; d += blockDim.x) x_out[(size_t)(row0 + r) * k + d] = b[d];
        }
        __syncthreads();
    }
}

// lu (cuBLAS batched LU, the original design's pipeline): build each row's A into `work` (k x k, dense; symmetric, so
// row- and column-major agree) and b into the row's place in x_out, for cublasSgetrfBatched and
// cublasSgetrsBatched to solve in place. Rows [0, n_rows) of the chunk go to work[0..n_rows).
extern "C" __global__ void __launch_bounds__(1024) als_build_lu(const uint64_t* indptr, uint64_t nnz_base,
                                        const uint32_t* indices, const float* conf,
                                        uint64_t n_rows, uint64_t row0, const float* y,
                                        const float* gram, float* x_out, int k, float reg,
                                        float nu, float inv_mean, float* work) {
    const int kp = round4(k);
    float* a = smem;
    float* ytile = a + kp * (kp + 1) + ((4 - (kp * (kp + 1)) % 4) % 4);
    float* wt = ytile + TILE * kp;
    float* b = wt + TILE;
    for (uint64_t r = blockIdx.x; r < n_rows; r += gridDim.x) {
        build_system(indptr, nnz_base, indices, conf, r, y, gram, k, reg, nu, inv_mean, a, ytile,
                     wt, b);
        float* out = work + r * (size_t)k * k;
        for (int e = threadIdx.x; e < k * k; e += blockDim.x) {
            const int rr = e / k, cc = e - rr * k;
            out[e] = a[rr * (kp + 1) + cc];
        }
        for (int d = threadIdx.x; d < k; d += blockDim.x) x_out[(size_t)(row0 + r) * k + d] = b[d];
        __syncthreads();
    }
}

// Pointer arrays for the batched LU: a[i] = work + i k^2, b[i] = x + (row0 + i) k.
extern "C" __global__ void als_lu_pointers(float* work, float* x, uint64_t row0, int k,
                                           uint64_t n, float** a_ptrs, float** b_ptrs) {
    const uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        a_ptrs[i] = work + i * (size_t)k * k;
        b_ptrs[i] = x + (row0 + i) * (size_t)k;
    }
}

// Sets *bad when any of the n values is NaN or infinite.
extern "C" __global__ void als_check_finite(const float* v, uint64_t n, int* bad) {
    const uint64_t stride = (uint64_t)gridDim.x * blockDim.x;
    bool ok = true;
    for (uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        ok &= isfinite(v[i]);
    }
    if (__syncthreads_or(!ok) && threadIdx.x == 0) *bad = 1;
}
