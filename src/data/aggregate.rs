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
use crate::data::ids::{IdKind, Ids, Interner};
use crate::data::lines::{LineError, Schema, parse_line, trim_end};
use crate::data::listens::ListenSpec;
use crate::data::records::{FieldSpec, LocalIds, Parsed, ValueMode};
use crate::error::{Error, Result};

/// Which parser reads the lines.
#[derive(Debug, Clone, PartialEq)]
pub enum LineFormat {
    /// All-integer delimited records (LFM-1b, LFM-2b, HetRec, integer `triples`): the fast path.
    Numeric(Schema),
    /// Delimited records with chosen columns, string or integer ids and decimal values.
    Fields(FieldSpec),
    /// ListenBrainz JSON listens (string ids, one listen per line).
    Listens(ListenSpec),
}

impl LineFormat {
    /// Whether records carry string ids (local ids, merged by the [`Collector`]).
    pub fn string_ids(&self) -> bool {
        match self {
            LineFormat::Numeric(_) => false,
            LineFormat::Fields(f) => f.ids == IdKind::Str,
            LineFormat::Listens(_) => true,
        }
    }

    /// Whether each line is one listening event (no value column).
    pub fn events(&self) -> bool {
        match self {
            LineFormat::Numeric(s) => s.count.is_none(),
            LineFormat::Fields(f) => f.value.is_none(),
            LineFormat::Listens(_) => true,
        }
    }
}

/// How a chunk is parsed.
#[derive(Debug, Clone)]
pub struct ChunkOpts {
    pub format: LineFormat,
    /// Keep first-listen timestamps and each user's latest timestamps (for the time split).
    pub keep_time: bool,
    /// How many of each user's latest timestamps to keep.
    pub tail_n: usize,
    /// Count and skip bad lines instead of stopping at the first.
    pub skip_bad: bool,
    /// What values mean and how a pair's lines combine.
    pub value: ValueMode,
    /// Lines whose value is below this are counted and dropped (`--min-value`).
    pub min_value: Option<f32>,
}

impl ChunkOpts {
    /// Plain play counts through `schema`: no value options.
    pub fn numeric(schema: Schema, keep_time: bool, tail_n: usize, skip_bad: bool) -> Self {
        Self {
            format: LineFormat::Numeric(schema),
            keep_time,
            tail_n,
            skip_bad,
            value: ValueMode::Count,
            min_value: None,
        }
    }
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
    /// Records whose value was below `--min-value` (dropped).
    pub below_min_lines: u64,
    /// Listens whose user came from their file's path.
    pub user_from_path: u64,
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
        self.below_min_lines += other.below_min_lines;
        self.user_from_path += other.user_from_path;
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

/// Per-thread scratch for one run's keys: `(item << 32 | low)` with `low` the timestamp (events)
/// or the value (counts); with values *and* timestamps, `keyed` holds `(item << 32 | ts, value)`.
#[derive(Default)]
struct Scratch {
    keys: Vec<u64>,
    keyed: Vec<(u64, u32)>,
    ts: Vec<u32>,
}

/// One parsed block: its pairs (string ids as block-local ids), line counts, and, for string
/// ids, the block's dictionary.
pub struct Chunk {
    pub pairs: Pairs,
    pub stats: LineStats,
    pub local: Option<LocalIds>,
}

/// How the key of a record is built and its run collapsed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum KeyMode {
    /// One event per line: key low bits = timestamp, each line counts 1.
    Events,
    /// A value per line, no timestamps kept: key low bits = value.
    Values,
    /// A value per line and timestamps kept: `keyed`.
    Timed,
}

