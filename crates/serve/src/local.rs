//! A server on a loopback port for the length of one closure: how the benchmarks and tests run
//! a real `encore serve` inside their own process; and a small recommender to serve there.

use std::path::Path;
use std::time::Duration;

use encore::als::AlsConfig;
use encore::data::dataset::Dataset;
use encore::data::prep::{PrepConfig, prep};
use encore::error::{Error, Result};
use encore::gpu::DeviceChoice;
use encore::recommend::Recommender;
use encore::synth::{Scale, SynthConfig, generate};
use encore::train::{FitOptions, fit};

use crate::batcher::BatchConfig;
use crate::server::{ServeConfig, serve_until, state};

/// Serves `rec` on a loopback port with `batch` settings and runs `f(runtime, address, rec)`.
pub fn with_server<T>(
    rec: Recommender,
    batch: BatchConfig,
    f: impl FnOnce(&tokio::runtime::Runtime, std::net::SocketAddr, &Recommender) -> Result<T>,
) -> Result<T> {
    let addr = "127.0.0.1:0"
        .parse()
        .map_err(|e| Error::Config(format!("address: {e}")))?;
    let cfg = ServeConfig::new(addr, batch);
    let st = state(rec, &cfg)?;
    let shared = st.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Runtime(format!("async runtime: {e}")))?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let server = rt.spawn(async move {
        serve_until(
            st,
            &cfg,
            move |addr| {
                let _ = addr_tx.send(addr);
            },
            async move {
                let _ = stop_rx.await;
            },
        )
        .await
    });
    let addr = addr_rx
        .recv_timeout(Duration::from_secs(30))
        .map_err(|_| Error::Runtime("the report's server did not start".into()))?;
    let rec = shared.recommender();
    let out = f(&rt, addr, &rec);
    let _ = stop_tx.send(());
    let _ = rt.block_on(server);
    out
}

/// A small synthetic dataset under `root` (150 users, 1,500 tracks, 40,000 listens: `raw/` and
/// `ds/`) and a CPU recommender over an 8-factor model trained on it in well under a second:
/// something real to serve in tests and smoke checks.
pub fn small_recommender(root: &Path) -> Result<(Dataset, Recommender)> {
    let mut s = SynthConfig::from_scale(Scale::Tiny, 21);
    s.users = 150;
    s.tracks = 1_500;
    s.artists = 150;
    s.events = 40_000;
    generate(&s, &root.join("raw"), false, true)?;
    prep(&PrepConfig::new(root.join("raw"), root.join("ds")))?;
    let ds = Dataset::load(&root.join("ds"))?;
    let cfg = AlsConfig {
        factors: 8,
        iterations: 3,
        ..AlsConfig::default()
    };
    let opts = FitOptions {
        device: DeviceChoice::Cpu,
        quiet: true,
        ..FitOptions::default()
    };
    let model = fit(ds.clone(), &cfg, &opts, |_| {})?;
    Ok((ds.clone(), Recommender::cpu(model, ds)?))
}
