//! `encore serve`: recommendations over HTTP (axum on tokio, hyper underneath) with dynamic
//! batching, admission control, live model reload and a bounded shutdown.
//!
//! Routes (JSON): `GET /v1/recommend?user=ID&k=10&filter=true`, `POST /v1/recommend` with many
//! users, `POST /v1/recommend/history` for a listener the model has never seen (fold-in),
//! `GET /v1/similar?item=ID&k=10`, `GET /healthz` (status and model version), `GET /metrics`
//! (Prometheus text), `POST /admin/reload` (see [`crate::reload`](mod@crate::reload)).
//!
//! Every recommendation goes through the model generation's [`batcher`](crate::batcher):
//! handlers validate, queue one job per user and await their answers, so concurrent requests
//! share `Scorer::top_k` calls on the CPU or GPU. Errors are JSON `{"error": ...}`: unknown user
//! or track → 404, bad parameters or malformed JSON → 400, a body over the limit → 413, load
//! shed → 503 with `Retry-After`.
//!
//! Overload (issue 14): the HTTP side, not the scorer, saturated first, and the excess queued in
//! front of the bounded batch queue — in sockets and in hyper — so the shedding that existed
//! bounded nothing and latency grew to seconds. Now the bounds sit at the edge:
//! - [`crate::admission`]: at most `max_in_flight` requests in the `/v1` routes; one more is
//!   answered 503 at once (no waiting), and each admitted request has a deadline.
//! - [`crate::conn`]: at most `max_connections` connections; the next ones are answered 503
//!   and closed; request headers must arrive within `header_timeout` and an idle keep-alive
//!   connection is closed after `idle_timeout` (slowloris); after SIGTERM, connections get
//!   `drain_timeout` to finish what they are doing, then the process exits regardless.
//! - The batch queue must hold at least `max_in_flight` jobs, so an admitted single-user request
//!   is never refused by the queue behind it.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use tower::ServiceExt;

use crate::admission::Admission;
use crate::api::{self, ApiError, MAX_USERS};
use crate::batcher::BatchConfig;
use crate::generation::{Generation, ModelSource, ModelVersion};
use crate::metrics::{Metrics, route_label};
use crate::reload::Reloader;
use encore::error::{Error, Result};
use encore::recommend::Recommender;

/// Where the server's operational messages go (reloads, the drain, accept errors): the CLI
/// prints them to stderr; tests collect them.
#[derive(Clone)]
pub struct Log(pub Arc<dyn Fn(&str) + Send + Sync>);

impl Log {
    /// Messages to nowhere.
    pub fn none() -> Self {
        Self(Arc::new(|_| {}))
    }
    /// Messages to stderr, after `prefix`.
    pub fn stderr(prefix: &'static str) -> Self {
        Self(Arc::new(move |m| eprintln!("{prefix}{m}")))
    }
    pub(crate) fn say(&self, m: &str) {
        (self.0)(m)
    }
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Log")
    }
}

/// The bounds of the HTTP edge (see the module doc).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Requests at once in the `/v1` routes; more are answered 503 at once.
    pub max_in_flight: usize,
    /// Connections at once; more are answered 503 and closed.
    pub max_connections: usize,
    /// Longest wait for a request's headers (from the connection's start, or the end of the
    /// previous answer); then the connection is closed.
    pub header_timeout: Duration,
    /// A keep-alive connection with no request for this long is closed.
    pub idle_timeout: Duration,
    /// Longest an admitted request may take (reading its body included); then 503.
    pub request_timeout: Duration,
    /// After the shutdown signal, how long connections get to finish before they are closed.
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_in_flight: 512,
            max_connections: 10_000,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub addr: SocketAddr,
    pub batch: BatchConfig,
    /// Largest request body in bytes.
    pub body_limit: usize,
    pub limits: Limits,
    /// What `SIGHUP` and a bodiless `POST /admin/reload` load again (`None`: nothing, for a
    /// model handed over in memory; a reload must then name its directory).
    pub source: Option<ModelSource>,
    /// When set, `POST /admin/reload` needs `Authorization: Bearer <token>` and is open to any
    /// address; when not, it is answered only to loopback clients.
    pub admin_token: Option<String>,
    pub log: Log,
}

