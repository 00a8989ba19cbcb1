//! `prep` end to end: every format ingests, every event is accounted for, bad input is named,
//! output is atomic and deterministic.

use std::io::Write;
use std::path::{Path, PathBuf};

use encore::Error;
use encore::data::dataset::Dataset;
use encore::data::filter::FilterMode;
use encore::data::formats::Format;
use encore::data::prep::{PrepConfig, prep};
use encore::data::split::Split;
use encore::synth::{Scale, SynthConfig, generate};

fn hetrec_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/hetrec2011-lastfm-2k")
}

/// A small synthetic LFM-1b directory.
fn synth_dir(root: &Path) -> PathBuf {
    let mut cfg = SynthConfig::from_scale(Scale::Tiny, 7);
    cfg.users = 150;
    cfg.tracks = 3_000;
    cfg.artists = 300;
    cfg.events = 60_000;
    let out = root.join("raw");
    generate(&cfg, &out, false, true).expect("synth");
    out
}

fn cfg(input: &Path, out: &Path) -> PrepConfig {
    PrepConfig::new(input, out)
}

fn write(path: &Path, text: &[u8]) {
    std::fs::write(path, text).unwrap();
}

fn line_count(path: &Path) -> u64 {
    std::fs::read(path)
        .unwrap()
        .iter()
        .filter(|&&b| b == b'\n')
        .count() as u64
}

#[test]
fn synthetic_lfm1b_events_are_all_accounted_for() {
    let dir = tempfile::tempdir().unwrap();
    let raw = synth_dir(dir.path());
    let out = dir.path().join("ds");
    let m = prep(&cfg(&raw, &out)).unwrap();
    let les_lines = line_count(&raw.join("LFM-1b_LEs.txt"));
    assert_eq!(m.lines.total, les_lines);
    assert_eq!(m.lines.records, les_lines);
    // Raw events are the listening events; each filter round only removes.
    assert_eq!(m.counts.raw.events, les_lines);
    let mut prev = m.counts.raw;
    for r in &m.counts.filter_rounds {
        assert!(r.users <= prev.users && r.items <= prev.items && r.events <= prev.events);
        prev = *r;
    }
    assert_eq!(m.counts.kept, *m.counts.filter_rounds.last().unwrap());
    let ds = Dataset::load(&out).unwrap();
    ds.verify().unwrap();
    assert_eq!(ds.train.sum() + ds.valid.sum(), m.counts.kept.events as f64);
    assert_eq!(
        ds.train.nnz() + ds.valid.nnz(),
        m.counts.kept.pairs as usize
    );
    assert_eq!(ds.train.n_rows as u64, m.counts.kept.users);
    // Fixed point: every kept user and track meets its threshold.
    let mut listeners = vec![0u32; ds.train.n_cols];
    for u in 0..ds.train.n_rows {
        let (t, _) = ds.train.row(u);
        let (v, _) = ds.valid.row(u);
        assert!(t.len() + v.len() >= 5, "user {u} below --min-user-tracks");
        assert!(!t.is_empty(), "user {u} has no training tracks");
        for &i in t.iter().chain(v) {
            listeners[i as usize] += 1;
        }
        assert!(t.iter().all(|i| !v.contains(i)));
    }
    assert!(listeners.iter().all(|&n| n >= 2));
    // Names come from the synthetic catalog files.
    let names = ds.names.as_ref().expect("items.tsv");
    assert_eq!(m.items_without_name, Some(0));
    assert!(names.names.iter().all(|n| !n.is_empty()));
    assert!(names.artist_names.iter().all(|n| !n.is_empty()));
}

#[test]
fn hetrec_golden_counts() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ds");
    let mut c = cfg(&hetrec_dir(), &out);
    c.min_user_tracks = 1;
    c.min_track_users = 1;
    let m = prep(&c).unwrap();
    assert_eq!(m.input.format, Format::Hetrec);
    assert_eq!(m.input.header.as_deref(), Some("userID\tartistID\tweight"));
    assert_eq!(
        (m.counts.raw.users, m.counts.raw.items, m.counts.raw.pairs),
        (1_892, 17_632, 92_834)
    );
    assert_eq!(m.lines.records, 92_834);
    assert_eq!(m.counts.kept, m.counts.raw);
    let ds = Dataset::load(&out).unwrap();
    assert_eq!(ds.train.sum() + ds.valid.sum(), m.counts.raw.events as f64);
    // Artist 51 is Duran Duran in artists.dat; user 2 played it 13,883 times.
    let col = ds.item_ids.find("51").unwrap();
    assert_eq!(ds.names.as_ref().unwrap().names[col], "Duran Duran");
    let row = ds.user_ids.find("2").unwrap();
    let plays: f32 = [&ds.train, &ds.valid]
        .iter()
        .filter_map(|m| {
            let (c, v) = m.row(row);
            c.iter().position(|&x| x as usize == col).map(|p| v[p])
        })
        .sum();
    assert_eq!(plays, 13_883.0);
}

