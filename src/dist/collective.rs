//! The collective seam: what multi-rank training needs from a communicator, and the reductions
//! built on it.
//!
//! The primitive is an all-gather of byte blocks (every rank contributes one block of any
//! length; every rank receives all of them in rank order) plus a broadcast from rank 0. Sums
//! are all-gathers followed by a local sum in rank order, so every rank gets the same bits and
//! the result does not depend on message timing. That costs W× the bytes of a ring all-reduce,
//! which is irrelevant for what is summed here (Gram parts: k² floats per 16 Ki rows); the bulk
//! traffic, factor rows, is an all-gather in any algorithm.

use crate::error::{Error, Result};

/// A communicator among `world()` ranks. Every rank must make the same sequence of calls.
pub trait Collective: Send {
    /// This process's rank, `0..world()`.
    fn rank(&self) -> usize;
    /// The number of ranks.
    fn world(&self) -> usize;
    /// Every rank's `mine`, in rank order (this rank's own block included).
    fn all_gather_bytes(&mut self, mine: &[u8]) -> Result<Vec<Vec<u8>>>;
    /// Rank 0's `buf` on every rank (other ranks' contents are replaced).
    fn broadcast_bytes(&mut self, buf: &mut Vec<u8>) -> Result<()>;
    /// Tells the other ranks that this one is failing with `message`, so that they stop with
    /// that cause rather than a lost connection. Best effort; never blocks for long.
    fn abort(&mut self, message: &str);
    /// Bytes this rank sent and received so far (for the communication report).
    fn traffic(&self) -> Traffic;
}

/// Bytes moved by one rank.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Traffic {
    pub sent: u64,
    pub received: u64,
}

/// The world of one rank: every collective is a copy.
#[derive(Debug, Default)]
pub struct Single;

impl Collective for Single {
    fn rank(&self) -> usize {
        0
    }

    fn world(&self) -> usize {
        1
    }

    fn all_gather_bytes(&mut self, mine: &[u8]) -> Result<Vec<Vec<u8>>> {
        Ok(vec![mine.to_vec()])
    }

    fn broadcast_bytes(&mut self, _buf: &mut Vec<u8>) -> Result<()> {
        Ok(())
    }

    fn abort(&mut self, _message: &str) {}

    fn traffic(&self) -> Traffic {
        Traffic::default()
    }
}

/// All ranks' `f32` blocks, concatenated in rank order.
pub fn all_gather_f32(c: &mut dyn Collective, mine: &[f32]) -> Result<Vec<f32>> {
    Ok(all_gather_f32_each(c, mine)?.concat())
}

/// Every rank's `f32` block, one list per rank in rank order (blocks may differ in length).
pub fn all_gather_f32_each(c: &mut dyn Collective, mine: &[f32]) -> Result<Vec<Vec<f32>>> {
    let blocks = c.all_gather_bytes(bytemuck::cast_slice(mine))?;
    blocks
        .iter()
        .enumerate()
        .map(|(r, b)| {
            if b.len() % 4 != 0 {
                return Err(Error::Runtime(format!(
                    "rank {r} sent {} bytes, not a whole number of f32 values",
                    b.len()
                )));
            }
            Ok(b.chunks_exact(4)
                .map(bytemuck::pod_read_unaligned::<f32>)
                .collect())
        })
        .collect()
}

/// The element-wise sum over ranks of `mine`, in f64, added in rank order (the same bits on
/// every rank).
pub fn all_reduce_sum_f64(c: &mut dyn Collective, mine: &[f64]) -> Result<Vec<f64>> {
    let blocks = c.all_gather_bytes(bytemuck::cast_slice(mine))?;
    let mut acc = vec![0.0f64; mine.len()];
    for (r, b) in blocks.iter().enumerate() {
        if b.len() != mine.len() * 8 {
            return Err(Error::Runtime(format!(
                "rank {r} sent {} bytes for a sum of {} values",
                b.len(),
                mine.len()
            )));
        }
        for (a, w) in acc.iter_mut().zip(b.chunks_exact(8)) {
            *a += bytemuck::pod_read_unaligned::<f64>(w);
        }
    }
    Ok(acc)
}

/// Fails on every rank unless all ranks pass the same `fingerprint` (the dataset's hash and the
/// training settings): a rank started on other data or flags would otherwise train garbage.
pub fn check_same(c: &mut dyn Collective, what: &str, fingerprint: &str) -> Result<()> {
    let all = c.all_gather_bytes(fingerprint.as_bytes())?;
    for (r, f) in all.iter().enumerate() {
        if f.as_slice() != fingerprint.as_bytes() {
            return Err(Error::Config(format!(
                "rank {r} was started with a different {what} than rank {}: {}",
                c.rank(),
                fingerprint_diff(&String::from_utf8_lossy(f), fingerprint)
            )));
        }
    }
    Ok(())
}

/// A fingerprint from named parts, `name=value; ...`: what every rank must agree on.
pub fn fingerprint<'a>(parts: impl IntoIterator<Item = (&'a str, String)>) -> String {
    parts
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// What differs between two fingerprints, part by part (`iterations: 3 here, 15 on rank 0`),
/// for the message that refuses a rank.
pub fn fingerprint_diff(theirs: &str, ours: &str) -> String {
    let split = |s: &str| -> Vec<(String, String)> {
        s.split("; ")
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (p.to_string(), String::new()),
            })
            .collect()
    };
    let (t, o) = (split(theirs), split(ours));
    let mut out = Vec::new();
    for (k, v) in &t {
        match o.iter().find(|(ok, _)| ok == k) {
            Some((_, ov)) if ov == v => {}
            Some((_, ov)) => out.push(format!(
                "{k} {} vs {}",
                crate::util::quote(v.as_bytes()),
                crate::util::quote(ov.as_bytes())
            )),
            None => out.push(format!("{k} only on that rank")),
        }
    }
    for (k, _) in &o {
        if !t.iter().any(|(tk, _)| tk == k) {
            out.push(format!("{k} missing on that rank"));
        }
    }
    if out.is_empty() {
        "the same parts in another order".into()
    } else {
        out.join(", ")
    }
}
