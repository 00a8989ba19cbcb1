//! One served model: the recommender, its own batching worker and fold-in solver, and its
//! version. A live reload (issue 14) builds a whole new [`Generation`] beside the one serving,
//! and the server swaps a pointer: a request takes the generation current when it starts and
//! keeps it to the end, so requests in flight finish on the old model while new ones go to the
//! new, and nothing a request holds is ever half old, half new.
//!
//! Validation before a swap is complete: [`Model::load`] checks every shape against
//! `model.json`, each factor file against its recorded checksum, and that no factor is NaN or
//! infinite; the model must belong to its dataset (shape and content hash); the scorer is built
//! on the serving device; and one real query must come back with finite scores. Anything that
//! fails leaves the old generation serving.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::http::HeaderValue;
use serde::Serialize;

use crate::batcher::{BatchConfig, Batcher, Users};
use crate::metrics::Metrics;
use encore::als::foldin::FoldIn;
use encore::als::model::Model;
use encore::data::dataset::Dataset;
use encore::error::{Error, Result};
use encore::gpu::DeviceChoice;
use encore::recommend::Recommender;

/// Where a model comes from: its directory, and the dataset to join it with (`None`: the one
/// its `model.json` names, or the one being served when the content hash is the same).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSource {
    pub model: PathBuf,
    pub dataset: Option<PathBuf>,
}

/// What identifies the model being served: in `/healthz`, `/metrics` and every answer.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct ModelVersion {
    /// Content hash: 16 hex digits of blake3 over the factor files' checksums (or the factors
    /// themselves, for a model never saved) and the dataset's content hash.
    pub id: String,
    /// The model directory (`None` for a model handed over in memory).
    pub model_dir: Option<PathBuf>,
    pub dataset_dir: PathBuf,
    pub dataset_hash: String,
    /// When training finished (Unix seconds, and as RFC 3339 UTC).
    pub trained_unix: u64,
    pub trained_at: String,
    /// Seconds the training took.
    pub train_seconds: f64,
    /// When this server loaded it (Unix seconds).
    pub loaded_unix: u64,
    pub users: usize,
    pub items: usize,
    pub factors: usize,
}

