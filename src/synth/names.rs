//! Deterministic pseudo-word names for artists, albums and tracks.
//!
//! Names are built from syllables picked by hashing `(seed, kind, index)`, so any name can be
//! produced on any thread without storing it. About one name in twenty carries a non-ASCII letter
//! (`é`, `ø`, …), which keeps UTF-8 handling honest in the readers; names never hold tabs or
//! newlines, so they cannot break the tab-separated format.

use crate::util::mix64;

const ONSETS: [&str; 16] = [
    "b", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "th",
];
const VOWELS: [&str; 8] = ["a", "e", "i", "o", "u", "ai", "ea", "ou"];
const ACCENTED: [&str; 8] = ["é", "ö", "å", "ü", "ø", "á", "ï", "ô"];
const CODAS: [&str; 8] = ["", "", "n", "r", "l", "s", "sh", "k"];
const TRACK_SUFFIXES: [&str; 4] = [" (Live)", " (Remix)", " - Demo", " (Acoustic)"];

/// Which catalog entity a name is for; each kind draws from its own hash stream.
#[derive(Debug, Clone, Copy)]
pub(crate) enum NameKind {
    Artist,
    Album,
    Track,
}

/// A stream of random bits derived from one 64-bit key.
struct Bits {
    key: u64,
    word: u64,
    left: u32,
}

impl Bits {
    fn new(key: u64) -> Self {
        Self {
            key,
            word: 0,
            left: 0,
        }
    }

    fn take(&mut self, n: u32) -> usize {
        if self.left < n {
            self.key = mix64(self.key);
            self.word = self.key;
            self.left = 64;
        }
        let v = self.word & ((1u64 << n) - 1);
        self.word >>= n;
        self.left -= n;
        v as usize
    }
}

/// Appends the name of entity `index` of `kind` to `out`.
pub(crate) fn push_name(out: &mut Vec<u8>, seed: u64, kind: NameKind, index: u64) {
    let salt = match kind {
        NameKind::Artist => 0xA27,
        NameKind::Album => 0xA1B,
        NameKind::Track => 0x7AC,
    };
    let mut bits = Bits::new(mix64(seed ^ mix64(index ^ (salt << 48))));
    let words = match kind {
        NameKind::Artist => 1 + bits.take(1),
        NameKind::Album => 1 + bits.take(2).min(2),
        NameKind::Track => 1 + bits.take(2),
    };
    if matches!(kind, NameKind::Artist) && bits.take(4) == 0 {
        out.extend_from_slice(b"The ");
    }
    for w in 0..words {
        if w > 0 {
            out.push(b' ');
        }
        push_word(out, &mut bits);
    }
    if matches!(kind, NameKind::Track) && bits.take(4) == 0 {
        out.extend_from_slice(TRACK_SUFFIXES[bits.take(2)].as_bytes());
    }
}

fn push_word(out: &mut Vec<u8>, bits: &mut Bits) {
    let syllables = [1, 2, 2, 3][bits.take(2)];
    // One word in 64 gets an accented vowel in a random syllable.
    let accent_at = if bits.take(6) == 0 {
        bits.take(2) % syllables
    } else {
        usize::MAX
    };
    let start = out.len();
    for s in 0..syllables {
        out.extend_from_slice(ONSETS[bits.take(4)].as_bytes());
        let vowel = if s == accent_at {
            ACCENTED[bits.take(3)]
        } else {
            VOWELS[bits.take(3)]
        };
        out.extend_from_slice(vowel.as_bytes());
        out.extend_from_slice(CODAS[bits.take(3)].as_bytes());
    }
    // Every onset is an ASCII letter, so the first byte is one too.
    out[start] = out[start].to_ascii_uppercase();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(kind: NameKind, i: u64) -> String {
        let mut v = Vec::new();
        push_name(&mut v, 42, kind, i);
        String::from_utf8(v).expect("names are UTF-8")
    }

    #[test]
    fn names_are_deterministic_clean_and_sometimes_non_ascii() {
        let mut non_ascii = 0;
        for i in 0..10_000 {
            let n = name(NameKind::Track, i);
            assert_eq!(n, name(NameKind::Track, i));
            assert!(!n.is_empty() && !n.contains(['\t', '\n', '\r']));
            assert!(n.chars().next().is_some_and(|c| c.is_ascii_uppercase()));
            non_ascii += usize::from(!n.is_ascii());
        }
        assert!((100..2_000).contains(&non_ascii), "{non_ascii}");
        assert_ne!(name(NameKind::Artist, 1), name(NameKind::Album, 1));
    }
}
