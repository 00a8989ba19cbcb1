//! `encore serve`: recommendations over HTTP (axum on tokio) with dynamic batching.
//!
//! Routes (JSON): `GET /v1/recommend?user=ID&k=10&filter=true`, `POST /v1/recommend` with many
//! users, `POST /v1/recommend/history` for a listener the model has never seen (fold-in),
//! `GET /v1/similar?item=ID&k=10`, `GET /healthz`, `GET /metrics` (Prometheus text).
//!
//! Every recommendation goes through the [`batcher`](crate::batcher): handlers validate, queue one job per user
//! and await their answers, so concurrent requests share `Scorer::top_k` calls on the CPU or
//! GPU. Errors are JSON `{"error": ...}`: unknown user or track → 404, bad parameters or
//! malformed JSON → 400, a body over the limit → 413, a full queue → 503 with Retry-After.
//! SIGTERM or Ctrl-C stops accepting connections and lets in-flight requests finish.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequest, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::batcher::{BatchConfig, Batcher, Exclude, Job, Refused};
use crate::metrics::Metrics;
use encore::als::foldin::FoldIn;
use encore::data::ids::IdBuf;
use encore::error::{Error, Result};
use encore::infer::Ranked;
use encore::recommend::{Recommender, Track};

/// Largest k a request may ask for.
pub const MAX_K: usize = 1000;
/// Users per `POST /v1/recommend` (below the default queue, so one request cannot fill it).
pub const MAX_USERS: usize = 1_000;
/// Entries per fold-in history.
pub const MAX_HISTORY: usize = 100_000;

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub addr: SocketAddr,
    pub batch: BatchConfig,
    /// Largest request body in bytes.
    pub body_limit: usize,
}

/// Shared by every handler.
pub struct AppState {
    rec: Arc<Recommender>,
    batcher: Batcher,
    foldin: FoldIn,
    metrics: Arc<Metrics>,
}

/// A JSON error with its status.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
    fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let status = if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            StatusCode::PAYLOAD_TOO_LARGE
        } else {
            StatusCode::BAD_REQUEST
        };
        Self::new(status, r.body_text())
    }
}

/// A JSON request body: axum's `Json` (same content-type check, same rejections) after a check
/// that the whole body is UTF-8. serde skips the fields a request type ignores without looking
/// at their strings, so `Json` alone accepted invalid UTF-8 inside an unknown key (found by
/// fuzzing `serve_requests`, issue 13); such a body is not JSON and is answered 400.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> std::result::Result<Self, ApiError> {
        let (parts, body) = req.into_parts();
        let bytes = Bytes::from_request(Request::from_parts(parts.clone(), body), state)
            .await
            .map_err(|r| {
                let status = if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    StatusCode::PAYLOAD_TOO_LARGE
                } else {
                    StatusCode::BAD_REQUEST
                };
                ApiError::new(status, r.body_text())
            })?;
        if let Err(e) = std::str::from_utf8(&bytes) {
            return Err(ApiError::bad(format!(
                "request body is not valid UTF-8 (byte {}), so not JSON",
                e.valid_up_to()
            )));
        }
        let Json(v) = Json::<T>::from_request(Request::from_parts(parts, Body::from(bytes)), state)
            .await
            .map_err(ApiError::from)?;
        Ok(Self(v))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        Self::bad(r.body_text())
    }
}

/// Recommended tracks for one user.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct UserAnswer {
    /// The user as the dataset names them (a number or a string); `None` for a fold-in.
    pub user: Option<IdBuf>,
    pub k: usize,
    pub tracks: Vec<TrackOut>,
}

/// One track in an answer.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct TrackOut {
    pub track_id: IdBuf,
    pub name: Option<String>,
    pub artist_id: Option<u64>,
    pub artist: Option<String>,
    pub score: f32,
}

impl From<Track> for TrackOut {
    fn from(t: Track) -> Self {
        Self {
            track_id: t.id,
            name: t.name,
            artist_id: t.artist_id,
            artist: t.artist,
            score: t.score,
        }
    }
}

fn default_k() -> usize {
    10
}
fn default_true() -> bool {
    true
}

