//! Line-level parsing of delimited numeric records: the innermost loop of `prep`.
//!
//! A fast path handles the common case (digits and delimiters only) in one pass over the bytes;
//! anything else — quoted or space-padded fields, extra text columns, or a genuinely bad line —
//! falls back to a careful path that either parses it or explains exactly what is wrong.

use std::fmt;

use crate::util::quote;

/// The most fields a schema may address (the fast path keeps their values in a fixed array).
pub const MAX_FIELDS: usize = 8;

/// Where the fields of one record live in a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schema {
    /// Field delimiter (`\t`, `,` or ` `).
    pub delim: u8,
    /// Exact number of fields a line must have.
    pub n_fields: usize,
    /// Field index of the user id.
    pub user: usize,
    /// Field index of the item (track/artist) id.
    pub item: usize,
    /// Field index of the play count; `None` means each line is one listening event.
    pub count: Option<usize>,
    /// Field index of the Unix timestamp, when the format has one.
    pub ts: Option<usize>,
    /// Column names, for error messages.
    pub names: Vec<String>,
}

impl Schema {
    /// The column name of field `i` (or `field N`).
    pub fn name(&self, i: usize) -> String {
        self.names
            .get(i)
            .cloned()
            .unwrap_or_else(|| format!("field {}", i + 1))
    }

    fn describe_delim(&self) -> &'static str {
        match self.delim {
            b'\t' => "tab",
            b',' => "comma",
            b';' => "semicolon",
            b' ' => "space",
            _ => "delimiter",
        }
    }

    fn wanted(&self, i: usize) -> bool {
        i == self.user || i == self.item || self.count == Some(i) || self.ts == Some(i)
    }
}

/// One parsed line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    pub user: u64,
    pub item: u32,
    /// Plays this line stands for (1 for an event line). May be 0 (counted, then dropped).
    pub count: u32,
    /// Unix seconds (0 when the format has no timestamp).
    pub ts: u32,
}

/// Why a line was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineError {
    FieldCount {
        expected: usize,
        found: usize,
        delim: &'static str,
        names: String,
    },
    Empty {
        field: String,
    },
    NonNumeric {
        field: String,
        value: String,
    },
    Negative {
        field: String,
        value: String,
    },
    TooLarge {
        field: String,
        value: String,
        max: u64,
    },
    /// A string id that cannot be stored (too long, not UTF-8, a NUL byte).
    BadId {
        field: String,
        value: String,
        why: String,
    },
    /// A value column that is not a decimal number.
    NotANumber {
        field: String,
        value: String,
    },
    /// A count column (`--value count`) holding something other than an integer.
    NotACount {
        field: String,
        value: String,
    },
    /// Anything else wrong with a line (a JSON listen's missing field, say).
    Other(String),
    /// A line longer than [`crate::data::blocks::MAX_LINE_BYTES`]; fatal even when skipping bad
    /// lines (the input is not a text log).
    TooLong,
}

impl LineError {
    /// Whether `--skip-bad-lines` may skip a line with this error.
    pub fn skippable(&self) -> bool {
        !matches!(self, LineError::TooLong)
    }
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineError::FieldCount {
                expected,
                found,
                delim,
                names,
            } => write!(
                f,
                "expected {expected} {delim}-separated fields ({names}), found {found}"
            ),
            LineError::Empty { field } => write!(f, "{field} is empty"),
            LineError::NonNumeric { field, value } => {
                write!(f, "{field} is not a non-negative integer: {value}")
            }
            LineError::Negative { field, value } => write!(f, "{field} is negative: {value}"),
            LineError::TooLarge { field, value, max } => {
                write!(
                    f,
                    "{field} {value} is larger than the supported maximum {max}"
                )
            }
            LineError::BadId { field, value, why } => write!(f, "{field} {value} {why}"),
            LineError::NotANumber { field, value } => {
                write!(f, "{field} is not a number: {value}")
            }
            LineError::NotACount { field, value } => write!(
                f,
                "{field} is not a non-negative integer count: {value} (for fractional values \
                 pass --value rating or --value binary)"
            ),
            LineError::Other(m) => f.write_str(m),
            LineError::TooLong => write!(f, "line longer than 1 MiB (is this a text file?)"),
        }
    }
}

