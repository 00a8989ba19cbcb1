//! Delimited records beyond the all-integer fast path of [`crate::data::lines`]: columns chosen
//! by name or position among extra ones, string or integer ids, fractional values, `::`
//! delimiters (MovieLens 1M/10M). MovieLens, the Million Song Dataset's triplets and
//! `triples` files with string ids or column options are read through here.
//!
//! String ids are interned per block into [`LocalIds`] (a hash table over the block's distinct
//! ids); the collector merges those into the global dictionary in file order, so ids stay
//! deterministic whatever the thread count, and each id is hashed once per block.

use serde::{Deserialize, Serialize};

use crate::data::ids::{Interner, check_str_id, hash_bytes};
use crate::data::lines::{LineError, Record, parse_field_max};
use crate::util::quote;

/// What a line's value means, and how a (user, item) pair's lines combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ValueMode {
    /// Play counts: a non-negative integer column (or 1 per line for listening-event logs);
    /// a pair's value is the sum.
    #[default]
    Count,
    /// Ratings: a non-negative decimal column (`3.5`); a pair rated more than once keeps its
    /// highest rating.
    Rating,
    /// 1 for every pair kept (after `--min-value`), whatever the value column says.
    Binary,
}

impl ValueMode {
    pub fn name(self) -> &'static str {
        match self {
            ValueMode::Count => "count",
            ValueMode::Rating => "rating",
            ValueMode::Binary => "binary",
        }
    }

    /// Whether a pair's lines combine by `max` (ratings, binary) rather than by sum.
    pub fn merges_by_max(self) -> bool {
        !matches!(self, ValueMode::Count)
    }

    /// The value stored for a record (see [`Record::count`]): counts as integers, ratings as
    /// `f32` bits (whose order is the numbers' order for non-negative values), binary as 1.
    pub fn decode(self, v: u32) -> f32 {
        match self {
            ValueMode::Count => v as f32,
            ValueMode::Rating => f32::from_bits(v),
            ValueMode::Binary => 1.0,
        }
    }
}

/// Field delimiter of delimited records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Delim {
    Byte(u8),
    /// `::` (MovieLens 1M and 10M `.dat` files).
    DoubleColon,
}

impl Delim {
    pub fn describe(self) -> &'static str {
        match self {
            Delim::Byte(b'\t') => "tab",
            Delim::Byte(b',') => "comma",
            Delim::Byte(b';') => "semicolon",
            Delim::Byte(b' ') => "space",
            Delim::Byte(b'|') => "pipe",
            Delim::Byte(_) => "delimiter",
            Delim::DoubleColon => "'::'",
        }
    }

    /// Splits `line` into at most `max` fields (the last holds the rest).
    pub fn split<'a>(self, line: &'a [u8], max: usize, out: &mut Vec<&'a [u8]>) {
        out.clear();
        let mut rest = line;
        loop {
            if out.len() + 1 >= max {
                out.push(rest);
                return;
            }
            let at = match self {
                Delim::Byte(b) => memchr::memchr(b, rest).map(|i| (i, 1)),
                Delim::DoubleColon => memchr::memmem::find(rest, b"::").map(|i| (i, 2)),
            };
            match at {
                Some((i, w)) => {
                    out.push(&rest[..i]);
                    rest = &rest[i + w..];
                }
                None => {
                    out.push(rest);
                    return;
                }
            }
        }
    }
}

/// Whether ids are parsed as integers or kept as strings.
pub use crate::data::ids::IdKind;

/// Where a delimited record's fields are, and what they hold.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldSpec {
    pub delim: Delim,
    /// Exact number of fields a line must have.
    pub n_fields: usize,
    pub user: usize,
    pub item: usize,
    /// The value column; `None`: each line is one event (value 1).
    pub value: Option<usize>,
    /// The Unix-seconds timestamp column, if any.
    pub time: Option<usize>,
    /// Column names, for messages.
    pub names: Vec<String>,
    pub ids: IdKind,
    pub mode: ValueMode,
}

/// A block's distinct string ids (and, for ListenBrainz, each new item's name and artist),
/// numbered in first-seen order within the block.
#[derive(Default)]
pub struct LocalIds {
    pub users: Interner,
    pub items: Interner,
    /// Per local item: track name and artist name (ListenBrainz only; empty otherwise).
    pub names: Vec<(String, String)>,
    /// The previous line's user (bytes and local id): grouped files repeat it line after line.
    last_user: Option<(Vec<u8>, u32)>,
}

impl LocalIds {
    /// Tables sized for a block of `bytes` bytes (about one new item per 256 bytes), so a
    /// block rarely rehashes.
    pub fn for_block(bytes: usize) -> Self {
        let n = (bytes / 256).clamp(64, 1 << 20);
        Self {
            users: Interner::with_capacity(n / 8, n / 8 * 40),
            items: Interner::with_capacity(n, n * 24),
            ..Self::default()
        }
    }

