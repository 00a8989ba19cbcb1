//! Training from Python: the user's matrix read in place, the GIL released for the whole run,
//! and Ctrl-C and callbacks served while it runs.
//!
//! Training runs on a worker thread while the calling (Python) thread waits for its
//! per-iteration messages, re-attaching to Python every [`POLL`] to check for signals and to
//! run the user's callback. Why not check signals from the training loop itself: rayon may run
//! the loop on one of its own threads (a model's `threads=` pool), and Python only delivers
//! signals to the main thread, so a check made there would never see Ctrl-C. A signal or a
//! failing callback sets a flag that training reads before every iteration and between its two
//! half-steps ([`encore::als::train_checked`]), so a long run stops within a half-step; the
//! model is then left as it was before `fit`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use encore::Error;
use encore::als::gpu::{GpuBackend, GpuOptions};
use encore::als::model::DatasetRef;
use encore::als::{AlsConfig, Backend, CpuBackend, IterationStats};
use encore::data::csr::Csr;
use encore::data::dataset::content_hash;
use encore::data::ids::Ids;
use encore::gpu::{DeviceChoice, resolve};
use encore::train::{FitOptions, TrainInput, fit_input, training_device};

use crate::csr::CsrArrays;
use crate::errors::{IntoPy, guard, internal_error, value_error};
use crate::model::{Failure, Model};
use crate::threads::Threads;

/// How often the waiting Python thread checks for Ctrl-C.
const POLL: Duration = Duration::from_millis(50);

/// What `model.json` records as the dataset of a model trained on a matrix that did not come
/// from `encore.load_dataset` (or was changed since): `encore eval` and `encore recommend` then
/// need `--dataset`, and refuse any whose content differs.
pub const IN_MEMORY: &str = "(in-memory matrix)";

/// The library's default hyper-parameters, as JSON (the Python defaults are read from here, so
/// they are never a second copy of the constants).
#[pyfunction]
pub fn default_config() -> PyResult<String> {
    serde_json::to_string(&AlsConfig::default()).map_err(|e| value_error(e.to_string()))
}

/// Parses hyper-parameters given as JSON (the keys of `default_config()`).
pub fn parse_config(json: &str) -> PyResult<AlsConfig> {
    let cfg: AlsConfig = serde_json::from_str(json)
        .map_err(|e| value_error(format!("invalid ALS settings: {e}")))?;
    cfg.validate().py_err()?;
    Ok(cfg)
}

fn parse_device(device: &str) -> PyResult<DeviceChoice> {
    device.parse().map_err(value_error)
}

/// Where a model with `config` would train for `device`: ("cpu" | "gpu:N", note). `gpu` without
/// a usable GPU raises `GpuError`; `auto` says in the note why it chose the CPU.
#[pyfunction]
pub fn resolve_device(device: &str, config: &str) -> PyResult<(String, Option<String>)> {
    guard(|| {
        let cfg = parse_config(config)?;
        let (gpu, note) = training_device(&cfg, parse_device(device)?).py_err()?;
        Ok((
            gpu.map_or(DeviceChoice::Cpu, |g| DeviceChoice::Gpu(g.ordinal))
                .to_string(),
            note,
        ))
    })
}

/// The device to score on for `device` (no solver to consider), and the note of `auto`.
pub fn scoring_device(device: &str) -> PyResult<(DeviceChoice, Option<String>)> {
    match parse_device(device)? {
        DeviceChoice::Cpu => Ok((DeviceChoice::Cpu, None)),
        d => {
            let (gpu, note) = resolve(d).py_err()?;
            Ok((
                gpu.map_or(DeviceChoice::Cpu, |g| DeviceChoice::Gpu(g.ordinal)),
                note,
            ))
        }
    }
}

/// Whether the CUDA driver library can be loaded (no driver call is made).
#[pyfunction]
pub fn driver_present() -> bool {
    encore::gpu::driver_present()
}

