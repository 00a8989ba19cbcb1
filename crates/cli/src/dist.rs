//! `encore train` across processes: `--ranks N` or `--gpus N` on this host,
//! `--rank/--world/--rendezvous` by hand, or one rank per task under SLURM's `srun`.
//!
//! Rank 0 is the process the user started (with `--ranks`/`--gpus`) or the task SLURM numbered
//! 0: it hosts the rendezvous, prints progress, and writes the model; the other ranks train
//! quietly and write nothing. Each rank runs `--threads / N` threads (local launches) so N
//! ranks on one host use the cores one process would.
//!
//! GPU ranks talk NCCL (one process per GPU, the GPU = the rank's index on its host) or, with
//! `--comm host`, copy through host memory and the TCP star (several ranks may then share one
//! GPU: `--ranks N --device gpu`). NCCL is loaded at run time; a process that cannot load it,
//! or lacks `NCCL_NVLS_ENABLE`, re-executes itself once with the library's directory first on
//! `LD_LIBRARY_PATH` and `NCCL_NVLS_ENABLE=0` (see `encore::dist::nccl`), so ranks started by
//! `--gpus`, by hand or by SLURM all find pip's `libnccl.so.2`.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};

use encore::als::cpu_solver;
use encore::als::gpu::{GpuBackend, GpuOptions};
use encore::als::model::Model;
use encore::data::dataset::Dataset;
use encore::dist::nccl::{self, NcclCollective};
use encore::dist::tcp::TcpCollective;
use encore::dist::{Collective, DeviceCollective, HostStaged, ShardedCpu, WorldSpec};
use encore::gpu::{DeviceChoice, Gpu};
use encore::train::{FitOptions, fit_with};

use crate::fmt::thousands;
use crate::model::TrainArgs;
use crate::values::GramArg;

/// The communicator of GPU ranks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum CommArg {
    /// nccl, except for `--ranks N --device gpu` (ranks sharing one GPU): host.
    #[default]
    Auto,
    /// NCCL on device memory, one rank per GPU.
    Nccl,
    /// Through host memory and the ranks' TCP connections: slow, but needs no NCCL and lets
    /// ranks share a GPU (for testing the multi-GPU algorithm on one GPU).
    Host,
}

/// Set in the environment of a process re-executed to load NCCL (so it does not loop).
const REEXEC_MARK: &str = "ENCORE_NCCL_REEXEC";

/// Flags of multi-rank training (`encore train --help`, "Multi-rank").
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Multi-rank training (CPU and GPU)")]
pub struct DistArgs {
    /// Train as N processes on this host (ranks 0..N, this one rank 0), each solving its
    /// share of users and tracks with --threads/N threads; the factors are bit-identical to
    /// one process's. On the CPU unless --device gpu[:N], where all N ranks share that GPU
    /// (--comm host), which tests the multi-GPU algorithm on one GPU.
    #[arg(long, value_name = "N")]
    pub ranks: Option<usize>,
    /// Train on N GPUs of this host, one rank per GPU (rank r on GPU r; choose GPUs with
    /// CUDA_VISIBLE_DEVICES), talking NCCL: each GPU holds 1/N of the matrices and all factors;
    /// the factors are bit-identical to one GPU's (with --gram replicated). --gpus 1 runs
    /// the NCCL path on one GPU.
    #[arg(long, value_name = "N", conflicts_with = "ranks")]
    pub gpus: Option<usize>,
    /// GPU ranks' communicator: auto, nccl or host.
    #[arg(long, value_enum, default_value = "auto")]
    pub comm: CommArg,
    /// GPU ranks' Gram matrix: replicated (bit-identical to one GPU) or reduced.
    #[arg(long, value_enum, default_value = "replicated")]
    pub gram: GramArg,
    /// This rank's index on its host (its GPU, with NCCL), for GPU ranks started by hand;
    /// under SLURM it is SLURM_LOCALID.
    #[arg(long, value_name = "L")]
    pub local_rank: Option<usize>,
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
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// One process (no multi-rank flags, or `--ranks 1`).
    Single,
    /// `--ranks N` (`gpus` false) or `--gpus N` (true): this process is rank 0 and starts the
    /// others.
    Local { n: usize, gpus: bool },
    /// One rank of a world started elsewhere (by hand or by SLURM).
    Rank(WorldSpec),
}