/// Parses and aggregates one block. `skip_first` skips line 1 (a header).
pub fn parse_chunk(block: &[u8], opts: &ChunkOpts, skip_first: bool) -> Chunk {
    match &opts.format {
        LineFormat::Numeric(schema) => {
            let (pairs, stats) = run_chunk(block, opts, skip_first, |line| {
                parse_line(line, schema).map(|r| {
                    let value = r.count as f32;
                    (Parsed { rec: r, value }, false)
                })
            });
            Chunk {
                pairs,
                stats,
                local: None,
            }
        }
        LineFormat::Fields(spec) => {
            let mut local = LocalIds::for_block(block.len());
            let mut fields = Vec::with_capacity(spec.n_fields + 1);
            let (pairs, stats) = run_chunk(block, opts, skip_first, |line| {
                spec.parse(line, &mut fields, &mut local)
                    .map(|p| (p, false))
            });
            Chunk {
                pairs,
                stats,
                local: (spec.ids == IdKind::Str).then_some(local),
            }
        }
        LineFormat::Listens(spec) => {
            let mut local = LocalIds::for_block(block.len());
            let (pairs, stats) =
                run_chunk(block, opts, skip_first, |line| spec.parse(line, &mut local));
            Chunk {
                pairs,
                stats,
                local: Some(local),
            }
        }
    }
}

