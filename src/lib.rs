//! Encore's core: implicit-feedback ALS music recommendation at LFM-1b scale, on CPU or GPU.
//!
//! This crate is the numerical library; the HTTP server (`encore-serve`), the benchmarks
//! (`encore-bench`) and the `encore` binary (`encore-cli`) are separate crates over it, so a
//! program or Python extension that links it gets no HTTP, async-runtime, CLI or plotting
//! dependencies. Modules follow the pipeline, each importing only the ones listed before it:
//!
//! - [`error`], [`util`], [`sys`]: typed errors, small shared helpers, machine facts.
//! - [`data`]: input formats, the streaming parallel ingest (`prep`), CSR matrices and the dataset
//!   directory format (scipy-compatible `.npz`).
//! - [`synth`]: synthetic listening logs in the exact LFM-1b file format, with planted taste structure.
//! - [`gpu`]: CUDA context, streams, device memory, cuBLAS and one wrapper per `cuda/*.cu` (loaded
//!   at run time, so the same binary also runs where there is no GPU).
//! - [`als`]: implicit-feedback ALS: the `Solver` and `Backend` seams, CPU and GPU, fold-in, and
//!   the model directory.
//! - [`infer`]: exact top-K scoring (the `Scorer` seam, CPU and GPU) and item similarity.
//! - [`eval`]: ranking metrics against held-out listens and the popularity baseline.
//! - [`recommend`]: original ids in, named tracks out; shared by the CLI, the server and the benches.
//! - [`train`]: training a dataset end to end: backend choice, progress, validation, metadata.
//! - [`tune`]: hyper-parameter search with successive halving, on a hold-out inside the
//!   training split (the validation split is only read to score the final choice).

pub mod als;
pub mod data;
pub mod dist;
pub mod error;
pub mod eval;
pub mod gpu;
pub mod infer;
pub mod recommend;
pub mod synth;
pub mod sys;
pub mod train;
pub mod tune;
pub mod util;

pub use error::{Error, Result};

/// Encore's version, recorded in every artifact it writes.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
