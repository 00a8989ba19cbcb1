//! Encore measuring itself: the `encore bench` subcommands as a library.
//!
//! - [`ingest`](mod@ingest): `prep` throughput and peak memory per thread count, each run in a child process.
//! - [`train`]: training wall-clock per device and solver, at equal quality.
//! - [`infer`]: top-K latency per batch size and backend, every answer checked against the CPU's.
//! - [`overhead`]: what the HTTP server adds to a lone request at low load.
//! - [`report`]: all of it on one dataset, as report.md, results.json and figures.
//! - [`chart`]: the SVG bar and line charts, and their PNG rendering.
//!
//! Numbers are printed with the machine they came from ([`encore::sys::Machine`]).

pub mod chart;
pub mod infer;
pub mod ingest;
pub mod overhead;
pub mod peaks;
mod probe;
pub mod report;
pub mod train;

pub use ingest::{IngestOptions, IngestReport, IngestRun, ingest};
