//! A whole `encore::data::prep::prep` run (parse, filter, names, split, write) on a small
//! input in a fresh temporary directory, then `Dataset::load` + `verify` of its output.
//!
//! Input: option byte, then sections split at `--` lines: [data file, names file, artists].
//! Option bits 0-1 format and file (LFM-1b dir with `LFM-1b_tracks.txt`/`LFM-1b_artists.txt`,
//! LFM-2b `listening-counts.tsv`, HetRec dir with `artists.dat`, triples `plays.csv`), bit 2
//! time split (LFM-1b only; else random 20 %), bit 3 filter once (else to a fixed point),
//! bit 4 `--skip-bad-lines`, bits 5-6 thresholds (1, 1), (2, 1), (1, 2), (5, 2).
//! Pins: no panic anywhere in `prep`; whatever `prep` writes loads back and verifies.
#![no_main]
use encore::data::dataset::Dataset;
use encore::data::filter::FilterMode;
use encore::data::prep::{PrepConfig, prep};
use encore::data::split::Split;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (o, body) = encore_fuzz::opts(data);
    let parts = encore_fuzz::sections(body);
    let dir = encore_fuzz::fresh_dir("prep");
    let input = dir.join("in");
    std::fs::create_dir(&input).expect("scratch");
    let part = |i: usize| parts.get(i).copied().unwrap_or(b"");
    let (data_name, names) = match o & 3 {
        0 => ("LFM-1b_LEs.txt", &["LFM-1b_tracks.txt", "LFM-1b_artists.txt"][..]),
        1 => ("listening-counts.tsv", &[][..]),
        2 => ("user_artists.dat", &["artists.dat"][..]),
        _ => ("plays.csv", &[][..]),
    };
    encore_fuzz::write(&input, data_name, part(0));
    for (i, n) in names.iter().enumerate() {
        if parts.len() > i + 1 {
            encore_fuzz::write(&input, n, part(i + 1));
        }
    }
    let src = if o & 3 == 3 { input.join(data_name) } else { input.clone() };
    let out = dir.join("out");
    let mut cfg = PrepConfig::new(src, &out);
    if o & 4 != 0 {
        cfg.split = Split::Time { last_n: 2 };
    }
    if o & 8 != 0 {
        cfg.filter_mode = FilterMode::Once;
    }
    cfg.skip_bad_lines = o & 0x10 != 0;
    (cfg.min_user_tracks, cfg.min_track_users) = [(1, 1), (2, 1), (1, 2), (5, 2)][usize::from((o >> 5) & 3)];
    cfg.block_bytes = 1 << 10;
    if prep(&cfg).is_ok() {
        let ds = Dataset::load(&out).expect("prep output does not load");
        ds.verify().expect("prep output does not verify");
    }
});
