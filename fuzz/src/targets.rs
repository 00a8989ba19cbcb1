//! The body of every file-format fuzz target, one function per target (same name), shared by
//! `fuzz_targets/*.rs` and by the core crate's `tests/fuzz_regressions.rs`, which replays
//! `fuzz/corpus/` and `fuzz/regressions/` through these same functions in `cargo test`.
//!
//! Each function takes one fuzz input and panics only on a bug: errors from the library are
//! fine, a panic (or an abort) is a finding. Input layouts, option bits and the invariants
//! pinned are documented in the matching `fuzz_targets/<name>.rs`.

use super::helpers::{
    fresh_dir, ingest, ingest_path, model_json as model_json_text, npy_f32, opts, scratch,
    sections, stable_dir, write,
};
use encore::data::formats::Format;

/// A target's body: one fuzz input; panics only on a bug.
pub type Target = fn(&[u8]);

/// Every target here, by name (the `[[bin]]` names in `fuzz/Cargo.toml` and the directory
/// names under `fuzz/corpus/` and `fuzz/regressions/`).
pub const ALL: &[(&str, Target)] = &[
    ("parse_line", parse_line),
    ("ingest_lfm1b", ingest_lfm1b),
    ("ingest_lfm2b", ingest_lfm2b),
    ("ingest_hetrec", ingest_hetrec),
    ("ingest_triples", ingest_triples),
    ("ingest_movielens", ingest_movielens),
    ("ingest_msd", ingest_msd),
    ("ingest_listenbrainz", ingest_listenbrainz),
    ("npy_str_ids", npy_str_ids),
    ("names", names),
    ("npz_csr", npz_csr),
    ("npy_ids", npy_ids),
    ("npy_factors", npy_factors),
    ("model_json", model_json),
    ("manifest_json", manifest_json),
    ("prep", prep),
];

/// `data::lines::parse_line` and `parse_field` on one record line.
pub fn parse_line(data: &[u8]) {
    use encore::data::formats::{count_schema, les_schema};
    use encore::data::lines::{parse_field, parse_line};
    let (o, line) = opts(data);
    let d = [b'\t', b',', b';', b' '][usize::from((o >> 2) & 3)];
    let s = match o & 3 {
        0 => les_schema(d),
        1 => count_schema(d, ["user_id", "track_id", "count"]),
        2 => count_schema(d, ["userID", "artistID", "weight"]),
        _ => count_schema(d, ["user", "item", "count"]),
    };
    for f in line.split(|&b| b == d) {
        let _ = parse_field(f, "field");
    }
    let Ok(r) = parse_line(line, &s) else { return };
    let fields: Vec<String> = if s.count.is_none() {
        vec![
            r.user.to_string(),
            "0".into(),
            "0".into(),
            r.item.to_string(),
            r.ts.to_string(),
        ]
    } else {
        vec![r.user.to_string(), r.item.to_string(), r.count.to_string()]
    };
    let sep = (d as char).to_string();
    let plain = fields.join(&sep);
    assert_eq!(
        parse_line(plain.as_bytes(), &s),
        Ok(r),
        "re-rendered {plain:?}"
    );
    let pad = if d == b' ' { "" } else { " " };
    let quoted: Vec<String> = fields
        .iter()
        .map(|f| format!("{pad}\"{f}\"{pad}"))
        .collect();
    let quoted = quoted.join(&sep);
    assert_eq!(
        parse_line(quoted.as_bytes(), &s),
        Ok(r),
        "quoted {quoted:?}"
    );
}

/// `prep`'s parse stage, `--format lfm1b`.
pub fn ingest_lfm1b(data: &[u8]) {
    ingest(Format::Lfm1b, "LFM-1b_LEs.txt", data)
}

/// `prep`'s parse stage, `--format lfm2b`.
pub fn ingest_lfm2b(data: &[u8]) {
    ingest(Format::Lfm2b, "listening-counts.tsv", data)
}