    /// The local id of user `raw` (checked as a string id).
    pub fn user(&mut self, raw: &[u8], field: &str) -> Result<u64, LineError> {
        if let Some((b, id)) = &self.last_user
            && b.as_slice() == raw
        {
            return Ok(u64::from(*id));
        }
        let id = intern(&mut self.users, raw, field)?;
        let last = self.last_user.get_or_insert_with(|| (Vec::new(), 0));
        last.0.clear();
        last.0.extend_from_slice(raw);
        last.1 = id;
        Ok(u64::from(id))
    }

    /// The local id of item `raw` (checked as a string id), and whether it is new.
    pub fn item(&mut self, raw: &[u8], field: &str) -> Result<(u32, bool), LineError> {
        let before = self.items.len();
        let id = intern(&mut self.items, raw, field)?;
        Ok((id, self.items.len() > before))
    }
}

/// The local id of `raw`; a string seen for the first time is checked as an id first.
fn intern(t: &mut Interner, raw: &[u8], field: &str) -> Result<u32, LineError> {
    let h = hash_bytes(raw);
    if let Some(id) = t.find_hashed(raw, h) {
        return Ok(id);
    }
    check_str_id(raw).map_err(|why| LineError::BadId {
        field: field.to_string(),
        value: quote(raw),
        why,
    })?;
    t.insert_new(raw, h).ok_or_else(|| LineError::BadId {
        field: field.to_string(),
        value: quote(raw),
        why: "is one more distinct id than a block can hold (2^32 − 1)".into(),
    })
}

/// Trims spaces and one pair of double quotes around a field.
pub fn clean(raw: &[u8]) -> &[u8] {
    let mut f = raw.trim_ascii();
    if f.len() >= 2 && f[0] == b'"' && f[f.len() - 1] == b'"' {
        f = f[1..f.len() - 1].trim_ascii();
    }
    f
}

/// Parses a non-negative decimal value (`4`, `3.5`, `1e2`): finite, at most `f32::MAX`.
pub fn parse_decimal(raw: &[u8], field: &str) -> Result<f32, LineError> {
    let f = clean(raw);
    if f.is_empty() {
        return Err(LineError::Empty {
            field: field.to_string(),
        });
    }
    let text = std::str::from_utf8(f).unwrap_or("");
    let v: f64 = match text.parse() {
        Ok(v)
            if text
                .bytes()
                .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b)) =>
        {
            v
        }
        _ => {
            return Err(LineError::NotANumber {
                field: field.to_string(),
                value: quote(raw),
            });
        }
    };
    if v < 0.0 {
        return Err(LineError::Negative {
            field: field.to_string(),
            value: quote(raw),
        });
    }
    if !(v.is_finite() && v <= f64::from(f32::MAX)) {
        return Err(LineError::TooLarge {
            field: field.to_string(),
            value: quote(raw),
            max: f32::MAX as u64,
        });
    }
    Ok(v as f32)
}

/// Encodes a parsed value for `mode` (see [`ValueMode::decode`]) and returns it with the number
/// it stands for.
pub fn encode_value(raw: &[u8], field: &str, mode: ValueMode) -> Result<(u32, f32), LineError> {
    match mode {
        ValueMode::Count => {
            let v = parse_field_max(raw, field, u64::from(u32::MAX)).map_err(|e| match e {
                LineError::NonNumeric { field, value } => LineError::NotACount { field, value },
                e => e,
            })? as u32;
            Ok((v, v as f32))
        }
        ValueMode::Rating => {
            let v = parse_decimal(raw, field)?;
            Ok((v.to_bits(), v))
        }
        ValueMode::Binary => {
            let v = parse_decimal(raw, field)?;
            Ok((u32::from(v > 0.0), v))
        }
    }
}

/// A parsed record and its value as a number (for `--min-value`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Parsed {
    pub rec: Record,
    pub value: f32,
}

impl FieldSpec {
    /// The name of field `i`.
    pub fn name(&self, i: usize) -> &str {
        self.names.get(i).map(String::as_str).unwrap_or("field")
    }

