//! Successive halving over iterations (Jamieson & Talwalkar 2016; the inner loop of Hyperband,
//! Li et al. 2017): every trial trains a few iterations and is scored; the best 1/η go on to
//! η times as many iterations, and so on up to the full count. ALS ranks configurations early —
//! a λ or α that is far off is far off after two iterations — so most of the time goes to the
//! configurations that might win instead of being spread evenly.
//!
//! The driver is separate from training ([`Advance`]), so its rules are tested on an objective
//! whose best point is planted.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::als::AlsConfig;
use crate::error::Result;

/// The cumulative iteration counts at which trials are scored: `min`, `min·η`, `min·η²`, …,
/// and always `max` last.
pub fn schedule(min: usize, max: usize, eta: usize) -> Vec<usize> {
    let (min, eta) = (min.clamp(1, max.max(1)), eta.max(2));
    let mut out = Vec::new();
    let mut r = min;
    while r < max {
        out.push(r);
        r = r.saturating_mul(eta);
    }
    out.push(max.max(1));
    out
}

/// One trial's score after a number of iterations, on the tuning hold-out.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RungScore {
    pub iterations: usize,
    /// nDCG@K (the objective).
    pub ndcg: f64,
    pub precision: f64,
    /// Seconds this trial spent reaching this rung from the previous one (training and
    /// scoring).
    pub seconds: f64,
}

/// One configuration tried, and how far it got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trial {
    /// 1-based, in the order drawn.
    pub id: usize,
    pub config: AlsConfig,
    /// One per rung reached.
    pub scores: Vec<RungScore>,
    /// Why the trial failed (its factors became non-finite, say), when it did: a failed trial
    /// is dropped, the search goes on.
    pub error: Option<String>,
}

impl Trial {
    /// The score at the last rung reached (−∞ when none).
    pub fn last_ndcg(&self) -> f64 {
        self.scores.last().map_or(f64::NEG_INFINITY, |s| s.ndcg)
    }
}

/// Trains and scores trials: what the driver needs of training.
pub trait Advance {
    /// Trains `trial` (configuration `cfg`) on to `iterations` in all and scores it:
    /// (nDCG@K, precision@K).
    fn advance(&mut self, trial: usize, cfg: &AlsConfig, iterations: usize) -> Result<(f64, f64)>;
    /// `trial` will not be advanced again: its state may go.
    fn forget(&mut self, trial: usize);
}

/// What the search did.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub trials: Vec<Trial>,
    /// Index into `trials` of the best: the best score among the trials that reached the
    /// furthest rung (ties: the earlier trial).
    pub best: Option<usize>,
    /// Whether the time budget stopped the search before the schedule ended.
    pub out_of_time: bool,
}

/// Runs successive halving of `configs` over `rungs` (from [`schedule`]), keeping the best
/// ⌈n/η⌉ of each rung. Stops starting new work once `budget_s` seconds have passed.
/// `progress(iterations_done, trials_so_far)` is told after every trial segment.
pub fn run(
    configs: Vec<AlsConfig>,
    rungs: &[usize],
    eta: usize,
    budget_s: Option<f64>,
    adv: &mut dyn Advance,
    mut progress: impl FnMut(usize, &[Trial]),
) -> Outcome {
    let started = Instant::now();
    let mut trials: Vec<Trial> = configs
        .into_iter()
        .enumerate()
        .map(|(i, config)| Trial {
            id: i + 1,
            config,
            scores: Vec::new(),
            error: None,
        })
        .collect();
    let mut alive: Vec<usize> = (0..trials.len()).collect();
    let mut out_of_time = false;
    let mut done = 0usize;
    'rungs: for (r, &iters) in rungs.iter().enumerate() {
        let before = if r == 0 { 0 } else { rungs[r - 1] };
        for &t in &alive {
            if budget_s.is_some_and(|b| started.elapsed().as_secs_f64() >= b) {
                out_of_time = true;
                break 'rungs;
            }
            let t0 = Instant::now();
            let cfg = trials[t].config.clone();
            match adv.advance(t, &cfg, iters) {
                Ok((ndcg, precision)) if ndcg.is_finite() => trials[t].scores.push(RungScore {
                    iterations: iters,
                    ndcg,
                    precision,
                    seconds: t0.elapsed().as_secs_f64(),
                }),
                Ok((ndcg, _)) => trials[t].error = Some(format!("score {ndcg}")),
                Err(e) => trials[t].error = Some(e.to_string()),
            }
            done += iters - before;
            progress(done, &trials);
        }
        // The trials scored at this rung, best first; the top ⌈n/η⌉ go on.
        let mut ranked: Vec<usize> = alive
            .iter()
            .copied()
            .filter(|&t| trials[t].error.is_none() && trials[t].scores.len() == r + 1)
            .collect();
        ranked.sort_by(|&a, &b| {
            trials[b]
                .last_ndcg()
                .total_cmp(&trials[a].last_ndcg())
                .then(a.cmp(&b))
        });
        let keep = if r + 1 == rungs.len() {
            0
        } else {
            ranked.len().div_ceil(eta.max(2))
        };
        for &t in alive.iter() {
            if !ranked[..keep].contains(&t) {
                adv.forget(t);
            }
        }
        alive = ranked[..keep].to_vec();
    }
    let best = (0..trials.len())
        .filter(|&t| trials[t].error.is_none() && !trials[t].scores.is_empty())
        .max_by(|&a, &b| {
            let (ta, tb) = (&trials[a], &trials[b]);
            ta.scores
                .len()
                .cmp(&tb.scores.len())
                .then(ta.last_ndcg().total_cmp(&tb.last_ndcg()))
                .then(b.cmp(&a))
        });
    Outcome {
        trials,
        best,
        out_of_time,
    }
}