/// `prep`'s parse stage, `--format hetrec`.
pub fn ingest_hetrec(data: &[u8]) {
    ingest(Format::Hetrec, "user_artists.dat", data)
}

/// `prep`'s parse stage, `--format triples`.
pub fn ingest_triples(data: &[u8]) {
    ingest(Format::Triples, "plays.txt", data)
}

/// `prep`'s parse stage, `--format movielens`: option bits 0-1 pick the layout (`ratings.csv`,
/// `ratings.dat`, `u.data`, `ratings.csv`); the delimiter comes from the file name.
pub fn ingest_movielens(data: &[u8]) {
    let name = ["ratings.csv", "ratings.dat", "u.data", "ratings.csv"]
        [usize::from(data.first().copied().unwrap_or(0) & 3)];
    ingest(Format::Movielens, name, data)
}

/// `prep`'s parse stage, `--format msd` (string ids).
pub fn ingest_msd(data: &[u8]) {
    ingest(Format::Msd, "train_triplets.txt", data)
}

/// `prep`'s parse stage, `--format listenbrainz`: the sections of the input become
/// `in/<user>/listens/2024/<n>.listens` files (users `a`, `b`, ... in turn, so listens
/// without a user take it from the path), gzip-compressed under option bit 5.
pub fn ingest_listenbrainz(data: &[u8]) {
    let (o, body) = opts(data);
    let dir = fresh_dir("ingest-lb");
    let root = dir.join("in");
    let gz = if o & 0x20 != 0 { ".gz" } else { "" };
    for (i, part) in sections(body).into_iter().enumerate() {
        let user = char::from(b'a' + (i % 3) as u8);
        let sub = root.join(format!("{user}/listens/2024"));
        std::fs::create_dir_all(&sub).expect("scratch");
        write(&sub, &format!("{}.listens{gz}", i + 1), part);
    }
    ingest_path(Format::Listenbrainz, &root, o, &dir);
}

/// `data::ids::read` on a `.npy` of ids (int64, `|S`, `<U`), then a write/read round trip.
pub fn npy_str_ids(data: &[u8]) {
    use encore::data::ids::{read, write as write_ids};
    let dir = scratch();
    let Ok(ids) = read(&write(dir, "str-ids.npy", data)) else {
        return;
    };
    let q = dir.join("str-ids-out.npy");
    write_ids(&q, &ids).expect("ids::write");
    assert_eq!(read(&q).expect("ids::read of what ids::write wrote"), ids);
}

/// `data::names::load` and `read_items_tsv`.
pub fn names(data: &[u8]) {
    use encore::data::formats::NameSource;
    use encore::data::names::{load, read_items_tsv, write_items_tsv};
    const IDS: &[u64] = &[
        0,
        1,
        2,
        3,
        4,
        5,
        6,
        7,
        8,
        9,
        10,
        42,
        100,
        1000,
        1 << 32,
        u64::MAX,
    ];
    let (o, body) = opts(data);
    let parts = sections(body);
    let dir = stable_dir("names");
    let gz = if o & 4 != 0 { ".gz" } else { "" };
    let first = parts[0];
    let second = parts.get(1).copied().unwrap_or(b"");
    let src = if o & 1 != 0 {
        NameSource::Hetrec {
            artists: write(&dir, &format!("artists.dat{gz}"), first),
        }
    } else {
        let tracks = write(&dir, &format!("LFM-1b_tracks.txt{gz}"), first);
        let artists = (o & 2 == 0).then(|| write(&dir, &format!("LFM-1b_artists.txt{gz}"), second));
        NameSource::Lfm1b { tracks, artists }
    };
    let _ = read_items_tsv(&write(&dir, "items.tsv", first));
    let ids = encore::data::ids::Ids::Int(IDS.to_vec());
    let Ok(n) = load(&src, &ids, o & 8 != 0) else {
        return;
    };
    assert_eq!(
        (n.names.len(), n.artist_ids.len(), n.artist_names.len()),
        (IDS.len(), IDS.len(), IDS.len())
    );
    let out = dir.join("items-out.tsv");
    write_items_tsv(&out, &ids, &n).expect("write_items_tsv");
    let back = read_items_tsv(&out).expect("read_items_tsv of what write_items_tsv wrote");
    let clean = |v: &[String]| -> Vec<String> {
        v.iter()
            .map(|s| s.replace(['\t', '\n', '\r'], " "))
            .collect()
    };
    assert_eq!(back.names, clean(&n.names), "names round trip");
    assert_eq!(
        back.artist_names,
        clean(&n.artist_names),
        "artist names round trip"
    );
    assert_eq!(back.artist_ids, n.artist_ids, "artist ids round trip");
}