impl ServeConfig {
    /// Defaults for everything but the address and batching.
    pub fn new(addr: SocketAddr, batch: BatchConfig) -> Self {
        Self {
            addr,
            batch,
            body_limit: 1 << 20,
            limits: Limits::default(),
            source: None,
            admin_token: None,
            log: Log::none(),
        }
    }

    /// Checks that the settings make sense together.
    pub fn validate(&self) -> Result<()> {
        let l = &self.limits;
        if l.max_in_flight == 0 || l.max_connections == 0 {
            return Err(Error::Config(
                "--max-in-flight and --max-connections must be >= 1".into(),
            ));
        }
        if self.batch.queue < l.max_in_flight {
            return Err(Error::Config(format!(
                "--queue ({}) must be at least --max-in-flight ({}): otherwise admitted requests \
                 would be refused by the batch queue behind the bound",
                self.batch.queue, l.max_in_flight
            )));
        }
        for (name, d) in [
            ("--header-timeout", l.header_timeout),
            ("--idle-timeout", l.idle_timeout),
            ("--request-timeout", l.request_timeout),
        ] {
            if d.is_zero() {
                return Err(Error::Config(format!("{name} must be > 0")));
            }
        }
        Ok(())
    }
}

/// Shared by every handler.
pub struct AppState {
    current: RwLock<Arc<Generation>>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) admission: Admission,
    pub(crate) reloader: Reloader,
    pub(crate) log: Log,
    pub(crate) started: Instant,
}

pub type Shared = Arc<AppState>;

impl AppState {
    /// The generation serving new requests now.
    pub fn current(&self) -> Arc<Generation> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Puts `g` in place of the current generation and returns the one it replaced.
    pub(crate) fn swap(&self, g: Arc<Generation>) -> Arc<Generation> {
        let mut w = match self.current.write() {
            Ok(w) => w,
            Err(poisoned) => poisoned.into_inner(),
        };
        std::mem::replace(&mut *w, g)
    }

    /// The recommender being served now.
    pub fn recommender(&self) -> Arc<Recommender> {
        self.current().rec.clone()
    }

    /// The version of the model being served now.
    pub fn version(&self) -> ModelVersion {
        self.current().version.clone()
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

/// Builds the shared state: the first generation (batcher, fold-in) over `rec`, the metrics and
/// the admission bound.
pub fn state(rec: Recommender, cfg: &ServeConfig) -> Result<Shared> {
    cfg.validate()?;
    let metrics = Arc::new(Metrics::new(&rec.scorer.name()));
    let dir = cfg.source.as_ref().map(|s| s.model.as_path());
    let version = ModelVersion::of(&rec, dir);
    metrics.model(&version);
    let g = Generation::start(rec, version, cfg.batch, metrics.clone())?;
    Ok(Arc::new(AppState {
        current: RwLock::new(Arc::new(g)),
        admission: Admission::new(cfg.limits.max_in_flight, cfg.limits.request_timeout),
        reloader: Reloader::new(cfg.batch, cfg.source.clone(), cfg.admin_token.clone()),
        metrics,
        log: cfg.log.clone(),
        started: Instant::now(),
    }))
}

/// `GET /healthz`: status, the model being served, and the load.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct Health {
    pub status: String,
    pub model: ModelVersion,
    pub in_flight: usize,
    pub queue_depth: usize,
    pub uptime_s: f64,
}

async fn healthz(State(st): State<Shared>) -> Response {
    let g = st.current();
    let h = Health {
        status: "ok".into(),
        model: g.version.clone(),
        in_flight: st.admission.in_flight(),
        queue_depth: g.queue_depth(),
        uptime_s: st.started.elapsed().as_secs_f64(),
    };
    let mut r = axum::Json(h).into_response();
    r.headers_mut().insert(api::MODEL_HEADER, g.header.clone());
    r
}

async fn metrics_route(State(st): State<Shared>) -> Response {
    let g = st.current();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        st.metrics.render(g.queue_depth(), st.admission.in_flight()),
    )
        .into_response()
}

