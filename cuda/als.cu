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
// Lane l holds the dimensions l, l + 32, ..., so reading one factor row is P coalesced 128-byte
// loads. Indices and weights are read 32 at a time (one per lane) and broadcast by shuffle.
// G sits in shared memory when it fits the default 48 KB (k <= 110), else it is read through L1.
// ---------------------------------------------------------------------------------------------

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// out = (G + reg I) v for the lane's dimensions. G is symmetric, so column j of G is row j: for
// each j every lane reads G[j*k + d], which is coalesced.
template <int P>
__device__ __forceinline__ void gram_times(const float* __restrict__ g, int k, float reg,
                                           const float (&v)[P], float (&out)[P]) {
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int q = 0; q < P; ++q) out[q] = reg * v[q];
#pragma unroll
    for (int qj = 0; qj < P; ++qj) {
#pragma unroll 4
        for (int l = 0; l < 32; ++l) {
            const int j = qj * 32 + l;
            if (j >= k) break;
            const float vj = __shfl_sync(0xffffffffu, v[qj], l);
            const float* gj = g + (size_t)j * k;
#pragma unroll
            for (int q = 0; q < P; ++q) {
                const int d = q * 32 + lane;
                if (d < k) out[q] = fmaf(gj[d], vj, out[q]);
            }
        }
    }
}

// For every non-zero i of the row: s = y_i . v (warp-reduced), then acc += coef(w_i, s) * y_i.
// `Residual` selects coef = (1 + w) - w s (builds b - Ax's data term); otherwise coef = w s.
template <int P, bool Residual>
__device__ __forceinline__ void sparse_pass(const uint32_t* __restrict__ indices,
                                            const float* __restrict__ conf, uint64_t begin,
                                            uint64_t end, const float* __restrict__ y, int k,
                                            const float (&v)[P], float (&acc)[P]) {
    const int lane = threadIdx.x & 31;
    for (uint64_t base = begin; base < end; base += 32) {
        const int n = (int)min((uint64_t)32, end - base);
        uint32_t my_col = 0;
        float my_w = 0.f;
        if (lane < n) {
            my_col = indices[base + lane];
            my_w = conf[base + lane];
        }
        int j = 0;
        // Four rows at a time: their loads are issued before the first reduction needs them.
        for (; j + 4 <= n; j += 4) {
            float yv[4][P];
            float w[4];
#pragma unroll
            for (int u = 0; u < 4; ++u) {
                const uint32_t c = __shfl_sync(0xffffffffu, my_col, j + u);
                w[u] = __shfl_sync(0xffffffffu, my_w, j + u);
                const float* yr = y + (size_t)c * k;
#pragma unroll
                for (int q = 0; q < P; ++q) {
                    const int d = q * 32 + lane;
                    yv[u][q] = d < k ? __ldg(yr + d) : 0.f;
                }
            }
            float s[4];
#pragma unroll
            for (int u = 0; u < 4; ++u) {
                float t = 0.f;
#pragma unroll
                for (int q = 0; q < P; ++q) t = fmaf(yv[u][q], v[q], t);
                s[u] = t;
            }
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) {
#pragma unroll
                for (int u = 0; u < 4; ++u) s[u] += __shfl_xor_sync(0xffffffffu, s[u], o);
            }
#pragma unroll
            for (int u = 0; u < 4; ++u) {
                const float coef = Residual ? (1.f + w[u]) - w[u] * s[u] : w[u] * s[u];
#pragma unroll
                for (int q = 0; q < P; ++q) acc[q] = fmaf(coef, yv[u][q], acc[q]);
            }
        }
        for (; j < n; ++j) {
            const uint32_t c = __shfl_sync(0xffffffffu, my_col, j);
            const float w = __shfl_sync(0xffffffffu, my_w, j);
            const float* yr = y + (size_t)c * k;
            float yv[P];
            float t = 0.f;
#pragma unroll
            for (int q = 0; q < P; ++q) {
                const int d = q * 32 + lane;
                yv[q] = d < k ? __ldg(yr + d) : 0.f;
                t = fmaf(yv[q], v[q], t);
            }
            const float s = warp_sum(t);
            const float coef = Residual ? (1.f + w) - w * s : w * s;
#pragma unroll
            for (int q = 0; q < P; ++q) acc[q] = fmaf(coef, yv[q], acc[q]);
        }
    }
}

