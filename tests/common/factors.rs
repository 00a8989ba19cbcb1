//! Factor matrices shaped like trained ones, for the scorer tests (CPU and GPU).

use encore::als::Factors;
use encore::util::mix64;

/// A uniform value in [0, 1) from a hash.
fn unit(seed: u64) -> f64 {
    (mix64(seed) >> 11) as f64 / (1u64 << 53) as f64
}

/// Item factors shaped like trained implicit-ALS items, so norm pruning has something to prune:
/// row norms spread over three decades (a few long rows, a long tail of short ones). The last
/// column is zero in `queries_for_ties` queries, and every fifth row is a copy of the row before
/// with a different last value: equal scores, different norms, and the longer copy (visited
/// first in norm order) has the *higher* id, so ties must still go to the lower id. One row is
/// NaN when `nan` is set.
pub fn heavy_tailed_items(n: usize, k: usize, seed: u64, nan: bool) -> Factors {
    let mut data = vec![0f32; n * k];
    for i in 0..n {
        let scale = 10f64.powf(-3.0 * unit(seed ^ (i as u64) << 20).powf(0.3)) as f32;
        if i % 5 == 4 {
            let (prev, row) = data.split_at_mut(i * k);
            let prev = &prev[(i - 1) * k..i * k];
            let norm = prev.iter().map(|v| v * v).sum::<f32>().sqrt();
            row[..k].copy_from_slice(prev);
            row[k - 1] = row[k - 1].abs() + 0.5 * norm;
            continue;
        }
        for p in 0..k {
            let v = unit(seed.wrapping_mul(31) ^ ((i * k + p) as u64)) as f32 * 2.0 - 1.0;
            data[i * k + p] = v * scale;
        }
    }
    if nan && n > 7 {
        data[7 * k + 1] = f32::NAN;
    }
    Factors { n, k, data }
}

/// Query vectors whose last column is zero (see [`heavy_tailed_items`]), mostly aligned with a
/// shared taste direction so top scores are positive, as for real users.
pub fn queries_for_ties(b: usize, k: usize, seed: u64) -> Vec<f32> {
    let mut q = vec![0f32; b * k];
    for u in 0..b {
        for p in 0..k - 1 {
            let taste = if p % 3 == 0 { 0.5 } else { 0.0 };
            q[u * k + p] = taste + unit(seed ^ ((u * k + p) as u64) << 8) as f32 - 0.5;
        }
    }
    q
}

/// Sorted exclusion lists: query b excludes every item i with hash(b, i) % m == 0.
pub fn exclusions(b: usize, n: usize, m: u64) -> Vec<Vec<u32>> {
    (0..b)
        .map(|q| {
            (0..n as u32)
                .filter(|&i| mix64((q as u64) << 32 | u64::from(i)).is_multiple_of(m))
                .collect()
        })
        .collect()
}
