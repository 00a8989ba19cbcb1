//! The HTTP server for real, on ephemeral loopback ports: one test binary, grouped by theme.
//!
//! - `routes`: every route and error status, the track schema, unknown users in place.
//! - `overload`: the in-flight bound, connection limit, header-read and idle timeouts.
//! - `shutdown`: in-flight requests finish; a stuck client cannot hold the exit past the
//!   drain deadline.
//! - `reload`: live model swaps under load, bad models refused, access to the route.
//! - `loadgen`: the load generator's rates, error kinds, client saturation and pool mode.

mod common;
mod loadgen;
mod overload;
mod reload;
mod routes;
mod shutdown;