/// Iterations the schedule trains in all for `n` trials (the progress bar's length).
pub fn planned_iterations(n: usize, rungs: &[usize], eta: usize) -> usize {
    let mut alive = n;
    let mut total = 0;
    for (r, &iters) in rungs.iter().enumerate() {
        let before = if r == 0 { 0 } else { rungs[r - 1] };
        total += alive * (iters - before);
        alive = alive.div_ceil(eta.max(2));
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::als::Confidence;
    use crate::error::Error;

    #[test]
    fn schedules_grow_by_eta_and_end_at_the_full_count() {
        assert_eq!(schedule(2, 15, 3), vec![2, 6, 15]);
        assert_eq!(schedule(1, 15, 2), vec![1, 2, 4, 8, 15]);
        assert_eq!(schedule(5, 5, 3), vec![5]);
        assert_eq!(schedule(20, 15, 3), vec![15]);
        assert_eq!(
            planned_iterations(27, &[2, 6, 15], 3),
            27 * 2 + 9 * 4 + 3 * 9
        );
    }

    /// A planted objective: best at λ = 30, α = 1, k = 64; scores rise with iterations, and a
    /// poor configuration leads early on (so halving must not keep only the early leaders).
    struct Planted {
        calls: Vec<(usize, usize)>,
        forgotten: Vec<usize>,
    }

    impl Advance for Planted {
        fn advance(&mut self, t: usize, cfg: &AlsConfig, iters: usize) -> Result<(f64, f64)> {
            self.calls.push((t, iters));
            if cfg.alpha > 50.0 {
                return Err(Error::Numerical("non-finite factors".into()));
            }
            let d = (cfg.regularization.ln() - 30f32.ln()).powi(2)
                + cfg.alpha.ln().powi(2)
                + if cfg.factors == 64 { 0.0 } else { 0.5 };
            let q = 1.0 / (1.0 + f64::from(d));
            let it = iters as f64 / 15.0;
            Ok((q * it, q))
        }
        fn forget(&mut self, t: usize) {
            self.forgotten.push(t);
        }
    }

    fn cfg(reg: f32, alpha: f32, factors: usize) -> AlsConfig {
        AlsConfig {
            regularization: reg,
            alpha,
            factors,
            confidence: Confidence::Log,
            ..AlsConfig::default()
        }
    }

    #[test]
    fn halving_finds_the_planted_best_and_drops_failures() {
        let mut configs = Vec::new();
        for reg in [0.1, 1.0, 10.0, 30.0, 100.0, 1000.0] {
            for alpha in [0.3, 1.0, 3.0, 100.0] {
                configs.push(cfg(reg, alpha, 32));
                configs.push(cfg(reg, alpha, 64));
            }
        }
        let n = configs.len();
        let mut p = Planted {
            calls: Vec::new(),
            forgotten: Vec::new(),
        };
        let rungs = schedule(2, 15, 3);
        let mut last_done = 0;
        let out = run(configs, &rungs, 3, None, &mut p, |d, _| last_done = d);
        let best = &out.trials[out.best.unwrap()];
        assert_eq!(
            (
                best.config.regularization,
                best.config.alpha,
                best.config.factors
            ),
            (30.0, 1.0, 64)
        );
        assert_eq!(best.scores.len(), 3);
        assert_eq!(best.scores[2].iterations, 15);
        assert!(!out.out_of_time);
        // α = 100 trials failed at the first rung and went no further.
        let failed: Vec<&Trial> = out.trials.iter().filter(|t| t.error.is_some()).collect();
        assert_eq!(failed.len(), 12);
        assert!(failed.iter().all(|t| t.scores.is_empty()));
        // Rung sizes: n, then ⌈(n − failures)/3⌉, then a third of that.
        let at = |it: usize| p.calls.iter().filter(|c| c.1 == it).count();
        assert_eq!((at(2), at(6), at(15)), (n, 12, 4));
        assert_eq!(last_done, 2 * n + 4 * 12 + 9 * 4);
        // Every trial is forgotten exactly once.
        let mut f = p.forgotten.clone();
        f.sort_unstable();
        assert_eq!(f, (0..n).collect::<Vec<_>>());
    }

    #[test]
    fn an_exhausted_budget_stops_the_search_and_still_names_a_best() {
        let configs = vec![cfg(30.0, 1.0, 64), cfg(1.0, 1.0, 64)];
        let mut p = Planted {
            calls: Vec::new(),
            forgotten: Vec::new(),
        };
        let out = run(configs, &[2, 6], 3, Some(0.0), &mut p, |_, _| {});
        assert!(out.out_of_time);
        assert!(p.calls.is_empty());
        assert_eq!(out.best, None);
    }
}
