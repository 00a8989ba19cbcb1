//! `prep`: raw listening logs → a training dataset, streaming and in parallel.
//!
//! The file is read in waves of newline-aligned blocks; while one wave is parsed and aggregated
//! by all threads, the next is read. Memory follows the aggregated pairs (≈ 8 bytes per distinct
//! (user, track), 12 with timestamps for the time split), never the size of the input. The
//! aggregated arrays are then filtered, split and written in place, without further copies.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use rayon::prelude::*;

use crate::data::aggregate::{ChunkOpts, Collector, parse_chunk};
use crate::data::blocks::{BlockReader, DEFAULT_BLOCK_BYTES};
use crate::data::csr::Csr;
use crate::data::dataset::{
    InputInfo, LineReport, Manifest, PrepOptions, StageCounts, content_hash, write_files,
    write_manifest,
};
use crate::data::filter::{self, FilterMode, Tally};
use crate::data::formats::{
    self, Columns, Delimiter, Format, HeaderMode, IdsMode, Input, ReadOptions,
};
use crate::data::index::Interactions;
use crate::data::names::{self, ItemNames};
use crate::data::npz;
use crate::data::records::ValueMode;
use crate::data::split::{self, Split};
use crate::error::{Error, Result};
use crate::util::{AtomicDir, OutputKind, peak_rss_bytes, progress_bar, unix_now};

/// Everything `prep` needs to know.
#[derive(Debug, Clone)]
pub struct PrepConfig {
    pub input: PathBuf,
    pub out: PathBuf,
    pub format: Format,
    pub delimiter: Delimiter,
    pub header: HeaderMode,
    /// Integer or string ids (`--ids`).
    pub ids: IdsMode,
    /// Columns chosen by name or position (`--user-column` ...).
    pub columns: Columns,
    /// What values mean (`--value`); `None`: the format's default.
    pub value: Option<ValueMode>,
    /// Lines whose value is below this are dropped (`--min-value`).
    pub min_value: Option<f64>,
    pub min_user_tracks: u32,
    pub min_track_users: u32,
    pub filter_mode: FilterMode,
    pub split: Split,
    pub skip_bad_lines: bool,
    pub force: bool,
    pub quiet: bool,
    pub block_bytes: usize,
}

impl PrepConfig {
    /// Defaults for `input` → `out`: 20 % random validation split, users with ≥ 5 tracks,
    /// tracks with ≥ 2 listeners, filtered to a fixed point.
    pub fn new(input: impl Into<PathBuf>, out: impl Into<PathBuf>) -> Self {
        Self {
            input: input.into(),
            out: out.into(),
            format: Format::Auto,
            delimiter: Delimiter::Auto,
            header: HeaderMode::Auto,
            ids: IdsMode::Auto,
            columns: Columns::default(),
            value: None,
            min_value: None,
            min_user_tracks: 5,
            min_track_users: 2,
            filter_mode: FilterMode::FixedPoint,
            split: Split::Random {
                fraction: 0.2,
                seed: 42,
            },
            skip_bad_lines: false,
            force: false,
            quiet: true,
            block_bytes: DEFAULT_BLOCK_BYTES,
        }
    }

    fn validate(&self) -> Result<()> {
        match self.split {
            Split::Random { fraction, .. } if !(0.0..1.0).contains(&fraction) => {
                Err(Error::Config(format!(
                    "--valid-fraction must be in [0, 1), got {fraction}"
                )))
            }
            Split::Time { last_n: 0 } => Err(Error::Config("--last-n must be at least 1".into())),
            _ => match self.min_value {
                Some(v) if !(v.is_finite() && v >= 0.0) => Err(Error::Config(format!(
                    "--min-value must be a non-negative number, got {v}"
                ))),
                _ => Ok(()),
            },
        }
    }

    /// How the input is to be read.
    pub fn read_options(&self) -> ReadOptions {
        ReadOptions {
            format: self.format,
            delimiter: self.delimiter,
            header: self.header,
            ids: self.ids,
            columns: self.columns.clone(),
            value: self.value,
        }
    }
}

/// The parsed input before filtering, with its line accounting.
pub struct Parsed {
    pub input: Input,
    pub interactions: Interactions,
    pub lines: LineReport,
    /// Uncompressed bytes parsed.
    pub bytes: u64,
}

