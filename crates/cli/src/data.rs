//! `synth` and `prep`: flags, and the summary printed after each.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};

use encore::data::dataset::Manifest;
use encore::data::filter::Tally;
use encore::data::formats::{Column, Columns};
use encore::data::prep::{PrepConfig, prep};
use encore::data::split::Split;
use encore::synth::{self, SynthConfig};
use encore::util::human_bytes;

use crate::fmt::thousands;
use crate::values::{DelimiterArg, FilterArg, FormatArg, HeaderArg, IdsArg, ScaleArg, ValueArg};

#[derive(Args, Debug)]
pub struct SynthArgs {
    /// Output directory (LFM-1b_LEs.txt, LFM-1b_tracks.txt, LFM-1b_artists.txt, ...).
    #[arg(long, short)]
    pub out: PathBuf,
    /// Preset size: tiny (1 K users, 0.5 M events), small, medium, lfm1b (120 K users, 1.09 B events).
    #[arg(long, value_enum, default_value = "tiny")]
    pub scale: ScaleArg,
    /// Override the preset's number of users.
    #[arg(long)]
    pub users: Option<u32>,
    /// Override the preset's number of tracks (artists scale with it).
    #[arg(long)]
    pub tracks: Option<u32>,
    /// Override the preset's number of listening events.
    #[arg(long)]
    pub events: Option<u64>,
    /// Random seed: the same seed gives byte-identical files on any number of threads.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Replace the output directory if it exists.
    #[arg(long)]
    pub force: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SplitKind {
    /// A random fraction of each user's tracks (--valid-fraction, --seed).
    Random,
    /// Tracks first played within each user's last N listens (--last-n; needs timestamps).
    Time,
}

#[derive(Args, Debug, Clone)]
pub struct PrepArgs {
    /// An LFM-1b directory (or LFM-1b_LEs.txt), an LFM-2b listening-counts file, a HetRec 2011
    /// Last.fm directory (or user_artists.dat), a MovieLens directory (or ratings.csv,
    /// ratings.dat, u.data), the MSD Taste Profile train_triplets.txt, a ListenBrainz listens
    /// dump or export directory (or one .listens/.jsonl file), or any delimited user, item[,
    /// value] file. `.gz` is fine.
    pub input: PathBuf,
    /// Output dataset directory.
    #[arg(long, short)]
    pub out: PathBuf,
    /// Input format (auto: decided by file and directory names).
    #[arg(long, value_enum, default_value = "auto")]
    pub format: FormatArg,
    /// Field delimiter for `triples` files.
    #[arg(long, value_enum, default_value = "auto")]
    pub delimiter: DelimiterArg,
    /// Whether the first line is a header (auto: a first line that does not parse as data and
    /// contains letters; a string-id file without value or time column needs `yes`).
    #[arg(long, value_enum, default_value = "auto")]
    pub header: HeaderArg,
    /// Whether user and item ids are integers or strings (auto: the format's; for triples,
    /// strings when the first data line's ids are not integers).
    #[arg(long, value_enum, default_value = "auto")]
    pub ids: IdsArg,
    /// The user column of a delimited file: a header name (`userId`) or a position (1 = the
    /// first column). Default: the format's layout (triples: column 1).
    #[arg(long, value_name = "NAME|N")]
    pub user_column: Option<String>,
    /// The item column (name or position; triples default: column 2).
    #[arg(long, value_name = "NAME|N")]
    pub item_column: Option<String>,
    /// The value column (name, position, or `none`: every line is one play; triples
    /// default: column 3).
    #[arg(long, value_name = "NAME|N|none")]
    pub value_column: Option<String>,
    /// The Unix-seconds timestamp column, for `--split time` (name or position; triples
    /// default: none).
    #[arg(long, value_name = "NAME|N|none")]
    pub time_column: Option<String>,
    /// What the values become in the matrix: count (integers, summed per pair), rating
    /// (decimals, highest kept), binary (1 per pair). Default: rating for MovieLens, count
    /// otherwise.
    #[arg(long, value_enum)]
    pub value: Option<ValueArg>,
    /// Drop lines whose value is below X (counted in manifest.json as lines.below_min_value),
    /// e.g. `--min-value 3.5` keeps MovieLens ratings of 3.5 and up as positive feedback.
    #[arg(long, value_name = "X")]
    pub min_value: Option<f64>,
    /// Drop users with fewer distinct tracks than this.
    #[arg(long, default_value_t = 5)]
    pub min_user_tracks: u32,
    /// Drop tracks with fewer distinct listeners than this.
    #[arg(long, default_value_t = 2)]
    pub min_track_users: u32,
    /// Apply the two thresholds until nothing changes (fixed-point), or one pass each (once).
    #[arg(long, value_enum, default_value = "fixed-point")]
    pub filter: FilterArg,
    /// How validation listens are held out.
    #[arg(long, value_enum, default_value = "random")]
    pub split: SplitKind,
    /// Random split: fraction of each user's tracks held out for validation.
    #[arg(long, default_value_t = 0.2)]
    pub valid_fraction: f64,
    /// Time split: hold out tracks first played within each user's last N listens.
    #[arg(long, default_value_t = 50)]
    pub last_n: u32,
    /// Seed of the random split.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Skip malformed lines (counted, with examples, in manifest.json) instead of stopping.
    #[arg(long)]
    pub skip_bad_lines: bool,
    /// Replace the output directory if it exists.
    #[arg(long)]
    pub force: bool,
}

impl PrepArgs {
    fn config(&self, quiet: bool) -> PrepConfig {
        let mut c = PrepConfig::new(&self.input, &self.out);
        c.format = self.format.into();
        c.delimiter = self.delimiter.into();
        c.header = self.header.into();
        c.ids = self.ids.into();
        let col = |c: &Option<String>| c.as_deref().map(Column::parse);
        c.columns = Columns {
            user: col(&self.user_column),
            item: col(&self.item_column),
            value: col(&self.value_column),
            time: col(&self.time_column),
        };
        c.value = self.value.map(Into::into);
        c.min_value = self.min_value;
        c.min_user_tracks = self.min_user_tracks;
        c.min_track_users = self.min_track_users;
        c.filter_mode = self.filter.into();
        c.split = match self.split {
            SplitKind::Random => Split::Random {
                fraction: self.valid_fraction,
                seed: self.seed,
            },
            SplitKind::Time => Split::Time {
                last_n: self.last_n,
            },
        };
        c.skip_bad_lines = self.skip_bad_lines;
        c.force = self.force;
        c.quiet = quiet;
        c
    }
}

pub fn cmd_synth(a: &SynthArgs, quiet: bool) -> Result<()> {
    let mut cfg = SynthConfig::from_scale(a.scale.into(), a.seed);
    if let Some(u) = a.users {
        cfg.users = u;
    }
    if let Some(t) = a.tracks {
        cfg.tracks = t;
        cfg.artists = (t / 10).max(1);
    }
    if let Some(e) = a.events {
        cfg.events = e;
    }
    let r = synth::generate(&cfg, &a.out, a.force, quiet)
        .with_context(|| format!("generating synthetic data into {}", a.out.display()))?;
    println!(
        "synth: wrote {} ({} users, {} tracks, {} artists, {} events, {} distinct user-track pairs, \
         {} users capped at 20,000)",
        a.out.display(),
        thousands(r.users),
        thousands(r.tracks),
        thousands(r.artists),
        thousands(r.events),
        thousands(r.distinct_pairs),
        thousands(r.capped_users),
    );
    println!(
        "synth: {} in {:.2} s = {:.0} MB/s, {:.1} M events/s on {} threads",
        human_bytes(r.bytes_written),
        r.seconds,
        r.mb_per_second(),
        r.events_per_second() / 1e6,
        rayon::current_num_threads()
    );
    Ok(())
}

pub fn cmd_prep(a: &PrepArgs, quiet: bool) -> Result<()> {
    let m = prep(&a.config(quiet))
        .with_context(|| format!("preparing {} into {}", a.input.display(), a.out.display()))?;
    print_manifest(&m, &a.out);
    Ok(())
}

pub fn print_manifest(m: &Manifest, out: &Path) {
    let parse = m.timings_s.get("parse").copied().unwrap_or(0.0);
    let total = m.timings_s.get("total").copied().unwrap_or(0.0);
    println!(
        "prep: {} input {} ({}), parsed in {:.2} s ({:.0} MB/s), total {:.2} s, peak RSS {}",
        m.input.format.name(),
        m.input.data_file.display(),
        human_bytes(m.input.bytes),
        parse,
        m.timings_s.get("parse_mb_per_s").copied().unwrap_or(0.0),
        total,
        m.peak_rss_bytes
            .map(human_bytes)
            .unwrap_or_else(|| "n/a".into()),
    );
    let l = &m.lines;
    if m.input.files > 1 {
        println!(
            "files: {} data files under {}",
            thousands(m.input.files),
            m.input.data_file.display()
        );
    }
    if let Some(c) = &m.input.columns {
        println!(
            "columns: user {:?}, item {:?}, value {}, time {} ({} fields); ids {}; values {}",
            c.user,
            c.item,
            c.value
                .as_deref()
                .map_or("none (1 per line)".into(), |v| format!("{v:?}")),
            c.time
                .as_deref()
                .map_or("none".into(), |v| format!("{v:?}")),
            c.fields,
            m.options.ids.name(),
            m.options.value.name()
        );
    }
    let extra = {
        let mut e = String::new();
        if l.below_min_value > 0 || m.options.min_value.is_some() {
            e += &format!(
                ", {} below --min-value {}",
                thousands(l.below_min_value),
                m.options.min_value.unwrap_or(0.0)
            );
        }
        if l.user_from_path > 0 {
            e += &format!(
                ", {} listens with their user from the file path",
                thousands(l.user_from_path)
            );
        }
        e
    };
    println!(
        "lines: {} total, {} records, {} header, {} blank, {} zero-count{extra}, {} bad skipped{}",
        thousands(l.total),
        thousands(l.records),
        l.header,
        thousands(l.blank),
        thousands(l.zero_count),
        thousands(l.bad_skipped),
        match (l.regrouped, m.options.ids) {
            (false, _) => "",
            (true, encore::data::ids::IdKind::Str) => " (rows put in user-id order)",
            (true, _) => " (input was not grouped by user: regrouped)",
        }
    );
    for ex in &l.bad_examples {
        println!("  skipped {ex}");
    }
    if m.names_skipped.lines > 0 {
        println!(
            "names: {} bad or duplicate lines skipped",
            thousands(m.names_skipped.lines)
        );
        for ex in &m.names_skipped.examples {
            println!("  skipped {ex}");
        }
    }
    println!(
        "{:<14} {:>12} {:>12} {:>14} {:>16}",
        "stage", "users", "tracks", "pairs", "plays"
    );
    let row = |name: &str, t: &Tally| {
        println!(
            "{:<14} {:>12} {:>12} {:>14} {:>16}",
            name,
            thousands(t.users),
            thousands(t.items),
            thousands(t.pairs),
            thousands(t.events)
        );
    };
    let c = &m.counts;
    row("raw", &c.raw);
    for (i, r) in c.filter_rounds.iter().enumerate() {
        row(&format!("filter round {}", i + 1), r);
    }
    row("kept", &c.kept);
    row("train", &c.train);
    row("valid", &c.valid);
    println!(
        "wrote {} ({}; offsets {}; {})",
        out.display(),
        m.files.join(", "),
        m.indptr_dtype,
        m.content_hash
    );
}