#[test]
fn hetrec_default_filters_reach_a_fixed_point() {
    let dir = tempfile::tempdir().unwrap();
    let m = prep(&cfg(&hetrec_dir(), &dir.path().join("ds"))).unwrap();
    assert!(m.counts.filter_rounds.len() >= 2);
    assert!(m.counts.kept.items < 17_632);
    let mut once = cfg(&hetrec_dir(), &dir.path().join("once"));
    once.filter_mode = FilterMode::Once;
    let o = prep(&once).unwrap();
    assert_eq!(o.counts.filter_rounds.len(), 1);
    assert!(o.counts.kept.pairs >= m.counts.kept.pairs);
}

/// The same listening data in many encodings gives the same dataset.
#[test]
fn messy_encodings_give_identical_datasets() {
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<(u64, u64, u64)> = (0..40u64)
        .flat_map(|u| {
            (0..6u64).map(move |k| (1000 + u, 7 * ((u * 3 + k * 5) % 23), 1 + (u + k) % 9))
        })
        .collect();
    let clean = dir.path().join("clean.tsv");
    let mut text = String::new();
    for (u, i, c) in &rows {
        text += &format!("{u}\t{i}\t{c}\n");
    }
    write(&clean, text.as_bytes());

    let messy = dir.path().join("messy.csv");
    let mut text = String::from("\u{feff}user,item,plays\r\n");
    for (u, i, c) in &rows {
        text += &format!("{u}, \"{i}\",{c}  \r\n");
    }
    write(&messy, text.as_bytes());

    let gz = dir.path().join("clean.tsv.gz");
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::default(),
    );
    enc.write_all(&std::fs::read(&clean).unwrap()).unwrap();
    enc.finish().unwrap();

    // Users out of order and split into pieces: regrouped, same result.
    let shuffled = dir.path().join("shuffled.tsv");
    let mut text = String::new();
    for k in (0..rows.len()).rev() {
        let (u, i, c) = rows[(k * 7) % rows.len()];
        text += &format!("{u}\t{i}\t{c}\n");
    }
    write(&shuffled, text.as_bytes());

    let hash = |input: &Path, name: &str| {
        let mut c = cfg(input, &dir.path().join(name));
        c.min_user_tracks = 1;
        c.min_track_users = 1;
        c.block_bytes = 1024; // many blocks: users cut across block boundaries
        let m = prep(&c).unwrap();
        (m.content_hash, m.counts.kept, m.lines.regrouped)
    };
    let a = hash(&clean, "a");
    let b = hash(&messy, "b");
    let g = hash(&gz, "g");
    let s = hash(&shuffled, "s");
    assert_eq!(a.0, b.0);
    assert_eq!(a.0, g.0);
    assert_eq!(a.0, s.0);
    assert!(!a.2 && s.2, "only the shuffled input needs regrouping");
}

#[test]
fn lfm2b_listening_counts_with_header() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("listening-counts.tsv");
    let mut text = String::from("user_id\ttrack_id\tcount\n");
    for u in 0..30 {
        for t in 0..8 {
            text += &format!("{u}\t{}\t{}\n", 50_000_000 + t * 13 + u % 3, 1 + t);
        }
    }
    write(&f, text.as_bytes());
    let mut c = cfg(&f, &dir.path().join("ds"));
    c.min_track_users = 1;
    let m = prep(&c).unwrap();
    assert_eq!(m.input.format, Format::Lfm2b);
    assert_eq!(m.lines.header, 1);
    assert_eq!(m.counts.raw.pairs, 240);
    assert_eq!(m.counts.raw.events, 30 * 36);
    let ds = Dataset::load(&dir.path().join("ds")).unwrap();
    assert!(
        ds.item_ids
            .as_int()
            .unwrap()
            .iter()
            .all(|&i| i >= 50_000_000)
    );
}