/// The `.npy` members `indices`, `indptr`, `shape`, `data`, `format` zipped with valid CRCs.
fn zip_members(parts: &[&[u8]]) -> Vec<u8> {
    use std::io::Write;
    let names = [
        "indices.npy",
        "indptr.npy",
        "shape.npy",
        "data.npy",
        "format.npy",
    ];
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, part) in names.iter().zip(parts) {
        z.start_file(*name, opts).expect("zip");
        z.write_all(part).expect("zip");
    }
    z.finish().expect("zip").into_inner()
}

/// `data::npz::read_csr` on a `.npz` (input starting with `PK`) or its zipped `.npy` members.
pub fn npz_csr(data: &[u8]) {
    use encore::data::npz::{read_csr, write_csr};
    let dir = scratch();
    let bytes = if data.starts_with(b"PK") {
        data.to_vec()
    } else {
        zip_members(&sections(data))
    };
    let p = write(dir, "in.npz", &bytes);
    let Ok(m) = read_csr(&p) else { return };
    m.validate("fuzz")
        .expect("read_csr returned an invalid matrix");
    if m.n_cols > i32::MAX as usize {
        return;
    }
    let q = dir.join("out.npz");
    write_csr(&q, &m).expect("write_csr of a matrix read_csr accepted");
    let back = read_csr(&q).expect("read_csr of what write_csr wrote");
    assert!(back.n_rows == m.n_rows && back.n_cols == m.n_cols && back.indptr == m.indptr);
    assert!(back.indices == m.indices);
    assert!(
        back.data
            .iter()
            .zip(&m.data)
            .all(|(a, b)| a.to_bits() == b.to_bits())
    );
}

/// `data::npz::read_ids` on an int64 `.npy`.
pub fn npy_ids(data: &[u8]) {
    use encore::data::npz::{read_ids, write_ids};
    let dir = scratch();
    let Ok(ids) = read_ids(&write(dir, "ids.npy", data)) else {
        return;
    };
    let q = dir.join("ids-out.npy");
    write_ids(&q, &ids).expect("write_ids");
    assert_eq!(read_ids(&q).expect("read_ids of what write_ids wrote"), ids);
}

/// `als::model::Model::load` on fuzzed factor files and a valid `model.json`.
pub fn npy_factors(data: &[u8]) {
    use encore::als::model::Model;
    let dir = scratch().join("npy-factors");
    if !dir.is_dir() {
        std::fs::create_dir_all(&dir).expect("scratch");
        write(&dir, "model.json", model_json_text(2, 3, 2).as_bytes());
    }
    let parts = sections(data);
    write(&dir, "user_factors.npy", parts[0]);
    write(&dir, "item_factors.npy", parts.get(1).unwrap_or(&parts[0]));
    if let Ok(m) = Model::load(&dir) {
        assert_eq!((m.users.n, m.users.k, m.users.data.len()), (2, 2, 4));
        assert_eq!((m.items.n, m.items.k, m.items.data.len()), (3, 2, 6));
    }
}

