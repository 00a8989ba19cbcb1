//! Recommendations in terms users understand: original ids in, tracks with names out.
//!
//! A [`Recommender`] joins a model with the dataset it was trained on (id maps, training rows for
//! filtering, names) and a [`Scorer`]. The CLI's `recommend`, `similar` and `eval`, the HTTP
//! server and the benchmarks all use it, so every entry point filters, breaks ties and reports
//! names the same way.

use serde::{Deserialize, Serialize};

use crate::als::Factors;
use crate::als::model::Model;
use crate::data::dataset::Dataset;
use crate::data::ids::{Id, IdBuf, Miss};
use crate::error::{Error, Result};
use crate::eval::{Metrics, eval_users, metrics};
use crate::gpu::{DeviceChoice, Gpu};
use crate::infer::{
    BATCH, CpuScorer, GpuScorer, GpuScorerOptions, Ranked, Scorer, normalize_rows, similar_items,
};

/// One recommended track. Its JSON is the one schema for a track everywhere (`recommend
/// --json`, `similar --json`, `--users-file` lines and every HTTP answer, README "Track
/// objects"): `{"id", "name", "artist_id", "artist", "score"}`, the score a float32 written at
/// float32 precision. The dense index is left out: it is an internal position that changes
/// whenever `prep` runs again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Track {
    /// Dense column index (not serialized).
    #[serde(skip)]
    pub index: u32,
    /// Original track id (a number or a string, as the dataset's ids are).
    pub id: IdBuf,
    pub name: Option<String>,
    pub artist_id: Option<u64>,
    pub artist: Option<String>,
    pub score: f32,
}

/// A model with its dataset and scorers.
pub struct Recommender {
    pub model: Model,
    pub dataset: Dataset,
    pub scorer: Box<dyn Scorer>,
    /// Where the scorers run (`Cpu` or `Gpu(n)`, never `Auto`).
    pub device: DeviceChoice,
    similar: std::sync::OnceLock<(Box<dyn Scorer>, Factors)>,
}

/// A scorer over `items` on `device` (`Cpu` or `Gpu(n)`); `prune` orders the items by norm
/// (pointless for unit rows, whose norms are all alike).
fn scorer_on(device: DeviceChoice, items: &Factors, prune: bool) -> Result<Box<dyn Scorer>> {
    match device {
        DeviceChoice::Gpu(n) => Ok(Box::new(GpuScorer::new(
            Gpu::open(n)?,
            items,
            GpuScorerOptions {
                prune,
                ..GpuScorerOptions::default()
            },
        )?)),
        _ if prune => Ok(Box::new(CpuScorer::new(items)?)),
        _ => Ok(Box::new(CpuScorer::unpruned(items)?)),
    }
}

impl Recommender {
    /// The same recommender with its scorer wrapped (or replaced) by `f`.
    pub fn map_scorer(self, f: impl FnOnce(Box<dyn Scorer>) -> Box<dyn Scorer>) -> Self {
        let Self {
            model,
            dataset,
            scorer,
            device,
            similar,
        } = self;
        Self {
            model,
            dataset,
            scorer: f(scorer),
            device,
            similar,
        }
    }

    /// Joins `model` and `dataset` (checked to match) with a CPU scorer.
    pub fn cpu(model: Model, dataset: Dataset) -> Result<Self> {
        Ok(Self::on_device(model, dataset, DeviceChoice::Cpu)?.0)
    }

    /// Joins `model` and `dataset` with a scorer on `device`; with `auto`, a note says when no
    /// GPU was usable and the CPU is used.
    pub fn on_device(
        model: Model,
        dataset: Dataset,
        device: DeviceChoice,
    ) -> Result<(Self, Option<String>)> {
        model.check_dataset(&dataset)?;
        let (device, note) = match device {
            DeviceChoice::Auto => match crate::gpu::resolve(DeviceChoice::Auto)? {
                (Some(g), note) => (DeviceChoice::Gpu(g.ordinal), note),
                (None, note) => (DeviceChoice::Cpu, note),
            },
            d => (d, None),
        };
        let scorer = scorer_on(device, &model.items, true)?;
        Ok((
            Self {
                model,
                dataset,
                scorer,
                device,
                similar: std::sync::OnceLock::new(),
            },
            note,
        ))
    }

    /// Ranking quality @`k` for every user with validation tracks (training tracks excluded).
    pub fn evaluate(&self, k: usize) -> Result<Metrics> {
        let valid = &self.dataset.valid;
        let users = eval_users(valid);
        let rows: Vec<usize> = users.iter().map(|&u| u as usize).collect();
        let ranked: Vec<Vec<u32>> = self
            .recommend_rows(&rows, k, true)?
            .into_iter()
            .map(|r| r.items)
            .collect();
        metrics(&users, &ranked, valid, k)
    }