#[test]
fn time_split_holds_out_recent_discoveries() {
    let dir = tempfile::tempdir().unwrap();
    let raw = synth_dir(dir.path());
    let out = dir.path().join("ds");
    let mut c = cfg(&raw, &out);
    c.split = Split::Time { last_n: 20 };
    let m = prep(&c).unwrap();
    let ds = Dataset::load(&out).unwrap();
    assert_eq!(ds.train.sum() + ds.valid.sum(), m.counts.kept.events as f64);
    assert!(ds.valid.nnz() > 0);
    // Held-out tracks were first heard within the user's last 20 listens, so all their plays
    // fall in that window: at most 20 held-out plays per user.
    for u in 0..ds.valid.n_rows {
        let (v, plays) = ds.valid.row(u);
        assert!(
            plays.iter().sum::<f32>() <= 20.0,
            "user {u}: {v:?} {plays:?}"
        );
    }
    // Random vs time split differ but keep the same events.
    let r = prep(&cfg(&raw, &dir.path().join("rnd"))).unwrap();
    assert_eq!(r.counts.kept.events, m.counts.kept.events);
    assert_ne!(r.content_hash, m.content_hash);
    // Time split without timestamps is refused clearly.
    let mut h = cfg(&hetrec_dir(), &dir.path().join("h"));
    h.split = Split::Time { last_n: 5 };
    let e = prep(&h).unwrap_err().to_string();
    assert!(e.contains("needs timestamps"), "{e}");
}

#[test]
fn results_do_not_depend_on_threads_or_block_size() {
    let dir = tempfile::tempdir().unwrap();
    let raw = synth_dir(dir.path());
    let run = |threads: usize, block: usize, name: &str| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let out = dir.path().join(name);
        let mut c = cfg(&raw, &out);
        c.block_bytes = block;
        let m = pool.install(|| prep(&c)).unwrap();
        let bytes: Vec<Vec<u8>> = [
            "train.npz",
            "valid.npz",
            "user_ids.npy",
            "item_ids.npy",
            "items.tsv",
        ]
        .iter()
        .map(|f| std::fs::read(out.join(f)).unwrap())
        .collect();
        (m.content_hash, bytes)
    };
    let a = run(1, 8 << 20, "a");
    let b = run(4, 4096, "b");
    let c = run(3, 1 << 16, "c");
    assert_eq!(a, b);
    assert_eq!(a, c);
}

fn bad_input_error(content: &[u8], name: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join(name);
    write(&f, content);
    let out = dir.path().join("ds");
    let e = prep(&cfg(&f, &out)).unwrap_err();
    assert!(!out.exists(), "no dataset after a failure");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary directory left behind");
    e.to_string()
}

#[test]
fn malformed_lines_name_file_and_line() {
    let e = bad_input_error(b"1\t2\t3\n1\t2\n", "plays.tsv");
    assert!(
        e.contains("plays.tsv:2:") && e.contains("expected 3"),
        "{e}"
    );
    let e = bad_input_error(b"1\t2\t3\n4\tabc\t3\n", "plays.tsv");
    assert!(e.contains("plays.tsv:2:") && e.contains("item"), "{e}");
    let e = bad_input_error(b"1\t2\t3\n1\t3\t-4\n", "plays.tsv");
    assert!(e.contains("plays.tsv:2:") && e.contains("negative"), "{e}");
    let e = bad_input_error(b"1\t2\t3\n1\t3\tmany\n", "plays.tsv");
    assert!(e.contains("plays.tsv:2:") && e.contains("count"), "{e}");
    let e = bad_input_error(b"7\t2\t3\t4\t1385212958\n7\t2\t3\t4\n", "LFM-1b_LEs.txt");
    assert!(
        e.contains("LFM-1b_LEs.txt:2:") && e.contains("expected 5"),
        "{e}"
    );
    // Line numbers stay right across block boundaries and after a header.
    let mut text = String::from("user\titem\tcount\n");
    for k in 0..5000 {
        text += &format!("{}\t{}\t1\n", k / 10, k);
    }
    text += "1\tx\t1\n";
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("big.tsv");
    write(&f, text.as_bytes());
    let mut c = cfg(&f, &dir.path().join("ds"));
    c.block_bytes = 2048;
    let e = prep(&c).unwrap_err().to_string();
    assert!(e.contains("big.tsv:5002:"), "{e}");
}

