//! Live model reload: `POST /admin/reload` and SIGHUP load a model directory, validate it
//! completely ([`crate::generation::load_checked`]), start its batcher, and swap it in.
//!
//! The swap replaces one pointer under a write lock held for nanoseconds. A request reads the
//! pointer once, when it starts, and keeps that generation (model, dataset, batcher) to its end:
//! requests in flight finish on the old model, new ones go to the new, and none fails because a
//! swap happened. The old generation is handed to a thread that waits for its last request and
//! then drops it (stopping its batcher), so no request thread ever waits on that.
//!
//! One reload runs at a time (a second is answered 409). A model that fails validation is
//! refused (422 with the reason) and the old one keeps serving; either way the outcome is in the
//! log and in `encore_model_reloads_total{reason}` (`ok`, `refused`). The new model is loaded while the old one
//! serves, so for a moment both are in memory (on the GPU too).
//!
//! Access: with `--admin-token` the route needs `Authorization: Bearer <token>` from anywhere;
//! without one it answers only clients on a loopback address.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::to_bytes;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::api::error_response;
use crate::batcher::BatchConfig;
use crate::generation::{Generation, ModelSource, ModelVersion, load_checked};
use crate::server::Shared;

/// What a reload needs besides the state.
pub struct Reloader {
    busy: tokio::sync::Mutex<()>,
    batch: BatchConfig,
    /// The last source loaded (what the next bodiless reload loads again).
    source: Mutex<Option<ModelSource>>,
    token: Option<String>,
}

impl Reloader {
    pub(crate) fn new(
        batch: BatchConfig,
        source: Option<ModelSource>,
        token: Option<String>,
    ) -> Self {
        Self {
            busy: tokio::sync::Mutex::new(()),
            batch,
            source: Mutex::new(source),
            token,
        }
    }

    fn source(&self) -> Option<ModelSource> {
        match self.source.lock() {
            Ok(s) => s.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn set_source(&self, s: ModelSource) {
        match self.source.lock() {
            Ok(mut g) => *g = Some(s),
            Err(p) => *p.into_inner() = Some(s),
        }
    }
}

/// A successful reload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reloaded {
    pub model: ModelVersion,
    /// The version it replaced.
    pub previous: String,
    /// Loading and validation time.
    pub seconds: f64,
}

/// Why a reload did not happen.
#[derive(Debug, Clone, PartialEq)]
pub enum ReloadError {
    /// Another reload is running.
    Busy,
    /// Nothing to load: no source configured and none given.
    NoSource,
    /// The model failed validation (the reason); the old one keeps serving.
    Refused(String),
}

impl std::fmt::Display for ReloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReloadError::Busy => f.write_str("another reload is running"),
            ReloadError::NoSource => f.write_str(
                "no model directory to reload: the server was given its model in memory; \
                 name one ({\"model\": DIR})",
            ),
            ReloadError::Refused(m) => write!(f, "model refused: {m}"),
        }
    }
}

/// Loads `src` (or the last source loaded), validates it and swaps it in; see the module doc.
pub async fn reload(st: &Shared, src: Option<ModelSource>) -> Result<Reloaded, ReloadError> {
    let r = &st.reloader;
    let Ok(_guard) = r.busy.try_lock() else {
        return Err(ReloadError::Busy);
    };
    let Some(src) = src.or_else(|| r.source()) else {
        return Err(ReloadError::NoSource);
    };
    let t = Instant::now();
    let old = st.current();
    let (st2, src2, old2) = (st.clone(), src.clone(), old.clone());
    let batch = r.batch;
    let built = in_background(move || {
        let rec = load_checked(&src2, old2.rec.device, Some(&old2.rec))?;
        let version = ModelVersion::of(&rec, Some(&src2.model));
        Generation::start(rec, version, batch, st2.metrics.clone())
    })
    .await;
    drop(old);
    let g = match built {
        Ok(Ok(g)) => g,
        Ok(Err(e)) => return Err(refuse(st, &src, e.to_string())),
        Err(e) => return Err(refuse(st, &src, format!("the loading task failed: {e}"))),
    };
    let version = g.version.clone();
    let previous = st.swap(Arc::new(g));
    r.set_source(src.clone());
    st.metrics.model(&version);
    st.metrics.reload(true);
    let seconds = t.elapsed().as_secs_f64();
    st.log.say(&format!(
        "reloaded {}: model {} (trained {}), replacing {} ({seconds:.2} s)",
        src.model.display(),
        version.id,
        version.trained_at,
        previous.version.id
    ));
    let previous_id = previous.version.id.clone();
    retire(previous);
    Ok(Reloaded {
        model: version,
        previous: previous_id,
        seconds,
    })
}

/// Nice value of the threads that load a new model: serving keeps the CPU while a reload
/// reads, checks and uploads gigabytes beside it.
const RELOAD_NICE: libc::c_int = 10;

