//! `encore serve`: recommendations over HTTP with dynamic batching, and `encore loadgen`, the
//! load generator that measures it.
//!
//! - [`server`]: configuration, shared state, the router, serving until a signal.
//! - [`api`]: the recommendation routes, their JSON answers and errors.
//! - [`admission`]: the bound on requests in flight (503 at once when full).
//! - [`conn`]: the accept loop, connection limit, header-read and idle timeouts, the drain.
//! - [`generation`] and [`reload`](mod@reload): the model being served, its version, and live reload.
//! - [`batcher`]: the worker thread that merges concurrent requests into shared `top_k` calls.
//! - [`metrics`]: the Prometheus registry behind `/metrics`.
//! - [`limits`]: the open-file limit, the process's CPU time and memory.
//! - [`loadgen`]: open-loop Poisson arrivals or a fixed connection pool, latency from the
//!   intended send time, errors by kind, and whether the client kept up.
//! - [`local`]: a server on a loopback port for the length of a closure (benchmarks, tests).
//!
//! Fold-in (a listener the model has never seen) is the core's [`encore::als::foldin`], so the
//! server and every other caller solve it the same way.

pub mod admission;
pub mod api;
pub mod batcher;
pub mod conn;
pub mod generation;
pub mod limits;
pub mod loadgen;
pub mod local;
pub mod metrics;
pub mod reload;
pub mod server;

pub use api::{MAX_HISTORY, MAX_K, MAX_USERS, MODEL_HEADER, TrackOut, UserAnswer, UserResult};
pub use generation::{ModelSource, ModelVersion};
pub use local::{small_recommender, with_server};
pub use reload::{ReloadError, Reloaded, reload};
pub use server::{
    AppState, Health, Limits, Log, ServeConfig, Shared, default_batch, router, serve, serve_until,
    state,
};
