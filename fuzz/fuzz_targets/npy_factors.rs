//! Factor files (`user_factors.npy`, `item_factors.npy`) as `encore::als::model::Model::load`
//! reads them (float32, 2-D, C or Fortran order).
//!
//! Input: sections split at a `--` line: [user_factors.npy, item_factors.npy] (one section is
//! used for both). `model.json` is fixed and valid (2 users, 3 items, k = 2), so every input
//! reaches the `.npy` reader and, when both read, the shape and finiteness checks.
//! Pins: no panic; a model that loads has the shapes model.json declares.
#![no_main]
use encore::als::model::Model;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = encore_fuzz::scratch().join("npy-factors");
    if !dir.is_dir() {
        std::fs::create_dir_all(&dir).expect("scratch");
        encore_fuzz::write(&dir, "model.json", encore_fuzz::model_json(2, 3, 2).as_bytes());
    }
    let parts = encore_fuzz::sections(data);
    encore_fuzz::write(&dir, "user_factors.npy", parts[0]);
    encore_fuzz::write(&dir, "item_factors.npy", parts.get(1).unwrap_or(&parts[0]));
    if let Ok(m) = Model::load(&dir) {
        assert_eq!((m.users.n, m.users.k, m.users.data.len()), (2, 2, 4));
        assert_eq!((m.items.n, m.items.k, m.items.data.len()), (3, 2, 6));
    }
});
