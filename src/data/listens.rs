//! ListenBrainz listens: JSON lines, one listen per line (the listens dump's `*.listens` files,
//! a user's export `listens/YYYY/M.jsonl`, or API answers written one listen per line).
//!
//! Fields read, as ListenBrainz documents them ("JSON Documentation", "Data Dumps"):
//!
//! - the user: `user_name` (the MusicBrainz name), else `user_id`; a listen with neither (a
//!   single user's export) takes its user from its file's path: the first path component
//!   under the input directory, extensions removed (`alice.jsonl` → `alice`,
//!   `bob/listens/2024/1.jsonl` → `bob`);
//! - the time: `listened_at` (Unix seconds, integer or fractional), else `timestamp` (the
//!   dump's name for it);
//! - the item, a recording: its MusicBrainz id when present
//!   (`track_metadata.additional_info.recording_mbid`, submitted by the client, else
//!   `track_metadata.mbid_mapping.recording_mbid`, ListenBrainz's own mapping), else its
//!   MessyBrainz id (`recording_msid`, at the top level or in `track_metadata` or its
//!   `additional_info`). Ids are lower-cased, so one recording is one item however a client
//!   spelled it;
//! - names for `items.tsv`: `track_metadata.track_name` and `track_metadata.artist_name`, from
//!   the first listen of each recording in file order.
//!
//! Every other field is ignored. A line that is not a JSON object, lacks a user, a time or a
//! recording id, or holds one of the wrong type is a bad line, named with its file and line.

use std::borrow::Cow;

use serde::Deserialize;

use crate::data::lines::{LineError, Record};
use crate::data::records::{LocalIds, Parsed};

/// How listens are read from one file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListenSpec {
    /// The user of listens without `user_name`/`user_id`, from the file's path.
    pub path_user: Option<String>,
}

#[derive(Deserialize)]
struct Listen<'a> {
    #[serde(borrow, default)]
    user_name: Option<Cow<'a, str>>,
    #[serde(default)]
    user_id: Option<UserId<'a>>,
    #[serde(default)]
    listened_at: Option<Time>,
    #[serde(default)]
    timestamp: Option<Time>,
    #[serde(borrow, default)]
    recording_msid: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    track_metadata: Option<TrackMetadata<'a>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum UserId<'a> {
    Int(u64),
    #[serde(borrow)]
    Str(Cow<'a, str>),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Time {
    Int(u64),
    Float(f64),
}

#[derive(Deserialize)]
struct TrackMetadata<'a> {
    #[serde(borrow, default)]
    artist_name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    track_name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    recording_msid: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    additional_info: Option<AdditionalInfo<'a>>,
    #[serde(borrow, default)]
    mbid_mapping: Option<MbidMapping<'a>>,
}

#[derive(Deserialize)]
struct AdditionalInfo<'a> {
    #[serde(borrow, default)]
    recording_mbid: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    recording_msid: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct MbidMapping<'a> {
    #[serde(borrow, default)]
    recording_mbid: Option<Cow<'a, str>>,
}

/// A non-blank string field.
fn present<'s>(s: &'s Option<Cow<'_, str>>) -> Option<&'s str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn bad(m: impl Into<String>) -> LineError {
    LineError::Other(m.into())
}

