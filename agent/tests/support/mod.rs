//! What the agent's tests share: the loopback OTLP sink, certificates made
//! at test time, the agent's log captured, and HTTP on loopback.
#![allow(dead_code)]

pub mod certs;
pub mod http;
pub mod logs;
pub mod sink;