/// Removes trailing whitespace (`\r` of CRLF files, spaces, tabs).
#[inline]
pub fn trim_end(line: &[u8]) -> &[u8] {
    let mut end = line.len();
    while end > 0 && matches!(line[end - 1], b'\r' | b' ' | b'\t') {
        end -= 1;
    }
    &line[..end]
}

/// Parses one line (without its `\n`; trailing whitespace is ignored).
#[inline]
pub fn parse_line(line: &[u8], s: &Schema) -> Result<Record, LineError> {
    let line = trim_end(line);
    let mut vals = [0u64; MAX_FIELDS];
    let mut lens = [0u8; MAX_FIELDS];
    let mut field = 0usize;
    let mut cur = 0u64;
    let mut len = 0u8;
    let mut clean = true;
    for &b in line {
        if b == s.delim {
            if field < MAX_FIELDS {
                vals[field] = cur;
                lens[field] = len;
            }
            field += 1;
            cur = 0;
            len = 0;
            continue;
        }
        let d = b.wrapping_sub(b'0');
        if d > 9 || len >= 19 {
            clean = false;
            break;
        }
        cur = cur * 10 + u64::from(d);
        len += 1;
    }
    if clean && field < MAX_FIELDS {
        vals[field] = cur;
        lens[field] = len;
    }
    if !clean || field + 1 != s.n_fields || lens[..s.n_fields].contains(&0) {
        return parse_line_slow(line, s);
    }
    finish(&vals, s)
}

/// The largest value field `i` may hold: user ids are stored as numpy int64 (2^63 − 1), track
/// ids, play counts and timestamps as 32-bit unsigned integers (2^32 − 1).
fn field_max(s: &Schema, i: usize) -> u64 {
    if i == s.user {
        i64::MAX as u64
    } else if i == s.item || s.count == Some(i) || s.ts == Some(i) {
        u64::from(u32::MAX)
    } else {
        u64::MAX
    }
}

/// Turns raw field values into a record, checking ranges.
fn finish(vals: &[u64; MAX_FIELDS], s: &Schema) -> Result<Record, LineError> {
    let item = vals[s.item];
    let item = u32::try_from(item).map_err(|_| LineError::TooLarge {
        field: s.name(s.item),
        value: item.to_string(),
        max: u64::from(u32::MAX),
    })?;
    let count = match s.count {
        Some(i) => u32::try_from(vals[i]).map_err(|_| LineError::TooLarge {
            field: s.name(i),
            value: vals[i].to_string(),
            max: u64::from(u32::MAX),
        })?,
        None => 1,
    };
    let ts = match s.ts {
        Some(i) => u32::try_from(vals[i]).map_err(|_| LineError::TooLarge {
            field: s.name(i),
            value: vals[i].to_string(),
            max: u64::from(u32::MAX),
        })?,
        None => 0,
    };
    // Ids are stored as numpy int64; larger user ids would wrap.
    if vals[s.user] > i64::MAX as u64 {
        return Err(LineError::TooLarge {
            field: s.name(s.user),
            value: vals[s.user].to_string(),
            max: i64::MAX as u64,
        });
    }
    Ok(Record {
        user: vals[s.user],
        item,
        count,
        ts,
    })
}

