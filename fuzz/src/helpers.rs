//! Helpers shared by the fuzz targets in `fuzz_targets/` and their bodies in `targets`.
//!
//! - [`scratch`]: a per-process directory (under `/dev/shm` when writable) for loaders that
//!   take a path; libFuzzer's `-fork`/`-jobs` workers each get their own.
//! - [`sections`]: splits one fuzz input into several files at lines that are exactly `--`.
//! - [`ingest`], [`ingest_path`]: the shared body of the `ingest_*` targets.
//! - [`npy_f32`] and [`model_json`]: small valid files for the parts a target does not fuzz.
//!
//! Every target asserts only that nothing panics (errors are fine), plus a few cheap
//! invariants that a correct parser must satisfy; each documents which.

use std::path::{Path, PathBuf};
use std::sync::Once;

use encore::data::formats::{Delimiter, Format, HeaderMode};
use encore::data::prep::{PrepConfig, parse_input};

/// Single-threaded rayon: deterministic, one core per fuzzing process.
pub fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1);
        // In a fuzz binary the fuzzing thread itself is the pool's one worker, so every
        // parallel call runs inline instead of waking a worker thread and waiting for it (a
        // quarter of the ingest targets' time went to those wake-ups). Not under `cargo test`:
        // a test thread that joined the pool and then ended would leave it without workers.
        #[cfg(fuzzing)]
        let pool = pool.use_current_thread();
        let _ = pool.build_global();
    });
}

/// This process's scratch directory, created on first use. Directories of dead processes
/// (crashed runs) are removed then too.
pub fn scratch() -> &'static Path {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        init();
        let shm = Path::new("/dev/shm");
        let base =
            if shm.is_dir() && std::fs::metadata(shm).is_ok_and(|m| !m.permissions().readonly()) {
                shm.to_path_buf()
            } else {
                std::env::temp_dir()
            };
        if let Ok(rd) = std::fs::read_dir(&base) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(pid) = name.strip_prefix("encore-fuzz-")
                    && !Path::new("/proc").join(pid).exists()
                {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let dir = base.join(format!("encore-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("cannot create the fuzz scratch directory");
        dir
    })
}

/// A fresh empty subdirectory `name` of the scratch directory.
pub fn fresh_dir(name: &str) -> PathBuf {
    let d = scratch().join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("cannot create a fuzz scratch subdirectory");
    d
}

/// `scratch()/name`, created on first use and then reused as it is: for targets that write
/// their input files under fixed names and create nothing else there, this saves removing and
/// recreating a directory on every input.
pub fn stable_dir(name: &str) -> PathBuf {
    let d = scratch().join(name);
    if !d.is_dir() {
        std::fs::create_dir_all(&d).expect("cannot create a fuzz scratch subdirectory");
    }
    d
}

/// Writes `data` to `dir/name` (gzip-compressed first when `name` ends in `.gz`).
pub fn write(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    use std::io::Write;
    let p = dir.join(name);
    if name.ends_with(".gz") {
        let f = std::fs::File::create(&p).expect("scratch file");
        let mut enc = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
        enc.write_all(data).expect("scratch write");
        enc.finish().expect("scratch write");
    } else {
        std::fs::write(&p, data).expect("scratch write");
    }
    p
}

/// Splits `data` at lines that are exactly `--` (the separator line belongs to neither side).
pub fn sections(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    loop {
        let at = if rest.starts_with(b"--\n") {
            Some(0)
        } else {
            rest.windows(4).position(|w| w == b"\n--\n").map(|i| i + 1)
        };
        match at {
            Some(i) => {
                out.push(&rest[..i.saturating_sub(usize::from(i > 0))]);
                rest = &rest[i + 3..];
            }
            None => {
                out.push(rest);
                return out;
            }
        }
    }
}

/// Takes the first byte as option bits (0 when empty) and returns it with the rest.
pub fn opts(data: &[u8]) -> (u8, &[u8]) {
    match data.split_first() {
        Some((&b, rest)) => (b, rest),
        None => (0, data),
    }
}

/// Delimiter mode from two option bits.
pub fn delimiter(bits: u8) -> Delimiter {
    [
        Delimiter::Auto,
        Delimiter::Tab,
        Delimiter::Comma,
        Delimiter::Auto,
    ][usize::from(bits & 3)]
}

/// Header mode from two option bits.
pub fn header(bits: u8) -> HeaderMode {
    [
        HeaderMode::Auto,
        HeaderMode::Yes,
        HeaderMode::No,
        HeaderMode::Auto,
    ][usize::from(bits & 3)]
}

/// Body of the `ingest_*` targets: `prep`'s parse stage (format resolution, header and
/// delimiter sniffing, block reading, line parsing, per-user aggregation, id indexing) over
/// `data` written as `file_name` in a fresh directory.
///
/// Option byte (first input byte): bits 0-1 delimiter (auto, tab, comma, auto), bits 2-3
/// header (auto, yes, no, auto), bit 4 `--skip-bad-lines`, bit 5 gzip the file, bit 6 time
/// split (keeps timestamps), bit 7 `--min-value 3` (a config error for formats without
/// values).
///
/// Pins, when parsing succeeds: the result does not depend on the block size (1 KiB blocks,
/// so users are cut across blocks and waves, vs. one 64 KiB block); the line report adds up
/// (`records + blank + header + bad_skipped == total`); the interaction table is well formed
/// (ascending unique user and item ids, monotone offsets spanning the pairs, strictly
/// increasing in-range columns, no zero counts).
pub fn ingest(format: Format, file_name: &str, data: &[u8]) {
    let (o, body) = opts(data);
    let dir = stable_dir("ingest");
    let name = if o & 0x20 != 0 {
        format!("{file_name}.gz")
    } else {
        file_name.to_string()
    };
    let path = write(&dir, &name, body);
    ingest_path(format, &path, o, &dir);
}