impl ListenSpec {
    /// Parses one listen; the record's user and item are local ids in `local`, and a
    /// recording seen for the first time in this block gets its names there. Returns whether
    /// the user came from the file's path.
    pub fn parse(&self, line: &[u8], local: &mut LocalIds) -> Result<(Parsed, bool), LineError> {
        let l: Listen<'_> = serde_json::from_slice(line).map_err(|e| {
            bad(format!(
                "not a ListenBrainz listen (a JSON object per line): {e}"
            ))
        })?;
        let (user, from_path): (Cow<'_, str>, bool) = match (present(&l.user_name), &l.user_id) {
            (Some(u), _) => (u.into(), false),
            (None, Some(UserId::Int(u))) => (u.to_string().into(), false),
            (None, Some(UserId::Str(s))) if !s.trim().is_empty() => (s.trim().into(), false),
            _ => match &self.path_user {
                Some(u) => (u.as_str().into(), true),
                None => {
                    return Err(bad(
                        "listen has no user_name or user_id (a single user's export: put its \
                         files in a directory named after the user, inside the input directory)",
                    ));
                }
            },
        };
        let secs = match l.listened_at.as_ref().or(l.timestamp.as_ref()) {
            Some(Time::Int(t)) => u32::try_from(*t).ok(),
            Some(Time::Float(t)) if t.is_finite() && *t >= 0.0 && *t < 4294967296.0 => {
                Some(*t as u32)
            }
            Some(Time::Float(_)) => None,
            None => return Err(bad("listen has no listened_at (or timestamp)")),
        }
        .ok_or_else(|| bad("listened_at is not a Unix time in 0..=4294967295"))?;
        let tm = l.track_metadata.as_ref();
        let info = tm.and_then(|t| t.additional_info.as_ref());
        let item = info
            .and_then(|i| present(&i.recording_mbid))
            .or_else(|| {
                tm.and_then(|t| t.mbid_mapping.as_ref())
                    .and_then(|m| present(&m.recording_mbid))
            })
            .or_else(|| present(&l.recording_msid))
            .or_else(|| tm.and_then(|t| present(&t.recording_msid)))
            .or_else(|| info.and_then(|i| present(&i.recording_msid)))
            .ok_or_else(|| bad("listen has no recording_mbid or recording_msid"))?;
        let item: Cow<'_, str> = if item.bytes().any(|b| b.is_ascii_uppercase()) {
            item.to_ascii_lowercase().into()
        } else {
            item.into()
        };
        let u = local.user(user.as_bytes(), "user_name")?;
        let (i, new) = local.item(item.as_bytes(), "recording id")?;
        if new {
            let name = |s: Option<&Option<Cow<'_, str>>>| {
                s.and_then(|s| s.as_deref())
                    .unwrap_or("")
                    .replace(['\t', '\n', '\r'], " ")
            };
            local.names.push((
                name(tm.map(|t| &t.track_name)),
                name(tm.map(|t| &t.artist_name)),
            ));
        }
        Ok((
            Parsed {
                rec: Record {
                    user: u,
                    item: i,
                    count: 1,
                    ts: secs,
                },
                value: 1.0,
            },
            from_path,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(spec: &ListenSpec, line: &str) -> Result<(Parsed, bool, LocalIds), LineError> {
        let mut l = LocalIds::default();
        spec.parse(line.as_bytes(), &mut l).map(|(p, f)| (p, f, l))
    }

    #[test]
    fn documented_listens_parse_with_mbid_before_msid() {
        let s = ListenSpec::default();
        // The dump's layout (`timestamp`, `user_name`, msid in additional_info).
        let dump = r#"{"user_id": 1, "user_name": "rob", "timestamp": 1443521965, "track_metadata": {"artist_name": "Rick Astley", "track_name": "Never Gonna Give You Up", "additional_info": {"recording_msid": "d23f4719-9212-49f0-ad08-ddbfbfc50d6f"}}, "recording_msid": "d23f4719-9212-49f0-ad08-ddbfbfc50d6f"}"#;
        let (p, from_path, l) = parse(&s, dump).unwrap();
        assert!(!from_path);
        assert_eq!(p.rec.ts, 1443521965);
        assert_eq!(l.users.get(0), b"rob");
        assert_eq!(l.items.get(0), b"d23f4719-9212-49f0-ad08-ddbfbfc50d6f");
        assert_eq!(l.names[0].0, "Never Gonna Give You Up");
        // The API's layout with a mapping: the MBID wins, lower-cased.
        let api = r#"{"listened_at": 1443521965.0, "user_name": "rob", "recording_msid": "d23f4719-9212-49f0-ad08-ddbfbfc50d6f", "track_metadata": {"artist_name": "A", "track_name": "T", "mbid_mapping": {"recording_mbid": "98255A8C-017a-4bc7-8dd6-1fa36124572b"}}}"#;
        let (_, _, l) = parse(&s, api).unwrap();
        assert_eq!(l.items.get(0), b"98255a8c-017a-4bc7-8dd6-1fa36124572b");
    }

    #[test]
    fn missing_fields_are_bad_lines() {
        let s = ListenSpec::default();
        let e = |line: &str| {
            parse(&s, line)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(e("not json").starts_with("not a ListenBrainz listen"));
        assert!(e(r#"{"user_name": "a", "recording_msid": "x"}"#).contains("no listened_at"));
        assert!(e(r#"{"user_name": "a", "listened_at": 5}"#).contains("no recording_mbid or"));
        assert!(e(r#"{"listened_at": 5, "recording_msid": "x"}"#).contains("no user_name"));
        assert!(
            e(r#"{"user_name": 7, "listened_at": 5, "recording_msid": "x"}"#)
                .starts_with("not a ListenBrainz listen")
        );
        assert!(
            e(r#"{"user_name": "a", "listened_at": -5, "recording_msid": "x"}"#)
                .contains("not a Unix time")
        );
        let with_path = ListenSpec {
            path_user: Some("alice".into()),
        };
        let (_, from_path, l) =
            parse(&with_path, r#"{"listened_at": 5, "recording_msid": "x"}"#).unwrap();
        assert!(from_path);
        assert_eq!(l.users.get(0), b"alice");
    }
}
