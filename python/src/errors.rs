//! Encore's errors as Python exceptions, and the guard that keeps a Rust panic from ever
//! reaching Python as pyo3's `PanicException` (a `BaseException` that `except Exception` does
//! not catch, issue 16).
//!
//! The mapping follows what the error means to the caller, with the message Encore prints:
//! bad arguments and bad data are `ValueError`, a file that cannot be read or written is the
//! matching `OSError` subclass (`FileNotFoundError`, `FileExistsError`, ...), a CUDA driver or
//! cuBLAS failure or a missing GPU is `encore.GpuError` (a `RuntimeError`), and everything else
//! is `RuntimeError`.

use std::panic::{AssertUnwindSafe, catch_unwind};

use encore::Error;
use pyo3::exceptions::{
    PyFileExistsError, PyFileNotFoundError, PyIsADirectoryError, PyNotADirectoryError, PyOSError,
    PyPermissionError, PyRuntimeError, PyValueError,
};
use pyo3::prelude::*;

pyo3::create_exception!(
    _encore,
    GpuError,
    PyRuntimeError,
    "A GPU was asked for and cannot be used: no NVIDIA driver, no such device, no cuBLAS, a driver \
     too old for the embedded kernels, or a CUDA failure (out of memory, say) while running."
);

/// The Python exception for an Encore error.
pub fn to_py(e: Error) -> PyErr {
    let msg = e.to_string();
    match &e {
        Error::Gpu { .. } => GpuError::new_err(msg),
        Error::Io { error, .. } => {
            use std::io::ErrorKind as K;
            match error.kind() {
                K::NotFound => PyFileNotFoundError::new_err(msg),
                K::PermissionDenied => PyPermissionError::new_err(msg),
                K::AlreadyExists => PyFileExistsError::new_err(msg),
                K::IsADirectory => PyIsADirectoryError::new_err(msg),
                K::NotADirectory => PyNotADirectoryError::new_err(msg),
                _ => PyOSError::new_err(msg),
            }
        }
        Error::OutputExists { .. } => PyFileExistsError::new_err(msg),
        Error::BadLine { .. }
        | Error::EmptyFile { .. }
        | Error::BadInput { .. }
        | Error::WontReplace { .. }
        | Error::Config(_)
        | Error::NotFound(_)
        | Error::Npy { .. } => PyValueError::new_err(msg),
        Error::Runtime(_) | Error::Numerical(_) => PyRuntimeError::new_err(msg),
    }
}

/// `Result<T, encore::Error>` → `PyResult<T>`.
pub trait IntoPy<T> {
    fn py_err(self) -> PyResult<T>;
}

impl<T> IntoPy<T> for encore::Result<T> {
    fn py_err(self) -> PyResult<T> {
        self.map_err(to_py)
    }
}

/// A `ValueError` with `msg`.
pub fn value_error(msg: impl Into<String>) -> PyErr {
    PyValueError::new_err(msg.into())
}

/// The message of a panic payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_string()
    }
}

/// The `RuntimeError` a panic becomes: it is a bug in Encore, and says so.
pub fn internal_error(payload: &(dyn std::any::Any + Send)) -> PyErr {
    PyRuntimeError::new_err(format!(
        "internal error in Encore: {} (this is a bug; please report it)",
        panic_message(payload)
    ))
}

/// Runs `f`, turning a panic anywhere inside it (rayon workers included: rayon re-raises their
/// panics on the calling thread) into a `RuntimeError` instead of pyo3's `PanicException`.
/// Every function of the module runs its body through this.
pub fn guard<T>(f: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => Err(internal_error(payload.as_ref())),
    }
}