// lambda of a row with n entries: reg * (max(n, 1) * inv_mean)^nu, the frequency-scaled
// regularisation of the CPU solvers (HalfStep::row_regularization); nu = 0 is plain reg.
__device__ __forceinline__ float row_reg(float reg, float nu, float inv_mean, uint64_t n) {
    return nu == 0.f ? reg : reg * powf(fmaxf((float)n, 1.f) * inv_mean, nu);
}

template <int P>
__device__ void cg_rows(const uint64_t* __restrict__ indptr, uint64_t nnz_base,
                        const uint32_t* __restrict__ indices, const float* __restrict__ conf,
                        uint64_t n_rows, uint64_t row0, const float* __restrict__ y,
                        const float* __restrict__ gram, float* __restrict__ x_out, int k,
                        float reg0, float nu, float inv_mean, int steps) {
    const bool g_shared = (size_t)k * k * sizeof(float) <= 48 * 1024;
    if (g_shared) {
        for (int e = threadIdx.x; e < k * k; e += blockDim.x) smem[e] = gram[e];
        __syncthreads();
    }
    const float* g = g_shared ? smem : gram;
    const int lane = threadIdx.x & 31;
    const uint64_t warps_per_block = blockDim.x >> 5;
    const uint64_t warp = (uint64_t)blockIdx.x * warps_per_block + (threadIdx.x >> 5);
    const uint64_t n_warps = (uint64_t)gridDim.x * warps_per_block;
    for (uint64_t r = warp; r < n_rows; r += n_warps) {
        const uint64_t begin = indptr[r] - nnz_base;
        const uint64_t end = indptr[r + 1] - nnz_base;
        const float reg = row_reg(reg0, nu, inv_mean, end - begin);
        float* xr = x_out + (size_t)(row0 + r) * k;
        float x[P], res[P], p[P], ap[P];
#pragma unroll
        for (int q = 0; q < P; ++q) {
            const int d = q * 32 + lane;
            x[q] = d < k ? xr[d] : 0.f;
        }
        // res = b - A x = sum_i ((1 + w) - w y.x) y_i - (G + reg I) x
        gram_times<P>(g, k, reg, x, ap);
#pragma unroll
        for (int q = 0; q < P; ++q) res[q] = -ap[q];
        sparse_pass<P, true>(indices, conf, begin, end, y, k, x, res);
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
            gram_times<P>(g, k, reg, p, ap);
            sparse_pass<P, false>(indices, conf, begin, end, y, k, p, ap);
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
            const int d = q * 32 + lane;
            if (d < k) xr[d] = x[q];
        }
    }
}

#define CG_ENTRY(P)                                                                              \
    extern "C" __global__ void als_cg_p##P(                                                      \
        const uint64_t* indptr, uint64_t nnz_base, const uint32_t* indices, const float* conf,  \
        uint64_t n_rows, uint64_t row0, const float* y, const float* gram, float* x_out, int k,  \
        float reg, float nu, float inv_mean, int steps) {                                        \
        cg_rows<P>(indptr, nnz_base, indices, conf, n_rows, row0, y, gram, x_out, k, reg, nu,    \
                   inv_mean, steps);                                                             \
    }
CG_ENTRY(1)
CG_ENTRY(2)
CG_ENTRY(4)
CG_ENTRY(8)

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

__device__ __forceinline__ int round4(int k) { return (k + 3) & ~3; }

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
