//! Regression tests for issue 13: hostile or broken inputs end in a clear error naming the file
//! (never a panic, an abort or a hang), and `--force` never deletes an input or a directory that
//! is not an Encore output.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use encore::Error;
use encore::als::model::{MODEL_JSON, Model, USER_FACTORS};
use encore::data::csr::Csr;
use encore::data::dataset::{self, Dataset};
use encore::data::npz;
use encore::data::prep::{PrepConfig, prep};

/// 40 listens by 8 users of 10 tracks, every track heard by several users.
fn plays_text() -> String {
    (0..40)
        .map(|k| format!("{}\t{}\t{}\n", k % 8, 100 + k % 10, 1 + k % 3))
        .collect()
}

/// A tiny triples file in `root` and its config, filters off.
fn fixture(root: &Path, out: &Path) -> (PathBuf, PrepConfig) {
    let input = root.join("plays.tsv");
    std::fs::write(&input, plays_text()).unwrap();
    let mut c = PrepConfig::new(&input, out);
    c.min_user_tracks = 1;
    c.min_track_users = 1;
    (input, c)
}

/// A prepared dataset in `root/ds`.
fn dataset(root: &Path) -> PathBuf {
    let ds = root.join("ds");
    prep(&fixture(root, &ds).1).unwrap();
    ds
}

/// A `.npy` file with a hand-written header and `data` after it.
fn npy(path: &Path, header: &str, data: &[u8]) {
    let mut h = header.to_string();
    while !(10 + h.len() + 1).is_multiple_of(64) {
        h.push(' ');
    }
    h.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(h.len() as u16).to_le_bytes());
    bytes.extend_from_slice(h.as_bytes());
    bytes.extend_from_slice(data);
    std::fs::write(path, bytes).unwrap();
}

// --- --force never deletes inputs or foreign directories -------------------------------------

#[test]
fn forced_prep_refuses_to_replace_its_input_file() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("plays.tsv");
    let (_, mut c) = fixture(dir.path(), &input);
    c.force = true;
    let e = prep(&c).unwrap_err();
    assert!(matches!(e, Error::WontReplace { .. }), "{e}");
    assert!(e.to_string().contains("input of this run"), "{e}");
    assert_eq!(std::fs::read_to_string(&input).unwrap(), plays_text());
}

#[test]
fn forced_prep_refuses_to_replace_a_directory_that_contains_its_input() {
    let dir = tempfile::tempdir().unwrap();
    let (input, mut c) = fixture(dir.path(), dir.path());
    c.force = true;
    let e = prep(&c).unwrap_err().to_string();
    assert!(e.contains("an input of this run"), "{e}");
    assert!(input.is_file());
    // The same directory spelled differently is recognised too.
    c.out = dir.path().join(".");
    assert!(prep(&c).is_err());
    c.out = dir.path().join("sub").join("..");
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    assert!(prep(&c).is_err());
    assert!(input.is_file());
}

#[test]
fn forced_prep_refuses_a_directory_that_is_not_a_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("home");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("thesis.tex"), "years of work").unwrap();
    let (_, mut c) = fixture(dir.path(), &out);
    c.force = true;
    let e = prep(&c).unwrap_err().to_string();
    assert!(
        e.contains("not an Encore dataset directory (it has no manifest.json)"),
        "{e}"
    );
    assert!(out.join("thesis.tex").is_file());
    // A model directory is not a dataset either.
    std::fs::remove_file(out.join("thesis.tex")).unwrap();
    std::fs::write(out.join(MODEL_JSON), "{}").unwrap();
    let e = prep(&c).unwrap_err().to_string();
    assert!(
        e.contains("it holds a model (model.json), not a dataset"),
        "{e}"
    );
    assert!(out.join(MODEL_JSON).is_file());
    // A file is never replaced by a directory.
    let file = dir.path().join("notes.txt");
    std::fs::write(&file, "x").unwrap();
    c.out = file.clone();
    assert!(prep(&c).unwrap_err().to_string().contains("it is a file"));
    assert!(file.is_file());
}

