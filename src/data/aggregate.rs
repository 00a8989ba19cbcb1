//! Turning parsed lines into per-user, per-track play counts.
//!
//! Each block is parsed and aggregated independently (in parallel): consecutive lines of one user
//! form a *run*, whose (track, timestamp) keys are sorted and collapsed into (track, plays,
//! first-listen) triples. Runs are then appended in file order; a user cut by a block boundary is
//! merged with its other half. Inputs grouped by user in ascending order (LFM-1b, HetRec, LFM-2b)
//! never need more than that, so memory stays at the size of the aggregated output. Inputs in any
//! other order are regrouped at the end, which costs one extra copy of the pairs.

use rayon::prelude::*;

use crate::data::blocks::{MAX_LINE_BYTES, lines};
use crate::data::lines::{LineError, Schema, parse_line, trim_end};

/// How a chunk is parsed.
#[derive(Debug, Clone)]
pub struct ChunkOpts {
    pub schema: Schema,
    /// Keep first-listen timestamps and each user's latest timestamps (for the time split).
    pub keep_time: bool,
    /// How many of each user's latest timestamps to keep.
    pub tail_n: usize,
    /// Count and skip bad lines instead of stopping at the first.
    pub skip_bad: bool,
}

/// Lines are reported with at most this many examples when skipped.
pub const MAX_BAD_EXAMPLES: usize = 20;

/// One user's contiguous block of pairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub user: u64,
    pub start: usize,
    pub len: usize,
    pub tail_start: usize,
    pub tail_len: usize,
}

/// Aggregated pairs grouped in user runs (struct of arrays; `first_ts`/`tails` empty unless
/// timestamps are kept).
#[derive(Debug, Default, Clone)]
pub struct Pairs {
    pub runs: Vec<Run>,
    pub items: Vec<u32>,
    pub counts: Vec<u32>,
    pub first_ts: Vec<u32>,
    /// Per run, its latest timestamps in descending order.
    pub tails: Vec<u32>,
}

/// Counters for one chunk (or, summed, for a whole file).
#[derive(Debug, Default, Clone)]
pub struct LineStats {
    pub lines: u64,
    pub records: u64,
    pub events: u64,
    pub blank_lines: u64,
    pub zero_count_lines: u64,
    pub bad_lines: u64,
    /// (line number, reason); local to the chunk until the collector rebases it.
    pub bad_examples: Vec<(u64, String)>,
    /// The first bad line when not skipping.
    pub first_error: Option<(u64, LineError)>,
}

impl LineStats {
    fn absorb(&mut self, other: LineStats, line_base: u64) {
        self.lines += other.lines;
        self.records += other.records;
        self.events += other.events;
        self.blank_lines += other.blank_lines;
        self.zero_count_lines += other.zero_count_lines;
        self.bad_lines += other.bad_lines;
        for (l, r) in other.bad_examples {
            if self.bad_examples.len() < MAX_BAD_EXAMPLES {
                self.bad_examples.push((l + line_base, r));
            }
        }
        if self.first_error.is_none() {
            self.first_error = other.first_error.map(|(l, e)| (l + line_base, e));
        }
    }
}

/// Per-thread scratch for one run's keys.
#[derive(Default)]
struct Scratch {
    keys: Vec<u64>,
    ts: Vec<u32>,
}

/// Parses and aggregates one block. `skip_first` skips line 1 (a header).
pub fn parse_chunk(block: &[u8], opts: &ChunkOpts, skip_first: bool) -> (Pairs, LineStats) {
    let mut out = Pairs::default();
    let mut st = LineStats::default();
    let mut scratch = Scratch::default();
    let mut cur: Option<u64> = None;
    let events_mode = opts.schema.count.is_none();
    for (ln, line) in lines(block) {
        st.lines = ln;
        if ln == 1 && skip_first {
            continue;
        }
        if line.len() > MAX_LINE_BYTES {
            st.first_error = Some((ln, LineError::TooLong));
            break;
        }
        if trim_end(line).is_empty() {
            st.blank_lines += 1;
            continue;
        }
        match parse_line(line, &opts.schema) {
            Ok(r) => {
                st.records += 1;
                if r.count == 0 {
                    st.zero_count_lines += 1;
                    continue;
                }
                st.events += u64::from(r.count);
                if cur != Some(r.user) {
                    if let Some(u) = cur {
                        flush(u, &mut scratch, &mut out, opts, events_mode);
                    }
                    cur = Some(r.user);
                }
                let low = if events_mode { r.ts } else { r.count };
                scratch
                    .keys
                    .push((u64::from(r.item) << 32) | u64::from(low));
            }
            Err(e) => {
                if opts.skip_bad {
                    st.bad_lines += 1;
                    if st.bad_examples.len() < MAX_BAD_EXAMPLES {
                        st.bad_examples.push((ln, e.to_string()));
                    }
                } else {
                    st.first_error = Some((ln, e));
                    break;
                }
            }
        }
    }
    if let Some(u) = cur {
        flush(u, &mut scratch, &mut out, opts, events_mode);
    }
    (out, st)
}

