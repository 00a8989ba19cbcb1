//! Factor files (`user_factors.npy`, `item_factors.npy`) as `encore::als::model::Model::load`
//! reads them (float32, 2-D, C or Fortran order).
//!
//! Input: sections split at a `--` line: [user_factors.npy, item_factors.npy] (one section is
//! used for both). `model.json` is fixed and valid (2 users, 3 items, k = 2), so every input
//! reaches the `.npy` reader and, when both read, the shape and finiteness checks.
//! Pins: no panic; a model that loads has the shapes model.json declares.
//!
//! The body is `encore_fuzz::targets::npy_factors` (replayed by `cargo test` too).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| encore_fuzz::targets::npy_factors(data));
