//! `encore serve`: recommendations over HTTP with dynamic batching, and `encore loadgen`, the
//! open-loop client that measures it.
//!
//! - [`server`]: the axum routes, request validation, JSON errors, graceful shutdown.
//! - [`batcher`]: the worker thread that merges concurrent requests into shared `top_k` calls.
//! - [`metrics`]: the Prometheus registry behind `/metrics`.
//! - [`loadgen`]: Poisson arrivals fixed in advance, latency from the intended send time.
//! - [`local`]: a server on a loopback port for the length of a closure (benchmarks, tests).
//!
//! Fold-in (a listener the model has never seen) is the core's [`encore::als::foldin`], so the
//! server and every other caller solve it the same way.

pub mod batcher;
pub mod loadgen;
pub mod local;
pub mod metrics;
pub mod server;

pub use local::{small_recommender, with_server};
pub use server::{
    AppState, MAX_HISTORY, MAX_K, MAX_USERS, ServeConfig, Shared, TrackOut, UserAnswer,
    default_batch, router, serve, serve_until, state,
};
