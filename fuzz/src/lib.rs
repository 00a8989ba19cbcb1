//! Encore's fuzz targets, as a library the `fuzz_targets/*.rs` binaries call.
//!
//! - [`helpers`]: scratch directories, input splitting, option bits, small valid files.
//! - [`targets`]: the body of every file-format target. The core crate's
//!   `tests/fuzz_regressions.rs` includes `helpers.rs` and `targets.rs` with `#[path]`, so
//!   `cargo test` replays `fuzz/corpus/` and `fuzz/regressions/` through the same code.
//! - [`serve`]: the HTTP request target (needs `encore-serve`, so it is replayed by
//!   `crates/serve/tests/fuzz_regressions.rs` instead).

pub mod helpers;
pub mod serve;
pub mod targets;

pub use helpers::*;