    /// Parses one line (without its line ending; trailing whitespace ignored). String ids are
    /// interned into `local`; their record fields hold local ids.
    pub fn parse<'a>(
        &self,
        line: &'a [u8],
        fields: &mut Vec<&'a [u8]>,
        local: &mut LocalIds,
    ) -> Result<Parsed, LineError> {
        let line = crate::data::lines::trim_end(line);
        self.delim.split(line, self.n_fields + 1, fields);
        if fields.len() != self.n_fields {
            let found = if fields.len() > self.n_fields {
                let mut all = Vec::new();
                self.delim.split(line, usize::MAX, &mut all);
                all.len()
            } else {
                fields.len()
            };
            return Err(LineError::FieldCount {
                expected: self.n_fields,
                found,
                delim: self.delim.describe(),
                names: (0..self.n_fields)
                    .map(|i| self.name(i).to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let (user, item) = match self.ids {
            IdKind::Int => {
                let u = parse_field_max(fields[self.user], self.name(self.user), i64::MAX as u64)?;
                let i =
                    parse_field_max(fields[self.item], self.name(self.item), u64::from(u32::MAX))?
                        as u32;
                (u, i)
            }
            IdKind::Str => {
                let (uf, itf) = (clean(fields[self.user]), clean(fields[self.item]));
                for (f, i) in [(uf, self.user), (itf, self.item)] {
                    if f.is_empty() {
                        return Err(LineError::Empty {
                            field: self.name(i).to_string(),
                        });
                    }
                }
                let u = local.user(uf, self.name(self.user))?;
                let (i, _) = local.item(itf, self.name(self.item))?;
                (u, i)
            }
        };
        let (count, value) = match self.value {
            Some(c) => encode_value(fields[c], self.name(c), self.mode)?,
            None => (1, 1.0),
        };
        let ts = match self.time {
            Some(c) => parse_field_max(fields[c], self.name(c), u64::from(u32::MAX))? as u32,
            None => 0,
        };
        Ok(Parsed {
            rec: Record {
                user,
                item,
                count,
                ts,
            },
            value,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn movielens_csv(mode: ValueMode) -> FieldSpec {
        FieldSpec {
            delim: Delim::Byte(b','),
            n_fields: 4,
            user: 0,
            item: 1,
            value: Some(2),
            time: Some(3),
            names: ["userId", "movieId", "rating", "timestamp"]
                .map(String::from)
                .to_vec(),
            ids: IdKind::Int,
            mode,
        }
    }

    fn parse(s: &FieldSpec, line: &str) -> Result<Parsed, LineError> {
        let mut f = Vec::new();
        let mut l = LocalIds::default();
        s.parse(line.as_bytes(), &mut f, &mut l)
    }

    #[test]
    fn fractional_ratings_parse_and_encode() {
        let s = movielens_csv(ValueMode::Rating);
        let p = parse(&s, "1,296,5.0,1147880044").unwrap();
        assert_eq!((p.rec.user, p.rec.item, p.rec.ts), (1, 296, 1147880044));
        assert_eq!(ValueMode::Rating.decode(p.rec.count), 5.0);
        let p = parse(&s, "1,306,3.5,1147868817\r").unwrap();
        assert_eq!((p.value, ValueMode::Rating.decode(p.rec.count)), (3.5, 3.5));
        let b = parse(&movielens_csv(ValueMode::Binary), "1,306,3.5,1").unwrap();
        assert_eq!((b.rec.count, b.value), (1, 3.5));
    }

    #[test]
    fn bad_values_are_named() {
        let s = movielens_csv(ValueMode::Rating);
        let e = parse(&s, "1,2,x,3").unwrap_err().to_string();
        assert_eq!(e, "rating is not a number: \"x\"");
        let e = parse(&s, "1,2,-1.5,3").unwrap_err().to_string();
        assert_eq!(e, "rating is negative: \"-1.5\"");
        let e = parse(&s, "1,2,inf,3").unwrap_err().to_string();
        assert!(e.starts_with("rating is not a number"), "{e}");
        let e = parse(&s, "1,2,3").unwrap_err().to_string();
        assert_eq!(
            e,
            "expected 4 comma-separated fields (userId, movieId, rating, timestamp), found 3"
        );
        let e = parse(&s, "1,2,3,4,5").unwrap_err().to_string();
        assert!(e.ends_with("found 5"), "{e}");
        let c = movielens_csv(ValueMode::Count);
        let e = parse(&c, "1,2,3.5,4").unwrap_err().to_string();
        assert_eq!(
            e,
            "rating is not a non-negative integer count: \"3.5\" (for fractional values pass \
             --value rating or --value binary)"
        );
    }

    #[test]
    fn double_colon_and_string_ids() {
        let mut s = movielens_csv(ValueMode::Rating);
        s.delim = Delim::DoubleColon;
        let p = parse(&s, "1::1193::5::978300760").unwrap();
        assert_eq!((p.rec.user, p.rec.item, p.rec.ts), (1, 1193, 978300760));
        let msd = FieldSpec {
            delim: Delim::Byte(b'\t'),
            n_fields: 3,
            user: 0,
            item: 1,
            value: Some(2),
            time: None,
            names: ["user", "song", "count"].map(String::from).to_vec(),
            ids: IdKind::Str,
            mode: ValueMode::Count,
        };
        let mut f = Vec::new();
        let mut l = LocalIds::default();
        let a = msd
            .parse(
                b"b80344d063b5ccb3212f76538f3d9e43d87dca9e\tSOAKIMP12A8C130995\t1",
                &mut f,
                &mut l,
            )
            .unwrap();
        let b = msd
            .parse(
                b"b80344d063b5ccb3212f76538f3d9e43d87dca9e\tSOBBMDR12A8C13253B\t2",
                &mut f,
                &mut l,
            )
            .unwrap();
        assert_eq!(
            (a.rec.user, a.rec.item, b.rec.user, b.rec.item),
            (0, 0, 0, 1)
        );
        assert_eq!(l.items.get(1), b"SOBBMDR12A8C13253B");
        let long = format!("{}\tSO1\t1", "u".repeat(300));
        let e = msd.parse(long.as_bytes(), &mut f, &mut l).unwrap_err();
        assert!(e.to_string().contains("at most 256 bytes"), "{e}");
        let e = msd.parse(b"\tSO1\t1", &mut f, &mut l).unwrap_err();
        assert_eq!(e.to_string(), "user is empty");
    }
}
