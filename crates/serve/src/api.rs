//! The recommendation routes: request validation, JSON answers and JSON errors.
//!
//! Every handler takes the model generation current when it starts ([`AppState::current`](crate::AppState::current)) and
//! uses only that one, so a reload never mixes models inside a request, and every answer names
//! the model that produced it (its `model` field and the `x-encore-model` header). A track is
//! the core's [`Track`](encore::recommend::Track) schema everywhere (README "Track objects").
//!
//! `POST /v1/recommend` answers each user in place: a user id that is unknown, or cannot be an
//! id of this dataset, gets `{"user", "error"}` where its answer would be, as the CLI's
//! `--users-file` does, and the other users are still answered (issue 14).

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::batcher::{Exclude, Job, Query as JobQuery, Refused};
use crate::generation::Generation;
use crate::metrics::Shed;
use crate::server::Shared;
use encore::data::ids::{Id, IdBuf, Ids, Miss};
use encore::error::Result;
use encore::infer::Ranked;

/// Largest k a request may ask for.
pub const MAX_K: usize = 1000;
/// Users per `POST /v1/recommend` (below the default queue, so one request cannot fill it).
pub const MAX_USERS: usize = 1_000;
/// Entries per fold-in history.
pub const MAX_HISTORY: usize = 100_000;

/// The header naming the model version that produced an answer.
pub const MODEL_HEADER: &str = "x-encore-model";

/// A JSON error with its status.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
    pub(crate) fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

/// `{"error": message}` with `status`; a 503 also says when to retry.
pub(crate) fn error_response(status: StatusCode, message: &str) -> Response {
    #[derive(Serialize)]
    struct E<'a> {
        error: &'a str,
    }
    let mut r = (status, Json(E { error: message })).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error_response(self.status, &self.message)
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

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        Self::bad(r.body_text())
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

/// Recommended tracks for one user, as a client reads them.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct UserAnswer {
    /// The user as the dataset names them (a number or a string); `None` for a fold-in.
    pub user: Option<IdBuf>,
    pub k: usize,
    /// The model version that answered ([`crate::generation::ModelVersion::id`]).
    pub model: String,
    pub tracks: Vec<TrackOut>,
}

/// One track in an answer: the core's track schema.
pub type TrackOut = encore::recommend::Track;

/// One element of a `POST /v1/recommend` answer: the user's tracks, or why there are none.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum UserResult {
    Answer(UserAnswer),
    Error {
        /// The id as the request gave it.
        user: IdBuf,
        error: String,
    },
}

/// [`UserAnswer`] as the server writes it, borrowing from the generation.
struct AnswerRef<'a> {
    user: Option<Id<'a>>,
    k: usize,
    model: &'a str,
    tracks: TrackList<'a>,
}

/// A ranked list written as track objects straight from the dataset.
struct TrackList<'a>(&'a Generation, &'a Ranked);

/// `{"user", "error"}` in place of an answer.
struct UserErrorRef<'a> {
    user: &'a IdBuf,
    error: &'a str,
}

/// One element of a many-user answer, as written.
enum ResultRef<'a> {
    Answer(AnswerRef<'a>),
    Error(UserErrorRef<'a>),
}

/// Answers are written by hand around serde_json's own value encoding: the keys of a fixed
/// schema as literal bytes, every value (strings escaped, the f32 score in its shortest form)
/// through `serde_json::to_writer`. Serialising the structs with serde spent a quarter of the
/// server's user-space instructions on JSON, most of it on the five keys of every track
/// (valgrind, BENCHMARKS.md); the output is the same JSON (a test pins it to the core's
/// `Track`).
trait WriteJson {
    fn write(&self, out: &mut Vec<u8>) -> serde_json::Result<()>;
}

/// `v` as a JSON value.
fn value<T: Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) -> serde_json::Result<()> {
    serde_json::to_writer(out, v)
}