/// Collapses the current run's keys into pairs.
fn flush(user: u64, s: &mut Scratch, out: &mut Pairs, opts: &ChunkOpts, events_mode: bool) {
    s.keys.sort_unstable();
    let start = out.items.len();
    let mut i = 0;
    while i < s.keys.len() {
        let item = (s.keys[i] >> 32) as u32;
        let first_low = s.keys[i] as u32;
        let mut j = i;
        let mut sum: u64 = 0;
        while j < s.keys.len() && (s.keys[j] >> 32) as u32 == item {
            sum += if events_mode {
                1
            } else {
                u64::from(s.keys[j] as u32)
            };
            j += 1;
        }
        out.items.push(item);
        out.counts.push(u32::try_from(sum).unwrap_or(u32::MAX));
        if opts.keep_time {
            out.first_ts.push(first_low);
        }
        i = j;
    }
    let tail_start = out.tails.len();
    if opts.keep_time {
        s.ts.clear();
        s.ts.extend(s.keys.iter().map(|&k| k as u32));
        push_tail(&mut s.ts, opts.tail_n, &mut out.tails);
    }
    out.runs.push(Run {
        user,
        start,
        len: out.items.len() - start,
        tail_start,
        tail_len: out.tails.len() - tail_start,
    });
    s.keys.clear();
}

/// Appends the `n` largest of `ts` in descending order.
fn push_tail(ts: &mut [u32], n: usize, tails: &mut Vec<u32>) {
    let n = n.min(ts.len());
    if n == 0 {
        return;
    }
    if n < ts.len() {
        ts.select_nth_unstable_by(n - 1, |a, b| b.cmp(a));
    }
    let top = &mut ts[..n];
    top.sort_unstable_by(|a, b| b.cmp(a));
    tails.extend_from_slice(top);
}

/// Gathers chunk outputs in file order into one set of pairs.
#[derive(Debug, Default)]
pub struct Collector {
    pub pairs: Pairs,
    pub stats: LineStats,
    keep_time: bool,
    tail_n: usize,
}

impl Collector {
    pub fn new(opts: &ChunkOpts) -> Self {
        Self {
            keep_time: opts.keep_time,
            tail_n: opts.tail_n,
            ..Self::default()
        }
    }

    /// Appends the next chunk (in file order); `line_base` is the number of lines before it.
    pub fn append(&mut self, chunk: Pairs, stats: LineStats, line_base: u64) {
        self.stats.absorb(stats, line_base);
        let mut runs = chunk.runs.iter();
        let p = &mut self.pairs;
        if let (Some(last), Some(first)) = (p.runs.last().copied(), chunk.runs.first())
            && last.user == first.user
        {
            runs.next();
            // The user continues across the block boundary: merge the two halves.
            let mut parts = vec![
                p.slice(&last),
                PairSlice {
                    items: &chunk.items[first.start..first.start + first.len],
                    counts: &chunk.counts[first.start..first.start + first.len],
                    first_ts: if self.keep_time {
                        &chunk.first_ts[first.start..first.start + first.len]
                    } else {
                        &[]
                    },
                    tails: &chunk.tails[first.tail_start..first.tail_start + first.tail_len],
                },
            ];
            let merged = merge_slices(&mut parts, self.keep_time, self.tail_n);
            p.runs.pop();
            p.items.truncate(last.start);
            p.counts.truncate(last.start);
            p.first_ts
                .truncate(if self.keep_time { last.start } else { 0 });
            p.tails.truncate(last.tail_start);
            p.push_owned(last.user, merged);
        }
        let base = p.items.len();
        let tail_base = p.tails.len();
        let skip = chunk.runs.len() - runs.len();
        let (offset, tail_offset) = match chunk.runs.get(skip) {
            Some(r) => (r.start, r.tail_start),
            None => return,
        };
        p.items.extend_from_slice(&chunk.items[offset..]);
        p.counts.extend_from_slice(&chunk.counts[offset..]);
        if self.keep_time {
            p.first_ts.extend_from_slice(&chunk.first_ts[offset..]);
        }
        p.tails.extend_from_slice(&chunk.tails[tail_offset..]);
        p.runs.extend(runs.map(|r| Run {
            start: r.start - offset + base,
            tail_start: r.tail_start - tail_offset + tail_base,
            ..*r
        }));
    }