/// The plan the flags and the environment ask for.
pub fn plan(a: &DistArgs) -> Result<Plan> {
    plan_with(a, &|k| std::env::var(k).ok())
}

/// [`plan`] with the environment read through `var`.
pub fn plan_with(a: &DistArgs, var: &dyn Fn(&str) -> Option<String>) -> Result<Plan> {
    let by_hand = WorldSpec::from_flags(a.rank, a.world, a.rendezvous.as_deref(), a.local_rank)?;
    let local = match (a.ranks, a.gpus) {
        (Some(_), Some(_)) => bail!("--ranks and --gpus do not go together"),
        (Some(n), None) => Some((n, false, "--ranks")),
        (None, Some(n)) => Some((n, true, "--gpus")),
        (None, None) => None,
    };
    if let Some((n, gpus, flag)) = local {
        if by_hand.is_some() {
            bail!(
                "{flag} starts the ranks itself; it does not go with --rank/--world/--rendezvous"
            );
        }
        if n == 0 || n > encore::dist::launch::MAX_WORLD {
            bail!(
                "{flag} must be 1..={}, got {n}",
                encore::dist::launch::MAX_WORLD
            );
        }
        // `--gpus 1` is NCCL on one GPU (a world of one); `--ranks 1` is plain training.
        return Ok(if n == 1 && !gpus {
            Plan::Single
        } else {
            Plan::Local { n, gpus }
        });
    }
    if let Some(s) = by_hand {
        return Ok(if s.world == 1 {
            Plan::Single
        } else {
            Plan::Rank(s)
        });
    }
    if a.local_rank.is_some() {
        bail!("--local-rank goes with --rank, --world and --rendezvous");
    }
    match WorldSpec::from_slurm(var, a.rendezvous_port)? {
        Some(s) => Ok(Plan::Rank(s)),
        None => Ok(Plan::Single),
    }
}

/// Where the ranks of `plan` train and how GPU ranks talk: `None` for the CPU.
pub fn gpu_comm(a: &TrainArgs, plan: &Plan) -> Result<Option<CommArg>> {
    let gpu = match (a.device, plan) {
        (DeviceChoice::Cpu, Plan::Local { gpus: true, .. }) => {
            bail!("--gpus trains on GPUs; it does not go with --device cpu")
        }
        (DeviceChoice::Cpu, _) => false,
        (DeviceChoice::Gpu(_), _) => true,
        // `auto` means the CPU for `--ranks` and hand-started ranks (as before GPUs could
        // join); `--gpus` asks for GPUs.
        (DeviceChoice::Auto, Plan::Local { gpus, .. }) => *gpus,
        (DeviceChoice::Auto, _) => false,
    };
    if !gpu {
        if a.dist.comm != CommArg::Auto {
            bail!("--comm is for GPU ranks (--gpus, or --device gpu)");
        }
        return Ok(None);
    }
    let shared_gpu = matches!(plan, Plan::Local { gpus: false, .. });
    let comm = match a.dist.comm {
        CommArg::Auto if shared_gpu => CommArg::Host,
        CommArg::Auto => CommArg::Nccl,
        c => c,
    };
    if comm == CommArg::Nccl && shared_gpu {
        bail!(
            "--ranks N --device gpu puts every rank on one GPU, which NCCL refuses: use --gpus N \
             for one rank per GPU, or --comm host"
        );
    }
    if comm == CommArg::Nccl && matches!(a.device, DeviceChoice::Gpu(n) if n != 0) {
        bail!(
            "NCCL ranks use the GPU of their index on the host (rank r of --gpus, \
             SLURM_LOCALID, --local-rank); choose GPUs with CUDA_VISIBLE_DEVICES rather than \
             --device {}",
            a.device
        );
    }
    Ok(Some(comm))
}