/// Stage 1: parse and aggregate the input file(s) (exposed for benchmarks).
pub fn parse_input(cfg: &PrepConfig) -> Result<Parsed> {
    cfg.validate()?;
    let input = formats::resolve(&cfg.input, &cfg.read_options())?;
    let keep_time = matches!(cfg.split, Split::Time { .. });
    let has_time = input.files.iter().all(|f| match &f.lines {
        crate::data::aggregate::LineFormat::Numeric(s) => s.ts.is_some(),
        crate::data::aggregate::LineFormat::Fields(s) => s.time.is_some(),
        crate::data::aggregate::LineFormat::Listens(_) => true,
    });
    if keep_time && !has_time {
        return Err(Error::Config(format!(
            "--split time needs timestamps, and this {} input has none (pass --time-column, or \
             use --split random)",
            input.format.name()
        )));
    }
    if input.value == ValueMode::Rating && input.files.iter().any(|f| f.lines.events()) {
        return Err(Error::Config(format!(
            "--value rating needs a value column, and this {} input has none (each line is one \
             play; use --value count or binary)",
            input.format.name()
        )));
    }
    if cfg.min_value.is_some() && input.files.iter().any(|f| f.lines.events()) {
        return Err(Error::Config(format!(
            "--min-value needs a value column, and this {} input has none (each line is one \
             play)",
            input.format.name()
        )));
    }
    let first_lines = input.files.first().map(|f| f.lines.clone());
    let Some(first_lines) = first_lines else {
        return Err(Error::bad_input(&cfg.input, "no data files"));
    };
    let mut opts = ChunkOpts {
        format: first_lines,
        keep_time,
        tail_n: match cfg.split {
            Split::Time { last_n } => last_n as usize,
            Split::Random { .. } => 0,
        },
        skip_bad: cfg.skip_bad_lines,
        value: input.value,
        min_value: cfg.min_value.map(|v| v as f32),
    };
    let total_bytes: u64 = input
        .files
        .iter()
        .map(|f| std::fs::metadata(&f.path).map(|m| m.len()).unwrap_or(0))
        .sum();
    let pb = progress_bar(total_bytes, "parse", cfg.quiet);
    let per_wave = 2 * rayon::current_num_threads();
    let mut collector = Collector::new(&opts);
    let mut bytes = 0u64;
    let mut done_bytes = 0u64;
    let mut bad_examples = Vec::new();
    let skip_header = input.header.is_some();
    for (file_no, file) in input.files.iter().enumerate() {
        opts.format = file.lines.clone();
        let path = file.path.clone();
        let mut reader = BlockReader::open(&path, cfg.block_bytes)?;
        let mut line_base = 0u64;
        let mut first_wave = true;
        let header_here = skip_header && file_no == 0;
        let mut wave = reader.next_wave(per_wave)?;
        while !wave.is_empty() {
            let parse = |(i, b): (usize, &Vec<u8>)| {
                parse_chunk(b, &opts, first_wave && i == 0 && header_here)
            };
            // A lone block (a small file, or its last wave) is parsed right here: waking the
            // pool would only start workers with nothing to do; with several, at most one task
            // per block.
            let (parsed, next) = if wave.len() == 1 && reader.finished() {
                (wave.iter().enumerate().map(parse).collect(), Ok(Vec::new()))
            } else {
                rayon::join(
                    || wave.par_iter().enumerate().map(parse).collect::<Vec<_>>(),
                    || reader.next_wave(per_wave),
                )
            };
            first_wave = false;
            for chunk in parsed {
                let n = chunk.stats.lines;
                collector.append(chunk, line_base)?;
                line_base += n;
            }
            for b in wave.drain(..) {
                reader.recycle(b);
            }
            pb.set_position(done_bytes + reader.raw_bytes_read());
            if let Some((line, e)) = &collector.stats.first_error {
                return Err(Error::BadLine {
                    path,
                    line: *line,
                    reason: if e.skippable() {
                        format!("{e} (pass --skip-bad-lines to skip such lines)")
                    } else {
                        e.to_string()
                    },
                });
            }
            wave = next?;
        }
        // Line numbers are per file: name this file's examples now.
        let st = collector.stats_mut();
        for (l, r) in st.bad_examples.drain(..) {
            if bad_examples.len() < crate::data::aggregate::MAX_BAD_EXAMPLES {
                bad_examples.push(format!("{}:{l}: {r}", path.display()));
            }
        }
        bytes += reader.bytes;
        done_bytes += reader.file_bytes;
    }
    pb.finish_and_clear();
    let collected = collector.finish();
    let regrouped = collected.regrouped;
    let stats = &collected.stats;
    let lines = LineReport {
        total: stats.lines,
        records: stats.records,
        header: u64::from(skip_header),
        blank: stats.blank_lines,
        zero_count: stats.zero_count_lines,
        below_min_value: stats.below_min_lines,
        user_from_path: stats.user_from_path,
        bad_skipped: stats.bad_lines,
        bad_examples,
        regrouped,
    };
    if collected.pairs.nnz() == 0 {
        return Err(Error::bad_input(
            &input.data_file,
            format!(
                "no usable listening data ({} lines: {} bad, {} blank, {} with zero plays, {} \
                 below --min-value)",
                lines.total,
                lines.bad_skipped,
                lines.blank,
                lines.zero_count,
                lines.below_min_value
            ),
        ));
    }
    let value = input.value;
    Ok(Parsed {
        input,
        interactions: Interactions::from_collected(collected, value),
        lines,
        bytes,
    })
}