/// One request through the edge: admission for the `/v1` routes ([`crate::admission`]), then
/// the router, then route, status and latency into the metrics. Done here, around the router,
/// rather than as two axum middleware layers, each of which boxed a future and cloned a boxed
/// service on every request (about a fifth of the allocations a request made).
pub async fn handle(st: &Shared, app: Router, req: Request) -> Response {
    let route = route_label(req.uri().path());
    let t = Instant::now();
    let resp = if route.starts_with("/v1/") {
        crate::admission::admit(st, app, req).await
    } else {
        match app.oneshot(req).await {
            Ok(r) => r,
            Err(never) => match never {},
        }
    };
    st.metrics
        .request(route, resp.status().as_u16(), t.elapsed().as_secs_f64());
    resp
}

async fn fallback() -> ApiError {
    ApiError::not_found("no such route")
}

/// The routes over `state` (the fuzz target calls it directly). The server puts [`handle`]
/// around it: admission control and metrics are not part of the router.
pub fn router(state: Shared, body_limit: usize) -> Router {
    Router::new()
        .route(
            "/v1/recommend",
            get(api::recommend_get).post(api::recommend_post),
        )
        .route("/v1/recommend/history", post(api::recommend_history))
        .route("/v1/similar", get(api::similar))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_route))
        .route("/admin/reload", post(crate::reload::admin_reload))
        .fallback(fallback)
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// Serves until SIGTERM or Ctrl-C, then drains (at most `drain_timeout`). SIGHUP reloads the
/// model from [`ServeConfig::source`]. `ready` gets the bound address (useful with port 0).
pub async fn serve(state: Shared, cfg: &ServeConfig, ready: impl FnOnce(SocketAddr)) -> Result<()> {
    #[cfg(unix)]
    {
        let st = state.clone();
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(mut hup) => {
                tokio::spawn(async move {
                    while hup.recv().await.is_some() {
                        st.log.say("SIGHUP: reloading the model");
                        let _ = crate::reload::reload(&st, None).await;
                    }
                });
            }
            Err(e) => state.log.say(&format!(
                "cannot listen for SIGHUP ({e}); reload with POST /admin/reload"
            )),
        }
    }
    serve_until(state, cfg, ready, shutdown_signal()).await
}

/// [`serve`] until `shutdown` completes (tests), then drains for at most `drain_timeout`.
pub async fn serve_until(
    state: Shared,
    cfg: &ServeConfig,
    ready: impl FnOnce(SocketAddr),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    cfg.validate()?;
    let listener = crate::conn::listen(cfg.addr)?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Runtime(format!("listener address: {e}")))?;
    let app = router(state.clone(), cfg.body_limit);
    let limits = crate::conn::ConnLimits::new(&cfg.limits, &state.log);
    state.metrics.limits(
        cfg.limits.max_in_flight,
        limits.max_connections,
        limits.nofile,
    );
    ready(addr);
    crate::conn::accept_loop(listener, app, state, limits, shutdown).await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// Default batching: up to 1,024 queries, no waiting (greedy), a queue of 4,096 (at least
/// [`MAX_USERS`], so one many-user request always fits, and above the default in-flight bound).
pub fn default_batch() -> BatchConfig {
    BatchConfig {
        max_batch: 1024,
        max_wait: Duration::ZERO,
        queue: 4096.max(MAX_USERS),
    }
}
