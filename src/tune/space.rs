//! The search space of `tune`: which values of λ, α, the confidence function, k and ν (the
//! exponent of frequency-scaled regularisation, λ·(n / n̄)^ν per row) are tried, and how random
//! and grid search draw them. ν is searched over a list of values (by default only Encore's
//! default, 0.5, since the best λ moves with ν and the λ × α figure is clearest at one ν).
//!
//! λ and α act multiplicatively (doubling λ matters as much at 1 as at 100), so a range is
//! sampled log-uniformly and a grid over a range is log-spaced. Every drawn value is rounded to
//! three significant digits, so the configuration a trial ran is exactly the one its printed
//! `encore train` command reproduces.

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;
use serde::{Deserialize, Serialize};

use crate::als::{AlsConfig, Confidence};
use crate::error::{Error, Result};

/// The values one real hyper-parameter may take.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Dim {
    /// Log-uniform in `[lo, hi]` (random search); `points` log-spaced values from `lo` to `hi`
    /// (grid search). Both ends > 0.
    LogRange { lo: f32, hi: f32 },
    /// Exactly these values (drawn uniformly by random search).
    Values(Vec<f32>),
}

impl Dim {
    /// Parses `LO:HI` (a log range) or `V1,V2,...` (values; one value fixes the parameter).
    /// `what` names the flag in errors.
    pub fn parse(s: &str, what: &str) -> Result<Self> {
        let bad = |m: String| Err(Error::Config(format!("{what} {s:?}: {m}")));
        let num = |t: &str| -> Result<f32> {
            match t.trim().parse::<f32>() {
                Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
                _ => Err(Error::Config(format!(
                    "{what} {s:?}: {t:?} is not a finite number >= 0"
                ))),
            }
        };
        if let Some((lo, hi)) = s.split_once(':') {
            let (lo, hi) = (num(lo)?, num(hi)?);
            if !(lo > 0.0 && hi >= lo) {
                return bad("a range LO:HI needs 0 < LO <= HI".into());
            }
            return Ok(Self::LogRange { lo, hi });
        }
        let values = s.split(',').map(num).collect::<Result<Vec<f32>>>()?;
        if values.is_empty() {
            return bad("no values".into());
        }
        Ok(Self::Values(values))
    }

    /// Whether `v` is one of the values this dimension can produce.
    pub fn contains(&self, v: f32) -> bool {
        match self {
            Self::LogRange { lo, hi } => (*lo..=*hi).contains(&v),
            Self::Values(vs) => vs.contains(&v),
        }
    }

    fn sample(&self, rng: &mut Pcg64Mcg) -> f32 {
        match self {
            Self::LogRange { lo, hi } => {
                let (a, b) = (f64::from(*lo).ln(), f64::from(*hi).ln());
                round3(rng.random_range(a..=b).exp()).clamp(*lo, *hi)
            }
            Self::Values(vs) => vs[rng.random_range(0..vs.len())],
        }
    }

    fn grid(&self, points: usize) -> Vec<f32> {
        match self {
            Self::LogRange { lo, hi } if points >= 2 && lo < hi => {
                let (a, b) = (f64::from(*lo).ln(), f64::from(*hi).ln());
                let mut v: Vec<f32> = (0..points)
                    .map(|i| round3((a + (b - a) * i as f64 / (points - 1) as f64).exp()))
                    .collect();
                v.dedup();
                v
            }
            Self::LogRange { lo, .. } => vec![*lo],
            Self::Values(vs) => vs.clone(),
        }
    }
}

impl std::fmt::Display for Dim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::LogRange { lo, hi } => write!(f, "{lo}:{hi} (log)"),
            Self::Values(vs) => {
                let s: Vec<String> = vs.iter().map(|v| v.to_string()).collect();
                f.write_str(&s.join(","))
            }
        }
    }
}

/// `v` rounded to three significant digits, as the f32 that prints that way.
pub fn round3(v: f64) -> f32 {
    if !(v.is_finite() && v > 0.0) {
        return v as f32;
    }
    let s = format!("{:.2e}", v);
    s.parse::<f32>().unwrap_or(v as f32)
}

/// What `tune` searches over.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Space {
    pub regularization: Dim,
    pub alpha: Dim,
    pub confidence: Vec<Confidence>,
    pub factors: Vec<usize>,
    /// ν of frequency-scaled regularisation.
    pub reg_exponent: Vec<f32>,
}

impl Default for Space {
    /// λ from 0.1 to 300 and α from 0.1 to 30 (log-uniform, three to four decades around what
    /// real sets want: the best λ of HetRec and MovieLens lies between 3 and 50, α between
    /// 0.25 and 4), the log confidence (the linear one with play counts in the hundreds of
    /// thousands needs an α range of its own), k = 32, 64 or 128 and ν = 0.5 (Encore's default).
    fn default() -> Self {
        Self {
            regularization: Dim::LogRange { lo: 0.1, hi: 300.0 },
            alpha: Dim::LogRange { lo: 0.1, hi: 30.0 },
            confidence: vec![Confidence::Log],
            factors: vec![32, 64, 128],
            reg_exponent: vec![AlsConfig::default().reg_exponent],
        }
    }
}

/// How trials are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Search {
    /// `trials` configurations drawn at random (seeded); the first is Encore's defaults when
    /// they lie in the space, so the table always shows where the defaults stand.
    Random { trials: usize, seed: u64 },
    /// Every combination, each range taken at `points` log-spaced values.
    Grid { points: usize },
}

