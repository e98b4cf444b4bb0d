//! Analysis of stored data: what changed, what regressed, and by how much.

pub mod stats;