    /// Dense rows of the users to benchmark with: those with held-out listens, or every user
    /// when the dataset holds none.
    pub fn benchmark_users(&self) -> Vec<usize> {
        let users: Vec<usize> = eval_users(&self.dataset.valid)
            .into_iter()
            .map(|u| u as usize)
            .collect();
        if users.is_empty() {
            (0..self.dataset.train.n_rows).collect()
        } else {
            users
        }
    }

    /// Dense row of an original user id, given as text (an integer's digits, or the string id).
    pub fn user_index(&self, original: &str) -> Result<usize> {
        self.dataset
            .user_ids
            .lookup(original)
            .map_err(|m| Error::NotFound(miss_message(m, "user", original)))
    }

    /// Dense column of an original track id, given as text.
    pub fn item_index(&self, original: &str) -> Result<usize> {
        self.dataset
            .item_ids
            .lookup(original)
            .map_err(|m| Error::NotFound(miss_message(m, "track", original)))
    }

    /// Top `k` for each dense user row; `filter` removes their training tracks.
    pub fn recommend_rows(&self, users: &[usize], k: usize, filter: bool) -> Result<Vec<Ranked>> {
        let kf = self.model.users.k;
        let mut out = Vec::with_capacity(users.len());
        for chunk in users.chunks(BATCH) {
            let mut queries = Vec::with_capacity(chunk.len() * kf);
            for &u in chunk {
                if u >= self.model.users.n {
                    return Err(Error::NotFound(format!("user row {u} out of range")));
                }
                queries.extend_from_slice(self.model.users.row(u));
            }
            let exclude: Vec<&[u32]> = chunk.iter().map(|&u| self.dataset.train.row(u).0).collect();
            out.extend(self.scorer.top_k(
                &queries,
                if filter { Some(&exclude) } else { None },
                k,
            )?);
        }
        Ok(out)
    }

    /// The `k` tracks most similar (cosine) to each dense track column.
    /// The index (a scorer over row-normalised factors) is built on first use.
    pub fn similar_rows(&self, items: &[u32], k: usize) -> Result<Vec<Ranked>> {
        if self.similar.get().is_none() {
            let unit = normalize_rows(&self.model.items);
            let scorer = scorer_on(self.device, &unit, false)?;
            // Two first calls at once may both build; one index is kept.
            let _ = self.similar.set((scorer, unit));
        }
        match self.similar.get() {
            Some((scorer, unit)) => similar_items(scorer.as_ref(), unit, items, k),
            None => Err(Error::Runtime("similarity index unavailable".into())),
        }
    }

    /// Names and original ids for a ranked list.
    pub fn describe(&self, r: &Ranked) -> Vec<Track> {
        r.items
            .iter()
            .zip(self.describe_ref(r))
            .map(|(&index, t)| Track {
                index,
                id: t.id.to_owned(),
                name: t.name.map(str::to_string),
                artist_id: t.artist_id,
                artist: t.artist.map(str::to_string),
                score: t.score,
            })
            .collect()
    }

    /// [`Recommender::describe`] borrowing from the dataset: what the server writes into its
    /// answers without copying a name (the same JSON as [`Track`]).
    pub fn describe_ref<'a>(
        &'a self,
        r: &'a Ranked,
    ) -> impl ExactSizeIterator<Item = TrackRef<'a>> + 'a {
        let names = self.dataset.names.as_ref();
        r.items.iter().zip(&r.scores).map(move |(&i, &score)| {
            let iu = i as usize;
            let nonempty = |s: &'a String| (!s.is_empty()).then_some(s.as_str());
            TrackRef {
                id: self.dataset.item_ids.get(iu),
                name: names.and_then(|n| n.names.get(iu)).and_then(nonempty),
                artist_id: names.and_then(|n| n.artist_ids.get(iu).copied().flatten()),
                artist: names
                    .and_then(|n| n.artist_names.get(iu))
                    .and_then(nonempty),
                score,
            }
        })
    }
}

/// A [`Track`] borrowed from its dataset; serialises to the same JSON.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TrackRef<'a> {
    pub id: Id<'a>,
    pub name: Option<&'a str>,
    pub artist_id: Option<u64>,
    pub artist: Option<&'a str>,
    pub score: f32,
}

/// "unknown user id X", or "not a user id: X" for text that cannot be one.
fn miss_message(m: Miss, what: &str, text: &str) -> String {
    match m {
        Miss::Unknown => format!("unknown {what} id {}", text.trim()),
        Miss::NotAnId => format!("not a {what} id: {:?}", text.trim()),
    }
}
