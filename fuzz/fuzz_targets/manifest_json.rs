//! `manifest.json` as `encore::data::dataset::Dataset::load` reads it, then `verify`.
//!
//! The input is manifest.json; the rest of the dataset (train/valid `.npz`, id `.npy`,
//! `items.tsv`) is fixed and valid, written once with Encore's own writers.
//! Pins: no panic in loading or in the content-hash check.
#![no_main]
use encore::data::csr::Csr;
use encore::data::dataset::{Dataset, write_files};
use encore::data::names::ItemNames;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = encore_fuzz::scratch().join("manifest-json");
    if !dir.is_dir() {
        std::fs::create_dir_all(&dir).expect("scratch");
        let train = Csr { n_rows: 2, n_cols: 3, indptr: vec![0, 2, 3], indices: vec![0, 2, 1], data: vec![1.0, 4.0, 2.0] };
        let valid = Csr { n_rows: 2, n_cols: 3, indptr: vec![0, 0, 1], indices: vec![2], data: vec![1.0] };
        let names = ItemNames {
            names: vec!["a".into(), "b".into(), "c".into()],
            artist_ids: vec![Some(7), None, Some(8)],
            artist_names: vec!["x".into(), String::new(), "y".into()],
            missing: 1,
        };
        write_files(&dir, &train, &valid, &[10, 20], &[1, 5, 9], Some(&names)).expect("dataset");
    }
    encore_fuzz::write(&dir, "manifest.json", data);
    if let Ok(ds) = Dataset::load(&dir) {
        let _ = ds.verify();
    }
});