    /// Finishes: users in ascending id order, one run each. Returns the pairs and whether the
    /// input had to be regrouped (was not sorted by user).
    pub fn finish(self) -> (Pairs, LineStats, bool) {
        let sorted = self.pairs.runs.windows(2).all(|w| w[0].user < w[1].user);
        if sorted {
            return (self.pairs, self.stats, false);
        }
        let regrouped = regroup(&self.pairs, self.keep_time, self.tail_n);
        (regrouped, self.stats, true)
    }
}

/// Borrowed view of one run.
struct PairSlice<'a> {
    items: &'a [u32],
    counts: &'a [u32],
    first_ts: &'a [u32],
    tails: &'a [u32],
}

/// An owned, aggregated run.
struct Merged {
    items: Vec<u32>,
    counts: Vec<u32>,
    first_ts: Vec<u32>,
    tails: Vec<u32>,
}

impl Pairs {
    fn slice(&self, r: &Run) -> PairSlice<'_> {
        let range = r.start..r.start + r.len;
        PairSlice {
            items: &self.items[range.clone()],
            counts: &self.counts[range.clone()],
            first_ts: if self.first_ts.is_empty() {
                &[]
            } else {
                &self.first_ts[range]
            },
            tails: &self.tails[r.tail_start..r.tail_start + r.tail_len],
        }
    }

    fn push_owned(&mut self, user: u64, m: Merged) {
        let start = self.items.len();
        let tail_start = self.tails.len();
        self.items.extend_from_slice(&m.items);
        self.counts.extend_from_slice(&m.counts);
        self.first_ts.extend_from_slice(&m.first_ts);
        self.tails.extend_from_slice(&m.tails);
        self.runs.push(Run {
            user,
            start,
            len: m.items.len(),
            tail_start,
            tail_len: m.tails.len(),
        });
    }

    /// Total number of (user, item) pairs.
    pub fn nnz(&self) -> usize {
        self.items.len()
    }
}

