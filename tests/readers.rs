//! The readers of real-data formats on hand-made fixtures, written here from each format's own
//! documentation (MovieLens READMEs, the Million Song Dataset Taste Profile page, ListenBrainz's
//! "JSON Documentation" and "Data Dumps"): good lines, every malformed case named by file and
//! line, `--skip-bad-lines`, gzip and CRLF, and string ids kept in the dataset.

use std::io::Write;
use std::path::{Path, PathBuf};

use encore::data::dataset::Dataset;
use encore::data::formats::{Column, Columns, Format, HeaderMode, IdsMode};
use encore::data::ids::{Id, IdKind, Ids};
use encore::data::prep::{PrepConfig, prep};
use encore::data::records::ValueMode;
use encore::data::split::Split;

fn write(path: &Path, text: &[u8]) -> PathBuf {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).unwrap();
    }
    if path.extension().is_some_and(|e| e == "gz") {
        let f = std::fs::File::create(path).unwrap();
        let mut enc = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
        enc.write_all(text).unwrap();
        enc.finish().unwrap();
    } else {
        std::fs::write(path, text).unwrap();
    }
    path.to_path_buf()
}

/// Keeps everything (no thresholds), so fixtures stay small.
fn cfg(input: &Path, out: &Path) -> PrepConfig {
    let mut c = PrepConfig::new(input, out);
    c.min_user_tracks = 1;
    c.min_track_users = 1;
    c.split = Split::Random {
        fraction: 0.0,
        seed: 1,
    };
    c
}

fn err(c: &PrepConfig) -> String {
    format!("{:#}", anyhow::Error::from(prep(c).unwrap_err()))
}

/// A user's row as (item id text, value).
fn row(ds: &Dataset, user: &str) -> Vec<(String, f32)> {
    let r = ds.user_ids.find(user).expect("user");
    let (items, vals) = ds.train.row(r);
    items
        .iter()
        .zip(vals)
        .map(|(&i, &v)| (ds.item_ids.get(i as usize).to_string(), v))
        .collect()
}

const ML_LATEST: &str = "userId,movieId,rating,timestamp\r\n\
    1,1,4.0,964982703\r\n\
    1,3,4.5,964981247\r\n\
    1,6,2.5,964982224\r\n\
    2,1,3.5,1445714835\r\n\
    2,6,5.0,1445714885\r\n";

const ML_MOVIES: &str = "movieId,title,genres\n\
    1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy\n\
    3,Grumpier Old Men (1995),Comedy|Romance\n\
    6,\"Heat, The (1995)\",Action|Crime|Thriller\n";

#[test]
fn movielens_ratings_csv_keeps_fractional_ratings_and_titles() {
    let dir = tempfile::tempdir().unwrap();
    let ml = dir.path().join("ml-latest-small");
    write(&ml.join("ratings.csv"), ML_LATEST.as_bytes());
    write(&ml.join("movies.csv"), ML_MOVIES.as_bytes());
    let out = dir.path().join("ds");
    let m = prep(&cfg(&ml, &out)).unwrap();
    assert_eq!(m.input.format, Format::Movielens);
    assert_eq!(m.options.value, ValueMode::Rating);
    assert_eq!(m.lines.header, 1);
    assert_eq!(m.lines.records, 5);
    let ds = Dataset::load(&out).unwrap();
    assert_eq!(ds.user_ids, Ids::Int(vec![1, 2]));
    assert_eq!(
        row(&ds, "1"),
        vec![("1".into(), 4.0), ("3".into(), 4.5), ("6".into(), 2.5)]
    );
    let names = ds.names.as_ref().unwrap();
    assert_eq!(
        names.names,
        vec![
            "Toy Story (1995)",
            "Grumpier Old Men (1995)",
            "Heat, The (1995)"
        ]
    );
}

