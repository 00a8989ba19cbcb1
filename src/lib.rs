//! Encore: implicit-feedback ALS music recommendation at LFM-1b scale, on CPU or GPU.
//!
//! The library is organised by pipeline stage; the `encore` binary is a thin CLI over it.
//!
//! - [`synth`]: synthetic listening logs in the exact LFM-1b file format, with planted taste structure.
//! - [`data`]: input formats, the streaming parallel ingest (`prep`), CSR matrices and the dataset
//!   directory format (scipy-compatible `.npz`).
//! - [`als`]: implicit-feedback ALS training; the `Solver` and `Backend` seams, CPU and GPU.
//! - [`gpu`]: CUDA context, streams, device memory, the embedded kernels and cuBLAS (loaded at
//!   run time, so the binary also runs where there is no GPU).
//! - [`eval`]: ranking metrics against held-out listens and the popularity baseline.
//! - [`infer`]: exact top-K scoring (the `Scorer` seam) and item similarity.
//! - [`recommend`]: original ids in, named tracks out; shared by the CLI and the server.
//! - [`mod@bench`]: self-measurement (throughput, peak memory) for the `encore bench` commands.

pub mod als;
pub mod bench;
pub mod data;
pub mod error;
pub mod eval;
pub mod gpu;
pub mod infer;
pub mod recommend;
pub mod serve;
pub mod synth;
pub mod util;

pub use error::{Error, Result};

/// Encore's version, recorded in every artifact it writes.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