/// Makes NCCL loadable in this process, re-executing it when needed (see the module docs);
/// returns only when it is, else fails saying what was searched.
fn ensure_nccl() -> Result<()> {
    let nvls_set = std::env::var_os("NCCL_NVLS_ENABLE").is_some();
    // A library named by ENCORE_NCCL_LIB is the one used, even where another would load.
    let explicit = std::env::var_os(nccl::LIB_VAR).is_some_and(|v| !v.is_empty());
    let restarted = std::env::var_os(REEXEC_MARK).is_some();
    if nccl::loadable() && nvls_set && (restarted || !explicit) {
        return Ok(());
    }
    if restarted {
        let lib = std::env::var(REEXEC_MARK).unwrap_or_default();
        bail!(
            "NCCL: {lib} was put on LD_LIBRARY_PATH (as libnccl.so) but still does not load; is \
             it built for this architecture and a CUDA 12/13 driver? Set {} to another copy",
            nccl::LIB_VAR
        );
    }
    let exe = std::env::current_exe().context("finding this program to restart it with NCCL")?;
    let mut cmd = Command::new(&exe);
    cmd.args(std::env::args_os().skip(1));
    if !nvls_set {
        // NVLink multicast stays off (shared hosts); NCCL reads it at initialisation.
        cmd.env("NCCL_NVLS_ENABLE", "0");
    }
    let mut mark = String::from("the NCCL library found");
    if explicit || !nccl::loadable() {
        let lib = nccl::LibrarySearch::from_env().find()?;
        let dir = nccl::shim_dir(&lib, &std::env::temp_dir())?;
        let mut path = vec![dir];
        if let Some(old) = std::env::var_os("LD_LIBRARY_PATH") {
            path.extend(std::env::split_paths(&old));
        }
        cmd.env(
            "LD_LIBRARY_PATH",
            std::env::join_paths(path).context("LD_LIBRARY_PATH")?,
        );
        mark = lib.display().to_string();
    }
    cmd.env(REEXEC_MARK, &mark);
    use std::os::unix::process::CommandExt;
    // Replaces this process; returns only on failure.
    let e = cmd.exec();
    Err(e).with_context(|| format!("restarting {} with NCCL", exe.display()))
}

/// The arguments of `args` (this process's, without the program) for a rank it starts:
/// everything but the flags the launcher decides per rank (`--ranks`, `--gpus`, `--threads`,
/// `--device`, `--comm`, `--local-rank`, `--quiet`), which [`spawn_ranks`] adds.
pub fn rank_args(args: impl IntoIterator<Item = String>) -> Vec<String> {
    const DECIDED: [&str; 6] = [
        "--ranks",
        "--gpus",
        "--threads",
        "--device",
        "--comm",
        "--local-rank",
    ];
    let mut out = Vec::new();
    let mut skip = false;
    for arg in args {
        if skip {
            skip = false;
            continue;
        }
        // `--quiet` is added to every rank: given twice, clap refuses it.
        if arg == "-q" || arg == "--quiet" {
            continue;
        }
        if DECIDED.contains(&arg.as_str()) {
            skip = true;
            continue;
        }
        if DECIDED
            .iter()
            .any(|f| arg.starts_with(f) && arg[f.len()..].starts_with('='))
        {
            continue;
        }
        out.push(arg);
    }
    out
}

/// How the launcher starts its ranks.
struct Spawn {
    n: usize,
    port: u16,
    threads: usize,
    /// `--device` of every rank (`gpu` for NCCL ranks, which take their local rank's GPU).
    device: String,
    /// `--comm` of GPU ranks.
    comm: Option<CommArg>,
}

