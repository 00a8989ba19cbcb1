//! Rows split into contiguous blocks, one per rank, balanced by work.
//!
//! A row's cost in a half-step is about its nonzeros (the gather and the correction over its
//! tracks) plus a fixed part (the k×k solve or the CG steps); with heavy-tailed users an equal
//! row count would give one rank most of the work. Blocks are contiguous so that a rank's rows
//! of the CSR are one slice, and their boundaries fall on multiples of `align` rows so that the
//! Gram parts each rank computes are exactly the parts one rank alone would compute (the sum is
//! then bit-identical at every world size; see `linalg::GRAM_ROWS_PER_TASK`).

use std::ops::Range;

/// `parts` contiguous blocks covering `0..n` rows (`n = indptr.len() - 1`), each costing about
/// the same, a row costing its nonzeros plus `row_cost`; inner boundaries are multiples of
/// `align` (≥ 1). Blocks may be empty when there are fewer aligned groups than parts.
pub fn balanced_blocks(
    indptr: &[u64],
    parts: usize,
    align: usize,
    row_cost: u64,
) -> Vec<Range<usize>> {
    let n = indptr.len().saturating_sub(1);
    let parts = parts.max(1);
    let align = align.max(1);
    let cost = |row: usize| indptr[row] + row as u64 * row_cost;
    let total = cost(n) as u128;
    let mut bounds = Vec::with_capacity(parts + 1);
    bounds.push(0usize);
    for p in 1..parts {
        let target = (total * p as u128 / parts as u128) as u64;
        // The first row whose prefix cost reaches the target, then the nearer aligned boundary.
        let (mut b, mut hi) = (0usize, n);
        while b < hi {
            let mid = b + (hi - b) / 2;
            if cost(mid) < target {
                b = mid + 1;
            } else {
                hi = mid;
            }
        }
        let down = b / align * align;
        let up = (down + align).min(n);
        let pick = if cost(up).abs_diff(target) < cost(down).abs_diff(target) {
            up
        } else {
            down
        };
        let prev = bounds.last().copied().unwrap_or(0);
        bounds.push(pick.clamp(prev, n));
    }
    bounds.push(n);
    bounds.windows(2).map(|w| w[0]..w[1]).collect()
}

/// The cost (nonzeros plus `row_cost` per row) of each block, for reports.
pub fn block_costs(indptr: &[u64], blocks: &[Range<usize>], row_cost: u64) -> Vec<u64> {
    blocks
        .iter()
        .map(|b| indptr[b.end] - indptr[b.start] + b.len() as u64 * row_cost)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn indptr(lens: &[u64]) -> Vec<u64> {
        let mut p = vec![0];
        for l in lens {
            p.push(p.last().unwrap() + l);
        }
        p
    }

    #[test]
    fn blocks_cover_every_row_once_in_order() {
        let p = indptr(&[3, 0, 5, 1, 1, 9, 2, 2, 2, 4]);
        for parts in 1..=12 {
            let b = balanced_blocks(&p, parts, 1, 1);
            assert_eq!(b.len(), parts);
            assert_eq!(b[0].start, 0);
            assert_eq!(b[parts - 1].end, 10);
            for w in b.windows(2) {
                assert_eq!(w[0].end, w[1].start);
            }
        }
    }

    #[test]
    fn a_heavy_tail_is_balanced_by_nonzeros_not_rows() {
        // One user with 1000 listens, 999 with one each: two ranks split the work, not the rows.
        let mut lens = vec![1000u64];
        lens.extend(std::iter::repeat_n(1, 999));
        let p = indptr(&lens);
        let b = balanced_blocks(&p, 2, 1, 0);
        assert_eq!(b[0], 0..1, "the heavy user alone is half the work");
        let costs = block_costs(&p, &b, 0);
        assert_eq!(costs, vec![1000, 999]);
        // Equal rows would have given 1499 vs 500.
    }

    #[test]
    fn balance_is_within_one_aligned_group_of_ideal() {
        let lens: Vec<u64> = (0..10_000u64).map(|i| 1 + (i * 7919) % 97).collect();
        let p = indptr(&lens);
        for (parts, align) in [(2, 1), (3, 64), (4, 256), (7, 100)] {
            let b = balanced_blocks(&p, parts, align, 4);
            let costs = block_costs(&p, &b, 4);
            let ideal = costs.iter().sum::<u64>() / parts as u64;
            let group = align as u64 * (97 + 4);
            for (i, c) in costs.iter().enumerate() {
                assert!(
                    c.abs_diff(ideal) <= 2 * group,
                    "{parts}×{align}: block {i} {c} vs {ideal}"
                );
            }
            for r in &b[..parts - 1] {
                assert_eq!(
                    r.end % align,
                    0,
                    "boundary {} not aligned to {align}",
                    r.end
                );
            }
        }
    }

    #[test]
    fn fewer_groups_than_parts_leave_blocks_empty() {
        let p = indptr(&[5; 10]);
        let b = balanced_blocks(&p, 4, 16, 1);
        assert_eq!(b.iter().map(|r| r.len()).sum::<usize>(), 10);
        assert!(b.iter().filter(|r| r.is_empty()).count() >= 3);
        assert_eq!(balanced_blocks(&[0], 3, 1, 1), vec![0..0, 0..0, 0..0]);
    }
}