#[test]
fn min_value_keeps_positive_ratings_and_counts_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(&dir.path().join("ratings.csv"), ML_LATEST.as_bytes());
    let out = dir.path().join("ds");
    let mut c = cfg(&f, &out);
    c.min_value = Some(3.5);
    c.value = Some(ValueMode::Binary);
    let m = prep(&c).unwrap();
    assert_eq!(m.lines.below_min_value, 1, "2.5 is below 3.5");
    assert_eq!(m.options.min_value, Some(3.5));
    let ds = Dataset::load(&out).unwrap();
    assert_eq!(row(&ds, "1"), vec![("1".into(), 1.0), ("3".into(), 1.0)]);
    assert_eq!(row(&ds, "2"), vec![("1".into(), 1.0), ("6".into(), 1.0)]);
    // Counts refuse fractions with a hint; events have no value to filter on.
    let mut c = cfg(&f, &dir.path().join("ds2"));
    c.value = Some(ValueMode::Count);
    let e = err(&c);
    assert!(
        e.contains("ratings.csv:2: rating is not a non-negative integer count: \"4.0\""),
        "{e}"
    );
    assert!(e.contains("--value rating"), "{e}");
}

#[test]
fn movielens_100k_and_1m_layouts_read_from_their_readmes() {
    let dir = tempfile::tempdir().unwrap();
    // ml-100k: tab-separated "user id | item id | rating | timestamp", no header; u.item is
    // '|'-separated Latin-1.
    let k100 = dir.path().join("ml-100k");
    write(
        &k100.join("u.data"),
        b"196\t242\t3\t881250949\n186\t302\t3\t891717742\n196\t302\t5\t881250950\n",
    );
    write(
        &k100.join("u.item"),
        b"242|Kolya (1996)|24-Jan-1997||http://x|0|0\n302|L.A. Confidential (1997)|01-Jan-1997||http://x|0|0\n",
    );
    let m = prep(&cfg(&k100, &dir.path().join("a"))).unwrap();
    assert_eq!(
        (m.input.format, m.lines.header, m.counts.raw.pairs),
        (Format::Movielens, 0, 3)
    );
    let a = Dataset::load(&dir.path().join("a")).unwrap();
    assert_eq!(
        row(&a, "196"),
        vec![("242".into(), 3.0), ("302".into(), 5.0)]
    );
    assert_eq!(a.names.as_ref().unwrap().names[0], "Kolya (1996)");
    // ml-1m: "UserID::MovieID::Rating::Timestamp"; movies.dat "MovieID::Title::Genres".
    let m1 = dir.path().join("ml-1m");
    write(
        &m1.join("ratings.dat"),
        b"1::1193::5::978300760\r\n1::661::3::978302109\r\n2::1193::4::978298413\r\n",
    );
    write(&m1.join("movies.dat"), b"661::James and the Giant Peach (1996)::Animation|Children's|Musical\n1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n");
    prep(&cfg(&m1, &dir.path().join("b"))).unwrap();
    let b = Dataset::load(&dir.path().join("b")).unwrap();
    assert_eq!(row(&b, "2"), vec![("1193".into(), 4.0)]);
    assert_eq!(
        b.names.as_ref().unwrap().names[1],
        "One Flew Over the Cuckoo's Nest (1975)"
    );
    // A malformed ml-1m line names its file and line.
    write(
        &m1.join("ratings.dat"),
        b"1::1193::5::978300760\n1::661:3::978302109\n",
    );
    let e = err(&cfg(&m1, &dir.path().join("c")));
    assert!(
        e.contains("ratings.dat:2: expected 4 '::'-separated fields"),
        "{e}"
    );
}

