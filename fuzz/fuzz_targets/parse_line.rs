//! `encore::data::lines::parse_line` and `parse_field`: one record line of every schema.
//!
//! Option byte: bits 0-1 schema (LFM-1b LEs, LFM-2b counts, HetRec, triples), bits 2-3
//! delimiter (tab, comma, semicolon, space); the rest of the input is the line.
//! Pins: no panic; a parsed record re-rendered as a plain line parses to the same record
//! (fast path), and with every field quoted and space-padded too (careful path), so the two
//! paths agree; `parse_field` on every field never panics.
#![no_main]
use encore::data::formats::{count_schema, les_schema};
use encore::data::lines::{parse_field, parse_line};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (o, line) = encore_fuzz::opts(data);
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
        vec![r.user.to_string(), "0".into(), "0".into(), r.item.to_string(), r.ts.to_string()]
    } else {
        vec![r.user.to_string(), r.item.to_string(), r.count.to_string()]
    };
    let sep = (d as char).to_string();
    let plain = fields.join(&sep);
    assert_eq!(parse_line(plain.as_bytes(), &s), Ok(r), "re-rendered {plain:?}");
    let pad = if d == b' ' { "" } else { " " };
    let quoted: Vec<String> = fields.iter().map(|f| format!("{pad}\"{f}\"{pad}")).collect();
    let quoted = quoted.join(&sep);
    assert_eq!(parse_line(quoted.as_bytes(), &s), Ok(r), "quoted {quoted:?}");
});
