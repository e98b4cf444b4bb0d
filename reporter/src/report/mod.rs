//! Reports: what the reporter sends to people (the morning error digest, and the chat webhooks that carry it).

pub mod digest;
pub mod webhook;
