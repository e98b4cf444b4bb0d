//! Reports: what the analysis found, rendered for people and delivered to them.

pub mod chart;
pub mod mail;
pub mod weekly;
