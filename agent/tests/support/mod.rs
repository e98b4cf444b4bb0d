//! What the agent's export tests share: the loopback OTLP sink, certificates
//! made at test time, and the agent's log captured.
#![allow(dead_code)]

pub mod certs;
pub mod logs;
pub mod sink;
