//! Typed errors for the library; the CLI wraps them with `anyhow`.
//!
//! Every error that comes from user input names the file (and the line, where there is one) so the
//! user can go straight to the problem.

use std::path::PathBuf;

pub use crate::gpu::error::GpuError;

/// Result alias used throughout the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in Encore's library code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system I/O error on a named path.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A malformed line in an input file.
    #[error("{path}:{line}: {reason}")]
    BadLine {
        path: PathBuf,
        line: u64,
        reason: String,
    },
    /// A file that exists but holds no data rows.
    #[error("{path}: file is empty (no data rows)")]
    EmptyFile { path: PathBuf },
    /// An input that is well-formed line by line but unusable as a whole.
    #[error("{path}: {reason}")]
    BadInput { path: PathBuf, reason: String },
    /// An output that already exists and would be overwritten.
    #[error("{path} already exists (pass --force to replace it)")]
    OutputExists { path: PathBuf },
    /// Invalid configuration (flags, sizes) caught before any work starts.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A numerical failure (non-finite values, a matrix that is not positive definite).
    #[error("numerical problem: {0}")]
    Numerical(String),
    /// A CUDA driver or cuBLAS failure, or no usable GPU: what was being done, and the typed
    /// cause (match on it, e.g. [`GpuError::is_out_of_memory`]).
    #[error("GPU: {}", gpu_message(.what, .error))]
    Gpu { what: String, error: GpuError },
    /// Writing or reading a `.npy`/`.npz` file failed.
    #[error("{path}: {reason}")]
    Npy { path: PathBuf, reason: String },
}

/// "what: cause" for driver and cuBLAS failures; "what" alone when the cause says nothing more.
fn gpu_message(what: &str, error: &GpuError) -> String {
    match error {
        GpuError::Unavailable | GpuError::Internal => what.to_string(),
        e => format!("{what}: {e}"),
    }
}

impl Error {
    /// A GPU failure while doing `what`.
    pub fn gpu(what: impl Into<String>, error: impl Into<GpuError>) -> Self {
        Error::Gpu {
            what: what.into(),
            error: error.into(),
        }
    }

    /// No usable GPU, and why.
    pub fn no_gpu(why: impl Into<String>) -> Self {
        Self::gpu(why, GpuError::Unavailable)
    }

    /// A state or size the GPU code cannot handle.
    pub fn gpu_internal(what: impl Into<String>) -> Self {
        Self::gpu(what, GpuError::Internal)
    }

    /// Whether this is the GPU running out of memory.
    pub fn is_out_of_memory(&self) -> bool {
        matches!(self, Error::Gpu { error, .. } if error.is_out_of_memory())
    }

    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// A dataset-level problem in `path`.
    pub fn bad_input(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::BadInput {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// A `.npy`/`.npz` problem in `path`.
    pub fn npy(path: impl Into<PathBuf>, reason: impl std::fmt::Display) -> Self {
        Error::Npy {
            path: path.into(),
            reason: reason.to_string(),
        }
    }
}

/// Extension to attach a path to `std::io::Result`.
pub trait IoContext<T> {
    /// Maps an `io::Error` to [`Error::Io`] naming `path`.
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}