/// Threads a reload's parallel work (checksums, finiteness, norms) may use: a quarter of the
/// machine, at least one.
fn reload_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 4).max(1))
}

/// Lowers the calling thread's scheduling priority to [`RELOAD_NICE`] (Linux sets nice values
/// per thread). Best effort: a failure leaves the thread at normal priority.
fn lower_this_thread() {
    // SAFETY: gettid has no preconditions; setpriority only reads its arguments, and on Linux
    // PRIO_PROCESS with a thread id changes that one thread.
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, RELOAD_NICE);
    }
}

/// Runs `work` on a thread of its own at low priority, with a small rayon pool of low-priority
/// threads for its parallel parts, so that a reload under load does not take the CPU from the
/// runtime threads and the batcher (measured on the H200 host: under 20,000 req/s a reload on
/// every core made the in-flight bound shed 3,564 requests).
async fn in_background<T: Send + 'static>(
    work: impl FnOnce() -> encore::error::Result<T> + Send + 'static,
) -> std::result::Result<encore::error::Result<T>, String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("encore-reload".into())
        .spawn(move || {
            lower_this_thread();
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(reload_threads())
                .thread_name(|i| format!("encore-reload-{i}"))
                .start_handler(|_| lower_this_thread())
                .build();
            let out = match pool {
                Ok(pool) => pool.install(work),
                Err(_) => work(),
            };
            let _ = tx.send(out);
        })
        .map_err(|e| format!("cannot start the loading thread: {e}"))?;
    rx.await
        .map_err(|_| "the loading thread stopped without an answer".to_string())
}

fn refuse(st: &Shared, src: &ModelSource, why: String) -> ReloadError {
    st.metrics.reload(false);
    st.log.say(&format!(
        "reload of {} refused, still serving {}: {why}",
        src.model.display(),
        st.current().version.id
    ));
    ReloadError::Refused(why)
}

/// Drops `g` once no request holds it any more, on a thread of its own (stopping its batcher
/// joins the batching thread, which must not block a runtime thread).
fn retire(g: Arc<Generation>) {
    let spawned = std::thread::Builder::new()
        .name("encore-retire".into())
        .spawn(move || {
            while Arc::strong_count(&g) > 1 {
                std::thread::sleep(Duration::from_millis(5));
            }
            drop(g);
        });
    // Without a thread the generation is simply dropped by its last request.
    drop(spawned);
}

/// `POST /admin/reload`'s optional body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReloadBody {
    model: Option<PathBuf>,
    dataset: Option<PathBuf>,
}

/// Bytes of a reload request body.
const RELOAD_BODY_LIMIT: usize = 64 << 10;

/// Whether `a` and `b` are equal, in time that depends only on their lengths.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `POST /admin/reload`: the body is empty (reload the last model directory) or
/// `{"model": DIR, "dataset": DIR}` (both optional).
pub(crate) async fn admin_reload(State(st): State<Shared>, req: Request) -> Response {
    match &st.reloader.token {
        Some(token) => {
            let given = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            if !given.is_some_and(|g| same_secret(g.as_bytes(), token.as_bytes())) {
                let mut r = error_response(
                    StatusCode::UNAUTHORIZED,
                    "POST /admin/reload needs Authorization: Bearer <the --admin-token>",
                );
                r.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                return r;
            }
        }
        None => {
            let peer = req
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0);
            if !peer.is_some_and(|p| p.ip().is_loopback()) {
                return error_response(
                    StatusCode::FORBIDDEN,
                    "POST /admin/reload is answered only on a loopback address (start the \
                     server with --admin-token to reload from elsewhere)",
                );
            }
        }
    }
    let body = match to_bytes(req.into_body(), RELOAD_BODY_LIMIT).await {
        Ok(b) => b,
        Err(e) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                &format!("reading the request body: {e}"),
            );
        }
    };
    let src = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        match serde_json::from_slice::<ReloadBody>(&body) {
            Ok(ReloadBody {
                model: Some(model),
                dataset,
            }) => Some(ModelSource { model, dataset }),
            Ok(ReloadBody {
                model: None,
                dataset: Some(dataset),
            }) => match st.reloader.source() {
                Some(s) => Some(ModelSource {
                    model: s.model,
                    dataset: Some(dataset),
                }),
                None => None,
            },
            Ok(_) => None,
            Err(e) => {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    &format!("the body must be empty or {{\"model\": DIR, \"dataset\": DIR}}: {e}"),
                );
            }
        }
    };
    match reload(&st, src).await {
        Ok(r) => axum::Json(r).into_response(),
        Err(e) => {
            let status = match e {
                ReloadError::Busy => StatusCode::CONFLICT,
                ReloadError::NoSource => StatusCode::BAD_REQUEST,
                ReloadError::Refused(_) => StatusCode::UNPROCESSABLE_ENTITY,
            };
            error_response(status, &e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::same_secret;

    #[test]
    fn secrets_compare_by_content_and_length() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"abcd"));
        assert!(!same_secret(b"", b"a"));
    }
}