#[derive(Debug, Deserialize)]
struct RecommendQuery {
    /// An integer's digits or a string id (URL-encoded).
    user: String,
    #[serde(default = "default_k")]
    k: usize,
    #[serde(default = "default_true")]
    filter: bool,
}

#[derive(Debug, Deserialize)]
struct RecommendBody {
    /// JSON numbers or strings.
    users: Vec<IdBuf>,
    #[serde(default = "default_k")]
    k: usize,
    #[serde(default = "default_true")]
    filter: bool,
}

#[derive(Debug, Deserialize)]
struct HistoryEntry {
    track: IdBuf,
    plays: f32,
}

#[derive(Debug, Deserialize)]
struct HistoryBody {
    history: Vec<HistoryEntry>,
    #[serde(default = "default_k")]
    k: usize,
    #[serde(default = "default_true")]
    filter: bool,
}

#[derive(Debug, Deserialize)]
struct SimilarQuery {
    item: String,
    #[serde(default = "default_k")]
    k: usize,
}

fn check_k(k: usize) -> std::result::Result<(), ApiError> {
    if (1..=MAX_K).contains(&k) {
        Ok(())
    } else {
        Err(ApiError::bad(format!("k must be 1..={MAX_K}, got {k}")))
    }
}

impl AppState {
    /// Queues one query and waits for its answer.
    async fn ask(
        &self,
        query: Vec<f32>,
        exclude: Exclude,
        k: usize,
    ) -> std::result::Result<Ranked, ApiError> {
        let rx = self.queue(query, exclude, k)?;
        answer(rx).await
    }

    /// Queues one query; the receiver yields its answer.
    fn queue(
        &self,
        query: Vec<f32>,
        exclude: Exclude,
        k: usize,
    ) -> std::result::Result<oneshot::Receiver<Result<Ranked>>, ApiError> {
        let (tx, rx) = oneshot::channel();
        self.batcher
            .submit_or_run(Job {
                query,
                exclude,
                k,
                reply: tx,
            })
            .map_err(refused)?;
        Ok(rx)
    }

    /// The job for a known user (404 for an unknown one) and the receiver of its answer.
    fn user_job(
        &self,
        user: &str,
        k: usize,
        filter: bool,
    ) -> std::result::Result<(Job, oneshot::Receiver<Result<Ranked>>, IdBuf), ApiError> {
        let row = self.user_row(user)?;
        let (tx, rx) = oneshot::channel();
        let job = Job {
            query: self.rec.model.users.row(row).to_vec(),
            exclude: if filter {
                Exclude::UserRow(row)
            } else {
                Exclude::Nothing
            },
            k,
            reply: tx,
        };
        Ok((job, rx, self.rec.dataset.user_ids.get(row).to_owned()))
    }

    /// The row of a user id's text: 404 for an unknown id, 400 for text that cannot be one.
    fn user_row(&self, user: &str) -> std::result::Result<usize, ApiError> {
        lookup(&self.rec.dataset.user_ids, user, "user")
    }

    fn user_answer(&self, user: Option<IdBuf>, k: usize, r: &Ranked) -> UserAnswer {
        UserAnswer {
            user,
            k,
            tracks: self
                .rec
                .describe(r)
                .into_iter()
                .map(TrackOut::from)
                .collect(),
        }
    }
}

impl AppState {
    /// The recommender being served.
    pub fn recommender(&self) -> &Recommender {
        &self.rec
    }
}

/// The index of an id's text among `ids`: 404 for an unknown id, 400 for text that cannot be
/// an id of this dataset (not an integer, for integer ids).
fn lookup(
    ids: &encore::data::ids::Ids,
    text: &str,
    what: &str,
) -> std::result::Result<usize, ApiError> {
    use encore::data::ids::Miss;
    ids.lookup(text).map_err(|m| match m {
        Miss::Unknown => ApiError::not_found(format!("unknown {what} {}", text.trim())),
        Miss::NotAnId => ApiError::bad(format!(
            "{what} must be a {} id, got {:?}",
            ids.kind().name(),
            text.trim()
        )),
    })
}

/// The 503 for a refused job.
fn refused(r: Refused) -> ApiError {
    match r {
        Refused::Full => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "queue full, retry later"),
        Refused::Closed => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting down"),
    }
}

