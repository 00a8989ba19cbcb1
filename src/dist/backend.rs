//! The multi-rank CPU backend: each rank solves its block of users and of items, and the
//! collectives put the factors back together after every half-step.
//!
//! Every rank holds all factors (replicated) and only its block of rows of the confidence
//! matrix and of its transpose. A half-step on rank r:
//! 1. the Gram matrix of the fixed side: the rank computes every W-th part of
//!    [`linalg::gram`](crate::als::linalg::gram) (parts r, r + W, ...), the parts are
//!    all-gathered, and every rank sums them in part order, exactly as one process does;
//! 2. the rank's rows are solved by the ordinary CPU solver, warm-started from the current
//!    (replicated) factors;
//! 3. the solved blocks are all-gathered in rank order, which is row order.
//!
//! Each row's solve depends only on that row, the fixed factors and the Gram matrix, all
//! bit-identical on every rank, so the factors are bit-identical to single-process training at
//! every world size and any partition. Blocks are balanced by nonzeros plus a per-row cost.

use std::ops::Range;

use super::collective::{Collective, Traffic, all_gather_f32, all_gather_f32_each};
use super::partition::{balanced_blocks, block_costs};
use crate::als::linalg::{GRAM_ROWS_PER_TASK, gram_part, sum_gram_parts};
use crate::als::{Backend, Factors, HalfStep, Prepared, Solver, mean_row_length, non_finite};
use crate::data::csr::Csr;
use crate::error::{Error, Result};
use rayon::prelude::*;

/// A row's fixed cost in nonzero-equivalents when balancing blocks: the k-sized work of its
/// solve (CG steps or the k×k factorisation) next to the k-sized work per track.
pub const ROW_COST: u64 = 8;

/// One rank of multi-rank CPU training (see the module docs).
pub struct ShardedCpu {
    comm: Box<dyn Collective>,
    solver: Box<dyn Solver>,
    /// This rank's rows, cut from the first matrices [`Backend::iterate`] is given.
    shard: Option<Shard>,
    iteration: usize,
    last_iteration: Traffic,
}

/// One rank's rows of the confidence matrix and of its transpose, and how all ranks split them.
struct Shard {
    user_block: Range<usize>,
    item_block: Range<usize>,
    by_user: Csr,
    by_item: Csr,
    blocks: (Vec<Range<usize>>, Vec<Range<usize>>),
    /// Each block's cost (nonzeros plus [`ROW_COST`] per row), users then items.
    costs: (Vec<u64>, Vec<u64>),
    /// The whole matrices' mean row lengths (users, items), for frequency-scaled λ.
    mean_rows: (f64, f64),
}

/// Rows `r` of `m`, as a matrix of their own (the column space is unchanged).
pub fn row_block(m: &Csr, r: Range<usize>) -> Csr {
    let (a, b) = (m.indptr[r.start] as usize, m.indptr[r.end] as usize);
    Csr {
        n_rows: r.len(),
        n_cols: m.n_cols,
        indptr: m.indptr[r.start..=r.end]
            .iter()
            .map(|&p| p - a as u64)
            .collect(),
        indices: m.indices[a..b].to_vec(),
        data: m.data[a..b].to_vec(),
    }
}

impl Shard {
    /// Every rank cuts the same blocks from the same matrices and keeps its own.
    fn cut(p: &Prepared, rank: usize, world: usize) -> Self {
        let users = balanced_blocks(&p.by_user.indptr, world, 1, ROW_COST);
        let items = balanced_blocks(&p.by_item.indptr, world, 1, ROW_COST);
        let (ub, ib) = (users[rank].clone(), items[rank].clone());
        Self {
            costs: (
                block_costs(&p.by_user.indptr, &users, ROW_COST),
                block_costs(&p.by_item.indptr, &items, ROW_COST),
            ),
            by_user: row_block(&p.by_user, ub.clone()),
            by_item: row_block(&p.by_item, ib.clone()),
            user_block: ub,
            item_block: ib,
            blocks: (users, items),
            mean_rows: (mean_row_length(&p.by_user), mean_row_length(&p.by_item)),
        }
    }
}

impl ShardedCpu {
    /// This rank's part of training with `solver`: every rank must run the same training
    /// (same matrices, settings and seed) with its own communicator of the same world.
    pub fn new(comm: Box<dyn Collective>, solver: Box<dyn Solver>) -> Self {
        Self {
            comm,
            solver,
            shard: None,
            iteration: 0,
            last_iteration: Traffic::default(),
        }
    }

    /// This rank's rows (users, items), once the first iteration has cut them.
    pub fn blocks(&self) -> Option<(Range<usize>, Range<usize>)> {
        self.shard
            .as_ref()
            .map(|s| (s.user_block.clone(), s.item_block.clone()))
    }

