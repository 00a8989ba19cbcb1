//! Scoring a model: top-K recommendation (single and batched users, filters, item subsets)
//! and cosine similarity, over the core's exact scorers, with the GIL released.

use std::borrow::Cow;

use ndarray::Array2;
use numpy::{PyArray2, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::prelude::*;
use rayon::prelude::*;

use encore::als::Factors;
use encore::infer::{BATCH, CpuScorer, Ranked, Scorer};

use crate::csr::CsrArrays;
use crate::errors::{IntoPy, guard, value_error};
use crate::foldin::matrix_rows;
use crate::model::{Failure, Model, Side};

/// Users per parallel task when gathering exclusion lists: reading a row in place is a short
/// scan, so small batches run on the calling thread rather than waking the pool.
const ROWS_PER_TASK: usize = 256;

/// Top `k` of every query (rows of `queries`, `f` wide) excluding `exclude[b]`, in chunks of
/// [`BATCH`] so scratch memory stays bounded.
pub fn top_k_batched<E: AsRef<[u32]>>(
    scorer: &dyn Scorer,
    queries: &[f32],
    f: usize,
    exclude: &[E],
    k: usize,
) -> encore::Result<Vec<Ranked>> {
    let mut out = Vec::with_capacity(exclude.len());
    for (q, ex) in queries.chunks(BATCH * f).zip(exclude.chunks(BATCH)) {
        let refs: Vec<&[u32]> = ex.iter().map(AsRef::as_ref).collect();
        out.extend(scorer.top_k(q, Some(&refs), k)?);
    }
    Ok(out)
}

/// Checks ids against `0..n` (`what` names them in the error) and returns them as indices.
pub fn check_ids(ids: &[i64], n: usize, what: &str, of: &str) -> PyResult<Vec<usize>> {
    ids.iter()
        .map(|&id| {
            if id < 0 {
                Err(value_error(format!("{what} {id} is negative")))
            } else if id as u64 >= n as u64 {
                Err(value_error(format!(
                    "{what} {id} is out of range: the model has {n} {of}"
                )))
            } else {
                Ok(id as usize)
            }
        })
        .collect()
}

/// Sorted, deduplicated item ids in `0..n`.
fn sorted_items(ids: &[i64], n: usize, what: &str) -> PyResult<Vec<u32>> {
    let mut v: Vec<u32> = check_ids(ids, n, what, "items")?
        .into_iter()
        .map(|i| i as u32)
        .collect();
    v.sort_unstable();
    v.dedup();
    Ok(v)
}

/// The sorted union of two sorted lists.
fn union_sorted(a: &[u32], b: &[u32]) -> Vec<u32> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let next = match (a.get(i), b.get(j)) {
            (Some(&x), Some(&y)) if x == y => {
                i += 1;
                j += 1;
                x
            }
            (Some(&x), Some(&y)) if x < y => {
                i += 1;
                x
            }
            (Some(_), Some(&y)) => {
                j += 1;
                y
            }
            (Some(&x), None) => {
                i += 1;
                x
            }
            (None, Some(&y)) => {
                j += 1;
                y
            }
            (None, None) => unreachable!(),
        };
        out.push(next);
    }
    out
}

/// `(ids, scores)` as numpy arrays.
pub type IdsScores<'py> = (Bound<'py, PyArray2<i64>>, Bound<'py, PyArray2<f32>>);