/// The careful path: tolerates space padding and double quotes around fields, and otherwise
/// explains the first problem.
#[cold]
fn parse_line_slow(line: &[u8], s: &Schema) -> Result<Record, LineError> {
    let fields: Vec<&[u8]> = line.split(|&b| b == s.delim).collect();
    if fields.len() != s.n_fields {
        return Err(LineError::FieldCount {
            expected: s.n_fields,
            found: fields.len(),
            delim: s.describe_delim(),
            names: (0..s.n_fields)
                .map(|i| s.name(i))
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let mut vals = [0u64; MAX_FIELDS];
    for (i, raw) in fields.iter().enumerate().take(MAX_FIELDS) {
        if !s.wanted(i) {
            continue;
        }
        vals[i] = parse_field_max(raw, &s.name(i), field_max(s, i))?;
    }
    finish(&vals, s)
}

/// Parses one non-negative integer field, trimming spaces and one pair of double quotes; ids
/// up to 2^63 − 1 (they are stored as numpy int64).
pub fn parse_field(raw: &[u8], name: &str) -> Result<u64, LineError> {
    parse_field_max(raw, name, i64::MAX as u64)
}

/// [`parse_field`] with the field's real maximum, which a larger value is reported against.
pub fn parse_field_max(raw: &[u8], name: &str, max: u64) -> Result<u64, LineError> {
    let mut f = raw.trim_ascii();
    if f.len() >= 2 && f[0] == b'"' && f[f.len() - 1] == b'"' {
        f = f[1..f.len() - 1].trim_ascii();
    }
    let text = || quote(raw);
    if f.is_empty() {
        return Err(LineError::Empty {
            field: name.to_string(),
        });
    }
    if f[0] == b'-' && f.len() > 1 && f[1..].iter().all(|b| b.is_ascii_digit() || *b == b'.') {
        return Err(LineError::Negative {
            field: name.to_string(),
            value: text(),
        });
    }
    let digits = f.strip_prefix(b"+").unwrap_or(f);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(LineError::NonNumeric {
            field: name.to_string(),
            value: text(),
        });
    }
    let too_large = || LineError::TooLarge {
        field: name.to_string(),
        // Digits only, so a short value reads as a number; a long one is shortened.
        value: if digits.len() > 40 {
            quote(digits)
        } else {
            String::from_utf8_lossy(digits).into_owned()
        },
        max,
    };
    let mut v: u64 = 0;
    for &b in digits {
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(b - b'0')))
            .filter(|&v| v <= max)
            .ok_or_else(too_large)?;
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn les() -> Schema {
        crate::data::formats::les_schema(b'\t')
    }

    fn triples(delim: u8) -> Schema {
        crate::data::formats::count_schema(delim, ["user", "item", "count"])
    }

    #[test]
    fn parses_an_event_line() {
        let r = parse_line(b"31435741\t2\t4\t4\t1385212958", &les()).unwrap();
        assert_eq!(
            r,
            Record {
                user: 31435741,
                item: 4,
                count: 1,
                ts: 1385212958
            }
        );
    }

    #[test]
    fn crlf_and_trailing_whitespace_are_ignored() {
        let s = triples(b'\t');
        let want = parse_line(b"2\t51\t13883", &s).unwrap();
        assert_eq!(parse_line(b"2\t51\t13883\r", &s).unwrap(), want);
        assert_eq!(parse_line(b"2\t51\t13883  \t\r", &s).unwrap(), want);
        assert_eq!(want.count, 13883);
    }

    #[test]
    fn quoted_and_padded_csv_fields_parse() {
        let r = parse_line(b"\"7\", 8 ,\"9\"", &triples(b',')).unwrap();
        assert_eq!((r.user, r.item, r.count), (7, 8, 9));
    }

    #[test]
    fn wrong_field_count_is_named() {
        let e = parse_line(b"1\t2\t3\t4", &les()).unwrap_err();
        assert!(matches!(
            e,
            LineError::FieldCount {
                expected: 5,
                found: 4,
                ..
            }
        ));
        assert!(e.to_string().contains("expected 5 tab-separated fields"));
        let e = parse_line(b"1\t2\t3\t4\t5\t6", &les()).unwrap_err();
        assert!(matches!(e, LineError::FieldCount { found: 6, .. }));
    }

    #[test]
    fn non_numeric_id_is_rejected_with_its_field() {
        let e = parse_line(b"1\tabc\t3", &triples(b'\t')).unwrap_err();
        assert_eq!(
            e,
            LineError::NonNumeric {
                field: "item".into(),
                value: "\"abc\"".into()
            }
        );
        assert_eq!(e.to_string(), "item is not a non-negative integer: \"abc\"");
        let e = parse_line(b"x1\t2\t3\t4\t5", &les()).unwrap_err();
        assert!(matches!(e, LineError::NonNumeric { ref field, .. } if field == "user_id"));
    }

    #[test]
    fn negative_and_non_numeric_counts_are_rejected() {
        let e = parse_line(b"1\t2\t-3", &triples(b'\t')).unwrap_err();
        assert!(matches!(e, LineError::Negative { ref field, .. } if field == "count"));
        let e = parse_line(b"1\t2\t3.5", &triples(b'\t')).unwrap_err();
        assert!(matches!(e, LineError::NonNumeric { ref field, .. } if field == "count"));
        let e = parse_line(b"1\t2\t", &triples(b'\t')).unwrap_err();
        assert!(matches!(
            e,
            LineError::Empty { .. } | LineError::FieldCount { .. }
        ));
        let e = parse_line(b"1\t\t3", &triples(b'\t')).unwrap_err();
        assert!(matches!(e, LineError::Empty { ref field } if field == "item"));
    }

    #[test]
    fn out_of_range_values_are_rejected() {
        let e = parse_line(b"1\t4294967296\t3", &triples(b'\t')).unwrap_err();
        assert!(matches!(e, LineError::TooLarge { ref field, .. } if field == "item"));
        let e = parse_line(b"1\t2\t99999999999999999999999", &triples(b'\t')).unwrap_err();
        assert!(matches!(e, LineError::TooLarge { .. }));
        // Users may use the full int64 range (ids are stored as numpy int64), no more.
        let r = parse_line(b"9223372036854775807\t2\t3", &triples(b'\t')).unwrap();
        assert_eq!(r.user, i64::MAX as u64);
        let e = parse_line(b"9223372036854775808\t2\t3", &triples(b'\t')).unwrap_err();
        assert!(matches!(e, LineError::TooLarge { ref field, .. } if field == "user"));
    }

    #[test]
    fn overflow_names_the_fields_real_maximum() {
        let s = triples(b'\t');
        let e = parse_line(b"99999999999999999999999\t2\t3", &s).unwrap_err();
        assert_eq!(
            e.to_string(),
            "user 99999999999999999999999 is larger than the supported maximum \
             9223372036854775807"
        );
        let e = parse_line(b"1\t2\t99999999999999999999999", &s).unwrap_err();
        assert!(e.to_string().ends_with("maximum 4294967295"), "{e}");
        let e = parse_line(b"1\t99999999999999999999\t3", &s).unwrap_err();
        assert!(e.to_string().ends_with("maximum 4294967295"), "{e}");
        assert!(!e.to_string().contains("18446744073709551615"));
    }

    #[test]
    fn a_huge_bad_field_is_quoted_shortened() {
        let mut line = b"1\t".to_vec();
        line.extend(std::iter::repeat_n(b'x', 20 << 20));
        line.extend_from_slice(b"\t3");
        let e = parse_line(&line, &triples(b'\t')).unwrap_err().to_string();
        assert!(e.len() < 200, "{} bytes", e.len());
        assert!(e.ends_with("… (20971520 bytes)"), "{e}");
        let mut digits = b"1\t2\t".to_vec();
        digits.extend(std::iter::repeat_n(b'9', 1 << 20));
        let e = parse_line(&digits, &triples(b'\t'))
            .unwrap_err()
            .to_string();
        assert!(e.len() < 200 && e.contains("(1048576 bytes)"), "{e}");
    }

    #[test]
    fn unused_text_columns_are_allowed() {
        // An LEs-like line whose unused album column is text still parses (slow path).
        let r = parse_line(b"1\t2\tsome album\t4\t5", &les()).unwrap();
        assert_eq!((r.user, r.item, r.ts), (1, 4, 5));
    }
}
