//! Bounded top-K selection over a stream of scores: the part of top-K that is not GEMM.
//!
//! Each query keeps a binary heap of its best `cap` (score, item) entries with the *worst* kept
//! entry at the root, so the root's score is the admission threshold. Once the heap is full, a
//! score enters only if it beats the threshold, which after the first few thousand items almost
//! no score does (for random order, about K·ln(N/K) of N scores ever enter). The scan therefore
//! tests blocks of [`BLOCK`] scores with one branch-free "any above threshold?" reduction, which
//! the compiler vectorises, and only looks at single scores inside the rare blocks that pass.
//!
//! Within one scan items arrive in increasing index order, so a score *equal* to the threshold
//! always loses the index tie-break against the kept entry: the fast path can use a strict `>`.
//! Merging heaps built over different item ranges uses the full comparison ([`TopK::offer`]);
//! because "score descending, index ascending" is a strict total order, the merged top-K is the
//! same whatever the ranges were or the order they are merged in — the basis of the scorer's
//! thread-count independence.

use super::Ranked;

/// Scores tested per "any above threshold?" check: 32 f32 are two cache lines and four AVX
/// registers; larger blocks make the rare passing block costlier to rescan one by one.
const BLOCK: usize = 32;

/// One kept candidate.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry {
    pub score: f32,
    pub item: u32,
}

/// Whether `a` ranks below `b`: a lower score, or an equal score and a higher index.
#[inline]
fn worse(a: Entry, b: Entry) -> bool {
    a.score < b.score || (a.score == b.score && a.item > b.item)
}

/// The score as ranked: NaN (from non-finite factors) counts as −∞ so the order stays total.
#[inline]
fn rank_score(s: f32) -> f32 {
    if s.is_nan() { f32::NEG_INFINITY } else { s }
}

/// A sorted exclusion list of item ids. With ids in visiting order it is walked forwards as
/// increasing ids are asked about; with permuted ids each question is a binary search (asked
/// only for the rare scores that could enter the heap).
struct Cursor<'a> {
    ids: &'a [u32],
    at: usize,
    search: bool,
}

impl Cursor<'_> {
    /// Whether `id` is excluded; without `search`, ids must be asked in non-decreasing order.
    #[inline]
    fn contains(&mut self, id: u32) -> bool {
        if self.search {
            return self.ids.binary_search(&id).is_ok();
        }
        while self.at < self.ids.len() && self.ids[self.at] < id {
            self.at += 1;
        }
        self.at < self.ids.len() && self.ids[self.at] == id
    }
}

/// The best `cap` entries seen so far, worst at the root.
#[derive(Debug, Clone)]
pub(crate) struct TopK {
    cap: usize,
    heap: Vec<Entry>,
}

