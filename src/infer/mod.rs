//! Top-K recommendation (being written).