/// `als::model::Model::load` on a fuzzed `model.json` and valid factor files.
pub fn model_json(data: &[u8]) {
    use encore::als::model::Model;
    let dir = scratch().join("model-json");
    if !dir.is_dir() {
        std::fs::create_dir_all(&dir).expect("scratch");
        write(&dir, "user_factors.npy", &npy_f32(2, 2, 0.5));
        write(&dir, "item_factors.npy", &npy_f32(3, 2, -0.25));
    }
    write(&dir, "model.json", data);
    if let Ok(m) = Model::load(&dir) {
        assert_eq!((m.meta.dataset.users, m.meta.dataset.items), (2, 3));
        assert_eq!(m.meta.config.factors, 2);
    }
}

/// `data::dataset::Dataset::load` + `verify` on a fuzzed `manifest.json`.
pub fn manifest_json(data: &[u8]) {
    use encore::data::csr::Csr;
    use encore::data::dataset::{Dataset, write_files};
    use encore::data::ids::Ids;
    use encore::data::names::ItemNames;
    let dir = scratch().join("manifest-json");
    if !dir.is_dir() {
        std::fs::create_dir_all(&dir).expect("scratch");
        let train = Csr {
            n_rows: 2,
            n_cols: 3,
            indptr: vec![0, 2, 3],
            indices: vec![0, 2, 1],
            data: vec![1.0, 4.0, 2.0],
        };
        let valid = Csr {
            n_rows: 2,
            n_cols: 3,
            indptr: vec![0, 0, 1],
            indices: vec![2],
            data: vec![1.0],
        };
        let names = ItemNames {
            names: vec!["a".into(), "b".into(), "c".into()],
            artist_ids: vec![Some(7), None, Some(8)],
            artist_names: vec!["x".into(), String::new(), "y".into()],
            missing: 1,
            skipped: Default::default(),
        };
        write_files(
            &dir,
            &train,
            &valid,
            &Ids::Int(vec![10, 20]),
            &Ids::Int(vec![1, 5, 9]),
            Some(&names),
        )
        .expect("dataset");
    }
    write(&dir, "manifest.json", data);
    if let Ok(ds) = Dataset::load(&dir) {
        let _ = ds.verify();
    }
}

/// A whole `data::prep::prep` run, then `Dataset::load` + `verify` of its output.
pub fn prep(data: &[u8]) {
    use encore::data::dataset::Dataset;
    use encore::data::filter::FilterMode;
    use encore::data::prep::{PrepConfig, prep};
    use encore::data::split::Split;
    let (o, body) = opts(data);
    let parts = sections(body);
    let dir = fresh_dir("prep");
    let input = dir.join("in");
    std::fs::create_dir(&input).expect("scratch");
    let part = |i: usize| parts.get(i).copied().unwrap_or(b"");
    let (data_name, names) = match o & 3 {
        0 => (
            "LFM-1b_LEs.txt",
            &["LFM-1b_tracks.txt", "LFM-1b_artists.txt"][..],
        ),
        1 => ("listening-counts.tsv", &[][..]),
        2 => ("user_artists.dat", &["artists.dat"][..]),
        _ => ("plays.csv", &[][..]),
    };
    write(&input, data_name, part(0));
    for (i, n) in names.iter().enumerate() {
        if parts.len() > i + 1 {
            write(&input, n, part(i + 1));
        }
    }
    let src = if o & 3 == 3 {
        input.join(data_name)
    } else {
        input.clone()
    };
    let out = dir.join("out");
    let mut cfg = PrepConfig::new(src, &out);
    if o & 4 != 0 {
        cfg.split = Split::Time { last_n: 2 };
    }
    if o & 8 != 0 {
        cfg.filter_mode = FilterMode::Once;
    }
    cfg.skip_bad_lines = o & 0x10 != 0;
    (cfg.min_user_tracks, cfg.min_track_users) =
        [(1, 1), (2, 1), (1, 2), (5, 2)][usize::from((o >> 5) & 3)];
    cfg.block_bytes = 1 << 10;
    if prep(&cfg).is_ok() {
        let ds = Dataset::load(&out).expect("prep output does not load");
        ds.verify().expect("prep output does not verify");
    }
}