/// The other ranks of a local launch: this binary again, with the same arguments minus those
/// [`rank_args`] drops, plus its rank, the world, the rendezvous, its local rank (its GPU
/// with NCCL), the device and communicator; quiet, their stdout discarded.
fn spawn_ranks(sp: &Spawn) -> Result<Vec<Child>> {
    let exe = std::env::current_exe().context("finding this program to start the other ranks")?;
    let args = rank_args(std::env::args().skip(1));
    let n = sp.n;
    let mut children = Vec::with_capacity(n - 1);
    for r in 1..n {
        let mut cmd = Command::new(&exe);
        cmd.args(&args)
            .args(["--rank", &r.to_string(), "--world", &n.to_string()])
            .args(["--rendezvous", &format!("127.0.0.1:{}", sp.port)])
            .args(["--local-rank", &r.to_string(), "--device", &sp.device])
            .args(["--threads", &sp.threads.to_string(), "--quiet"]);
        if let Some(c) = sp.comm {
            let name = c
                .to_possible_value()
                .map(|v| v.get_name().to_string())
                .unwrap_or_default();
            cmd.args(["--comm", &name]);
        }
        if std::env::var_os("NCCL_NVLS_ENABLE").is_none() {
            cmd.env("NCCL_NVLS_ENABLE", "0");
        }
        let child = cmd
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

/// What the watchdog does when this rank is stuck inside NCCL after a rank was lost: print
/// the cause and end the process at once (exit code 1).
fn exit_when_stuck() -> encore::dist::tcp::OnStuck {
    Box::new(|msg: &str| {
        eprintln!("error: {msg}");
        // SAFETY: ends the process without running destructors or atexit handlers, which is
        // the point: a thread is blocked inside NCCL and would block them too.
        unsafe { libc::_exit(1) }
    })
}

/// Trains one rank of `plan` (not [`Plan::Single`]); rank 0 saves the model.
pub fn train(a: &TrainArgs, plan: Plan, quiet: bool) -> Result<Option<Model>> {
    let comm_kind = gpu_comm(a, &plan)?;
    if comm_kind == Some(CommArg::Nccl) {
        ensure_nccl()?;
    }
    if let (Plan::Local { n, gpus: true }, Some(CommArg::Nccl)) = (&plan, comm_kind) {
        let visible = encore::gpu::device_count();
        if visible < *n {
            let hidden = std::env::var("CUDA_VISIBLE_DEVICES")
                .map(|v| format!(" (CUDA_VISIBLE_DEVICES={v:?})"))
                .unwrap_or_default();
            bail!(
                "--gpus {n} needs {n} GPUs, one per rank; this host shows {visible}{hidden}. \
                 To run several ranks on one GPU, use --ranks {n} --device gpu (host-staged)"
            );
        }
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
    let on_gpu = comm_kind.map(|c| format!("{c:?}").to_lowercase());
    parts.push(("gpu_comm", on_gpu.clone().unwrap_or_else(|| "cpu".into())));
    if on_gpu.is_some() {
        parts.push(("gram", format!("{:?}", a.dist.gram).to_lowercase()));
    }
    let fingerprint = encore::dist::collective::fingerprint(parts);
    let timeout = Duration::from_secs(a.dist.dist_timeout.max(1));
    let total_threads = rayon::current_num_threads();
    let device_arg = match comm_kind {
        None => "cpu".to_string(),
        Some(CommArg::Nccl) => "gpu".to_string(),
        Some(_) => a.device.to_string(),
    };
    let (comm, children, threads, local_rank) = match plan {
        Plan::Single => bail!("not a multi-rank run"),
        Plan::Local { n: 1, .. } => {
            Model::check_save(&a.out, a.force, &a.dataset)?;
            (None, Vec::new(), total_threads, 0)
        }
        Plan::Local { n, .. } => {
            Model::check_save(&a.out, a.force, &a.dataset)?;
            let threads = (total_threads / n).max(1);
            let listener = TcpListener::bind("127.0.0.1:0").context("rendezvous socket")?;
            let port = listener.local_addr().context("rendezvous socket")?.port();
            let children = spawn_ranks(&Spawn {
                n,
                port,
                threads,
                device: device_arg.clone(),
                comm: comm_kind,
            })?;
            match TcpCollective::host(listener, n, &fingerprint, timeout) {
                Ok(c) => (Some(c), children, threads, 0),
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
            (Some(c), Vec::new(), total_threads, spec.local_rank)
        }
    };
    let (rank, world) = comm.as_ref().map_or((0, 1), |c| (c.rank(), c.world()));
    let lead = rank == 0;
    if lead {
        let (n, m) = (ds.train.n_rows, ds.train.n_cols);
        // Each rank receives the other ranks' rows of both sides every iteration (an
        // all-gather moves this much in any algorithm, ring or star), plus the Gram parts.
        let factor_bytes = (n + m) as f64 * cfg.factors as f64 * 4.0;
        let per_rank = factor_bytes * (world - 1) as f64 / world as f64;
        let place = match comm_kind {
            None => format!("{threads} threads (cpu)"),
            Some(c) => format!(
                "GPUs, {} comm, {} Gram",
                format!("{c:?}").to_lowercase(),
                format!("{:?}", a.dist.gram).to_lowercase()
            ),
        };
        println!(
            "train: {} users x {} tracks, {} pairs; k={} {} iterations, solver {}, on {world} \
             ranks x {place}; all-gather {:.1} MB per rank per iteration",
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
        device: if comm_kind.is_some() {
            a.device
        } else {
            DeviceChoice::Cpu
        },
        quiet: quiet || !lead,
        eval_k: if lead { a.eval_k } else { None },
        ..FitOptions::default()
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .context("starting this rank's worker threads")?;
    let gpu_options = GpuOptions {
        memory_budget: a.gpu_memory,
    };
    let gram = a.dist.gram.into();
    let host_gpu = match a.device {
        DeviceChoice::Gpu(n) => n,
        _ => 0,
    };
    // The backend is built on the pool's side: the solver and the GPU are not `Send`, the
    // communicator is.
    let fitted = pool.install(move || -> Result<(Model, serde_json::Value)> {
        let mut backend: Box<dyn encore::als::Backend> = match comm_kind {
            None => {
                let comm: Box<dyn Collective> = match comm {
                    Some(c) => Box::new(c),
                    None => Box::new(encore::dist::Single),
                };
                Box::new(ShardedCpu::new(comm, cpu_solver(&cfg)?))
            }
            Some(kind) => {
                let ordinal = match kind {
                    // A scheduler that binds each task to one GPU (CUDA_VISIBLE_DEVICES with
                    // one device) leaves every local rank GPU 0.
                    CommArg::Nccl if encore::gpu::device_count() == 1 => 0,
                    CommArg::Nccl => local_rank,
                    _ => host_gpu,
                };
                let mut comm = comm;
                let opened = Gpu::open(ordinal).with_context(|| {
                    format!("rank {rank}: opening gpu:{ordinal} (its local rank {local_rank})")
                });
                let gpu = match opened {
                    Ok(g) => g,
                    Err(e) => {
                        if let Some(c) = comm.as_mut() {
                            c.abort(&format!("{e:#}"));
                        }
                        return Err(e);
                    }
                };
                let dev: Box<dyn DeviceCollective> = match (kind, comm) {
                    (CommArg::Nccl, Some(c)) => Box::new(NcclCollective::join(
                        &gpu,
                        c,
                        timeout,
                        Some(exit_when_stuck()),
                    )?),
                    (CommArg::Nccl, None) => Box::new(NcclCollective::single(&gpu)?),
                    (_, Some(c)) => Box::new(HostStaged::new(Box::new(c))),
                    (_, None) => Box::new(HostStaged::new(Box::new(encore::dist::Single))),
                };
                Box::new(GpuBackend::sharded(gpu, &cfg, gpu_options, dev, gram)?)
            }
        };
        let model = fit_with(ds, &cfg, backend.as_mut(), &opts, |s| {
            if lead && !quiet {
                crate::model::print_iteration(s);
            }
        })?;
        Ok((model, backend.details()))
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
    // The CPU backend reports its traffic at the top level, the GPU one under "dist".
    let traffic = details
        .get("dist")
        .unwrap_or(&details)
        .get("bytes_received_last_iteration")
        .and_then(|v| v.as_u64())
        .unwrap_or(0);
    println!(
        "train: {:.2} s total, steady {:.3} s/iteration on {world} ranks; rank 0 received {} \
         per iteration; wrote {}",
        model.meta.train_seconds,
        crate::model::steady_seconds(&model.meta.iterations),
        encore::util::human_bytes(traffic),
        a.out.display()
    );
    if comm_kind.is_some() && !quiet {
        // One line of facts for scripts (memory per rank, blocks, traffic).
        println!("train-details: {}", serde_json::to_string(&details)?);
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::collections::HashMap;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: TrainArgs,
    }

    fn parse(args: &[&str]) -> TrainArgs {
        T::try_parse_from(["t", "ds", "-o", "m"].iter().chain(args))
            .unwrap()
            .a
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn plan_of(args: &[&str]) -> Result<Plan> {
        plan_with(&parse(args).dist, &no_env)
    }

    #[test]
    fn ranks_get_the_arguments_minus_what_the_launcher_decides() {
        let args = [
            "train",
            "ds",
            "-o",
            "m",
            "--ranks",
            "3",
            "--threads=4",
            "--device",
            "gpu",
            "-q",
            "--comm",
            "host",
            "--local-rank=2",
            "--gpus=2",
            "--iterations",
            "5",
            "--quiet",
        ];
        assert_eq!(
            rank_args(args.iter().map(|s| s.to_string())),
            ["train", "ds", "-o", "m", "--iterations", "5"]
        );
    }

    #[test]
    fn plans_from_flags() {
        assert_eq!(plan_of(&[]).unwrap(), Plan::Single);
        assert_eq!(plan_of(&["--ranks", "1"]).unwrap(), Plan::Single);
        assert_eq!(
            plan_of(&["--ranks", "2"]).unwrap(),
            Plan::Local { n: 2, gpus: false }
        );
        // One GPU through NCCL is a world of one, not plain training.
        assert_eq!(
            plan_of(&["--gpus", "1"]).unwrap(),
            Plan::Local { n: 1, gpus: true }
        );
        for (bad, says) in [
            (&["--gpus", "0"][..], "--gpus must be 1..="),
            (&["--local-rank", "1"][..], "--local-rank goes with"),
            (
                &[
                    "--gpus",
                    "2",
                    "--rank",
                    "0",
                    "--world",
                    "2",
                    "--rendezvous",
                    "h:1",
                ][..],
                "--gpus starts the ranks itself",
            ),
        ] {
            let e = plan_of(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
        assert!(T::try_parse_from(["t", "ds", "-o", "m", "--gpus", "2", "--ranks", "2"]).is_err());
        let by_hand = [
            "--rank",
            "1",
            "--world",
            "4",
            "--rendezvous",
            "h:9",
            "--local-rank",
            "3",
        ];
        match plan_of(&by_hand).unwrap() {
            Plan::Rank(s) => assert_eq!((s.rank, s.world, s.local_rank), (1, 4, 3)),
            p => panic!("{p:?}"),
        }
        // Under srun the GPU is SLURM_LOCALID.
        let slurm: HashMap<&str, &str> = [
            ("SLURM_STEP_NUM_TASKS", "8"),
            ("SLURM_PROCID", "6"),
            ("SLURM_LOCALID", "2"),
            ("SLURM_STEP_NODELIST", "g[1-2]"),
        ]
        .into();
        let var = |k: &str| slurm.get(k).map(|v| v.to_string());
        match plan_with(&parse(&["--device", "gpu"]).dist, &var).unwrap() {
            Plan::Rank(s) => assert_eq!((s.rank, s.world, s.local_rank), (6, 8, 2)),
            p => panic!("{p:?}"),
        }
    }

    #[test]
    fn gpu_ranks_talk_nccl_unless_they_share_a_gpu() {
        let comm = |args: &[&str]| {
            let a = parse(args);
            let p = plan_with(&a.dist, &no_env)?;
            gpu_comm(&a, &p)
        };
        assert_eq!(comm(&["--gpus", "2"]).unwrap(), Some(CommArg::Nccl));
        assert_eq!(comm(&["--gpus", "1"]).unwrap(), Some(CommArg::Nccl));
        assert_eq!(
            comm(&["--gpus", "2", "--comm", "host"]).unwrap(),
            Some(CommArg::Host)
        );
        assert_eq!(
            comm(&["--ranks", "3", "--device", "gpu"]).unwrap(),
            Some(CommArg::Host)
        );
        assert_eq!(comm(&["--ranks", "3"]).unwrap(), None);
        let hand = ["--rank", "0", "--world", "2", "--rendezvous", "h:1"];
        assert_eq!(comm(&hand).unwrap(), None);
        let mut gpu_hand = hand.to_vec();
        gpu_hand.extend(["--device", "gpu"]);
        assert_eq!(comm(&gpu_hand).unwrap(), Some(CommArg::Nccl));
        for (bad, says) in [
            (
                &["--ranks", "2", "--device", "gpu", "--comm", "nccl"][..],
                "NCCL refuses",
            ),
            (
                &["--gpus", "2", "--device", "cpu"][..],
                "does not go with --device cpu",
            ),
            (
                &["--gpus", "2", "--device", "gpu:1"][..],
                "CUDA_VISIBLE_DEVICES",
            ),
            (
                &["--ranks", "2", "--comm", "host"][..],
                "--comm is for GPU ranks",
            ),
        ] {
            let e = comm(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
    }
}