#[test]
fn forced_prep_replaces_an_empty_directory_an_old_dataset_and_may_write_inside_its_input_dir() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ds");
    std::fs::create_dir(&out).unwrap();
    let (input, mut c) = fixture(dir.path(), &out);
    c.force = true;
    prep(&c).expect("an empty directory is replaced");
    prep(&c).expect("an old dataset is replaced");
    assert!(out.join(dataset::MANIFEST).is_file());
    // Input given as its directory, output inside it: nothing of the input is removed.
    let raw = dir.path().join("raw");
    std::fs::create_dir(&raw).unwrap();
    std::fs::copy(&input, raw.join("user_artists.dat")).unwrap();
    let mut c2 = PrepConfig::new(&raw, raw.join("ds"));
    c2.min_user_tracks = 1;
    c2.min_track_users = 1;
    c2.force = true;
    prep(&c2).unwrap();
    prep(&c2).unwrap();
    assert!(raw.join("user_artists.dat").is_file());
}

#[test]
fn forced_model_save_refuses_the_dataset_it_was_trained_on() {
    // `encore train ds -o ds --force` must not delete the dataset.
    let dir = tempfile::tempdir().unwrap();
    let ds_dir = dataset(dir.path());
    let ds = Dataset::load(&ds_dir).unwrap();
    let cfg = encore::als::AlsConfig {
        factors: 4,
        iterations: 1,
        ..Default::default()
    };
    let opts = encore::train::FitOptions {
        device: encore::gpu::DeviceChoice::Cpu,
        quiet: true,
        ..Default::default()
    };
    let model = encore::train::fit(ds, &cfg, &opts, |_| {}).unwrap();
    let e = model.save(&ds_dir, true).unwrap_err();
    assert!(matches!(e, Error::WontReplace { .. }), "{e}");
    assert!(Model::check_save(&ds_dir, true, &ds_dir).is_err());
    Dataset::load(&ds_dir).expect("the dataset is intact");
    // A copy of a dataset elsewhere is refused by its marker, not just as the input.
    let copy = dir.path().join("copy");
    std::fs::create_dir(&copy).unwrap();
    std::fs::copy(ds_dir.join(dataset::MANIFEST), copy.join(dataset::MANIFEST)).unwrap();
    let e = model.save(&copy, true).unwrap_err().to_string();
    assert!(
        e.contains("it holds a dataset (manifest.json), not a model"),
        "{e}"
    );
    // A model over a model is fine.
    let m = dir.path().join("model");
    model.save(&m, false).unwrap();
    model.save(&m, true).unwrap();
    Model::check_save(&m, true, &ds_dir).unwrap();
}

// --- corrupt arrays: errors, not panics or aborts --------------------------------------------

#[test]
fn an_npz_whose_indptr_passes_nnz_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("train.npz");
    let m = Csr {
        n_rows: 2,
        n_cols: 3,
        indptr: vec![0, 7, 2],
        indices: vec![0, 1],
        data: vec![1.0, 2.0],
    };
    npz::write_csr(&p, &m).unwrap();
    let e = npz::read_csr(&p).unwrap_err().to_string();
    assert!(
        e.contains("train.npz") && e.contains("indptr decreases at row 1"),
        "{e}"
    );
}

#[test]
fn nan_infinite_and_negative_counts_in_train_npz_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let ds = dataset(dir.path());
    let good = npz::read_csr(&ds.join(dataset::TRAIN)).unwrap();
    for (v, kind) in [
        (f32::NAN, "NaN"),
        (f32::INFINITY, "infinite"),
        (-1.0, "negative"),
    ] {
        let mut m = good.clone();
        m.data[0] = v;
        npz::write_csr(&ds.join(dataset::TRAIN), &m).unwrap();
        let e = Dataset::load(&ds).unwrap_err().to_string();
        assert!(
            e.contains("train.npz") && e.contains(&format!("is {kind}")),
            "{e}"
        );
    }
}