#[test]
fn every_malformed_ratings_line_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str)] = &[
        ("1,2,x,3", "ratings.csv:3: rating is not a number: \"x\""),
        ("1,2,-1,3", "ratings.csv:3: rating is negative: \"-1\""),
        (
            "1,2,4.0",
            "ratings.csv:3: expected 4 comma-separated fields (userId, movieId, rating, timestamp), found 3",
        ),
        (
            "u1,2,4.0,3",
            "ratings.csv:3: userId is not a non-negative integer: \"u1\"",
        ),
        ("1,,4.0,3", "ratings.csv:3: movieId is empty"),
        ("1,2,4.0,-3", "ratings.csv:3: timestamp is negative: \"-3\""),
        (
            "1,2,1e40,3",
            "ratings.csv:3: rating \"1e40\" is larger than the supported maximum",
        ),
    ];
    for (i, (line, want)) in cases.iter().enumerate() {
        let text = format!("userId,movieId,rating,timestamp\n1,1,4.0,5\n{line}\n2,1,3.0,6\n");
        let f = write(
            &dir.path().join(format!("c{i}")).join("ratings.csv"),
            text.as_bytes(),
        );
        let c = cfg(&f, &dir.path().join(format!("o{i}")));
        let e = err(&c);
        assert!(e.contains(want), "{line:?}: {e}");
        assert!(e.contains("--skip-bad-lines"), "{e}");
        let mut s = c.clone();
        s.skip_bad_lines = true;
        let m = prep(&s).unwrap();
        assert_eq!((m.lines.bad_skipped, m.lines.records), (1, 2), "{line:?}");
        assert!(
            m.lines.bad_examples[0].contains(want),
            "{:?}",
            m.lines.bad_examples
        );
    }
}

const MSD: &str = "b80344d063b5ccb3212f76538f3d9e43d87dca9e\tSOAKIMP12A8C130995\t1\n\
    b80344d063b5ccb3212f76538f3d9e43d87dca9e\tSOAPDEY12A81C210A9\t1\n\
    b80344d063b5ccb3212f76538f3d9e43d87dca9e\tSOBBMDR12A8C13253B\t2\n\
    85c1f87fea955d09b4bec2e36aee110927aab915\tSOBBMDR12A8C13253B\t3\n\
    85c1f87fea955d09b4bec2e36aee110927aab915\tSOAKIMP12A8C130995\t11\n";

#[test]
fn msd_triplets_keep_string_ids_in_byte_order() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(&dir.path().join("train_triplets.txt"), MSD.as_bytes());
    let out = dir.path().join("ds");
    let m = prep(&cfg(&f, &out)).unwrap();
    assert_eq!((m.input.format, m.options.ids), (Format::Msd, IdKind::Str));
    assert!(m.lines.regrouped, "the file's users are not in id order");
    let ds = Dataset::load(&out).unwrap();
    ds.verify().unwrap();
    assert_eq!(
        ds.user_ids,
        Ids::from_strs([
            "85c1f87fea955d09b4bec2e36aee110927aab915",
            "b80344d063b5ccb3212f76538f3d9e43d87dca9e"
        ])
    );
    assert_eq!(ds.item_ids.get(0), Id::Str("SOAKIMP12A8C130995"));
    assert_eq!(
        row(&ds, "85c1f87fea955d09b4bec2e36aee110927aab915"),
        vec![
            ("SOAKIMP12A8C130995".into(), 11.0),
            ("SOBBMDR12A8C13253B".into(), 3.0)
        ]
    );
    // gzip and CRLF give the same dataset (the same content hash).
    let gz = write(
        &dir.path().join("gz/train_triplets.txt.gz"),
        MSD.replace('\n', "\r\n").as_bytes(),
    );
    let m2 = prep(&cfg(&gz, &dir.path().join("ds2"))).unwrap();
    assert_eq!(m2.content_hash, m.content_hash);
    // The id files are numpy's fixed-width byte strings.
    let raw = std::fs::read(out.join("user_ids.npy")).unwrap();
    assert!(String::from_utf8_lossy(&raw[..100]).contains("'descr': '|S40'"));
}