    fn half_step(
        &mut self,
        fixed: &Factors,
        target: &mut Factors,
        users_side: bool,
        p: &Prepared,
    ) -> Result<()> {
        let k = target.k;
        let g = sharded_gram(self.comm.as_mut(), fixed)?;
        let Some(shard) = &self.shard else {
            return Err(Error::Runtime(
                "a half-step before the rows were cut".into(),
            ));
        };
        let (block, conf, mean_row) = if users_side {
            (shard.user_block.clone(), &shard.by_user, shard.mean_rows.0)
        } else {
            (shard.item_block.clone(), &shard.by_item, shard.mean_rows.1)
        };
        let mut mine = Factors {
            n: block.len(),
            k,
            data: target.data[block.start * k..block.end * k].to_vec(),
        };
        if mine.n > 0 {
            self.solver.solve(
                &HalfStep {
                    conf,
                    fixed,
                    gram: &g,
                    regularization: p.regularization,
                    reg_exponent: p.reg_exponent,
                    // ν's n̄ is the whole side's mean, not this block's.
                    mean_row: Some(mean_row),
                },
                &mut mine,
            )?;
        }
        let all = all_gather_f32(self.comm.as_mut(), &mine.data)?;
        if all.len() != target.data.len() {
            return Err(Error::Runtime(format!(
                "the ranks' blocks add up to {} values, not the {} of {} rows × {k}",
                all.len(),
                target.data.len(),
                target.n
            )));
        }
        target.data = all;
        Ok(())
    }

    fn iterate_inner(
        &mut self,
        p: &Prepared,
        users: &mut Factors,
        items: &mut Factors,
    ) -> Result<()> {
        if self.shard.is_none() {
            self.shard = Some(Shard::cut(p, self.comm.rank(), self.comm.world()));
        }
        self.iteration += 1;
        let before = self.comm.traffic();
        self.half_step(items, users, true, p)?;
        self.half_step(users, items, false, p)?;
        let now = self.comm.traffic();
        self.last_iteration = Traffic {
            sent: now.sent - before.sent,
            received: now.received - before.received,
        };
        if !users.all_finite() || !items.all_finite() {
            return Err(non_finite(self.iteration));
        }
        Ok(())
    }
}

/// The Gram matrix of `f` over all ranks: this rank computes parts rank, rank + W, ... of
/// [`gram`](crate::als::linalg::gram); every rank sums all parts in part order.
pub fn sharded_gram(comm: &mut dyn Collective, f: &Factors) -> Result<Vec<f32>> {
    let (k, w, r) = (f.k, comm.world(), comm.rank());
    let chunk = GRAM_ROWS_PER_TASK * k;
    let n_parts = f.data.len().div_ceil(chunk.max(1));
    let mine: Vec<usize> = (r..n_parts).step_by(w).collect();
    let parts: Vec<Vec<f32>> = mine
        .par_iter()
        .map(|&j| gram_part(&f.data[j * chunk..((j + 1) * chunk).min(f.data.len())], k))
        .collect();
    let all = all_gather_f32_each(comm, &parts.concat())?;
    let kk = k * k;
    let mut ordered = Vec::with_capacity(n_parts);
    for j in 0..n_parts {
        let (from, at) = (j % w, j / w);
        let part = all
            .get(from)
            .and_then(|b| b.get(at * kk..(at + 1) * kk))
            .ok_or_else(|| Error::Runtime(format!("rank {from} sent too few Gram parts")))?;
        ordered.push(part);
    }
    Ok(sum_gram_parts(ordered.into_iter(), k))
}

impl Backend for ShardedCpu {
    fn name(&self) -> String {
        self.solver.name()
    }

    fn device(&self) -> String {
        format!("cpu × {} ranks", self.comm.world())
    }

    fn iterate(&mut self, p: &Prepared, users: &mut Factors, items: &mut Factors) -> Result<()> {
        let r = self.iterate_inner(p, users, items);
        if let Err(e) = &r {
            // The others stop with this cause (a no-op when the cause was a lost connection).
            self.comm.abort(&e.to_string());
        }
        r
    }

    fn sync_to_host(&mut self, _users: &mut Factors, _items: &mut Factors) -> Result<()> {
        Ok(())
    }

    fn details(&self) -> serde_json::Value {
        let Some(s) = &self.shard else {
            return serde_json::Value::Null;
        };
        let span = |b: &[Range<usize>]| b.iter().map(|r| [r.start, r.end]).collect::<Vec<_>>();
        serde_json::json!({
            "world": self.comm.world(),
            "rank": self.comm.rank(),
            "user_blocks": span(&s.blocks.0),
            "item_blocks": span(&s.blocks.1),
            "user_block_costs": s.costs.0,
            "item_block_costs": s.costs.1,
            "bytes_sent_last_iteration": self.last_iteration.sent,
            "bytes_received_last_iteration": self.last_iteration.received,
        })
    }
}