#[test]
fn a_factor_header_claiming_a_huge_shape_is_an_error_not_an_abort() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(USER_FACTORS);
    npy(
        &p,
        "{'descr': '<f4', 'fortran_order': False, 'shape': (100000000000, 64), }",
        &[0; 256],
    );
    std::fs::write(dir.path().join(MODEL_JSON), "{}").unwrap();
    let e = npz::check_npy_file(&p).unwrap_err().to_string();
    assert!(
        e.contains(USER_FACTORS)
            && e.contains("shape (100000000000, 64)")
            && e.contains("256 bytes of data follow"),
        "{e}"
    );
}

#[test]
fn an_ids_file_with_a_lying_header_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let ds = dataset(dir.path());
    npy(
        &ds.join(dataset::USER_IDS),
        "{'descr': '<i8', 'fortran_order': False, 'shape': (18446744073709551615,), }",
        &[0; 64],
    );
    let e = Dataset::load(&ds).unwrap_err().to_string();
    assert!(e.contains("user_ids.npy") && e.contains("corrupt"), "{e}");
}

#[test]
fn a_csc_npz_is_refused_and_missing_members_are_named() {
    use ndarray::aview1;
    use ndarray_npy::NpzWriter;
    let dir = tempfile::tempdir().unwrap();
    // A CSC file: our CSR file with its `format` member rewritten to `csc`.
    let good = dir.path().join("good.npz");
    npz::write_csr(&good, &Csr::empty(1, 1)).unwrap();
    let csc = dir.path().join("csc.npz");
    let mut w = zip::ZipWriter::new(std::fs::File::create(&csc).unwrap());
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let mut src = zip::ZipArchive::new(std::fs::File::open(&good).unwrap()).unwrap();
    for i in 0..src.len() {
        let mut f = src.by_index(i).unwrap();
        let name = f.name().to_string();
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut f, &mut buf).unwrap();
        if name.starts_with("format") {
            assert!(buf.ends_with(b"csr"));
            let n = buf.len();
            buf[n - 3..].copy_from_slice(b"csc");
        }
        w.start_file(name, opts).unwrap();
        w.write_all(&buf).unwrap();
    }
    w.finish().unwrap();
    let e = npz::read_csr(&csc).unwrap_err().to_string();
    assert!(
        e.contains("csc.npz") && e.contains("sparse format is \"csc\", but only CSR"),
        "{e}"
    );
    // Members missing: all of them named at once.
    let partial = dir.path().join("partial.npz");
    let mut w = NpzWriter::new(std::fs::File::create(&partial).unwrap());
    w.add_array("indices", &aview1(&[0i32])).unwrap();
    w.add_array("data", &aview1(&[1f32])).unwrap();
    w.finish().unwrap();
    let e = npz::read_csr(&partial).unwrap_err().to_string();
    assert!(
        e.contains("partial.npz: missing arrays `format`, `shape`, `indptr`"),
        "{e}"
    );
}

#[test]
fn duplicate_user_or_item_ids_in_a_dataset_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ds = dataset(dir.path());
    let ids = npz::read_ids(&ds.join(dataset::USER_IDS)).unwrap();
    let mut dup = ids.clone();
    dup[2] = dup[1];
    npz::write_ids(&ds.join(dataset::USER_IDS), &dup).unwrap();
    let e = Dataset::load(&ds).unwrap_err().to_string();
    assert!(
        e.contains("user_ids.npy")
            && e.contains(&format!("duplicate id {} (rows 1 and 2)", ids[1])),
        "{e}"
    );
    npz::write_ids(&ds.join(dataset::USER_IDS), &ids).unwrap();
    let items = npz::read_ids(&ds.join(dataset::ITEM_IDS)).unwrap();
    let mut dup = items.clone();
    dup.swap(0, 1);
    npz::write_ids(&ds.join(dataset::ITEM_IDS), &dup).unwrap();
    let e = Dataset::load(&ds).unwrap_err().to_string();
    assert!(
        e.contains("item_ids.npy") && e.contains("not in ascending order"),
        "{e}"
    );
}

// --- endless and huge lines -------------------------------------------------------------------

#[test]
fn prep_of_dev_zero_stops_quickly_with_a_line_too_long_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = PrepConfig::new("/dev/zero", dir.path().join("ds"));
    c.skip_bad_lines = true;
    let t = Instant::now();
    let e = prep(&c).unwrap_err().to_string();
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert_eq!(
        e,
        "/dev/zero:1: line longer than 1 MiB (is this a text file?)"
    );
    assert!(!dir.path().join("ds").exists());
}

