//! Analysis of stored data: what is slow, what changed, what regressed, and
//! which errors are the same error.

pub mod fingerprint;
pub mod scope;
pub mod stats;
