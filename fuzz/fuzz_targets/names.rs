//! Names files: `encore::data::names::load` (LFM-1b `LFM-1b_tracks.txt` + `LFM-1b_artists.txt`,
//! HetRec `artists.dat`) and `read_items_tsv` (a dataset's `items.tsv`).
//!
//! Input: option byte, then sections split at `--` lines: [tracks-or-artists.dat, artists].
//! Option bits: 0 HetRec (else LFM-1b), 1 no LFM-1b artists file, 2 gzip the files.
//! Looked-up item ids are fixed (0-10, 42, 100, 1000, 2^32, u64::MAX).
//! Pins: no panic; one name per item; names written by `write_items_tsv` read back with
//! tabs and line breaks turned into spaces and the same artist ids; the first section read as
//! an `items.tsv` never panics.
#![no_main]
use encore::data::formats::NameSource;
use encore::data::names::{load, read_items_tsv, write_items_tsv};
use libfuzzer_sys::fuzz_target;

const IDS: &[u64] = &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 42, 100, 1000, 1 << 32, u64::MAX];

fuzz_target!(|data: &[u8]| {
    let (o, body) = encore_fuzz::opts(data);
    let parts = encore_fuzz::sections(body);
    let dir = encore_fuzz::fresh_dir("names");
    let gz = if o & 4 != 0 { ".gz" } else { "" };
    let first = parts[0];
    let second = parts.get(1).copied().unwrap_or(b"");
    let src = if o & 1 != 0 {
        NameSource::Hetrec { artists: encore_fuzz::write(&dir, &format!("artists.dat{gz}"), first) }
    } else {
        let tracks = encore_fuzz::write(&dir, &format!("LFM-1b_tracks.txt{gz}"), first);
        let artists = (o & 2 == 0)
            .then(|| encore_fuzz::write(&dir, &format!("LFM-1b_artists.txt{gz}"), second));
        NameSource::Lfm1b { tracks, artists }
    };
    let _ = read_items_tsv(&encore_fuzz::write(&dir, "items.tsv", first));
    let Ok(n) = load(&src, IDS) else { return };
    assert_eq!((n.names.len(), n.artist_ids.len(), n.artist_names.len()), (IDS.len(), IDS.len(), IDS.len()));
    let out = dir.join("items-out.tsv");
    write_items_tsv(&out, IDS, &n).expect("write_items_tsv");
    let back = read_items_tsv(&out).expect("read_items_tsv of what write_items_tsv wrote");
    let clean = |v: &[String]| -> Vec<String> {
        v.iter().map(|s| s.replace(['\t', '\n', '\r'], " ")).collect()
    };
    assert_eq!(back.names, clean(&n.names), "names round trip");
    assert_eq!(back.artist_names, clean(&n.artist_names), "artist names round trip");
    assert_eq!(back.artist_ids, n.artist_ids, "artist ids round trip");
});
