//! cuBLAS through its raw C API (`cudarc::cublas::sys`): the Gram matrix YᵀY by SGEMM, and the
//! batched LU factorisation and solve of the `lu` solver. Every status is checked.

use std::sync::Arc;

use cudarc::cublas::result::CublasError;
use cudarc::cublas::sys::{self, cublasHandle_t, cublasOperation_t, cublasStatus_t};
use cudarc::driver::CudaStream;

use crate::error::{Error, Result};
use crate::gpu::gpu_err;

/// A cuBLAS handle bound to the compute stream.
pub struct Blas {
    handle: cublasHandle_t,
    _stream: Arc<CudaStream>,
}

fn check(what: &str, status: cublasStatus_t) -> Result<()> {
    if status == cublasStatus_t::CUBLAS_STATUS_SUCCESS {
        Ok(())
    } else {
        Err(gpu_err(&format!("cuBLAS {what}"), CublasError(status)))
    }
}

fn int(v: usize, what: &str) -> Result<i32> {
    i32::try_from(v)
        .map_err(|_| Error::gpu_internal(format!("{what} = {v} exceeds cuBLAS's 32-bit sizes")))
}

impl Blas {
    /// Creates a handle whose work goes to `stream`.
    pub fn new(stream: Arc<CudaStream>) -> Result<Self> {
        // SAFETY: only probes for the shared library.
        if !unsafe { sys::is_culib_present() } {
            return Err(Error::no_gpu(
                "libcublas could not be loaded: install the CUDA toolkit's cuBLAS (or put its \
                 directory on LD_LIBRARY_PATH), or use --device cpu",
            ));
        }
        let mut handle: cublasHandle_t = std::ptr::null_mut();
        // SAFETY: `handle` is a valid out-pointer; the context is current (created just before).
        check("cublasCreate", unsafe { sys::cublasCreate_v2(&mut handle) })?;
        // SAFETY: `handle` was just created; the stream outlives it (kept in self).
        check("cublasSetStream", unsafe {
            sys::cublasSetStream_v2(handle, stream.cu_stream() as sys::cudaStream_t)
        })?;
        Ok(Self {
            handle,
            _stream: stream,
        })
    }

    /// G = YᵀY for the row-major n × k matrix at `y`, into the k × k matrix at `gram` (full,
    /// symmetric). Row-major Y is column-major k × n, so this is C = A·Aᵀ (SGEMM N,T).
    pub fn gram(&self, y: u64, n: usize, k: usize, gram: u64) -> Result<()> {
        let (n32, k32) = (int(n, "rows")?, int(k, "factors")?);
        let (one, zero) = (1.0f32, 0.0f32);
        // SAFETY: y holds n·k floats and gram k·k floats, on this handle's stream.
        check("SGEMM (Gram matrix)", unsafe {
            sys::cublasSgemm_v2(
                self.handle,
                cublasOperation_t::CUBLAS_OP_N,
                cublasOperation_t::CUBLAS_OP_T,
                k32,
                k32,
                n32,
                &one,
                y as *const f32,
                k32,
                y as *const f32,
                k32,
                &zero,
                gram as *mut f32,
                k32,
            )
        })
    }

    /// Scores of `b` queries (row-major b × k at `q`) against `n` items (row-major n × k at `y`)
    /// into `out`, query-major: out[i·n + j] = q_i · y_j (a column-major n × b result). With
    /// `tf32` the tensor cores round the inputs to TF32 (10-bit mantissa); the caller's error
    /// bound must allow for it.
    #[allow(clippy::too_many_arguments)]
    pub fn scores(
        &self,
        y: u64,
        n: usize,
        q: u64,
        b: usize,
        k: usize,
        out: u64,
        tf32: bool,
    ) -> Result<()> {
        let (n32, b32, k32) = (int(n, "items")?, int(b, "queries")?, int(k, "factors")?);
        let (one, zero) = (1.0f32, 0.0f32);
        let compute = if tf32 {
            sys::cublasComputeType_t::CUBLAS_COMPUTE_32F_FAST_TF32
        } else {
            sys::cublasComputeType_t::CUBLAS_COMPUTE_32F
        };
        let f32t = sys::cudaDataType_t::CUDA_R_32F;
        // SAFETY: y holds n·k floats, q b·k and out n·b, on this handle's stream; alpha and beta
        // are host f32 (the default pointer mode).
        check("GemmEx (scores)", unsafe {
            sys::cublasGemmEx(
                self.handle,
                cublasOperation_t::CUBLAS_OP_T,
                cublasOperation_t::CUBLAS_OP_N,
                n32,
                b32,
                k32,
                (&one as *const f32).cast(),
                y as *const std::ffi::c_void,
                f32t,
                k32,
                q as *const std::ffi::c_void,
                f32t,
                k32,
                (&zero as *const f32).cast(),
                out as *mut std::ffi::c_void,
                f32t,
                n32,
                compute,
                sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
            )
        })
    }

    /// LU-factors `batch` k × k matrices in place (`a_ptrs`: device array of matrix pointers),
    /// pivots to `pivots` (batch·k i32), status per matrix to `info` (batch i32).
    pub fn getrf_batched(
        &self,
        k: usize,
        a_ptrs: u64,
        pivots: u64,
        info: u64,
        batch: usize,
    ) -> Result<()> {
        let (k32, b32) = (int(k, "factors")?, int(batch, "batch")?);
        // SAFETY: the arrays hold `batch` entries (pointers to k·k floats), batch·k and batch i32.
        check("getrfBatched", unsafe {
            sys::cublasSgetrfBatched(
                self.handle,
                k32,
                a_ptrs as *const *mut f32,
                k32,
                pivots as *mut i32,
                info as *mut i32,
                b32,
            )
        })
    }

    /// Solves A x = b for each factored matrix, b (k × 1, at `b_ptrs`) overwritten by x.
    pub fn getrs_batched(
        &self,
        k: usize,
        a_ptrs: u64,
        pivots: u64,
        b_ptrs: u64,
        batch: usize,
    ) -> Result<()> {
        let (k32, b32) = (int(k, "factors")?, int(batch, "batch")?);
        let mut info = 0i32;
        // SAFETY: as for getrf; `info` is a host i32 (argument validity only).
        check("getrsBatched", unsafe {
            sys::cublasSgetrsBatched(
                self.handle,
                cublasOperation_t::CUBLAS_OP_N,
                k32,
                1,
                a_ptrs as *const *const f32,
                k32,
                pivots as *const i32,
                b_ptrs as *const *mut f32,
                k32,
                &mut info,
                b32,
            )
        })?;
        if info != 0 {
            return Err(Error::gpu_internal(format!(
                "getrsBatched: argument {} invalid",
                -info
            )));
        }
        Ok(())
    }
}

impl Drop for Blas {
    fn drop(&mut self) {
        // SAFETY: the handle was created in `new` and is destroyed once.
        let _ = unsafe { sys::cublasDestroy_v2(self.handle) };
    }
}