/// [`ingest`] of an input already written at `path` (a file or a directory of files), with
/// option byte `o`; `dir` is a scratch directory outside `path`.
pub fn ingest_path(format: Format, path: &Path, o: u8, dir: &Path) {
    let mut cfg = PrepConfig::new(path, dir.join("out"));
    cfg.format = format;
    cfg.delimiter = delimiter(o);
    cfg.header = header(o >> 2);
    cfg.skip_bad_lines = o & 0x10 != 0;
    if o & 0x40 != 0 {
        cfg.split = encore::data::split::Split::Time { last_n: 2 };
    }
    if o & 0x80 != 0 {
        cfg.min_value = Some(3.0);
    }
    cfg.block_bytes = 1 << 10;
    let small = parse_input(&cfg);
    cfg.block_bytes = 64 << 10; // one block: inputs are at most 8 KiB
    let big = parse_input(&cfg);
    match (small, big) {
        (Ok(a), Ok(b)) => {
            let (x, y) = (&a.interactions, &b.interactions);
            assert_eq!(x.user_ids, y.user_ids, "user ids depend on the block size");
            assert_eq!(x.item_ids, y.item_ids, "item ids depend on the block size");
            assert_eq!(x.indptr, y.indptr, "offsets depend on the block size");
            assert_eq!(x.items, y.items, "items depend on the block size");
            assert_eq!(x.counts, y.counts, "counts depend on the block size");
            assert_eq!(
                x.first_ts, y.first_ts,
                "first listens depend on the block size"
            );
            assert_eq!(x.cutoff_ts, y.cutoff_ts, "cutoffs depend on the block size");
            assert_eq!(x.item_names, y.item_names, "names depend on the block size");
            let (l, m) = (&a.lines, &b.lines);
            assert_eq!(
                (
                    l.total,
                    l.records,
                    l.blank,
                    l.header,
                    l.zero_count,
                    l.bad_skipped,
                    l.below_min_value,
                    l.user_from_path
                ),
                (
                    m.total,
                    m.records,
                    m.blank,
                    m.header,
                    m.zero_count,
                    m.bad_skipped,
                    m.below_min_value,
                    m.user_from_path
                ),
                "line report depends on the block size"
            );
            assert_eq!(
                l.records + l.blank + l.header + l.bad_skipped,
                l.total,
                "line report does not add up: {l:?}"
            );
            check_interactions(x);
        }
        (Err(_), Err(_)) => {}
        (a, b) => panic!(
            "1 KiB blocks gave {:?} but 64 KiB blocks gave {:?}",
            a.map(|_| "Ok").map_err(|e| e.to_string()),
            b.map(|_| "Ok").map_err(|e| e.to_string())
        ),
    }
}

/// Structural invariants of an interaction table.
pub fn check_interactions(x: &encore::data::index::Interactions) {
    use encore::data::ids::check_ascending;
    let here = std::path::Path::new("fuzz");
    check_ascending(here, &x.user_ids).expect("user ids not strictly ascending");
    check_ascending(here, &x.item_ids).expect("item ids not strictly ascending");
    assert_eq!(x.indptr.len(), x.user_ids.len() + 1, "offsets length");
    assert_eq!(x.indptr.first().copied(), Some(0), "offsets start");
    assert_eq!(
        *x.indptr.last().unwrap() as usize,
        x.items.len(),
        "offsets end"
    );
    assert_eq!(x.items.len(), x.counts.len(), "items vs counts");
    for w in x.indptr.windows(2) {
        assert!(w[0] < w[1], "a user without pairs, or decreasing offsets");
        let row = &x.items[w[0] as usize..w[1] as usize];
        assert!(
            row.windows(2).all(|p| p[0] < p[1]),
            "columns not strictly increasing"
        );
        assert!(
            row.iter().all(|&c| (c as usize) < x.item_ids.len()),
            "column out of range"
        );
    }
    assert!(x.counts.iter().all(|&c| c > 0), "a zero count was kept");
}

/// A C-order float32 `.npy` of shape `n × k` holding `value` everywhere.
pub fn npy_f32(n: usize, k: usize, value: f32) -> Vec<u8> {
    let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({n}, {k}), }}");
    let mut header = dict.into_bytes();
    // Magic (6) + version (2) + header length (2) + header + '\n' is a multiple of 64.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(b' ');
    }
    header.push(b'\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(&header);
    for _ in 0..n * k {
        out.extend_from_slice(&value.to_le_bytes());
    }
    out
}

/// A valid `model.json` for `users × items` factors of width `k`.
pub fn model_json(users: usize, items: usize, k: usize) -> String {
    format!(
        r#"{{
  "encore_version": "0.1.0",
  "created_unix": 1700000000,
  "config": {{
    "factors": {k}, "iterations": 1, "regularization": 0.1, "alpha": 2.0,
    "confidence": "log", "epsilon": 1.0, "solver": "cg", "cg_steps": 3, "seed": 42,
    "compute_loss": false
  }},
  "solver": "cg",
  "device": "cpu",
  "threads": 1,
  "machine": {{ "host": "fuzz", "cpu": "fuzz", "cores": 1, "memory_bytes": null }},
  "dataset": {{
    "dir": "/nonexistent", "content_hash": "blake3:00", "users": {users}, "items": {items},
    "train_pairs": 0
  }},
  "iterations": [{{ "iteration": 0, "seconds": 0.5, "loss": null, "valid": null }}],
  "train_seconds": 0.5
}}
"#
    )
}
