//! `encore::data::npz::read_ids`: an int64 `.npy` id array (`user_ids.npy`, `item_ids.npy`).
//!
//! Pins: no panic on any header, dtype, shape or truncation; ids that load survive
//! `write_ids` → `read_ids` unchanged.
//!
//! The body is `encore_fuzz::targets::npy_ids` (replayed by `cargo test` too).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| encore_fuzz::targets::npy_ids(data));