fn tally(m: &Interactions) -> Tally {
    Tally {
        users: m.n_users() as u64,
        items: m.n_items() as u64,
        pairs: m.nnz() as u64,
        events: m.events(),
    }
}

fn tally_csr(m: &Csr) -> Tally {
    Tally {
        users: (0..m.n_rows)
            .filter(|&r| m.indptr[r + 1] > m.indptr[r])
            .count() as u64,
        items: m.n_cols as u64,
        pairs: m.nnz() as u64,
        events: m.data.par_iter().map(|&v| v as u64).sum(),
    }
}

/// Runs the whole of `prep` and returns the manifest written.
pub fn prep(cfg: &PrepConfig) -> Result<Manifest> {
    cfg.validate()?;
    let total = Instant::now();
    let mut timings = BTreeMap::new();
    // Claim the output first: refuse an existing one before hours of parsing.
    let out = AtomicDir::create(
        &cfg.out,
        cfg.force,
        OutputKind::Dataset,
        &[cfg.input.as_path()],
    )?;

    let t = Instant::now();
    let Parsed {
        input,
        mut interactions,
        lines,
        bytes,
    } = parse_input(cfg)?;
    timings.insert("parse".to_string(), t.elapsed().as_secs_f64());
    let raw = tally(&interactions);

    let t = Instant::now();
    let rounds = filter::filter(
        &mut interactions,
        cfg.min_user_tracks,
        cfg.min_track_users,
        cfg.filter_mode,
    );
    timings.insert("filter".to_string(), t.elapsed().as_secs_f64());
    let kept = tally(&interactions);
    if kept.pairs == 0 {
        return Err(Error::bad_input(
            &input.data_file,
            format!(
                "filtering removed everything ({} users, {} tracks before; --min-user-tracks {}, \
                 --min-track-users {}): lower the thresholds",
                raw.users, raw.items, cfg.min_user_tracks, cfg.min_track_users
            ),
        ));
    }

    let t = Instant::now();
    let item_names = match &input.names {
        Some(formats::NameSource::Listens) => interactions
            .item_names
            .take()
            .map(ItemNames::from_names_and_artists),
        Some(src) => Some(names::load(
            src,
            &interactions.item_ids,
            cfg.skip_bad_lines,
        )?),
        None => None,
    };
    timings.insert("names".to_string(), t.elapsed().as_secs_f64());

    let t = Instant::now();
    let halves = split::split(interactions, cfg.split);
    let (user_ids, item_ids) = (&halves.user_ids, &halves.item_ids);
    timings.insert("split".to_string(), t.elapsed().as_secs_f64());

    let t = Instant::now();
    let files = write_files(
        out.path(),
        &halves.train,
        &halves.valid,
        user_ids,
        item_ids,
        item_names.as_ref(),
    )?;
    let hash = content_hash(&halves.train, &halves.valid, user_ids, item_ids);
    timings.insert("write".to_string(), t.elapsed().as_secs_f64());
    timings.insert("total".to_string(), total.elapsed().as_secs_f64());
    timings.insert(
        "parse_mb_per_s".to_string(),
        bytes as f64 / 1e6 / timings["parse"].max(1e-9),
    );

    let bytes_on_disk: u64 = input
        .files
        .iter()
        .map(|f| std::fs::metadata(&f.path).map(|m| m.len()).unwrap_or(0))
        .sum();
    let manifest = Manifest {
        encore_version: crate::VERSION.to_string(),
        created_unix: unix_now(),
        input: InputInfo {
            format: input.format,
            path: std::fs::canonicalize(&cfg.input).unwrap_or_else(|_| cfg.input.clone()),
            data_file: std::fs::canonicalize(&input.data_file)
                .unwrap_or_else(|_| input.data_file.clone()),
            bytes: bytes_on_disk,
            header: input.header.clone(),
            names: input.names.clone(),
            files: input.files.len() as u64,
            columns: input.columns.clone(),
        },
        options: PrepOptions {
            min_user_tracks: cfg.min_user_tracks,
            min_track_users: cfg.min_track_users,
            filter_mode: cfg.filter_mode,
            split: cfg.split,
            skip_bad_lines: cfg.skip_bad_lines,
            ids: input.ids,
            value: input.value,
            min_value: cfg.min_value,
        },
        lines,
        counts: StageCounts {
            raw,
            filter_rounds: rounds,
            kept,
            train: tally_csr(&halves.train),
            valid: tally_csr(&halves.valid),
        },
        indptr_dtype: if npz::fits_i32(halves.train.nnz().max(halves.valid.nnz())) {
            "int32".into()
        } else {
            "int64".into()
        },
        items_without_name: item_names.as_ref().map(|n| n.missing),
        names_skipped: item_names
            .as_ref()
            .map(|n| n.skipped.clone())
            .unwrap_or_default(),
        timings_s: timings,
        peak_rss_bytes: peak_rss_bytes(),
        content_hash: hash,
        files,
    };
    write_manifest(out.path(), &manifest)?;
    out.commit()?;
    Ok(manifest)
}