#[test]
fn empty_missing_and_unreadable_inputs_are_named() {
    let e = bad_input_error(b"", "empty.tsv");
    assert!(e.contains("empty.tsv") && e.contains("empty"), "{e}");
    let e = bad_input_error(b"\n\r\n\n", "blank.tsv");
    assert!(e.contains("blank.tsv") && e.contains("empty"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.tsv");
    let e = prep(&cfg(&missing, &dir.path().join("ds"))).unwrap_err();
    assert!(
        matches!(e, Error::Io { .. }) && e.to_string().contains("missing.tsv"),
        "{e}"
    );
    // A path through a regular file cannot be read as a directory, even by root.
    let file = dir.path().join("file");
    write(&file, b"x");
    let e = prep(&cfg(&file.join("sub"), &dir.path().join("ds"))).unwrap_err();
    assert!(e.to_string().contains("file/sub"), "{e}");
    // A directory without permissions (only enforced for non-root users).
    let locked = dir.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    write(&locked.join("LFM-1b_LEs.txt"), b"1\t2\t3\t4\t5\n");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    let r = prep(&cfg(&locked, &dir.path().join("ds2")));
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
    if std::fs::read_dir("/root").is_err() {
        let e = r.unwrap_err().to_string();
        assert!(e.contains("locked"), "{e}");
    }
    // A directory with no known files.
    let e = prep(&cfg(dir.path(), &dir.path().join("ds3")))
        .unwrap_err()
        .to_string();
    assert!(e.contains("cannot tell the format"), "{e}");
}

#[test]
fn skip_bad_lines_counts_and_reports_them() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("plays.tsv");
    let mut text = String::new();
    for u in 0..10 {
        for i in 0..6 {
            text += &format!("{u}\t{i}\t2\n");
        }
        text += "oops\n";
    }
    text += "3\t1\t0\n\n";
    write(&f, text.as_bytes());
    let mut c = cfg(&f, &dir.path().join("ds"));
    c.skip_bad_lines = true;
    let m = prep(&c).unwrap();
    assert_eq!(m.lines.bad_skipped, 10);
    assert_eq!(m.lines.zero_count, 1);
    assert_eq!(m.lines.blank, 1);
    assert_eq!(m.lines.total, 72);
    assert_eq!(
        m.lines.records + m.lines.bad_skipped + m.lines.blank,
        m.lines.total
    );
    assert!(
        m.lines.bad_examples[0].contains("plays.tsv:7:"),
        "{:?}",
        m.lines.bad_examples
    );
    assert_eq!(m.counts.raw.events, 120);
}

#[test]
fn existing_output_needs_force() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("plays.tsv");
    let text: String = (0..50).map(|k| format!("{}\t{k}\t1\n", k % 5)).collect();
    write(&f, text.as_bytes());
    let out = dir.path().join("ds");
    let mut c = cfg(&f, &out);
    c.min_track_users = 1;
    let first = prep(&c).unwrap();
    let e = prep(&c).unwrap_err();
    assert!(matches!(e, Error::OutputExists { .. }), "{e}");
    assert!(e.to_string().contains("--force"));
    c.force = true;
    c.split = Split::Random {
        fraction: 0.5,
        seed: 9,
    };
    let second = prep(&c).unwrap();
    assert_ne!(first.content_hash, second.content_hash);
    assert_eq!(
        Dataset::load(&out).unwrap().manifest.content_hash,
        second.content_hash
    );
    // A failed forced re-run keeps the old dataset.
    write(&f, b"1\t2\tbad\n");
    assert!(prep(&c).is_err());
    assert_eq!(
        Dataset::load(&out).unwrap().manifest.content_hash,
        second.content_hash
    );
}

#[test]
fn bad_config_is_rejected_before_work() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(&hetrec_dir(), &dir.path().join("ds"));
    c.split = Split::Random {
        fraction: 1.5,
        seed: 1,
    };
    assert!(matches!(prep(&c), Err(Error::Config(_))));
    c.min_user_tracks = 10_000;
    c.split = Split::Random {
        fraction: 0.2,
        seed: 1,
    };
    let e = prep(&c).unwrap_err().to_string();
    assert!(e.contains("filtering removed everything"), "{e}");
    assert!(!dir.path().join("ds").exists());
}