/// A description of GPU `n` ("NVIDIA H200 (gpu:0, 139.8 GiB, compute 9.0, 132 SMs)"), or
/// `GpuError` saying why there is none.
#[pyfunction]
#[pyo3(signature = (n=0))]
pub fn describe_gpu(n: usize) -> PyResult<String> {
    guard(|| Ok(encore::gpu::Gpu::open(n).py_err()?.describe()))
}

/// `content_hash` of a training matrix alone: how `fit` recognises the unchanged `train` of a
/// dataset loaded by `load_dataset`.
pub fn matrix_hash(m: &Csr) -> String {
    content_hash(m, &Csr::empty(0, 0), &Ids::default(), &Ids::default())
}

/// The dataset a fit records: `dataset` = (dir, content_hash, train_hash) from `load_dataset`,
/// honoured only if the matrix still hashes to `train_hash`.
fn dataset_ref(m: &Csr, dataset: Option<&(String, String, String)>) -> DatasetRef {
    let hash = matrix_hash(m);
    let (dir, content_hash) = match dataset {
        Some((dir, content, train)) if *train == hash => (PathBuf::from(dir), content.clone()),
        _ => (PathBuf::from(IN_MEMORY), format!("matrix-{hash}")),
    };
    DatasetRef {
        dir,
        content_hash,
        users: m.n_rows,
        items: m.n_cols,
        train_pairs: m.nnz(),
    }
}

/// The callback's view of validation metrics.
fn valid_dict<'py>(py: Python<'py>, s: &IterationStats) -> PyResult<Option<Bound<'py, PyDict>>> {
    let Some(v) = s.valid else {
        return Ok(None);
    };
    let d = PyDict::new(py);
    d.set_item("k", v.k)?;
    d.set_item("precision", v.precision)?;
    d.set_item("ndcg", v.ndcg)?;
    Ok(Some(d))
}

