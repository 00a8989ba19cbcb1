//! Sparse, strictly increasing external ids.
//!
//! Real LFM-1b ids are not `0..n`: they have gaps (users up to ~50 M for 120 k users, tracks up to
//! ~32 M). Code that silently assumes dense ids would pass on dense synthetic data and break on the
//! real files, so every entity kind gets its own spacing: `id(i) = base + i * stride + jitter(i)`
//! with `jitter < stride`. Consecutive ids then differ by at least 1 and at most `2 * stride - 1`,
//! which keeps them strictly increasing (file order is id order) yet irregular.

use crate::util::mix64;

/// How one entity kind's dense indices map to external ids.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IdSpace {
    base: u64,
    stride: u64,
    salt: u64,
}

impl IdSpace {
    /// The external id of dense index `i`. Callers keep `i` below [`IdSpace::max_index`].
    pub(crate) fn id(&self, seed: u64, i: u64) -> u32 {
        let jitter = mix64(seed ^ self.salt ^ mix64(i)) % self.stride;
        let id = self.base + i * self.stride + jitter;
        debug_assert!(id <= u64::from(u32::MAX), "id space overflow");
        id as u32
    }

    /// The largest count of entities whose ids all fit in a `u32`.
    #[cfg(test)]
    pub(crate) const fn max_count(&self) -> u64 {
        (u32::MAX as u64 - self.base) / self.stride
    }
}

/// User ids: LFM-1b's go to ~50 M for 120 k users, hence the wide stride.
pub(crate) const USER_IDS: IdSpace = IdSpace {
    base: 384,
    stride: 397,
    salt: 0x5553_4552,
};
/// Artist ids.
pub(crate) const ARTIST_IDS: IdSpace = IdSpace {
    base: 1,
    stride: 3,
    salt: 0x4152_5449,
};
/// Album ids.
pub(crate) const ALBUM_IDS: IdSpace = IdSpace {
    base: 1,
    stride: 7,
    salt: 0x414c_4255,
};
/// Track ids: 5.6 M tracks end near 28 M, like the real ~32 M.
pub(crate) const TRACK_IDS: IdSpace = IdSpace {
    base: 1,
    stride: 5,
    salt: 0x5452_4143,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_strictly_increasing_with_gaps() {
        for space in [USER_IDS, ARTIST_IDS, ALBUM_IDS, TRACK_IDS] {
            let ids: Vec<u32> = (0..10_000).map(|i| space.id(7, i)).collect();
            assert!(ids.windows(2).all(|w| w[0] < w[1]));
            assert!(ids.windows(2).any(|w| w[1] - w[0] > 1));
        }
    }

    #[test]
    fn max_count_fits_u32() {
        let n = TRACK_IDS.max_count();
        assert!(TRACK_IDS.id(0, n - 1) >= TRACK_IDS.id(0, n - 2));
    }
}
