//! Single-thread throughput of the ingest hot path: line parsing, and parsing plus per-user
//! aggregation, on in-memory blocks shaped like the real inputs.
//!
//! `encore bench ingest` measures the whole of `prep` (I/O, threads, filter, write) on a file;
//! this bench isolates the innermost loops so a change to them can be judged on its own:
//!
//! - `lfm1b_les/parse_line`: [`parse_line`] over every line of an LFM-1b `LFM-1b_LEs.txt` block
//!   (`user\tartist\talbum\ttrack\ttimestamp`, one listen per line);
//! - `lfm1b_les/parse_chunk`: [`parse_chunk`] over the same block, as `prep --split random` runs
//!   it (parse, collapse each user's listens to (track, plays));
//! - `lfm1b_les/parse_chunk_time`: the same, keeping first-listen and latest timestamps as
//!   `prep --split time --last-n 50` does;
//! - `triples/parse_line` and `triples/parse_chunk`: the same for a `user\titem\tcount` block
//!   (LFM-2b listening-counts, HetRec `user_artists.dat`, generic triples).
//!
//! Blocks are 8 MiB (prep's default block size) and generated deterministically, with id
//! magnitudes like LFM-1b's (users to ~50 M, tracks to ~32 M, timestamps around 2005–2014),
//! users grouped in ascending id order with heavy-tailed activity (1,000–20,000 listens each in
//! the LEs block, 20–20,000 items each in the triples block), and about 5.5 listens per distinct
//! (user, track), LFM-1b's mean. Throughput is in bytes of input text.
//!
//! `cargo bench --bench ingest` takes about a minute and ends with a summary of MB/s and the cost
//! of aggregation relative to parsing alone; `cargo test --benches` runs each benchmark once.

use std::hint::black_box;
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, measurement::WallTime};

use encore::data::aggregate::{ChunkOpts, parse_chunk};
use encore::data::blocks::{DEFAULT_BLOCK_BYTES, lines};
use encore::data::formats;
use encore::data::lines::{Schema, parse_line};
use encore::sys::Machine;
use encore::util::mix64;

/// Size of each generated block: one `prep` block.
const BLOCK_BYTES: usize = DEFAULT_BLOCK_BYTES;

/// A deterministic stream of pseudo-random numbers (SplitMix64 over a counter).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(1);
        mix64(self.0)
    }

    /// Uniform in `0..n` (n > 0; the modulo bias is irrelevant here).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A heavy-tailed size in `lo..=hi` (Pareto-like, most values near `lo`).
    fn heavy(&mut self, lo: u64, hi: u64, alpha: f64) -> u64 {
        let x = lo as f64 / (1.0 - self.unit()).powf(1.0 / alpha);
        (x as u64).clamp(lo, hi)
    }
}

/// The original id of the `i`-th user: sparse and ascending, up to ~50 M like LFM-1b's.
fn user_id(i: u64) -> u64 {
    384 + i * 397 + mix64(i) % 397
}

/// A track id up to ~32 M, with its artist and album ids (LFM-1b's ranges).
fn track(r: &mut Rng) -> (u64, u64, u64) {
    let t = 1 + r.below(32_000_000);
    (t / 11 + 1, t / 3 + 1, t)
}

/// An LFM-1b `LEs` block: users in ascending id order, each listen a line, timestamps rising.
fn les_block(bytes: usize) -> (Vec<u8>, u64) {
    let mut r = Rng(0x4c45_7300);
    let mut out = Vec::with_capacity(bytes + (64 << 10));
    let mut n_lines = 0;
    let mut u = 0;
    while out.len() < bytes {
        let user = user_id(u);
        u += 1;
        let events = r.heavy(1_000, 20_000, 1.3);
        // ~5.5 listens per distinct track; favourites get most of the repeats.
        let distinct = (events as f64 / 5.5).ceil() as usize;
        let tracks: Vec<(u64, u64, u64)> = (0..distinct).map(|_| track(&mut r)).collect();
        let mut ts = 1_104_537_600 + r.below(250_000_000);
        for _ in 0..events {
            let k = (r.unit().powi(3) * distinct as f64) as usize;
            let (artist, album, t) = tracks[k.min(distinct - 1)];
            ts += 30 + r.below(600);
            writeln!(out, "{user}\t{artist}\t{album}\t{t}\t{ts}").unwrap();
            n_lines += 1;
        }
    }
    (out, n_lines)
}

/// A `user\titem\tcount` block: users ascending, distinct items per user, heavy-tailed counts.
fn triples_block(bytes: usize) -> (Vec<u8>, u64) {
    let mut r = Rng(0x5452_4900);
    let mut out = Vec::with_capacity(bytes + (64 << 10));
    let mut n_lines = 0;
    let mut u = 0;
    while out.len() < bytes {
        let user = user_id(u);
        u += 1;
        for _ in 0..r.heavy(20, 20_000, 1.1) {
            let (_, _, t) = track(&mut r);
            let plays = r.heavy(1, 100_000, 1.0);
            writeln!(out, "{user}\t{t}\t{plays}").unwrap();
            n_lines += 1;
        }
    }
    (out, n_lines)
}