/// Trains a model on `user_items` (scipy CSR, users × items, play counts). `config` is JSON
/// (the keys of `default_config()`); `device` "auto", "cpu", "gpu" or "gpu:N";
/// `on_iteration(iteration, seconds, loss, metrics)` is called after every iteration (0-based,
/// as implicit counts), `metrics` a dict when `validation` and `eval_k` are given, else None.
#[pyfunction]
#[pyo3(signature = (user_items, config, device="auto", threads=None, gpu_memory=None, show_progress=true, on_iteration=None, validation=None, eval_k=None, dataset=None))]
#[allow(clippy::too_many_arguments)]
pub fn fit(
    py: Python<'_>,
    user_items: &Bound<'_, PyAny>,
    config: &str,
    device: &str,
    threads: Option<usize>,
    gpu_memory: Option<usize>,
    show_progress: bool,
    on_iteration: Option<Py<PyAny>>,
    validation: Option<&Bound<'_, PyAny>>,
    eval_k: Option<usize>,
    dataset: Option<(String, String, String)>,
) -> PyResult<Model> {
    guard(|| {
        let cfg = parse_config(config)?;
        let choice = parse_device(device)?;
        let pool = Threads::new(threads)?;
        let arrays = CsrArrays::extract(user_items, "user_items")?;
        let view = arrays.view()?;
        let valid_arrays = validation
            .map(|v| CsrArrays::extract(v, "validation"))
            .transpose()?;
        let valid_view = valid_arrays.as_ref().map(|a| a.view()).transpose()?;
        if eval_k == Some(0) {
            return Err(value_error("eval_k must be at least 1"));
        }
        let opts = FitOptions {
            device: choice,
            gpu: GpuOptions {
                memory_budget: gpu_memory,
            },
            quiet: !show_progress,
            eval_k: eval_k.filter(|_| valid_view.is_some()),
        };
        let cancel = AtomicBool::new(false);
        let (tx, rx) = mpsc::channel::<IterationStats>();
        let (outcome, stashed) = py.detach(|| {
            // Moved in: a receiver is not shared between threads.
            let rx = rx;
            std::thread::scope(|s| {
                let worker = s.spawn(|| {
                    // Moved in, so it is dropped when training ends: that ends the loop below.
                    let tx = tx;
                    pool.run(
                        || -> Result<(encore::als::model::Model, DeviceChoice), Failure> {
                            view.check().map_err(Failure::Value)?;
                            let valid = match &valid_view {
                                Some(v) => {
                                    v.check().map_err(Failure::Value)?;
                                    Some(v.to_csr())
                                }
                                None => None,
                            };
                            let train = view.to_csr();
                            let dataset = dataset_ref(&train, dataset.as_ref());
                            // make_backend's choice, keeping which GPU it took.
                            let (gpu, _note) = training_device(&cfg, opts.device)?;
                            let trained_on = gpu
                                .as_ref()
                                .map_or(DeviceChoice::Cpu, |g| DeviceChoice::Gpu(g.ordinal));
                            let mut backend: Box<dyn Backend> = match gpu {
                                Some(g) => Box::new(GpuBackend::new(g, &cfg, opts.gpu)?),
                                None => Box::new(CpuBackend::new(&cfg)?),
                            };
                            let stop = || {
                                if cancel.load(Ordering::Relaxed) {
                                    Err(Error::Runtime("interrupted".into()))
                                } else {
                                    Ok(())
                                }
                            };
                            let input = TrainInput {
                                train,
                                valid: valid.as_ref(),
                                dataset,
                            };
                            let model =
                                fit_input(input, &cfg, backend.as_mut(), &opts, &stop, |st| {
                                    // The receiver lives until this thread ends; a send cannot fail.
                                    let _ = tx.send(*st);
                                    stop()
                                })?;
                            Ok((model, trained_on))
                        },
                    )
                });
                let mut stashed: Option<PyErr> = None;
                loop {
                    match rx.recv_timeout(POLL) {
                        Ok(st) => {
                            if let (None, Some(cb)) = (&stashed, &on_iteration) {
                                let r = Python::attach(|py| -> PyResult<()> {
                                    let loss = st.loss;
                                    cb.call1(
                                        py,
                                        (st.iteration - 1, st.seconds, loss, valid_dict(py, &st)?),
                                    )?;
                                    Ok(())
                                });
                                if let Err(e) = r {
                                    stashed = Some(e);
                                    cancel.store(true, Ordering::Relaxed);
                                }
                            }
                        }
                        Err(mpsc::RecvTimeoutError::Timeout) if stashed.is_none() => {
                            if let Err(e) = Python::attach(|py| py.check_signals()) {
                                stashed = Some(e);
                                cancel.store(true, Ordering::Relaxed);
                            }
                        }
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                        Err(mpsc::RecvTimeoutError::Disconnected) => break,
                    }
                }
                (worker.join(), stashed)
            })
        });
        // A Ctrl-C or a callback's exception is what the caller sees, whatever training did
        // after the flag was set.
        if let Some(e) = stashed {
            return Err(e);
        }
        match outcome {
            Err(panic) => Err(internal_error(panic.as_ref())),
            Ok(Err(f)) => Err(f.into_py()),
            Ok(Ok((model, device))) => Ok(Model::new(model, device, pool)),
        }
    })
}

/// A deliberate panic inside the guard, so the tests can check that a bug in Encore reaches
/// Python as a `RuntimeError`, never as pyo3's `PanicException` (`BaseException`). Also from a
/// rayon worker, the path most of Encore's code runs on.
#[pyfunction]
#[pyo3(signature = (in_pool=false))]
pub fn _panic_for_tests(py: Python<'_>, in_pool: bool) -> PyResult<()> {
    guard(|| {
        py.detach(|| {
            if in_pool {
                rayon::scope(|s| s.spawn(|_| panic!("deliberate panic in a rayon worker")));
            }
            panic!("deliberate panic")
        })
    })
}