impl Space {
    /// Rejects an empty or unusable space.
    pub fn validate(&self) -> Result<()> {
        if self.confidence.is_empty() {
            return Err(Error::Config("--confidence: no values".into()));
        }
        if self.reg_exponent.is_empty() {
            return Err(Error::Config("--reg-exponent: no values".into()));
        }
        if self.factors.is_empty() || self.factors.iter().any(|&k| k == 0 || k > 1024) {
            return Err(Error::Config(
                "--factors: give values in 1..=1024, e.g. 32,64,128".into(),
            ));
        }
        Ok(())
    }

    /// The configurations to try: `base` with λ, α, confidence, k and ν set from the space.
    pub fn draw(&self, search: Search, base: &AlsConfig) -> Result<Vec<AlsConfig>> {
        self.validate()?;
        let with =
            |reg: f32, alpha: f32, confidence: Confidence, factors: usize, nu: f32| AlsConfig {
                regularization: reg,
                alpha,
                confidence,
                factors,
                reg_exponent: nu,
                ..base.clone()
            };
        let mut out: Vec<AlsConfig> = Vec::new();
        match search {
            Search::Random { trials, seed } => {
                if trials == 0 {
                    return Err(Error::Config("--trials must be at least 1".into()));
                }
                let d = AlsConfig::default();
                if self.regularization.contains(d.regularization)
                    && self.alpha.contains(d.alpha)
                    && self.confidence.contains(&d.confidence)
                    && self.factors.contains(&d.factors)
                    && self.reg_exponent.contains(&d.reg_exponent)
                {
                    out.push(with(
                        d.regularization,
                        d.alpha,
                        d.confidence,
                        d.factors,
                        d.reg_exponent,
                    ));
                }
                let mut rng = Pcg64Mcg::seed_from_u64(seed);
                // Duplicates are redrawn (a small discrete space may have fewer points than
                // trials: then every point is tried once).
                let mut misses = 0;
                while out.len() < trials && misses < 100 * trials {
                    let c = with(
                        self.regularization.sample(&mut rng),
                        self.alpha.sample(&mut rng),
                        self.confidence[rng.random_range(0..self.confidence.len())],
                        self.factors[rng.random_range(0..self.factors.len())],
                        self.reg_exponent[rng.random_range(0..self.reg_exponent.len())],
                    );
                    if out.contains(&c) {
                        misses += 1;
                    } else {
                        out.push(c);
                    }
                }
            }
            Search::Grid { points } => {
                if points == 0 {
                    return Err(Error::Config("--grid-points must be at least 1".into()));
                }
                for &nu in &self.reg_exponent {
                    for &k in &self.factors {
                        for &conf in &self.confidence {
                            for &a in &self.alpha.grid(points) {
                                for &r in &self.regularization.grid(points) {
                                    out.push(with(r, a, conf, k, nu));
                                }
                            }
                        }
                    }
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dims_parse_ranges_and_lists_and_reject_nonsense() {
        assert_eq!(
            Dim::parse("0.1:100", "λ").unwrap(),
            Dim::LogRange { lo: 0.1, hi: 100.0 }
        );
        assert_eq!(
            Dim::parse("1, 10,30", "λ").unwrap(),
            Dim::Values(vec![1.0, 10.0, 30.0])
        );
        for bad in ["", "x", "0:10", "10:1", "-1", "1,,2", "nan", "inf:1"] {
            assert!(Dim::parse(bad, "λ").is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn draws_are_rounded_seeded_in_range_and_start_with_the_defaults() {
        let space = Space::default();
        let base = AlsConfig::default();
        let a = space
            .draw(
                Search::Random {
                    trials: 50,
                    seed: 3,
                },
                &base,
            )
            .unwrap();
        let b = space
            .draw(
                Search::Random {
                    trials: 50,
                    seed: 3,
                },
                &base,
            )
            .unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 50);
        assert_eq!(a[0].regularization, base.regularization);
        assert_eq!(a[0].alpha, base.alpha);
        for c in &a {
            assert!((0.1..=300.0).contains(&c.regularization));
            assert!((0.1..=30.0).contains(&c.alpha));
            assert!([32, 64, 128].contains(&c.factors));
            // Three significant digits, and printing then parsing gives the same f32.
            for v in [c.regularization, c.alpha] {
                assert_eq!(round3(f64::from(v)), v);
                assert_eq!(v.to_string().parse::<f32>().unwrap(), v);
            }
        }
        // A tiny discrete space has fewer points than trials: each is drawn once.
        let small = Space {
            regularization: Dim::Values(vec![1.0, 10.0]),
            alpha: Dim::Values(vec![1.0]),
            confidence: vec![Confidence::Log],
            factors: vec![8],
            reg_exponent: vec![0.5],
        };
        let d = small
            .draw(
                Search::Random {
                    trials: 10,
                    seed: 1,
                },
                &base,
            )
            .unwrap();
        assert_eq!(d.len(), 2);
    }

    #[test]
    fn a_grid_is_every_combination_log_spaced() {
        let space = Space {
            regularization: Dim::LogRange {
                lo: 0.1,
                hi: 1000.0,
            },
            alpha: Dim::Values(vec![1.0, 2.0]),
            confidence: vec![Confidence::Log, Confidence::Linear],
            factors: vec![16],
            reg_exponent: vec![0.0],
        };
        let g = space
            .draw(Search::Grid { points: 5 }, &AlsConfig::default())
            .unwrap();
        assert_eq!(g.len(), 5 * 2 * 2);
        let regs: Vec<f32> = g.iter().take(5).map(|c| c.regularization).collect();
        assert_eq!(regs, vec![0.1, 1.0, 10.0, 100.0, 1000.0]);
    }
}
