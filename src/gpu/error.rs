//! The GPU's typed failures. cudarc's driver and cuBLAS statuses are kept as they are (not
//! flattened to text), so callers match on them: out-of-memory is found by its error code.

use cudarc::cublas::result::CublasError;
use cudarc::driver::result::DriverError;
use cudarc::driver::sys::CUresult;

/// Why a GPU operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GpuError {
    /// A CUDA driver call returned an error status.
    #[error("{}", driver_message(.0))]
    Driver(#[from] DriverError),
    /// A cuBLAS call returned an error status.
    #[error("{0:?}")]
    Blas(#[from] CublasError),
    /// An NCCL call returned an error status: its name (`ncclUnhandledCudaError`) and NCCL's
    /// text for it.
    #[error("{name} ({text})")]
    Nccl { name: String, text: String },
    /// No usable GPU: no driver library, no cuBLAS, no such device number.
    #[error("not available")]
    Unavailable,
    /// A size or state the GPU code cannot handle (a buffer missing, sizes over 32 bits).
    #[error("internal")]
    Internal,
}

impl GpuError {
    /// Whether the device ran out of memory.
    pub fn is_out_of_memory(&self) -> bool {
        matches!(
            self,
            Self::Driver(DriverError(CUresult::CUDA_ERROR_OUT_OF_MEMORY))
        )
    }
}

/// The driver's status with what to do about the ones a user can fix.
fn driver_message(e: &DriverError) -> String {
    let hint = match e.0 {
        CUresult::CUDA_ERROR_OUT_OF_MEMORY => " (out of device memory)",
        CUresult::CUDA_ERROR_UNSUPPORTED_PTX_VERSION | CUresult::CUDA_ERROR_INVALID_PTX => {
            " (the embedded PTX is newer than this NVIDIA driver supports: update the driver, or \
             rebuild Encore with this host's CUDA toolkit so build.rs compiles cuda/ with its nvcc: \
             NVCC=/usr/local/cuda/bin/nvcc cargo build --release)"
        }
        CUresult::CUDA_ERROR_NO_DEVICE => " (no CUDA device is visible)",
        CUresult::CUDA_ERROR_INVALID_DEVICE => " (no such GPU number)",
        _ => "",
    };
    format!("{e:?}{hint}")
}