impl TopK {
    /// An empty selection keeping at most `cap` entries.
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            heap: Vec::with_capacity(cap),
        }
    }

    /// Adds `e` when there is room (caller checks).
    fn push(&mut self, e: Entry) {
        let h = &mut self.heap;
        h.push(e);
        let mut i = h.len() - 1;
        while i > 0 {
            let p = (i - 1) / 2;
            if !worse(h[i], h[p]) {
                break;
            }
            h.swap(i, p);
            i = p;
        }
    }

    /// Replaces the worst entry by `e`, which the caller knows is better.
    fn replace_worst(&mut self, e: Entry) {
        let h = &mut self.heap;
        let n = h.len();
        let mut i = 0;
        loop {
            let l = 2 * i + 1;
            if l >= n {
                break;
            }
            let r = l + 1;
            let c = if r < n && worse(h[r], h[l]) { r } else { l };
            if !worse(h[c], e) {
                break;
            }
            h[i] = h[c];
            i = c;
        }
        h[i] = e;
    }

    /// Offers one candidate in any order (used to merge selections over different ranges).
    pub fn offer(&mut self, e: Entry) {
        if self.heap.len() < self.cap {
            self.push(e);
        } else if self.cap > 0 && worse(self.heap[0], e) {
            self.replace_worst(e);
        }
    }

    /// Merges another selection into this one.
    pub fn merge(&mut self, other: &TopK) {
        for &e in &other.heap {
            self.offer(e);
        }
    }

    /// The K-th best score kept, once `cap` entries are kept.
    pub fn kth(&self) -> Option<f32> {
        (self.cap > 0 && self.heap.len() == self.cap).then(|| self.heap[0].score)
    }

    /// Offers `scores[j]` for every j as the item at position `first + j`, skipping the item ids
    /// in `exclude` (sorted; ids not offered are ignored). Positions must arrive in increasing
    /// order across calls, i.e. successive calls cover successive ranges. The item id at a
    /// position is `ids[position]`, or the position itself when `ids` is None.
    pub fn scan(&mut self, scores: &[f32], first: u32, exclude: &[u32], ids: Option<&[u32]>) {
        if self.cap == 0 {
            return;
        }
        let mut ex = Cursor {
            ids: exclude,
            at: 0,
            search: ids.is_some(),
        };
        let id_at = |p: u32| ids.map_or(p, |m| m[p as usize]);
        // Until the heap is full everything not excluded enters.
        let mut start = 0;
        while self.heap.len() < self.cap && start < scores.len() {
            let id = id_at(first + start as u32);
            if !ex.contains(id) {
                self.push(Entry {
                    score: rank_score(scores[start]),
                    item: id,
                });
            }
            start += 1;
        }
        if start == scores.len() {
            return;
        }
        let mut threshold = self.heap[0].score;
        let rest = &scores[start..];
        let mut base = first + start as u32;
        let mut blocks = rest.chunks_exact(BLOCK);
        // With ids in increasing order an equal score always loses the tie-break, so the screen
        // can be strict; permuted ids need `>=` (a tie may win on a lower id).
        let strict = ids.is_none();
        for block in &mut blocks {
            // Branch-free, so it vectorises; NaN compares false and never passes.
            let any = if strict {
                block.iter().fold(false, |any, &s| any | (s > threshold))
            } else {
                block.iter().fold(false, |any, &s| any | (s >= threshold))
            };
            if any {
                self.scan_slow(block, base, &mut ex, &mut threshold, ids);
            }
            base += BLOCK as u32;
        }
        self.scan_slow(blocks.remainder(), base, &mut ex, &mut threshold, ids);
    }

    /// The per-score path of [`TopK::scan`] for a block known (or suspected) to hold a winner.
    #[inline(never)]
    fn scan_slow(
        &mut self,
        scores: &[f32],
        base: u32,
        ex: &mut Cursor<'_>,
        threshold: &mut f32,
        ids: Option<&[u32]>,
    ) {
        for (j, &s) in scores.iter().enumerate() {
            if s >= *threshold {
                let p = base + j as u32;
                let e = Entry {
                    score: s,
                    item: ids.map_or(p, |m| m[p as usize]),
                };
                if worse(self.heap[0], e) && !ex.contains(e.item) {
                    self.replace_worst(e);
                    *threshold = self.heap[0].score;
                }
            }
        }
    }

    /// The kept entries, best first.
    pub fn into_ranked(mut self) -> Ranked {
        self.heap.sort_unstable_by(|a, b| {
            if worse(*b, *a) {
                std::cmp::Ordering::Less
            } else if worse(*a, *b) {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        });
        Ranked {
            items: self.heap.iter().map(|e| e.item).collect(),
            scores: self.heap.iter().map(|e| e.score).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Brute force: sort (score desc, index asc), drop excluded, take `k`.
    fn reference(scores: &[f32], exclude: &[u32], k: usize) -> Vec<u32> {
        let mut ids: Vec<u32> = (0..scores.len() as u32)
            .filter(|i| exclude.binary_search(i).is_err())
            .collect();
        ids.sort_by(|&a, &b| {
            let (sa, sb) = (
                rank_score(scores[a as usize]),
                rank_score(scores[b as usize]),
            );
            sb.partial_cmp(&sa)
                .unwrap_or(std::cmp::Ordering::Equal)
                .then(a.cmp(&b))
        });
        ids.truncate(k);
        ids
    }

    #[test]
    fn scan_in_pieces_and_merge_match_a_full_sort() {
        // Heavy ties, NaN, infinities, and a length that is not a multiple of BLOCK.
        let scores: Vec<f32> = (0..1000u32)
            .map(|i| match i % 97 {
                3 => f32::NAN,
                5 => f32::INFINITY,
                7 => f32::NEG_INFINITY,
                _ => ((i * 7919) % 13) as f32,
            })
            .collect();
        let exclude: Vec<u32> = (0..1000).filter(|i| i % 11 == 0).collect();
        for k in [1, 2, 10, 33, 100, 999, 2000] {
            let want = reference(&scores, &exclude, k);
            let mut whole = TopK::new(k);
            whole.scan(&scores, 0, &exclude, None);
            assert_eq!(whole.clone().into_ranked().items, want, "k={k}");
            // Sequential pieces into one heap, and separate heaps merged in reverse order.
            let mut seq = TopK::new(k);
            let mut parts = Vec::new();
            for lo in (0..1000).step_by(37) {
                let hi = (lo + 37).min(1000);
                seq.scan(&scores[lo..hi], lo as u32, &exclude, None);
                let mut p = TopK::new(k);
                p.scan(&scores[lo..hi], lo as u32, &exclude, None);
                parts.push(p);
            }
            assert_eq!(seq.into_ranked().items, want, "k={k}");
            let mut merged = TopK::new(k);
            for p in parts.iter().rev() {
                merged.merge(p);
            }
            assert_eq!(merged.into_ranked().items, want, "k={k}");
        }
    }
}