/// The schema `prep` uses for `LFM-1b_LEs.txt`.
fn les_schema() -> Schema {
    formats::les_schema(b'\t')
}

/// The schema `prep` uses for tab-separated count files.
fn triples_schema() -> Schema {
    formats::count_schema(b'\t', ["user", "item", "count"])
}

fn opts(schema: Schema, tail_n: usize) -> ChunkOpts {
    ChunkOpts::numeric(schema, tail_n > 0, tail_n, false)
}

/// Parses every line; returns a checksum so nothing is optimised away.
fn parse_all(block: &[u8], s: &Schema) -> u64 {
    let mut acc = 0u64;
    for (_, line) in lines(block) {
        let r = parse_line(line, s).expect("generated lines are valid");
        acc = acc.wrapping_add(r.user ^ u64::from(r.item) ^ u64::from(r.count ^ r.ts));
    }
    acc
}

/// Parses and aggregates the block as one `prep` chunk; returns the number of pairs.
fn aggregate(block: &[u8], o: &ChunkOpts) -> usize {
    let c = parse_chunk(block, o, false);
    assert!(c.stats.first_error.is_none());
    c.pairs.nnz()
}

/// Wall time per benchmark, summed over every timed call (warm-up included), for the summary.
static TIMES: Mutex<Vec<(String, u64, Duration)>> = Mutex::new(Vec::new());

/// Benchmarks `f` over `block` and records its time under `group/name`.
fn bench(
    g: &mut BenchmarkGroup<'_, WallTime>,
    group: &str,
    name: &str,
    block: &[u8],
    f: impl Fn(&[u8]) -> u64,
) {
    let id = format!("{group}/{name}");
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                black_box(f(black_box(block)));
            }
            let d = t.elapsed();
            let mut times = TIMES.lock().unwrap();
            times.push((id.clone(), iters * block.len() as u64, d));
            d
        })
    });
}

fn configure<'a>(c: &'a mut Criterion, name: &str, bytes: usize) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Bytes(bytes as u64))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    g
}

fn ingest(c: &mut Criterion) {
    let m = Machine::detect();
    let (les, les_lines) = les_block(BLOCK_BYTES);
    let (tri, tri_lines) = triples_block(BLOCK_BYTES);
    println!(
        "ingest hot path, single thread, on {} ({} cores); blocks: LEs {:.1} MB / {} lines, \
         triples {:.1} MB / {} lines",
        m.cpu,
        m.cores,
        les.len() as f64 / 1e6,
        les_lines,
        tri.len() as f64 / 1e6,
        tri_lines
    );

    let (les_s, les_rand, les_time) = (les_schema(), opts(les_schema(), 0), opts(les_schema(), 50));
    let mut g = configure(c, "lfm1b_les", les.len());
    bench(&mut g, "lfm1b_les", "parse_line", &les, |b| {
        parse_all(b, &les_s)
    });
    bench(&mut g, "lfm1b_les", "parse_chunk", &les, |b| {
        aggregate(b, &les_rand) as u64
    });
    bench(&mut g, "lfm1b_les", "parse_chunk_time", &les, |b| {
        aggregate(b, &les_time) as u64
    });
    g.finish();

    let (tri_s, tri_o) = (triples_schema(), opts(triples_schema(), 0));
    let mut g = configure(c, "triples", tri.len());
    bench(&mut g, "triples", "parse_line", &tri, |b| {
        parse_all(b, &tri_s)
    });
    bench(&mut g, "triples", "parse_chunk", &tri, |b| {
        aggregate(b, &tri_o) as u64
    });
    g.finish();
}

/// Prints MB/s per benchmark and the cost of aggregation relative to parsing alone.
fn summary() {
    let times = TIMES.lock().unwrap();
    let mbps = |id: &str| {
        let (bytes, secs) = times
            .iter()
            .filter(|(n, _, _)| n == id)
            .fold((0u64, 0f64), |(b, s), (_, nb, d)| {
                (b + nb, s + d.as_secs_f64())
            });
        (secs > 0.0).then(|| bytes as f64 / 1e6 / secs)
    };
    println!(
        "\nsummary: MB/s (10^6 bytes of input text per second; criterion's thrpt above is MiB/s),\n\
         one thread, total bytes over total time of every timed call, warm-up included:"
    );
    for (group, chunks) in [
        ("lfm1b_les", &["parse_chunk", "parse_chunk_time"][..]),
        ("triples", &["parse_chunk"][..]),
    ] {
        let Some(base) = mbps(&format!("{group}/parse_line")) else {
            continue;
        };
        println!("  {group:<10} {:<17} {base:>7.0}", "parse_line");
        for name in chunks {
            if let Some(v) = mbps(&format!("{group}/{name}")) {
                println!(
                    "  {group:<10} {name:<17} {v:>7.0}  ({:.2}x the time of parse_line)",
                    base / v
                );
            }
        }
    }
}

criterion_group!(benches, ingest);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    // Under `cargo test --benches` each benchmark runs once: no numbers worth summarising.
    if std::env::args().any(|a| a == "--bench") {
        summary();
    }
}