/// Waits for a queued query's answer.
async fn answer(rx: oneshot::Receiver<Result<Ranked>>) -> std::result::Result<Ranked, ApiError> {
    rx.await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "scoring worker stopped"))?
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

pub type Shared = Arc<AppState>;

async fn recommend_get(
    State(st): State<Shared>,
    q: std::result::Result<Query<RecommendQuery>, QueryRejection>,
) -> std::result::Result<Json<UserAnswer>, ApiError> {
    let Query(q) = q?;
    check_k(q.k)?;
    let (job, rx, user) = st.user_job(&q.user, q.k, q.filter)?;
    st.batcher.submit_or_run(job).map_err(refused)?;
    let r = answer(rx).await?;
    Ok(Json(st.user_answer(Some(user), q.k, &r)))
}

async fn recommend_post(
    State(st): State<Shared>,
    JsonBody(b): JsonBody<RecommendBody>,
) -> std::result::Result<Json<Vec<UserAnswer>>, ApiError> {
    check_k(b.k)?;
    if b.users.is_empty() || b.users.len() > MAX_USERS {
        return Err(ApiError::bad(format!(
            "users must hold 1..={MAX_USERS} ids"
        )));
    }
    // Build every job first (an unknown id fails before anything is queued), then queue them
    // all at once or none, so they share batches; answers are collected in order.
    let mut jobs = Vec::with_capacity(b.users.len());
    let mut pending = Vec::with_capacity(b.users.len());
    for u in &b.users {
        let (job, rx, user) = st.user_job(&u.text(), b.k, b.filter)?;
        jobs.push(job);
        pending.push((user, rx));
    }
    st.batcher.submit_all(jobs).map_err(refused)?;
    let mut out = Vec::with_capacity(pending.len());
    for (u, rx) in pending {
        let r = answer(rx).await?;
        out.push(st.user_answer(Some(u), b.k, &r));
    }
    Ok(Json(out))
}

async fn recommend_history(
    State(st): State<Shared>,
    JsonBody(b): JsonBody<HistoryBody>,
) -> std::result::Result<Json<UserAnswer>, ApiError> {
    check_k(b.k)?;
    if b.history.is_empty() || b.history.len() > MAX_HISTORY {
        return Err(ApiError::bad(format!(
            "history must hold 1..={MAX_HISTORY} entries"
        )));
    }
    let mut hist = Vec::with_capacity(b.history.len());
    for h in &b.history {
        if !(h.plays.is_finite() && h.plays > 0.0) {
            return Err(ApiError::bad(format!(
                "plays of track {} must be > 0",
                h.track
            )));
        }
        let i = lookup(&st.rec.dataset.item_ids, &h.track.text(), "track")?;
        hist.push((i as u32, h.plays));
    }
    // Repeated tracks add their plays, as prep's aggregation does.
    hist.sort_unstable_by_key(|&(i, _)| i);
    let mut merged: Vec<(u32, f32)> = Vec::with_capacity(hist.len());
    for (i, p) in hist {
        match merged.last_mut() {
            Some((j, q)) if *j == i => *q += p,
            _ => merged.push((i, p)),
        }
    }
    // O(n·k²) in f64: off the async workers for long histories.
    let (st2, hist2) = (st.clone(), merged.clone());
    let x = tokio::task::spawn_blocking(move || st2.foldin.solve(&st2.rec.model.items, &hist2))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
    let ex = if b.filter {
        Exclude::Items(merged.iter().map(|&(i, _)| i).collect())
    } else {
        Exclude::Nothing
    };
    let r = st.ask(x, ex, b.k).await?;
    Ok(Json(st.user_answer(None, b.k, &r)))
}