/// Merges several runs of the same user: plays add up, the first listen is the earliest.
fn merge_slices(parts: &mut [PairSlice<'_>], keep_time: bool, tail_n: usize) -> Merged {
    let total: usize = parts.iter().map(|p| p.items.len()).sum();
    let mut keyed: Vec<(u32, u32, u32)> = Vec::with_capacity(total);
    for p in parts.iter() {
        for i in 0..p.items.len() {
            let ts = if keep_time { p.first_ts[i] } else { 0 };
            keyed.push((p.items[i], ts, p.counts[i]));
        }
    }
    keyed.sort_unstable();
    let mut m = Merged {
        items: Vec::with_capacity(total),
        counts: Vec::with_capacity(total),
        first_ts: Vec::new(),
        tails: Vec::new(),
    };
    for (item, ts, c) in keyed {
        if m.items.last() == Some(&item) {
            if let Some(last) = m.counts.last_mut() {
                *last = last.saturating_add(c);
            }
        } else {
            m.items.push(item);
            m.counts.push(c);
            if keep_time {
                m.first_ts.push(ts);
            }
        }
    }
    if keep_time {
        let mut ts: Vec<u32> = parts.iter().flat_map(|p| p.tails.iter().copied()).collect();
        push_tail(&mut ts, tail_n, &mut m.tails);
    }
    m
}

/// Rebuilds pairs so each user has one run, users ascending (for inputs not sorted by user).
fn regroup(p: &Pairs, keep_time: bool, tail_n: usize) -> Pairs {
    let mut order: Vec<usize> = (0..p.runs.len()).collect();
    order.par_sort_by_key(|&i| (p.runs[i].user, i));
    let mut out = Pairs::default();
    let mut i = 0;
    while i < order.len() {
        let user = p.runs[order[i]].user;
        let mut j = i;
        while j < order.len() && p.runs[order[j]].user == user {
            j += 1;
        }
        let mut parts: Vec<PairSlice<'_>> =
            order[i..j].iter().map(|&k| p.slice(&p.runs[k])).collect();
        let merged = merge_slices(&mut parts, keep_time, tail_n);
        out.push_owned(user, merged);
        i = j;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn triples() -> ChunkOpts {
        ChunkOpts {
            schema: Schema {
                delim: b'\t',
                n_fields: 3,
                user: 0,
                item: 1,
                count: Some(2),
                ts: None,
                names: vec!["user".into(), "item".into(), "count".into()],
            },
            keep_time: false,
            tail_n: 0,
            skip_bad: false,
        }
    }

    fn events(tail_n: usize) -> ChunkOpts {
        ChunkOpts {
            schema: Schema {
                delim: b'\t',
                n_fields: 3,
                user: 0,
                item: 1,
                count: None,
                ts: Some(2),
                names: vec!["user".into(), "item".into(), "ts".into()],
            },
            keep_time: true,
            tail_n,
            skip_bad: false,
        }
    }

    fn collect(blocks: &[&[u8]], opts: &ChunkOpts) -> (Pairs, LineStats, bool) {
        let mut c = Collector::new(opts);
        let mut base = 0;
        for b in blocks {
            let (p, s) = parse_chunk(b, opts, false);
            let n = s.lines;
            c.append(p, s, base);
            base += n;
        }
        c.finish()
    }

    fn rows(p: &Pairs) -> Vec<(u64, Vec<(u32, u32)>)> {
        p.runs
            .iter()
            .map(|r| {
                (
                    r.user,
                    (r.start..r.start + r.len)
                        .map(|i| (p.items[i], p.counts[i]))
                        .collect(),
                )
            })
            .collect()
    }

    #[test]
    fn counts_add_up_per_user_and_item() {
        let (p, st, regrouped) = collect(&[b"1\t5\t2\n1\t3\t1\n1\t5\t4\n2\t3\t7\n"], &triples());
        assert!(!regrouped);
        assert_eq!(st.events, 14);
        assert_eq!(rows(&p), vec![(1, vec![(3, 1), (5, 6)]), (2, vec![(3, 7)])]);
    }

    #[test]
    fn users_split_across_blocks_are_merged() {
        let (p, st, regrouped) = collect(
            &[
                b"1\t5\t2\n2\t3\t1\n",
                b"2\t3\t4\n2\t9\t1\n",
                b"2\t1\t1\n3\t1\t1\n",
            ],
            &triples(),
        );
        assert!(!regrouped);
        assert_eq!(st.lines, 6);
        assert_eq!(
            rows(&p),
            vec![
                (1, vec![(5, 2)]),
                (2, vec![(1, 1), (3, 5), (9, 1)]),
                (3, vec![(1, 1)])
            ]
        );
    }

    #[test]
    fn unsorted_input_is_regrouped_in_user_order() {
        let (p, st, regrouped) =
            collect(&[b"3\t1\t1\n1\t2\t1\n", b"3\t1\t2\n1\t1\t5\n"], &triples());
        assert!(regrouped);
        assert_eq!(st.events, 9);
        assert_eq!(rows(&p), vec![(1, vec![(1, 5), (2, 1)]), (3, vec![(1, 3)])]);
    }

    #[test]
    fn events_keep_first_listen_and_latest_timestamps() {
        let (p, _, _) = collect(
            &[
                b"1\t7\t100\n1\t8\t50\n1\t7\t30\n",
                b"1\t8\t400\n1\t9\t200\n",
            ],
            &events(2),
        );
        assert_eq!(rows(&p), vec![(1, vec![(7, 2), (8, 2), (9, 1)])]);
        assert_eq!(p.first_ts, vec![30, 50, 200]);
        let r = p.runs[0];
        assert_eq!(
            &p.tails[r.tail_start..r.tail_start + r.tail_len],
            &[400, 200]
        );
    }

    #[test]
    fn zero_counts_blank_lines_and_bad_lines_are_counted() {
        let mut o = triples();
        o.skip_bad = true;
        let (p, st) = parse_chunk(b"u\ti\tc\n1\t2\t0\n\n1\tx\t3\n1\t2\t3\n", &o, true);
        assert_eq!(st.lines, 5);
        assert_eq!(st.zero_count_lines, 1);
        assert_eq!(st.blank_lines, 1);
        assert_eq!(st.bad_lines, 1);
        assert_eq!(st.bad_examples[0].0, 4);
        assert_eq!(rows(&p), vec![(1, vec![(2, 3)])]);
        let (_, st) = parse_chunk(b"1\t2\t3\n1\tx\t3\n1\t2\t3\n", &triples(), false);
        assert_eq!(st.first_error.map(|(l, _)| l), Some(2));
    }
}
