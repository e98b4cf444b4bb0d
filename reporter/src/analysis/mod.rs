//! Analysis: what the stored data means (error groups, ...).

pub mod fingerprint;