async fn similar(
    State(st): State<Shared>,
    q: std::result::Result<Query<SimilarQuery>, QueryRejection>,
) -> std::result::Result<Json<serde_json::Value>, ApiError> {
    let Query(q) = q?;
    check_k(q.k)?;
    let item = lookup(&st.rec.dataset.item_ids, &q.item, "track")?;
    let item_id = st.rec.dataset.item_ids.get(item).to_owned();
    let st2 = st.clone();
    let k = q.k;
    let tracks = tokio::task::spawn_blocking(move || -> Result<Vec<TrackOut>> {
        let r = st2.rec.similar_rows(&[item as u32], k)?;
        Ok(r.first()
            .map(|r| st2.rec.describe(r))
            .unwrap_or_default()
            .into_iter()
            .map(TrackOut::from)
            .collect())
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Json(
        serde_json::json!({ "item": item_id, "k": q.k, "tracks": tracks }),
    ))
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn metrics_route(State(st): State<Shared>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        st.metrics.render(st.batcher.depth()),
    )
        .into_response()
}

/// Records route, status and latency of every request.
async fn observe(
    State(st): State<Shared>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let route = req.uri().path().to_string();
    let t = Instant::now();
    let resp = next.run(req).await;
    let route = match route.as_str() {
        "/v1/recommend" | "/v1/recommend/history" | "/v1/similar" | "/healthz" | "/metrics" => {
            route
        }
        _ => "other".into(),
    };
    st.metrics
        .request(&route, resp.status().as_u16(), t.elapsed().as_secs_f64());
    resp
}

async fn fallback() -> ApiError {
    ApiError::not_found("no such route")
}

/// The router over `state` (also used by tests with their own listener).
pub fn router(state: Shared, body_limit: usize) -> Router {
    Router::new()
        .route("/v1/recommend", get(recommend_get).post(recommend_post))
        .route("/v1/recommend/history", post(recommend_history))
        .route("/v1/similar", get(similar))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_route))
        .fallback(fallback)
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// Builds the shared state: the batcher over the recommender's scorer, fold-in and metrics.
pub fn state(rec: Recommender, cfg: &ServeConfig) -> Result<Shared> {
    let rec = Arc::new(rec);
    let metrics = Arc::new(Metrics::new(&rec.scorer.name()));
    let rows_rec = rec.clone();
    let rows = Arc::new(move |u: usize| rows_rec.dataset.train.row(u).0.to_vec());
    let scorer: Arc<dyn encore::infer::Scorer> = Arc::new(ScorerRef(rec.clone()));
    let batcher = Batcher::start(cfg.batch, scorer, rows, metrics.clone())?;
    let foldin = FoldIn::new(&rec.model.items, &rec.model.meta.config);
    Ok(Arc::new(AppState {
        rec,
        batcher,
        foldin,
        metrics,
    }))
}

/// The recommender's scorer, shared with the batching thread.
struct ScorerRef(Arc<Recommender>);

impl encore::infer::Scorer for ScorerRef {
    fn name(&self) -> String {
        self.0.scorer.name()
    }
    fn n_items(&self) -> usize {
        self.0.scorer.n_items()
    }
    fn n_factors(&self) -> usize {
        self.0.scorer.n_factors()
    }
    fn top_k(&self, q: &[f32], ex: Option<&[&[u32]]>, k: usize) -> Result<Vec<Ranked>> {
        self.0.scorer.top_k(q, ex, k)
    }
}

/// Serves until SIGTERM or Ctrl-C, then drains in-flight requests. `ready` gets the bound
/// address (useful with port 0).
pub async fn serve(state: Shared, cfg: &ServeConfig, ready: impl FnOnce(SocketAddr)) -> Result<()> {
    serve_until(state, cfg, ready, shutdown_signal()).await
}

/// [`serve`] until `shutdown` completes (tests), then drains in-flight requests.
pub async fn serve_until(
    state: Shared,
    cfg: &ServeConfig,
    ready: impl FnOnce(SocketAddr),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(cfg.addr)
        .await
        .map_err(|e| Error::Runtime(format!("cannot listen on {}: {e}", cfg.addr)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Runtime(format!("listener address: {e}")))?;
    ready(addr);
    axum::serve(listener, router(state, cfg.body_limit))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| Error::Runtime(format!("server error: {e}")))
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

/// Default batching: up to 1,024 queries, no waiting (greedy), a queue of 4,096.
pub fn default_batch() -> BatchConfig {
    BatchConfig {
        max_batch: 1024,
        max_wait: Duration::ZERO,
        queue: 4096,
    }
}
