//! `encore train` across processes: `--ranks N` on this host, `--rank/--world/--rendezvous` by
//! hand, or one rank per task under SLURM's `srun`.
//!
//! Rank 0 is the process the user started (with `--ranks`) or the task SLURM numbered 0: it
//! hosts the rendezvous, prints progress, and writes the model; the other ranks train quietly
//! and write nothing. Each rank runs `--threads / N` threads (`--ranks`) so N ranks on one host
//! use the cores one process would.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;

use encore::als::cpu_solver;
use encore::als::model::Model;
use encore::data::dataset::Dataset;
use encore::dist::tcp::TcpCollective;
use encore::dist::{Collective, ShardedCpu, WorldSpec};
use encore::gpu::DeviceChoice;
use encore::train::{FitOptions, fit_with};

use crate::fmt::thousands;
use crate::model::TrainArgs;

/// Flags of multi-rank training (`encore train --help`, "Multi-rank").
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Multi-rank training (CPU)")]
pub struct DistArgs {
    /// Train as N processes on this host (ranks 0..N, this one rank 0), each solving its
    /// share of users and tracks with --threads/N threads; the factors are bit-identical to
    /// one process's.
    #[arg(long, value_name = "N")]
    pub ranks: Option<usize>,
    /// This process's rank (0..WORLD), for ranks started by hand on several hosts; with
    /// --world and --rendezvous. Under SLURM's srun they come from SLURM_PROCID,
    /// SLURM_STEP_NUM_TASKS and the step's first host.
    #[arg(long, value_name = "R")]
    pub rank: Option<usize>,
    /// The number of ranks started by hand.
    #[arg(long, value_name = "W")]
    pub world: Option<usize>,
    /// HOST:PORT where rank 0 listens and the others connect.
    #[arg(long, value_name = "HOST:PORT")]
    pub rendezvous: Option<String>,
    /// Under SLURM: the rendezvous port on the first host (default: 20000 + job id mod
    /// 20000).
    #[arg(long, value_name = "PORT")]
    pub rendezvous_port: Option<u16>,
    /// Seconds to wait for every rank to arrive, and for any one message from a rank, before
    /// failing (a rank that exits or is killed is noticed at once).
    #[arg(long, value_name = "SECONDS", default_value_t = 120)]
    pub dist_timeout: u64,
}

/// How this `train` runs.
pub enum Plan {
    /// One process (no multi-rank flags, or `--ranks 1`).
    Single,
    /// `--ranks N`: this process is rank 0 and starts the others.
    Local(usize),
    /// One rank of a world started elsewhere (by hand or by SLURM).
    Rank(WorldSpec),
}

/// The plan the flags and the environment ask for.
pub fn plan(a: &DistArgs) -> Result<Plan> {
    let by_hand = WorldSpec::from_flags(a.rank, a.world, a.rendezvous.as_deref(), None)?;
    if let Some(n) = a.ranks {
        if by_hand.is_some() {
            bail!(
                "--ranks starts the ranks itself; it does not go with --rank/--world/--rendezvous"
            );
        }
        if n == 0 || n > encore::dist::launch::MAX_WORLD {
            bail!(
                "--ranks must be 1..={}, got {n}",
                encore::dist::launch::MAX_WORLD
            );
        }
        return Ok(if n == 1 { Plan::Single } else { Plan::Local(n) });
    }
    if let Some(s) = by_hand {
        return Ok(if s.world == 1 {
            Plan::Single
        } else {
            Plan::Rank(s)
        });
    }
    let env = |k: &str| std::env::var(k).ok();
    match WorldSpec::from_slurm(&env, a.rendezvous_port)? {
        Some(s) => Ok(Plan::Rank(s)),
        None => Ok(Plan::Single),
    }
}

