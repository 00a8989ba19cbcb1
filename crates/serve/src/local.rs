//! A server on a loopback port for the length of one closure: how the benchmarks and tests run
//! a real `encore serve` inside their own process.

use std::time::Duration;

use encore::error::{Error, Result};
use encore::recommend::Recommender;

use crate::batcher::BatchConfig;
use crate::server::{ServeConfig, serve_until, state};

/// Serves `rec` on a loopback port with `batch` settings and runs `f(runtime, address, rec)`.
pub fn with_server<T>(
    rec: Recommender,
    batch: BatchConfig,
    f: impl FnOnce(&tokio::runtime::Runtime, std::net::SocketAddr, &Recommender) -> Result<T>,
) -> Result<T> {
    let cfg = ServeConfig {
        addr: "127.0.0.1:0"
            .parse()
            .map_err(|e| Error::Config(format!("address: {e}")))?,
        batch,
        body_limit: 1 << 20,
    };
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
    let out = f(&rt, addr, shared.recommender());
    let _ = stop_tx.send(());
    let _ = rt.block_on(server);
    out
}
