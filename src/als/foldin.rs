//! Fold-in: the factor of a listener the model has never seen, from their history alone.
//!
//! With the item factors Y fixed, the ALS user update for a history {(i, plays_i)} is exactly
//! the normal equations of the training half-step for one row:
//! (YᵀY + λI + Σ_i w_i y_i y_iᵀ) x = Σ_i (1 + w_i) y_i with w_i = α·f(plays_i). YᵀY is computed
//! once when the server starts, so a request costs O(n_history·k² + k³) — microseconds.

use crate::als::linalg::{cholesky_solve, gram};
use crate::als::{AlsConfig, Factors};
use crate::error::{Error, Result};

/// Solves new users against fixed item factors.
pub struct FoldIn {
    gram: Vec<f32>,
    cfg: AlsConfig,
}

impl FoldIn {
    /// Caches YᵀY of `items`; `cfg` gives λ, α and the confidence function of the model.
    pub fn new(items: &Factors, cfg: &AlsConfig) -> Self {
        Self {
            gram: gram(&items.data, items.k),
            cfg: cfg.clone(),
        }
    }

    /// The factor for `history` (dense item index, plays); indices must be < `items.n`.
    pub fn solve(&self, items: &Factors, history: &[(u32, f32)]) -> Result<Vec<f32>> {
        let k = items.k;
        let mut a: Vec<f64> = self.gram.iter().map(|&v| f64::from(v)).collect();
        for d in 0..k {
            a[d * k + d] += f64::from(self.cfg.regularization);
        }
        let mut b = vec![0f64; k];
        for &(i, plays) in history {
            if i as usize >= items.n {
                return Err(Error::Config(format!("item {i} out of range")));
            }
            let w = f64::from(self.cfg.confidence_minus_one(plays));
            let y = items.row(i as usize);
            for r in 0..k {
                let wy = w * f64::from(y[r]);
                for c in 0..k {
                    a[r * k + c] += wy * f64::from(y[c]);
                }
                b[r] += (1.0 + w) * f64::from(y[r]);
            }
        }
        cholesky_solve(&mut a, &mut b, k).map_err(|_| {
            Error::Numerical("the fold-in system is not positive definite (λ = 0?)".into())
        })?;
        Ok(b.into_iter().map(|v| v as f32).collect())
    }
}
