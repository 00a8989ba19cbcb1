//! `model.json` as `encore::als::model::Model::load` reads it (serde into `ModelMeta`, then
//! the factor shapes it declares are checked).
//!
//! The input is model.json; the factor files are fixed and valid (2 × 2 users, 3 × 2 items).
//! Pins: no panic; a model that loads agrees with its model.json.
#![no_main]
use encore::als::model::Model;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = encore_fuzz::scratch().join("model-json");
    if !dir.is_dir() {
        std::fs::create_dir_all(&dir).expect("scratch");
        encore_fuzz::write(&dir, "user_factors.npy", &encore_fuzz::npy_f32(2, 2, 0.5));
        encore_fuzz::write(&dir, "item_factors.npy", &encore_fuzz::npy_f32(3, 2, -0.25));
    }
    encore_fuzz::write(&dir, "model.json", data);
    if let Ok(m) = Model::load(&dir) {
        assert_eq!((m.meta.dataset.users, m.meta.dataset.items), (2, 3));
        assert_eq!(m.meta.config.factors, 2);
    }
});