#[test]
fn malformed_msd_lines_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let long = "u".repeat(300);
    let cases = [
        (
            "u1\tSO1".to_string(),
            "train_triplets.txt:2: expected 3 tab-separated fields (user, song, count), found 2",
        ),
        (
            "u1\tSO1\t1.5".into(),
            "train_triplets.txt:2: count is not a non-negative integer count: \"1.5\"",
        ),
        ("\tSO1\t1".into(), "train_triplets.txt:2: user is empty"),
        (
            format!("{long}\tSO1\t1"),
            "string ids may be at most 256 bytes",
        ),
        (
            "u1\tS\u{0}O\t1".into(),
            "song \"S\\0O\" contains a NUL byte",
        ),
    ];
    for (i, (line, want)) in cases.iter().enumerate() {
        let text = format!("u0\tSO0\t1\n{line}\n");
        let f = write(
            &dir.path().join(format!("c{i}/train_triplets.txt")),
            text.as_bytes(),
        );
        let e = err(&cfg(&f, &dir.path().join(format!("o{i}"))));
        assert!(e.contains(want), "{line:?}: {e}");
    }
    // Invalid UTF-8 in an id.
    let f = write(
        &dir.path().join("u/train_triplets.txt"),
        b"u0\tSO0\t1\nu\xff\tSO1\t1\n",
    );
    let e = err(&cfg(&f, &dir.path().join("ou")));
    assert!(
        e.contains("train_triplets.txt:2: user") && e.contains("is not valid UTF-8"),
        "{e}"
    );
}

#[test]
fn triples_detect_string_ids_and_take_columns_by_name_or_position() {
    let dir = tempfile::tempdir().unwrap();
    // Extra columns and a header: choose by name.
    let f = write(
        &dir.path().join("plays.csv"),
        b"when,listener,track,plays\n100,ann,t-9,3\n200,bob,t-1,2\n300,ann,t-1,1\n",
    );
    let mut c = cfg(&f, &dir.path().join("a"));
    c.columns = Columns {
        user: Some(Column::parse("listener")),
        item: Some(Column::parse("TRACK")),
        value: Some(Column::parse("plays")),
        time: Some(Column::parse("when")),
    };
    c.split = Split::Time { last_n: 1 };
    let m = prep(&c).unwrap();
    assert_eq!(m.options.ids, IdKind::Str);
    let cols = m.input.columns.unwrap();
    assert_eq!(
        (cols.user.as_str(), cols.item.as_str()),
        ("listener", "track")
    );
    let ds = Dataset::load(&dir.path().join("a")).unwrap();
    assert_eq!(ds.user_ids, Ids::from_strs(["ann", "bob"]));
    assert_eq!(ds.item_ids, Ids::from_strs(["t-1", "t-9"]));
    // The same by position (1 = first column).
    let mut p = c.clone();
    p.out = dir.path().join("b");
    p.columns = Columns {
        user: Some(Column::Position(2)),
        item: Some(Column::Position(3)),
        value: Some(Column::Position(4)),
        time: Some(Column::Position(1)),
    };
    assert_eq!(prep(&p).unwrap().content_hash, m.content_hash);
    // Mistakes in the choice are named.
    let mut bad = c.clone();
    bad.out = dir.path().join("c");
    bad.columns.user = Some(Column::parse("nobody"));
    let e = err(&bad);
    assert!(
        e.contains(
            "--user-column \"nobody\": no such column in the header (when, listener, track, plays)"
        ),
        "{e}"
    );
    bad.columns.user = Some(Column::Position(9));
    assert!(err(&bad).contains("--user-column 9: the first line has only 4 fields"));
    bad.columns.user = Some(Column::Position(2));
    bad.header = HeaderMode::No;
    bad.columns.item = Some(Column::parse("track"));
    assert!(err(&bad).contains("names a column, but the file has no header line"));
    // Integer triples still take the fast path and integer ids.
    let g = write(&dir.path().join("int.tsv"), b"1\t10\t3\n2\t10\t1\n");
    let m = prep(&cfg(&g, &dir.path().join("d"))).unwrap();
    assert_eq!(m.options.ids, IdKind::Int);
    // --ids string keeps digits as strings (byte order: "10" < "9").
    let h = write(&dir.path().join("digits.tsv"), b"9\t1\t3\n10\t1\t1\n");
    let mut s = cfg(&h, &dir.path().join("e"));
    s.ids = IdsMode::String;
    prep(&s).unwrap();
    let ds = Dataset::load(&dir.path().join("e")).unwrap();
    assert_eq!(ds.user_ids, Ids::from_strs(["10", "9"]));
}