#[test]
fn a_100_mb_line_without_newline_fails_fast() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("plays.tsv");
    let mut f = std::fs::File::create(&input).unwrap();
    f.write_all(plays_text().as_bytes()).unwrap();
    f.write_all(&vec![b'1'; 100 << 20]).unwrap();
    drop(f);
    let t = Instant::now();
    let e = prep(&PrepConfig::new(&input, dir.path().join("ds")))
        .unwrap_err()
        .to_string();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(
        e.ends_with("plays.tsv:41: line longer than 1 MiB (is this a text file?)"),
        "{e}"
    );
}

#[test]
fn a_huge_bad_field_is_not_echoed_whole_in_errors_or_the_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("plays.tsv");
    let mut text = plays_text().into_bytes();
    text.extend_from_slice(b"1\t");
    text.extend(std::iter::repeat_n(b'x', 900 << 10));
    text.extend_from_slice(b"\t3\n");
    std::fs::write(&input, &text).unwrap();
    let mut c = PrepConfig::new(&input, dir.path().join("ds"));
    c.min_user_tracks = 1;
    c.min_track_users = 1;
    let e = prep(&c).unwrap_err().to_string();
    assert!(e.len() < 400 && e.contains("(921600 bytes)"), "{e}");
    c.skip_bad_lines = true;
    let m = prep(&c).unwrap();
    assert_eq!(m.lines.bad_skipped, 1);
    assert!(
        m.lines.bad_examples[0].len() < 400,
        "{}",
        m.lines.bad_examples[0]
    );
    let manifest = std::fs::metadata(dir.path().join("ds").join(dataset::MANIFEST)).unwrap();
    assert!(manifest.len() < 20_000, "{} bytes", manifest.len());
}

// --- names files ------------------------------------------------------------------------------

#[test]
fn skip_bad_lines_covers_the_names_file_and_the_manifest_counts_it() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("hetrec");
    std::fs::create_dir(&raw).unwrap();
    let mut pairs = String::from("userID\tartistID\tweight\n");
    for u in 0..6 {
        for a in 1..=4 {
            pairs += &format!("{u}\t{a}\t{}\n", 10 + u + a);
        }
    }
    std::fs::write(raw.join("user_artists.dat"), pairs).unwrap();
    std::fs::write(
        raw.join("artists.dat"),
        "id\tname\turl\tpictureURL\n1\tOne\tu\tp\nnot a line\n2\tTwo\tu\tp\n\
         3\tThree\tu\tp\n2\tTwo again\tu\tp\n4\tFour\tu\tp\n",
    )
    .unwrap();
    let mut c = PrepConfig::new(&raw, dir.path().join("ds"));
    c.min_user_tracks = 1;
    c.min_track_users = 1;
    let e = prep(&c).unwrap_err().to_string();
    assert!(e.contains("artists.dat:3:"), "{e}");
    c.skip_bad_lines = true;
    let m = prep(&c).unwrap();
    assert_eq!(m.names_skipped.lines, 2);
    assert!(
        m.names_skipped.examples[1].contains("artists.dat:6: duplicate id 2 (first on line 4)"),
        "{:?}",
        m.names_skipped.examples
    );
    let ds = Dataset::load(&dir.path().join("ds")).unwrap();
    assert_eq!(ds.names.unwrap().names, vec!["One", "Two", "Three", "Four"]);
}

// --- messages ---------------------------------------------------------------------------------

#[test]
fn an_io_error_is_reported_once_in_an_error_chain() {
    let dir = tempfile::tempdir().unwrap();
    let e = prep(&PrepConfig::new(
        dir.path().join("missing.tsv"),
        dir.path().join("ds"),
    ))
    .unwrap_err();
    let chain = format!("{:#}", anyhow::Error::from(e));
    assert_eq!(
        chain.matches("No such file or directory").count(),
        1,
        "{chain}"
    );
    assert!(chain.contains("missing.tsv"), "{chain}");
}