impl WriteJson for TrackList<'_> {
    fn write(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        out.push(b'[');
        for (i, t) in self.0.rec.describe_ref(self.1).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"id\":");
            value(out, &t.id)?;
            out.extend_from_slice(b",\"name\":");
            value(out, &t.name)?;
            out.extend_from_slice(b",\"artist_id\":");
            value(out, &t.artist_id)?;
            out.extend_from_slice(b",\"artist\":");
            value(out, &t.artist)?;
            out.extend_from_slice(b",\"score\":");
            value(out, &t.score)?;
            out.push(b'}');
        }
        out.push(b']');
        Ok(())
    }
}

/// `{"<key>": id, "k": k, "model": model, "tracks": [...]}`: the answer to one recommend or
/// similar-items query.
fn write_answer<T: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    key: &[u8],
    id: &T,
    k: usize,
    model: &str,
    tracks: &TrackList<'_>,
) -> serde_json::Result<()> {
    out.extend_from_slice(b"{\"");
    out.extend_from_slice(key);
    out.extend_from_slice(b"\":");
    value(out, id)?;
    out.extend_from_slice(b",\"k\":");
    value(out, &k)?;
    out.extend_from_slice(b",\"model\":");
    value(out, model)?;
    out.extend_from_slice(b",\"tracks\":");
    tracks.write(out)?;
    out.push(b'}');
    Ok(())
}

impl WriteJson for AnswerRef<'_> {
    fn write(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        write_answer(out, b"user", &self.user, self.k, self.model, &self.tracks)
    }
}

impl WriteJson for ResultRef<'_> {
    fn write(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        match self {
            ResultRef::Answer(a) => a.write(out),
            ResultRef::Error(e) => {
                out.extend_from_slice(b"{\"user\":");
                value(out, e.user)?;
                out.extend_from_slice(b",\"error\":");
                value(out, e.error)?;
                out.push(b'}');
                Ok(())
            }
        }
    }
}

impl<T: WriteJson> WriteJson for [T] {
    fn write(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        out.push(b'[');
        for (i, x) in self.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            x.write(out)?;
        }
        out.push(b']');
        Ok(())
    }
}

fn default_k() -> usize {
    10
}
fn default_true() -> bool {
    true
}

