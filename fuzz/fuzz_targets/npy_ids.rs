//! `encore::data::npz::read_ids`: an int64 `.npy` id array (`user_ids.npy`, `item_ids.npy`).
//!
//! Pins: no panic on any header, dtype, shape or truncation; ids that load survive
//! `write_ids` → `read_ids` unchanged.
#![no_main]
use encore::data::npz::{read_ids, write_ids};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = encore_fuzz::scratch();
    let Ok(ids) = read_ids(&encore_fuzz::write(dir, "ids.npy", data)) else { return };
    let q = dir.join("ids-out.npy");
    write_ids(&q, &ids).expect("write_ids");
    assert_eq!(read_ids(&q).expect("read_ids of what write_ids wrote"), ids);
});