/// Ranked lists as `(ids, scores)` arrays of `rows × width`; short lists are padded with id −1
/// and score −∞.
fn to_arrays<'py>(
    py: Python<'py>,
    ranked: &[Ranked],
    width: usize,
    map: Option<&[u32]>,
) -> IdsScores<'py> {
    let rows = ranked.len();
    let mut ids = vec![-1i64; rows * width];
    let mut scores = vec![f32::NEG_INFINITY; rows * width];
    for (r, list) in ranked.iter().enumerate() {
        for (j, (&i, &s)) in list.items.iter().zip(&list.scores).take(width).enumerate() {
            ids[r * width + j] = i64::from(map.map_or(i, |m| m[i as usize]));
            scores[r * width + j] = s;
        }
    }
    let ids = Array2::from_shape_vec((rows, width), ids).unwrap_or_default();
    let scores = Array2::from_shape_vec((rows, width), scores).unwrap_or_default();
    (
        PyArray2::from_owned_array(py, ids),
        PyArray2::from_owned_array(py, scores),
    )
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn recommend<'py>(
    m: &Model,
    py: Python<'py>,
    userids: PyReadonlyArray1<'py, i64>,
    n: usize,
    exclude: Option<&Bound<'py, PyAny>>,
    exclude_rows: Option<PyReadonlyArray1<'py, i64>>,
    filter_items: Option<PyReadonlyArray1<'py, i64>>,
    items: Option<PyReadonlyArray1<'py, i64>>,
    user_vectors: Option<PyReadonlyArray2<'py, f32>>,
) -> PyResult<IdsScores<'py>> {
    guard(|| {
        if n == 0 {
            return Err(value_error("N must be at least 1, got 0"));
        }
        let f = m.core.items.k;
        let n_items = m.core.items.n;
        let uids = userids
            .as_slice()
            .map_err(|_| value_error("userid is not contiguous"))?;
        let b = uids.len();
        let queries: Vec<f32> = match &user_vectors {
            Some(v) => matrix_rows(v, b, f, "the recalculated user factors")?,
            None => {
                let rows = check_ids(uids, m.core.users.n, "userid", "users")?;
                let mut q = Vec::with_capacity(b * f);
                for r in rows {
                    q.extend_from_slice(m.core.users.row(r));
                }
                q
            }
        };
        let filter = match &filter_items {
            Some(a) => sorted_items(
                a.as_slice()
                    .map_err(|_| value_error("filter_items is not contiguous"))?,
                n_items,
                "filter_items id",
            )?,
            None => Vec::new(),
        };
        let subset = match &items {
            Some(a) => {
                let s = sorted_items(
                    a.as_slice()
                        .map_err(|_| value_error("items is not contiguous"))?,
                    n_items,
                    "items id",
                )?;
                if s.is_empty() {
                    return Err(value_error("items is empty: there is nothing to rank"));
                }
                Some(s)
            }
            None => None,
        };
        let ex_arrays = exclude
            .map(|m| CsrArrays::extract(m, "user_items"))
            .transpose()?;
        let ex_view = ex_arrays.as_ref().map(|a| a.view()).transpose()?;
        let ex_rows: Option<Vec<i64>> = exclude_rows
            .as_ref()
            .map(|r| r.as_slice().map(<[i64]>::to_vec))
            .transpose()
            .map_err(|_| value_error("exclude_rows is not contiguous"))?;
        if let Some(v) = &ex_view {
            if v.n_cols != n_items {
                return Err(value_error(format!(
                    "{} has {} columns but the model has {n_items} items",
                    v.name, v.n_cols
                )));
            }
            match &ex_rows {
                Some(r) if r.len() != b => {
                    return Err(value_error("exclude_rows needs one row per userid"));
                }
                Some(r) => {
                    check_ids(r, v.n_rows, "userid", "rows in its training matrix")?;
                }
                None if v.n_rows != b => {
                    return Err(value_error(format!(
                        "{} must have 1 row for every userid ({} rows for {b} userids)",
                        v.name, v.n_rows
                    )));
                }
                None => {}
            }
            v.check_header().map_err(value_error)?;
        }
        let width = n.min(subset.as_ref().map_or(n_items, Vec::len));
        let ranked = py.detach(|| {
            m.threads.run(|| -> Result<Vec<Ranked>, Failure> {
                // Each query's exclusions: its row of the matrix read in place (int32 indices:
                // no copy), merged with `filter_items` only when there are any.
                let mut exclude: Vec<Cow<'_, [u32]>> = match &ex_view {
                    Some(v) => (0..b)
                        .into_par_iter()
                        .with_min_len(ROWS_PER_TASK)
                        .map(|j| {
                            let r = ex_rows.as_ref().map_or(j, |r| r[j] as usize);
                            let row = v.excluded_row(r)?;
                            Ok(if filter.is_empty() {
                                row
                            } else {
                                Cow::Owned(union_sorted(&row, &filter))
                            })
                        })
                        .collect::<Result<_, String>>()
                        .map_err(Failure::Value)?,
                    None => vec![Cow::Borrowed(filter.as_slice()); b],
                };
                match &subset {
                    None => Ok(top_k_batched(m.scorer()?, &queries, f, &exclude, width)?),
                    Some(s) => {
                        // Exclusions become positions in the subset; the scorer is over the
                        // subset's rows only.
                        for ex in &mut exclude {
                            *ex = Cow::Owned(
                                ex.iter()
                                    .filter_map(|i| s.binary_search(i).ok().map(|p| p as u32))
                                    .collect(),
                            );
                        }
                        let mut data = Vec::with_capacity(s.len() * f);
                        for &i in s {
                            data.extend_from_slice(m.core.items.row(i as usize));
                        }
                        let sub = Factors {
                            n: s.len(),
                            k: f,
                            data,
                        };
                        let scorer = CpuScorer::new(&sub)?;
                        Ok(top_k_batched(&scorer, &queries, f, &exclude, width)?)
                    }
                }
            })
        });
        let ranked = ranked.map_err(Failure::into_py)?;
        Ok(to_arrays(py, &ranked, width, subset.as_deref()))
    })
}

pub(crate) fn similar<'py>(
    m: &Model,
    py: Python<'py>,
    side: &str,
    ids: PyReadonlyArray1<'py, i64>,
    n: usize,
) -> PyResult<IdsScores<'py>> {
    guard(|| {
        let side = Side::parse(side)?;
        if n == 0 {
            return Err(value_error("N must be at least 1, got 0"));
        }
        let total = m.side_factors(side).n;
        let what = format!("{}id", side.noun());
        let rows = check_ids(
            ids.as_slice()
                .map_err(|_| value_error("ids are not contiguous"))?,
            total,
            &what,
            &format!("{}s", side.noun()),
        )?;
        let width = n.min(total);
        let ranked = py.detach(|| {
            m.threads.run(|| -> encore::Result<Vec<Ranked>> {
                let (scorer, unit) = m.similar_index(side)?;
                let f = unit.k;
                let others = if width > 1 {
                    let mut q = Vec::with_capacity(rows.len() * f);
                    for &r in &rows {
                        q.extend_from_slice(unit.row(r));
                    }
                    let ex: Vec<Vec<u32>> = rows.iter().map(|&r| vec![r as u32]).collect();
                    top_k_batched(scorer.as_ref(), &q, f, &ex, width - 1)?
                } else {
                    vec![
                        Ranked {
                            items: Vec::new(),
                            scores: Vec::new()
                        };
                        rows.len()
                    ]
                };
                Ok(rows
                    .iter()
                    .zip(others)
                    .map(|(&r, o)| {
                        let u = unit.row(r);
                        let own: f32 = u.iter().map(|v| v * v).sum();
                        let mut items = vec![r as u32];
                        items.extend(o.items);
                        let mut scores = vec![own];
                        scores.extend(o.scores);
                        Ranked { items, scores }
                    })
                    .collect())
            })
        });
        Ok(to_arrays(py, &ranked.py_err()?, width, None))
    })
}