impl ModelVersion {
    /// The version of `rec`, loaded from `model_dir` (if it came from disk).
    pub fn of(rec: &Recommender, model_dir: Option<&Path>) -> Self {
        let m = &rec.model;
        let mut h = blake3::Hasher::new();
        h.update(b"encore-model-v1\0");
        match &m.meta.checksums {
            Some(c) => {
                h.update(c.user_factors.as_bytes());
                h.update(b"\0");
                h.update(c.item_factors.as_bytes());
            }
            None => {
                for f in [&m.users, &m.items] {
                    h.update(&(f.n as u64).to_le_bytes());
                    h.update(&(f.k as u64).to_le_bytes());
                    for v in &f.data {
                        h.update(&v.to_le_bytes());
                    }
                }
            }
        }
        h.update(b"\0");
        h.update(rec.dataset.manifest.content_hash.as_bytes());
        let hex = h.finalize().to_hex();
        Self {
            id: hex[..16].to_string(),
            model_dir: model_dir.map(Path::to_path_buf),
            dataset_dir: rec.dataset.dir.clone(),
            dataset_hash: rec.dataset.manifest.content_hash.clone(),
            trained_unix: m.meta.created_unix,
            trained_at: rfc3339(m.meta.created_unix),
            train_seconds: m.meta.train_seconds,
            loaded_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            users: m.users.n,
            items: m.items.n,
            factors: m.items.k,
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` of Unix seconds (proleptic Gregorian, UTC).
pub fn rfc3339(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Days since 1970-01-01 to a civil date, in 400-year eras of 146,097 days counted from
    // 0000-03-01 (so the leap day ends each year).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// A model being served, with its batcher.
pub struct Generation {
    pub rec: Arc<Recommender>,
    pub(crate) batcher: Batcher,
    pub(crate) foldin: FoldIn,
    pub version: ModelVersion,
    /// `version.id` as a header value (`x-encore-model`), made once.
    pub(crate) header: HeaderValue,
    /// `version.id` shared by every answer's `model` field.
    pub(crate) id: Arc<str>,
}

impl Generation {
    /// Starts the batching worker over `rec`'s scorer.
    pub fn start(
        rec: Recommender,
        version: ModelVersion,
        batch: BatchConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Self> {
        let rec = Arc::new(rec);
        let users: Arc<dyn Users> = Arc::new(RecUsers(rec.clone()));
        let scorer: Arc<dyn encore::infer::Scorer> = Arc::new(ScorerRef(rec.clone()));
        let batcher = Batcher::start(batch, scorer, users, metrics)?;
        let foldin = FoldIn::new(&rec.model.items, &rec.model.meta.config);
        let header = HeaderValue::from_str(&version.id)
            .map_err(|e| Error::Runtime(format!("model version {:?}: {e}", version.id)))?;
        Ok(Self {
            rec,
            batcher,
            foldin,
            id: Arc::from(version.id.as_str()),
            version,
            header,
        })
    }

    /// Jobs accepted by this generation's batcher and not yet answered.
    pub fn queue_depth(&self) -> usize {
        self.batcher.depth()
    }
}

/// The recommender's users (factors, training tracks), shared with the batching thread.
struct RecUsers(Arc<Recommender>);

impl Users for RecUsers {
    fn factors(&self, u: usize) -> &[f32] {
        let f = &self.0.model.users;
        f.data.get(u * f.k..(u + 1) * f.k).unwrap_or(&[])
    }
    fn tracks(&self, u: usize) -> &[u32] {
        let t = &self.0.dataset.train;
        if u < t.n_rows { t.row(u).0 } else { &[] }
    }
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
    fn top_k(
        &self,
        q: &[f32],
        ex: Option<&[&[u32]]>,
        k: usize,
    ) -> Result<Vec<encore::infer::Ranked>> {
        self.0.scorer.top_k(q, ex, k)
    }
}

/// Loads `src` and validates it completely (see the module doc) into a recommender on
/// `device`. `current` is the recommender being served: its dataset is reused (not read again)
/// when `src` names none and the new model was trained on data of the same content hash.
pub fn load_checked(
    src: &ModelSource,
    device: DeviceChoice,
    current: Option<&Recommender>,
) -> Result<Recommender> {
    let model = Model::load(&src.model)?;
    let ds = match (&src.dataset, current) {
        (None, Some(cur))
            if cur.dataset.manifest.content_hash == model.meta.dataset.content_hash =>
        {
            cur.dataset.clone()
        }
        (Some(dir), _) => Dataset::load(dir)?,
        (None, _) => Dataset::load(&model.meta.dataset.dir)?,
    };
    // Shape and content hash; `on_device` checks again, but this error names the model.
    model.check_dataset(&ds).map_err(|e| {
        Error::bad_input(
            &src.model,
            format!("does not belong to dataset {}: {e}", ds.dir.display()),
        )
    })?;
    let (rec, _) = Recommender::on_device(model, ds, device)?;
    canary(&rec).map_err(|e| Error::bad_input(&src.model, e))?;
    Ok(rec)
}

/// One real query through the new scorer: user row 0, its training tracks excluded, must come
/// back as one finite, descending list.
fn canary(rec: &Recommender) -> std::result::Result<(), String> {
    if rec.model.users.n == 0 || rec.model.items.n == 0 {
        return Err("the model has no users or no tracks".into());
    }
    let k = rec.model.items.n.min(10);
    let r = rec
        .recommend_rows(&[0], k, false)
        .map_err(|e| format!("a test query failed: {e}"))?;
    let Some(first) = r.first().filter(|_| r.len() == 1) else {
        return Err(format!("a test query gave {} answers for 1 user", r.len()));
    };
    if first.items.len() != k || first.scores.iter().any(|s| !s.is_finite()) {
        return Err(format!(
            "a test query gave {} tracks of {k}, or scores that are not finite",
            first.items.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_709_251_199), "2024-02-29T23:59:59Z");
        assert_eq!(rfc3339(1_798_761_600), "2027-01-01T00:00:00Z");
        assert_eq!(rfc3339(4_107_542_400), "2100-03-01T00:00:00Z");
    }
}