/// A listen as the listens dump writes it (`Listen.to_json`: `timestamp`, `user_name`,
/// `user_id`, the MSID in `additional_info` and at the top).
fn dump_listen(user: &str, ts: u64, msid: &str, track: &str, artist: &str) -> String {
    format!(
        r#"{{"user_id": 7, "user_name": "{user}", "timestamp": {ts}, "track_metadata": {{"artist_name": "{artist}", "track_name": "{track}", "release_name": "R", "additional_info": {{"recording_msid": "{msid}", "tags": ["x"]}}}}, "recording_msid": "{msid}"}}"#
    )
}

/// A listen as the API and a user's export give it (`listened_at`, `mbid_mapping`).
fn api_listen(user: Option<&str>, ts: u64, msid: &str, mbid: Option<&str>) -> String {
    let user = user
        .map(|u| format!(r#""user_name": "{u}", "#))
        .unwrap_or_default();
    let mapping = mbid
        .map(|m| {
            format!(r#""mbid_mapping": {{"recording_mbid": "{m}", "recording_name": "Mapped"}}, "#)
        })
        .unwrap_or_default();
    format!(
        r#"{{{user}"listened_at": {ts}, "inserted_at": 1, "recording_msid": "{msid}", "track_metadata": {{{mapping}"artist_name": "A", "track_name": "T {msid}"}}}}"#
    )
}

#[test]
fn listenbrainz_dump_directories_read_every_file_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let lb = dir.path().join("listenbrainz-listens-dump-1-20240101-full");
    let jan = [
        dump_listen("rob", 1_700_000_300, "m-1", "Song One", "Band"),
        dump_listen("rob", 1_700_000_200, "m-2", "Song Two", "Band"),
        dump_listen("zoë", 1_700_000_100, "m-1", "Song One (other name)", "Band"),
    ]
    .join("\r\n");
    write(&lb.join("listens/2024/1.listens"), jan.as_bytes());
    let feb = [
        dump_listen("rob", 1_700_100_000, "m-1", "Song One", "Band"),
        api_listen(
            Some("zoë"),
            1_700_100_100,
            "m-3",
            Some("5B0D3B1C-0000-4000-8000-000000000001"),
        ),
    ]
    .join("\n");
    write(&lb.join("listens/2024/2.listens.gz"), feb.as_bytes());
    write(&lb.join("index.json"), b"{}");
    let out = dir.path().join("ds");
    let mut c = cfg(&lb, &out);
    c.split = Split::Time { last_n: 2 };
    let m = prep(&c).unwrap();
    assert_eq!(
        (m.input.format, m.input.files, m.lines.records),
        (Format::Listenbrainz, 2, 5)
    );
    let ds = Dataset::load(&out).unwrap();
    assert_eq!(ds.user_ids, Ids::from_strs(["rob", "zoë"]));
    // MBIDs (lower-cased) before MSIDs; names from the first listen in file order.
    assert_eq!(
        ds.item_ids,
        Ids::from_strs(["5b0d3b1c-0000-4000-8000-000000000001", "m-1", "m-2"])
    );
    let names = ds.names.as_ref().unwrap();
    assert_eq!(names.names[1], "Song One");
    assert_eq!(names.artist_names[1], "Band");
    let all: f32 = ds.train.sum() as f32 + ds.valid.sum() as f32;
    assert_eq!(all, 5.0, "every listen is one play");
    // The time split uses the listens' times: rob's last two listens are at 1_700_100_000 and
    // 300, and m-1 was first heard at 300 (m-2 at 200), so m-1 is the discovery held out.
    let r = ds.user_ids.find("rob").unwrap();
    let (v, _) = ds.valid.row(r);
    assert_eq!(
        v.iter()
            .map(|&i| ds.item_ids.get(i as usize).to_string())
            .collect::<Vec<_>>(),
        vec!["m-1"]
    );
}

#[test]
fn listens_without_a_user_take_it_from_their_path() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("exports");
    write(
        &root.join("alice/listens/2024/3.jsonl"),
        api_listen(None, 5, "m-1", None).as_bytes(),
    );
    write(
        &root.join("bob.jsonl"),
        api_listen(None, 6, "m-1", None).as_bytes(),
    );
    let m = prep(&cfg(&root, &dir.path().join("ds"))).unwrap();
    assert_eq!(m.lines.user_from_path, 2);
    let ds = Dataset::load(&dir.path().join("ds")).unwrap();
    assert_eq!(ds.user_ids, Ids::from_strs(["alice", "bob"]));
    // A single file has no path to take a user from.
    let f = write(
        &dir.path().join("one.jsonl"),
        api_listen(None, 5, "m-1", None).as_bytes(),
    );
    let e = err(&cfg(&f, &dir.path().join("ds2")));
    assert!(
        e.contains("one.jsonl:1: listen has no user_name or user_id"),
        "{e}"
    );
}

#[test]
fn malformed_listens_are_named_by_their_own_file() {
    let dir = tempfile::tempdir().unwrap();
    let good = api_listen(Some("u"), 5, "m-1", None);
    let cases = [
        (
            "{not json".to_string(),
            "not a ListenBrainz listen (a JSON object per line)",
        ),
        (
            r#"{"user_name": "u", "recording_msid": "m"}"#.into(),
            "listen has no listened_at (or timestamp)",
        ),
        (
            r#"{"user_name": "u", "listened_at": 5, "track_metadata": {"artist_name": "A"}}"#
                .into(),
            "listen has no recording_mbid or recording_msid",
        ),
        (
            r#"{"user_name": "u", "listened_at": 99999999999, "recording_msid": "m"}"#.into(),
            "listened_at is not a Unix time",
        ),
        (
            r#"{"user_name": ["u"], "listened_at": 5, "recording_msid": "m"}"#.into(),
            "invalid type",
        ),
    ];
    for (i, (bad, want)) in cases.iter().enumerate() {
        let root = dir.path().join(format!("c{i}"));
        write(
            &root.join("listens/2024/1.listens"),
            format!("{good}\n").as_bytes(),
        );
        write(
            &root.join("listens/2024/2.listens"),
            format!("{good}\n\n{bad}\n{good}\n").as_bytes(),
        );
        let c = cfg(&root, &dir.path().join(format!("o{i}")));
        let e = err(&c);
        assert!(
            e.contains("2024/2.listens:3: ") && e.contains(want),
            "{bad}: {e}"
        );
        let mut s = c.clone();
        s.skip_bad_lines = true;
        let m = prep(&s).unwrap();
        assert_eq!(
            (m.lines.bad_skipped, m.lines.records, m.lines.blank),
            (1, 3, 1)
        );
        assert!(
            m.lines.bad_examples[0].contains("2024/2.listens:3: "),
            "{:?}",
            m.lines.bad_examples
        );
    }
}

#[test]
fn integer_datasets_write_int64_ids_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        &dir.path().join("plays.tsv"),
        b"5\t10\t3\n7\t10\t1\n7\t11\t2\n",
    );
    prep(&cfg(&f, &dir.path().join("ds"))).unwrap();
    let ids = encore::data::npz::read_ids(&dir.path().join("ds/user_ids.npy")).unwrap();
    assert_eq!(ids, vec![5, 7]);
}