/// The other ranks of a `--ranks N` launch: this binary again, with the same arguments minus
/// `--ranks`, plus its rank, the world and the rendezvous; quiet, their stdout discarded.
fn spawn_ranks(n: usize, port: u16, threads: usize) -> Result<Vec<Child>> {
    let exe = std::env::current_exe().context("finding this program to start the other ranks")?;
    let mut args: Vec<String> = Vec::new();
    let mut skip = false;
    for arg in std::env::args().skip(1) {
        if skip {
            skip = false;
            continue;
        }
        if arg == "--ranks" || arg == "--threads" {
            skip = true;
            continue;
        }
        if arg.starts_with("--ranks=") || arg.starts_with("--threads=") {
            continue;
        }
        args.push(arg);
    }
    let mut children = Vec::with_capacity(n - 1);
    for r in 1..n {
        let child = Command::new(&exe)
            .args(&args)
            .args(["--rank", &r.to_string(), "--world", &n.to_string()])
            .args(["--rendezvous", &format!("127.0.0.1:{port}")])
            .args(["--threads", &threads.to_string(), "--quiet"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("starting rank {r} ({})", exe.display()));
        match child {
            Ok(c) => children.push(c),
            Err(e) => {
                for mut c in children {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                return Err(e);
            }
        }
    }
    Ok(children)
}

/// Trains one rank of `plan` (not [`Plan::Single`]); rank 0 saves the model.
pub fn train(a: &TrainArgs, plan: Plan, quiet: bool) -> Result<Option<Model>> {
    if matches!(a.device, DeviceChoice::Gpu(_)) {
        bail!(
            "multi-rank training runs on the CPU in this version: pass --device cpu (or auto); \
             multi-GPU training through NCCL is not built yet"
        );
    }
    let ds = Dataset::load(&a.dataset)
        .with_context(|| format!("loading dataset {}", a.dataset.display()))?;
    let cfg = a.config();
    // Every rank must train the same data with the same settings.
    let settings = match serde_json::to_value(&cfg)? {
        serde_json::Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    let mut parts = vec![("dataset", ds.manifest.content_hash.clone())];
    parts.extend(settings.iter().map(|(k, v)| (k.as_str(), v.to_string())));
    let fingerprint = encore::dist::collective::fingerprint(parts);
    let timeout = Duration::from_secs(a.dist.dist_timeout.max(1));
    let total_threads = rayon::current_num_threads();
    let (comm, children, threads) = match plan {
        Plan::Single => bail!("not a multi-rank run"),
        Plan::Local(n) => {
            Model::check_save(&a.out, a.force, &a.dataset)?;
            let threads = (total_threads / n).max(1);
            let listener = TcpListener::bind("127.0.0.1:0").context("rendezvous socket")?;
            let port = listener.local_addr().context("rendezvous socket")?.port();
            let children = spawn_ranks(n, port, threads)?;
            match TcpCollective::host(listener, n, &fingerprint, timeout) {
                Ok(c) => (c, children, threads),
                Err(e) => {
                    reap(children, true);
                    return Err(e.into());
                }
            }
        }
        Plan::Rank(spec) => {
            let mut c = TcpCollective::join(&spec, &fingerprint, timeout)?;
            if spec.rank == 0
                && let Err(e) = Model::check_save(&a.out, a.force, &a.dataset)
            {
                c.abort(&e.to_string());
                return Err(e.into());
            }
            (c, Vec::new(), total_threads)
        }
    };
    let (rank, world) = (comm.rank(), comm.world());
    let lead = rank == 0;
    if lead {
        let (n, m) = (ds.train.n_rows, ds.train.n_cols);
        // Each rank receives the other ranks' rows of both sides every iteration (an
        // all-gather moves this much in any algorithm, ring or star), plus the Gram parts.
        let factor_bytes = (n + m) as f64 * cfg.factors as f64 * 4.0;
        let per_rank = factor_bytes * (world - 1) as f64 / world as f64;
        println!(
            "train: {} users x {} tracks, {} pairs; k={} {} iterations, solver {}, on {world} \
             ranks x {threads} threads (cpu); all-gather {:.1} MB per rank per iteration",
            thousands(n as u64),
            thousands(m as u64),
            thousands(ds.train.nnz() as u64),
            cfg.factors,
            cfg.iterations,
            cfg.solver.as_str(),
            per_rank / 1e6
        );
    }
    let opts = FitOptions {
        device: DeviceChoice::Cpu,
        quiet: quiet || !lead,
        eval_k: if lead { a.eval_k } else { None },
        ..FitOptions::default()
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .context("starting this rank's worker threads")?;
    // The backend is built on the pool's side: the solver is not `Send`, the communicator is.
    let fitted = pool.install(move || -> Result<(Model, serde_json::Value)> {
        let mut backend = ShardedCpu::new(Box::new(comm), cpu_solver(&cfg)?);
        let model = fit_with(ds, &cfg, &mut backend, &opts, |s| {
            if lead && !quiet {
                crate::model::print_iteration(s);
            }
        })?;
        Ok((model, encore::als::Backend::details(&backend)))
    });
    let (model, details) = match fitted {
        Ok(m) => m,
        Err(e) => {
            reap(children, true);
            return Err(e);
        }
    };
    if !lead {
        return Ok(None);
    }
    let saved = model
        .save(&a.out, a.force)
        .with_context(|| format!("saving the model to {}", a.out.display()));
    let failed = reap(children, saved.is_err());
    saved?;
    if let Some(r) = failed {
        bail!("rank {r} exited with an error after training (see its message above)");
    }
    println!(
        "train: {:.2} s total, steady {:.3} s/iteration on {world} ranks; rank 0 received {} \
         per iteration; wrote {}",
        model.meta.train_seconds,
        crate::model::steady_seconds(&model.meta.iterations),
        encore::util::human_bytes(
            details["bytes_received_last_iteration"]
                .as_u64()
                .unwrap_or(0)
        ),
        a.out.display()
    );
    Ok(Some(model))
}

/// Waits for the ranks this process started (killing them first when `kill`); the first rank
/// that failed, if any.
fn reap(children: Vec<Child>, kill: bool) -> Option<usize> {
    let mut failed = None;
    for (i, mut c) in children.into_iter().enumerate() {
        if kill {
            let _ = c.kill();
        }
        let ok = c.wait().map(|s| s.success()).unwrap_or(false);
        if !ok && !kill && failed.is_none() {
            failed = Some(i + 1);
        }
    }
    failed
}