/// The loop of [`parse_chunk`] over any record parser (`parse` returns the record and whether
/// its user came from the file's path).
fn run_chunk<'a>(
    block: &'a [u8],
    opts: &ChunkOpts,
    skip_first: bool,
    mut parse: impl FnMut(&'a [u8]) -> Result<(Parsed, bool), LineError>,
) -> (Pairs, LineStats) {
    let mut out = Pairs::default();
    let mut st = LineStats::default();
    let mut scratch = Scratch::default();
    let mut cur: Option<u64> = None;
    let mode = match (opts.format.events(), opts.keep_time) {
        (true, _) => KeyMode::Events,
        (false, false) => KeyMode::Values,
        (false, true) => KeyMode::Timed,
    };
    let numeric_counts =
        matches!(opts.format, LineFormat::Numeric(_)) && opts.value != ValueMode::Count;
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
        match parse(line) {
            Ok((Parsed { mut rec, value }, from_path)) => {
                st.records += 1;
                st.user_from_path += u64::from(from_path);
                if value == 0.0 || rec.count == 0 {
                    st.zero_count_lines += 1;
                    continue;
                }
                if opts.min_value.is_some_and(|m| value < m) {
                    st.below_min_lines += 1;
                    continue;
                }
                if numeric_counts {
                    // The integer fast path read a count; other value modes re-encode it.
                    rec.count = match opts.value {
                        ValueMode::Rating => value.to_bits(),
                        _ => 1,
                    };
                }
                st.events += u64::from(if opts.value == ValueMode::Count {
                    rec.count
                } else {
                    1
                });
                if cur != Some(rec.user) {
                    if let Some(u) = cur {
                        flush(u, &mut scratch, &mut out, opts, mode);
                    }
                    cur = Some(rec.user);
                }
                match mode {
                    KeyMode::Events => scratch
                        .keys
                        .push((u64::from(rec.item) << 32) | u64::from(rec.ts)),
                    KeyMode::Values => scratch
                        .keys
                        .push((u64::from(rec.item) << 32) | u64::from(rec.count)),
                    KeyMode::Timed => scratch
                        .keyed
                        .push(((u64::from(rec.item) << 32) | u64::from(rec.ts), rec.count)),
                }
            }
            Err(e) => {
                if opts.skip_bad && e.skippable() {
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
        flush(u, &mut scratch, &mut out, opts, mode);
    }
    (out, st)
}

/// Collapses the current run's keys into pairs: plays add up (or, for ratings, the largest
/// wins), the first listen is the earliest.
fn flush(user: u64, s: &mut Scratch, out: &mut Pairs, opts: &ChunkOpts, mode: KeyMode) {
    let start = out.items.len();
    let by_max = opts.value.merges_by_max();
    let binary = opts.value == ValueMode::Binary;
    match mode {
        KeyMode::Events | KeyMode::Values => {
            s.keys.sort_unstable();
            let mut i = 0;
            while i < s.keys.len() {
                let item = (s.keys[i] >> 32) as u32;
                let first_low = s.keys[i] as u32;
                let mut j = i;
                let mut sum: u64 = 0;
                while j < s.keys.len() && (s.keys[j] >> 32) as u32 == item {
                    sum = match mode {
                        KeyMode::Events => sum + 1,
                        _ if by_max => sum.max(u64::from(s.keys[j] as u32)),
                        _ => sum + u64::from(s.keys[j] as u32),
                    };
                    j += 1;
                }
                out.items.push(item);
                out.counts.push(if binary {
                    1
                } else {
                    u32::try_from(sum).unwrap_or(u32::MAX)
                });
                if opts.keep_time {
                    out.first_ts.push(first_low);
                }
                i = j;
            }
        }
        KeyMode::Timed => {
            s.keyed.sort_unstable();
            let mut i = 0;
            while i < s.keyed.len() {
                let item = (s.keyed[i].0 >> 32) as u32;
                let first_ts = s.keyed[i].0 as u32;
                let mut j = i;
                let mut acc: u64 = 0;
                while j < s.keyed.len() && (s.keyed[j].0 >> 32) as u32 == item {
                    let v = u64::from(s.keyed[j].1);
                    acc = if by_max { acc.max(v) } else { acc + v };
                    j += 1;
                }
                out.items.push(item);
                out.counts.push(if binary {
                    1
                } else {
                    u32::try_from(acc).unwrap_or(u32::MAX)
                });
                out.first_ts.push(first_ts);
                i = j;
            }
        }
    }
    let tail_start = out.tails.len();
    if opts.keep_time {
        s.ts.clear();
        match mode {
            KeyMode::Timed => s.ts.extend(s.keyed.iter().map(|&(k, _)| k as u32)),
            _ => s.ts.extend(s.keys.iter().map(|&k| k as u32)),
        }
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
    s.keyed.clear();
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

/// The dictionary of string ids seen so far, numbered in first-seen (file) order, with each
/// item's name and artist (ListenBrainz).
#[derive(Default)]
struct GlobalIds {
    users: Interner,
    items: Interner,
    names: Vec<(String, String)>,
    has_names: bool,
}

/// Everything the collector gathered.
pub struct Collected {
    /// Users ascending (by id, or byte-wise for string ids), one run each, items ascending
    /// within a run; for string ids, users and items are dense ranks into `ids`.
    pub pairs: Pairs,
    pub stats: LineStats,
    /// Whether the input was not grouped by user in id order and had to be regrouped.
    pub regrouped: bool,
    /// For string ids: the user and item ids (ascending) that the ranks index.
    pub ids: Option<(Ids, Ids)>,
    /// For ListenBrainz: each item's (track name, artist name), by item rank.
    pub names: Option<Vec<(String, String)>>,
}

/// Gathers chunk outputs in file order into one set of pairs.
#[derive(Default)]
pub struct Collector {
    pub pairs: Pairs,
    pub stats: LineStats,
    keep_time: bool,
    tail_n: usize,
    by_max: bool,
    dict: Option<GlobalIds>,
}

impl Collector {
    pub fn new(opts: &ChunkOpts) -> Self {
        Self {
            keep_time: opts.keep_time,
            tail_n: opts.tail_n,
            by_max: opts.value.merges_by_max(),
            dict: opts.format.string_ids().then(|| GlobalIds {
                has_names: matches!(opts.format, LineFormat::Listens(_)),
                ..GlobalIds::default()
            }),
            ..Self::default()
        }
    }

    /// Appends the next chunk (in file order); `line_base` is the number of lines before it in
    /// its file. A chunk's local string ids are renumbered into the global dictionary first.
    pub fn append(&mut self, chunk: Chunk, line_base: u64) -> Result<()> {
        let Chunk {
            mut pairs,
            stats,
            local,
        } = chunk;
        if let (Some(dict), Some(local)) = (self.dict.as_mut(), local) {
            let too_many = || {
                Error::Config(
                    "more than 4,294,967,294 distinct user or item ids; split the input".into(),
                )
            };
            let mut umap = Vec::with_capacity(local.users.len());
            for i in 0..local.users.len() as u32 {
                let id = dict
                    .users
                    .intern_hashed(local.users.get(i), local.users.hash_of(i))
                    .ok_or_else(too_many)?;
                umap.push(u64::from(id));
            }
            let mut imap = Vec::with_capacity(local.items.len());
            let mut names = local.names.into_iter();
            for i in 0..local.items.len() as u32 {
                let before = dict.items.len();
                let id = dict
                    .items
                    .intern_hashed(local.items.get(i), local.items.hash_of(i))
                    .ok_or_else(too_many)?;
                let name = names.next().unwrap_or_default();
                if dict.has_names && dict.items.len() > before {
                    dict.names.push(name);
                }
                imap.push(id);
            }
            for r in &mut pairs.runs {
                r.user = umap.get(r.user as usize).copied().unwrap_or(0);
            }
            pairs
                .items
                .par_iter_mut()
                .for_each(|i| *i = imap.get(*i as usize).copied().unwrap_or(0));
        }
        self.append_pairs(pairs, stats, line_base);
        Ok(())
    }

    fn append_pairs(&mut self, chunk: Pairs, stats: LineStats, line_base: u64) {
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
            let merged = merge_slices(&mut parts, self.keep_time, self.tail_n, self.by_max);
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

    /// The line counts of everything appended so far; the caller takes the bad-line examples
    /// out at the end of each file (their numbers are that file's).
    pub fn stats_mut(&mut self) -> &mut LineStats {
        &mut self.stats
    }

    /// Finishes: users in ascending id order, one run each, items ascending within each run.
    /// For string ids, users and items become their ranks in byte order of the ids.
    pub fn finish(self) -> Collected {
        let Self {
            mut pairs,
            stats,
            keep_time,
            tail_n,
            by_max,
            dict,
        } = self;
        let mut ids = None;
        let mut names = None;
        if let Some(dict) = dict {
            let rank = |t: &Interner| {
                let order = t.sorted_order();
                let mut rank = vec![0u32; order.len()];
                for (r, &i) in order.iter().enumerate() {
                    rank[i as usize] = r as u32;
                }
                (order, rank)
            };
            let (uorder, urank) = rank(&dict.users);
            let (iorder, irank) = rank(&dict.items);
            for r in &mut pairs.runs {
                r.user = u64::from(urank[r.user as usize]);
            }
            pairs
                .items
                .par_iter_mut()
                .for_each(|i| *i = irank[*i as usize]);
            ids = Some((dict.users.to_ids(&uorder), dict.items.to_ids(&iorder)));
            if dict.has_names {
                let mut by_id = dict.names;
                by_id.resize(dict.items.len(), Default::default());
                names = Some(
                    iorder
                        .iter()
                        .map(|&i| std::mem::take(&mut by_id[i as usize]))
                        .collect(),
                );
            }
        }
        let sorted = pairs.runs.windows(2).all(|w| w[0].user < w[1].user);
        let string_ids = ids.is_some();
        let (pairs, regrouped) = if sorted {
            (pairs, false)
        } else if distinct_users(&pairs) {
            (permute_runs(pairs), true)
        } else {
            (regroup(&pairs, keep_time, tail_n, by_max), true)
        };
        let mut pairs = pairs;
        if string_ids {
            sort_rows(&mut pairs);
        }
        Collected {
            pairs,
            stats,
            regrouped,
            ids,
            names,
        }
    }
}

/// Whether no user has more than one run.
fn distinct_users(p: &Pairs) -> bool {
    let mut users: Vec<u64> = p.runs.iter().map(|r| r.user).collect();
    users.par_sort_unstable();
    users.windows(2).all(|w| w[0] != w[1])
}

/// Puts runs (one per user) in ascending user order, moving one array at a time, so memory
/// peaks at the pairs plus one of their columns rather than twice the pairs.
fn permute_runs(p: Pairs) -> Pairs {
    let Pairs {
        runs,
        items,
        counts,
        first_ts,
        tails,
    } = p;
    let mut order: Vec<usize> = (0..runs.len()).collect();
    order.par_sort_unstable_by_key(|&i| runs[i].user);
    let gather = |v: Vec<u32>, span: &dyn Fn(&Run) -> (usize, usize)| -> Vec<u32> {
        if v.is_empty() {
            return v;
        }
        let mut out = Vec::with_capacity(v.len());
        for &i in &order {
            let (s, n) = span(&runs[i]);
            out.extend_from_slice(&v[s..s + n]);
        }
        out
    };
    let pair_span = |r: &Run| (r.start, r.len);
    let items = gather(items, &pair_span);
    let counts = gather(counts, &pair_span);
    let first_ts = gather(first_ts, &pair_span);
    let tails = gather(tails, &|r: &Run| (r.tail_start, r.tail_len));
    let (mut start, mut tail_start) = (0, 0);
    let runs = order
        .iter()
        .map(|&i| {
            let r = Run {
                start,
                tail_start,
                ..runs[i]
            };
            start += r.len;
            tail_start += r.tail_len;
            r
        })
        .collect();
    Pairs {
        runs,
        items,
        counts,
        first_ts,
        tails,
    }
}

/// Sorts each run's pairs by item (string-id items are renumbered after aggregation).
fn sort_rows(p: &mut Pairs) {
    let keep_time = !p.first_ts.is_empty();
    let mut rows = Vec::with_capacity(p.runs.len());
    let (mut items, mut counts, mut ts): (&mut [u32], &mut [u32], &mut [u32]) =
        (&mut p.items, &mut p.counts, &mut p.first_ts);
    for r in &p.runs {
        let (a, b) = std::mem::take(&mut items).split_at_mut(r.len);
        let (c, d) = std::mem::take(&mut counts).split_at_mut(r.len);
        let (e, f) = if keep_time {
            std::mem::take(&mut ts).split_at_mut(r.len)
        } else {
            (&mut [][..], &mut [][..])
        };
        rows.push((a, c, e));
        (items, counts, ts) = (b, d, f);
    }
    rows.into_par_iter().for_each(|(items, counts, ts)| {
        if items.windows(2).all(|w| w[0] < w[1]) {
            return;
        }
        let mut v: Vec<(u32, u32, u32)> = (0..items.len())
            .map(|k| (items[k], counts[k], ts.get(k).copied().unwrap_or(0)))
            .collect();
        v.sort_unstable();
        for (k, (i, c, t)) in v.into_iter().enumerate() {
            items[k] = i;
            counts[k] = c;
            if let Some(x) = ts.get_mut(k) {
                *x = t;
            }
        }
    });
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
fn merge_slices(
    parts: &mut [PairSlice<'_>],
    keep_time: bool,
    tail_n: usize,
    by_max: bool,
) -> Merged {
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
                *last = if by_max {
                    (*last).max(c)
                } else {
                    last.saturating_add(c)
                };
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
fn regroup(p: &Pairs, keep_time: bool, tail_n: usize, by_max: bool) -> Pairs {
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
        let merged = merge_slices(&mut parts, keep_time, tail_n, by_max);
        out.push_owned(user, merged);
        i = j;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn triples() -> ChunkOpts {
        ChunkOpts::numeric(
            Schema {
                delim: b'\t',
                n_fields: 3,
                user: 0,
                item: 1,
                count: Some(2),
                ts: None,
                names: vec!["user".into(), "item".into(), "count".into()],
            },
            false,
            0,
            false,
        )
    }

    fn events(tail_n: usize) -> ChunkOpts {
        ChunkOpts::numeric(
            Schema {
                delim: b'\t',
                n_fields: 3,
                user: 0,
                item: 1,
                count: None,
                ts: Some(2),
                names: vec!["user".into(), "item".into(), "ts".into()],
            },
            true,
            tail_n,
            false,
        )
    }

    fn chunk(b: &[u8], o: &ChunkOpts, skip_first: bool) -> (Pairs, LineStats) {
        let c = parse_chunk(b, o, skip_first);
        (c.pairs, c.stats)
    }

    fn collect_all(blocks: &[&[u8]], opts: &ChunkOpts) -> Collected {
        let mut c = Collector::new(opts);
        let mut base = 0;
        for b in blocks {
            let ch = parse_chunk(b, opts, false);
            let n = ch.stats.lines;
            c.append(ch, base).unwrap();
            base += n;
        }
        c.finish()
    }

    fn collect(blocks: &[&[u8]], opts: &ChunkOpts) -> (Pairs, LineStats, bool) {
        let c = collect_all(blocks, opts);
        (c.pairs, c.stats, c.regrouped)
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
        let (p, st) = chunk(b"u\ti\tc\n1\t2\t0\n\n1\tx\t3\n1\t2\t3\n", &o, true);
        assert_eq!(st.lines, 5);
        assert_eq!(st.zero_count_lines, 1);
        assert_eq!(st.blank_lines, 1);
        assert_eq!(st.bad_lines, 1);
        assert_eq!(st.bad_examples[0].0, 4);
        assert_eq!(rows(&p), vec![(1, vec![(2, 3)])]);
        let (_, st) = chunk(b"1\t2\t3\n1\tx\t3\n1\t2\t3\n", &triples(), false);
        assert_eq!(st.first_error.map(|(l, _)| l), Some(2));
    }

    fn strings(spec_mode: ValueMode, keep_time: bool) -> ChunkOpts {
        use crate::data::records::Delim;
        let spec = FieldSpec {
            delim: Delim::Byte(b'\t'),
            n_fields: 4,
            user: 0,
            item: 1,
            value: Some(2),
            time: Some(3),
            names: ["user", "item", "value", "ts"].map(String::from).to_vec(),
            ids: IdKind::Str,
            mode: spec_mode,
        };
        ChunkOpts {
            format: LineFormat::Fields(spec),
            keep_time,
            tail_n: 2,
            skip_bad: false,
            value: spec_mode,
            min_value: None,
        }
    }

    #[test]
    fn string_ids_are_ranked_byte_wise_across_blocks() {
        // "zed" is seen first but sorts last; "bob" spans two blocks.
        let o = strings(ValueMode::Count, false);
        let c = collect_all(
            &[
                b"zed\tSOB\t2\t1\nbob\tSOA\t1\t1\n",
                b"bob\tSOB\t3\t1\nbob\tSOA\t4\t1\n",
            ],
            &o,
        );
        let (users, items) = c.ids.unwrap();
        assert_eq!(users, Ids::from_strs(["bob", "zed"]));
        assert_eq!(items, Ids::from_strs(["SOA", "SOB"]));
        assert!(c.regrouped);
        assert_eq!(
            rows(&c.pairs),
            vec![(0, vec![(0, 5), (1, 3)]), (1, vec![(1, 2)])]
        );
    }

    #[test]
    fn ratings_keep_the_highest_and_binary_is_one() {
        let o = strings(ValueMode::Rating, true);
        let c = collect_all(&[b"u\ta\t3.5\t10\nu\ta\t4.5\t20\nu\tb\t2\t5\n"], &o);
        let p = &c.pairs;
        let vals: Vec<f32> = p.counts.iter().map(|&v| f32::from_bits(v)).collect();
        assert_eq!(vals, vec![4.5, 2.0]);
        assert_eq!(p.first_ts, vec![10, 5]);
        let mut b = strings(ValueMode::Binary, false);
        b.min_value = Some(3.0);
        let c = collect_all(&[b"u\ta\t3.5\t10\nu\ta\t4.5\t20\nu\tb\t2\t5\n"], &b);
        assert_eq!(c.pairs.counts, vec![1]);
        assert_eq!(c.stats.below_min_lines, 1);
    }
}
