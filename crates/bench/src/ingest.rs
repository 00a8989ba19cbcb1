//! `encore bench ingest`: the throughput and peak memory of `prep`.
//!
//! Each measured run happens in a fresh child process (`encore prep ...`), so the peak resident
//! memory it reports (from the child's own manifest) is that run's alone, not the maximum over
//! everything this process did before.

use std::path::PathBuf;
use std::process::Command;

use serde::Serialize;

use encore::data::dataset::{ITEM_IDS, Manifest, TRAIN, USER_IDS, VALID};
use encore::error::{Error, IoContext, Result};
use encore::sys::Machine;
use encore::util::human_bytes;

/// Arguments of `encore bench ingest`.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// The `encore` binary whose `prep` each run executes (the CLI passes itself).
    pub exe: PathBuf,
    /// The input to prepare (anything `encore prep` accepts).
    pub input: PathBuf,
    /// A second input measured right after `input` at each thread count, with the same flags.
    pub compare: Option<PathBuf>,
    /// Thread counts to measure, comma-separated (default: 1 and all cores).
    pub thread_counts: Vec<usize>,
    /// Where the temporary datasets go (removed after each run).
    pub work_dir: Option<PathBuf>,
    /// Print JSON instead of a table.
    pub json: bool,
    /// Extra `encore prep` flags, after `--` (e.g. `-- --min-track-users 1`).
    pub prep_args: Vec<String>,
}

/// One measured `prep` run.
#[derive(Debug, Clone, Serialize)]
pub struct IngestRun {
    /// Which input (the main one, or `--compare`'s).
    pub input: PathBuf,
    pub threads: usize,
    pub input_bytes: u64,
    pub lines: u64,
    pub parse_s: f64,
    pub parse_mb_per_s: f64,
    pub parse_mb_per_s_per_thread: f64,
    pub total_s: f64,
    pub peak_rss_bytes: Option<u64>,
    /// Size of train.npz + valid.npz: the final CSR bytes.
    pub csr_bytes: u64,
    /// Peak RSS divided by the CSR bytes.
    pub rss_over_csr: Option<f64>,
    pub pairs: u64,
    /// Records parsed.
    pub records: u64,
    /// Size of user_ids.npy + item_ids.npy (the id dictionary as stored).
    pub id_bytes: u64,
}

/// All runs of one `bench ingest`.
#[derive(Debug, Clone, Serialize)]
pub struct IngestReport {
    pub input: PathBuf,
    pub compare: Option<PathBuf>,
    pub machine: Machine,
    pub runs: Vec<IngestRun>,
}

/// Runs `encore prep` once per thread count in child processes and collects their numbers.
pub fn ingest(a: &IngestOptions) -> Result<IngestReport> {
    let exe = &a.exe;
    let machine = Machine::detect();
    let counts = if a.thread_counts.is_empty() {
        let mut v = vec![1, machine.cores];
        v.dedup();
        v
    } else {
        a.thread_counts.clone()
    };
    let work = a
        .work_dir
        .clone()
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("encore-bench-ingest-{}", std::process::id()));
    let mut runs = Vec::new();
    let inputs: Vec<&PathBuf> = std::iter::once(&a.input)
        .chain(a.compare.as_ref())
        .collect();
    for &threads in &counts {
        if threads == 0 {
            return Err(Error::Config("thread counts must be at least 1".into()));
        }
        for input in &inputs {
            runs.push(run_one(a, exe, &work, input, threads)?);
        }
    }
    let _ = std::fs::remove_dir_all(&work);
    Ok(IngestReport {
        input: a.input.clone(),
        compare: a.compare.clone(),
        machine,
        runs,
    })
}

/// One `encore prep` of `input` on `threads` threads in a child process.
fn run_one(
    a: &IngestOptions,
    exe: &PathBuf,
    work: &std::path::Path,
    input: &PathBuf,
    threads: usize,
) -> Result<IngestRun> {
    {
        let out = work.join(format!("t{threads}"));
        let status = Command::new(exe)
            .arg("--threads")
            .arg(threads.to_string())
            .arg("--quiet")
            .arg("prep")
            .arg(input)
            .arg("--out")
            .arg(&out)
            .arg("--force")
            .args(&a.prep_args)
            .stdout(std::process::Stdio::null())
            .status()
            .at(exe)?;
        if !status.success() {
            let _ = std::fs::remove_dir_all(work);
            return Err(Error::bad_input(
                input,
                format!("`encore prep` failed with {status} (its error is above)"),
            ));
        }
        let mpath = out.join(encore::data::dataset::MANIFEST);
        let text = std::fs::read_to_string(&mpath).at(&mpath)?;
        let m: Manifest =
            serde_json::from_str(&text).map_err(|e| Error::bad_input(&mpath, e.to_string()))?;
        let csr_bytes = [TRAIN, VALID]
            .iter()
            .map(|f| std::fs::metadata(out.join(f)).map(|m| m.len()).unwrap_or(0))
            .sum();
        let id_bytes = [USER_IDS, ITEM_IDS]
            .iter()
            .map(|f| std::fs::metadata(out.join(f)).map(|m| m.len()).unwrap_or(0))
            .sum();
        let mut run = run_from_manifest(threads, &m, csr_bytes);
        run.input = input.clone();
        run.id_bytes = id_bytes;
        std::fs::remove_dir_all(&out).at(&out)?;
        Ok(run)
    }
}

