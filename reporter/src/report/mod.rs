//! What the reporter sends people: the weekly performance email per team
//! ([`weekly`], drawn by [`chart`], sent by [`mail`]) and the morning error
//! digest ([`digest`], posted by [`webhook`] or mailed).

pub(crate) mod build;
pub mod chart;
pub mod digest;
pub(crate) mod late;
pub mod mail;
pub mod webhook;
pub mod weekly;