#[derive(Debug, Deserialize)]
pub(crate) struct RecommendQuery {
    /// An integer's digits or a string id (URL-encoded).
    user: String,
    #[serde(default = "default_k")]
    k: usize,
    #[serde(default = "default_true")]
    filter: bool,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RecommendBody {
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
pub(crate) struct HistoryBody {
    history: Vec<HistoryEntry>,
    #[serde(default = "default_k")]
    k: usize,
    #[serde(default = "default_true")]
    filter: bool,
}

#[derive(Debug, Deserialize)]
pub(crate) struct SimilarQuery {
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

/// The index of an id's text among `ids`: 404 for an unknown id, 400 for text that cannot be
/// an id of this dataset (not an integer, for integer ids).
fn lookup(ids: &Ids, text: &str, what: &str) -> std::result::Result<usize, ApiError> {
    ids.lookup(text)
        .map_err(|m| ApiError::new(miss_status(m), miss_text(m, ids, what, text)))
}

fn miss_status(m: Miss) -> StatusCode {
    match m {
        Miss::Unknown => StatusCode::NOT_FOUND,
        Miss::NotAnId => StatusCode::BAD_REQUEST,
    }
}

fn miss_text(m: Miss, ids: &Ids, what: &str, text: &str) -> String {
    match m {
        Miss::Unknown => format!("unknown {what} {}", text.trim()),
        Miss::NotAnId => format!(
            "{what} must be {} id, got {:?}",
            match ids.kind() {
                encore::data::ids::IdKind::Int => "an integer",
                encore::data::ids::IdKind::Str => "a string",
            },
            text.trim()
        ),
    }
}

/// A JSON answer with the model's header.
fn json_answer<T: WriteJson + ?Sized>(g: &Generation, body: &T, capacity: usize) -> Response {
    let mut bytes = Vec::with_capacity(capacity);
    match body.write(&mut bytes) {
        Ok(()) => {
            let mut r = Response::new(Body::from(bytes));
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            h.insert(MODEL_HEADER, g.header.clone());
            r
        }
        Err(e) => ApiError::internal(format!("encoding the answer: {e}")).into_response(),
    }
}

/// Bytes to reserve for an answer of `users` × `k` tracks: enough for the usual track object
/// (id, a name, an artist) so the buffer is written without growing.
fn answer_capacity(users: usize, k: usize) -> usize {
    users * (96 + 112 * k)
}

impl Generation {
    /// The job for user row `row` and the receiver of its answer.
    fn user_job(
        &self,
        row: usize,
        k: usize,
        filter: bool,
    ) -> (Job, oneshot::Receiver<Result<Ranked>>) {
        let (tx, rx) = oneshot::channel();
        let job = Job {
            query: JobQuery::User(row),
            exclude: if filter {
                Exclude::UserRow(row)
            } else {
                Exclude::Nothing
            },
            k,
            reply: tx,
        };
        (job, rx)
    }

    fn answer_ref<'a>(&'a self, row: Option<usize>, k: usize, r: &'a Ranked) -> AnswerRef<'a> {
        AnswerRef {
            user: row.map(|u| self.rec.dataset.user_ids.get(u)),
            k,
            model: &self.id,
            tracks: TrackList(self, r),
        }
    }
}

/// The 503 for a refused job (counted by reason).
fn refused(st: &Shared, r: Refused) -> ApiError {
    let (why, text) = match r {
        Refused::Full => (Shed::Queue, "queue full, retry later"),
        Refused::Closed => (Shed::Draining, "shutting down"),
    };
    st.metrics.shed(why);
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, text)
}

/// Waits for a queued query's answer.
async fn answer(rx: oneshot::Receiver<Result<Ranked>>) -> std::result::Result<Ranked, ApiError> {
    rx.await
        .map_err(|_| ApiError::internal("scoring worker stopped"))?
        .map_err(|e| ApiError::internal(e.to_string()))
}

pub(crate) async fn recommend_get(
    State(st): State<Shared>,
    q: std::result::Result<Query<RecommendQuery>, QueryRejection>,
) -> std::result::Result<Response, ApiError> {
    let Query(q) = q?;
    check_k(q.k)?;
    let g = st.current();
    let row = lookup(&g.rec.dataset.user_ids, &q.user, "user")?;
    let (job, rx) = g.user_job(row, q.k, q.filter);
    g.batcher.submit_or_run(job).map_err(|r| refused(&st, r))?;
    let r = answer(rx).await?;
    Ok(json_answer(
        &g,
        &g.answer_ref(Some(row), q.k, &r),
        answer_capacity(1, q.k),
    ))
}

pub(crate) async fn recommend_post(
    State(st): State<Shared>,
    JsonBody(b): JsonBody<RecommendBody>,
) -> std::result::Result<Response, ApiError> {
    check_k(b.k)?;
    if b.users.is_empty() || b.users.len() > MAX_USERS {
        return Err(ApiError::bad(format!(
            "users must hold 1..={MAX_USERS} ids"
        )));
    }
    let g = st.current();
    let ids = &g.rec.dataset.user_ids;
    // Look every id up first; the known ones are queued all at once or not at all, so they
    // share batches and a full queue refuses the whole request. Answers keep the request order.
    let mut jobs = Vec::with_capacity(b.users.len());
    let mut slots: Vec<std::result::Result<(usize, oneshot::Receiver<_>), String>> =
        Vec::with_capacity(b.users.len());
    for u in &b.users {
        let text = u.text();
        match ids.lookup(&text) {
            Ok(row) => {
                let (job, rx) = g.user_job(row, b.k, b.filter);
                jobs.push(job);
                slots.push(Ok((row, rx)));
            }
            Err(m) => slots.push(Err(miss_text(m, ids, "user", &text))),
        }
    }
    if !jobs.is_empty() {
        g.batcher.submit_all(jobs).map_err(|r| refused(&st, r))?;
    }
    let mut ranked = Vec::with_capacity(slots.len());
    for s in slots {
        ranked.push(match s {
            Ok((row, rx)) => Ok((row, answer(rx).await?)),
            Err(e) => Err(e),
        });
    }
    let out: Vec<ResultRef<'_>> = ranked
        .iter()
        .zip(&b.users)
        .map(|(r, user)| match r {
            Ok((row, r)) => ResultRef::Answer(g.answer_ref(Some(*row), b.k, r)),
            Err(error) => ResultRef::Error(UserErrorRef { user, error }),
        })
        .collect();
    Ok(json_answer(&g, &out[..], answer_capacity(out.len(), b.k)))
}

pub(crate) async fn recommend_history(
    State(st): State<Shared>,
    JsonBody(b): JsonBody<HistoryBody>,
) -> std::result::Result<Response, ApiError> {
    check_k(b.k)?;
    if b.history.is_empty() || b.history.len() > MAX_HISTORY {
        return Err(ApiError::bad(format!(
            "history must hold 1..={MAX_HISTORY} entries"
        )));
    }
    let g = st.current();
    let mut hist = Vec::with_capacity(b.history.len());
    for h in &b.history {
        if !(h.plays.is_finite() && h.plays > 0.0) {
            return Err(ApiError::bad(format!(
                "plays of track {} must be > 0",
                h.track
            )));
        }
        let i = lookup(&g.rec.dataset.item_ids, &h.track.text(), "track")?;
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
    let (g2, hist2) = (g.clone(), merged.clone());
    let x = tokio::task::spawn_blocking(move || g2.foldin.solve(&g2.rec.model.items, &hist2))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
    let ex = if b.filter {
        Exclude::Items(merged.iter().map(|&(i, _)| i).collect())
    } else {
        Exclude::Nothing
    };
    let (tx, rx) = oneshot::channel();
    g.batcher
        .submit_or_run(Job {
            query: JobQuery::Vector(x),
            exclude: ex,
            k: b.k,
            reply: tx,
        })
        .map_err(|r| refused(&st, r))?;
    let r = answer(rx).await?;
    Ok(json_answer(
        &g,
        &g.answer_ref(None, b.k, &r),
        answer_capacity(1, b.k),
    ))
}

/// `GET /v1/similar`'s answer, as written.
struct SimilarRef<'a> {
    item: Id<'a>,
    k: usize,
    model: &'a str,
    tracks: TrackList<'a>,
}

impl WriteJson for SimilarRef<'_> {
    fn write(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        write_answer(out, b"item", &self.item, self.k, self.model, &self.tracks)
    }
}

pub(crate) async fn similar(
    State(st): State<Shared>,
    q: std::result::Result<Query<SimilarQuery>, QueryRejection>,
) -> std::result::Result<Response, ApiError> {
    let Query(q) = q?;
    check_k(q.k)?;
    let g = st.current();
    let item = lookup(&g.rec.dataset.item_ids, &q.item, "track")?;
    let (g2, k) = (g.clone(), q.k);
    let r = tokio::task::spawn_blocking(move || g2.rec.similar_rows(&[item as u32], k))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let empty = Ranked {
        items: Vec::new(),
        scores: Vec::new(),
    };
    let r = r.first().unwrap_or(&empty);
    Ok(json_answer(
        &g,
        &SimilarRef {
            item: g.rec.dataset.item_ids.get(item),
            k: q.k,
            model: &g.id,
            tracks: TrackList(&g, r),
        },
        answer_capacity(1, q.k),
    ))
}
