//! Shared by the integration tests: test data ([`factors`]) and the backends a behavioural test
//! runs on ([`backends`]).

#![allow(dead_code)] // each test binary uses its own part of this module

pub mod backends;
pub mod factors;