fn run_from_manifest(threads: usize, m: &Manifest, csr_bytes: u64) -> IngestRun {
    let t = |k: &str| m.timings_s.get(k).copied().unwrap_or(0.0);
    let mbps = t("parse_mb_per_s");
    IngestRun {
        input: m.input.path.clone(),
        threads,
        input_bytes: m.input.bytes,
        lines: m.lines.total,
        parse_s: t("parse"),
        parse_mb_per_s: mbps,
        parse_mb_per_s_per_thread: mbps / threads as f64,
        total_s: t("total"),
        peak_rss_bytes: m.peak_rss_bytes,
        csr_bytes,
        rss_over_csr: m.peak_rss_bytes.map(|r| r as f64 / csr_bytes.max(1) as f64),
        pairs: m.counts.kept.pairs,
        records: m.lines.records,
        id_bytes: 0,
    }
}

impl IngestReport {
    /// A table for the terminal, or pretty JSON.
    pub fn render(&self, json: bool) -> Result<String> {
        if json {
            return serde_json::to_string_pretty(self)
                .map_err(|e| Error::Runtime(format!("serialising the report: {e}")));
        }
        let mut s = format!(
            "bench ingest: {} on {} ({}, {} cores, {})\n",
            self.input.display(),
            self.machine.host,
            self.machine.cpu,
            self.machine.cores,
            self.machine
                .memory_bytes
                .map(human_bytes)
                .unwrap_or_else(|| "? memory".into())
        );
        let name = |p: &PathBuf| {
            p.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        s += &format!(
            "{:<24} {:>7} {:>12} {:>10} {:>10} {:>12} {:>9} {:>11} {:>11} {:>9}\n",
            "input",
            "threads",
            "input",
            "parse s",
            "MB/s",
            "MB/s/thread",
            "total s",
            "peak RSS",
            "CSR",
            "RSS/CSR"
        );
        for r in &self.runs {
            s += &format!(
                "{:<24} {:>7} {:>12} {:>10.2} {:>10.0} {:>12.0} {:>9.2} {:>11} {:>11} {:>9}\n",
                name(&r.input),
                r.threads,
                human_bytes(r.input_bytes),
                r.parse_s,
                r.parse_mb_per_s,
                r.parse_mb_per_s_per_thread,
                r.total_s,
                r.peak_rss_bytes
                    .map(human_bytes)
                    .unwrap_or_else(|| "n/a".into()),
                human_bytes(r.csr_bytes),
                r.rss_over_csr
                    .map(|x| format!("{x:.2}"))
                    .unwrap_or_else(|| "n/a".into()),
            );
        }
        let main: Vec<&IngestRun> = self
            .runs
            .iter()
            .step_by(1 + usize::from(self.compare.is_some()))
            .collect();
        if let [a, .., b] = &main[..] {
            s += &format!(
                "parse speed-up {} → {} threads: {:.2}x (same input, same machine, one run)\n",
                a.threads,
                b.threads,
                b.parse_mb_per_s / a.parse_mb_per_s.max(1e-9)
            );
        }
        if let Some(c) = &self.compare {
            for pair in self.runs.chunks(2) {
                let [a, b] = pair else { continue };
                let per_s = |r: &IngestRun| r.records as f64 / r.parse_s.max(1e-9);
                s += &format!(
                    "{} vs {} at {} threads: parse MB/s per thread {:.2}x, records/s {:.2}x; \
                     peak RSS {} vs 2 x CSR + ids on disk {} \n",
                    name(c),
                    name(&self.input),
                    a.threads,
                    b.parse_mb_per_s_per_thread / a.parse_mb_per_s_per_thread.max(1e-9),
                    per_s(b) / per_s(a).max(1e-9),
                    b.peak_rss_bytes
                        .map(human_bytes)
                        .unwrap_or_else(|| "n/a".into()),
                    human_bytes(2 * b.csr_bytes + b.id_bytes),
                );
            }
        }
        Ok(s)
    }
}
