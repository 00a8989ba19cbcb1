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
    ///
    /// The I/O error is shown in the message and deliberately *not* exposed as
    /// [`std::error::Error::source`]: a chain printer (`anyhow`'s `{:#}`) would otherwise print
    /// it twice (`x: No such file or directory (os error 2): No such file or directory (os
    /// error 2)`). Use [`Error::io_error`] to inspect it.
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
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
    /// An output that must not be replaced, even with `--force`: an input of the run, a
    /// directory holding one, or something that is not an Encore output of the kind written.
    #[error("refusing to replace {path}: {reason}")]
    WontReplace { path: PathBuf, reason: String },
    /// Invalid configuration (flags, sizes) caught before any work starts.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Something asked for does not exist (an unknown user or track id).
    #[error("{0}")]
    NotFound(String),
    /// A failure while running that is neither bad input nor bad configuration (a thread or
    /// socket that cannot be set up, an address in use, serialisation).
    #[error("{0}")]
    Runtime(String),
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
            error: source,
        }
    }

    /// The operating-system error behind an [`Error::Io`] (to match its kind, e.g. a broken
    /// pipe), `None` for every other variant.
    pub fn io_error(&self) -> Option<&std::io::Error> {
        match self {
            Error::Io { error, .. } => Some(error),
            _ => None,
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
