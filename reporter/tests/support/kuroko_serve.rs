//! A real `kuroko serve` process for the integration tests (the binary
//! cargo built for them: nothing is compiled at run time), shared by
//! `hostile.rs` and `interop_python_service.rs` through `#[path]`; and the
//! OTLP attribute helpers their requests use.

#![allow(dead_code)]

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};

/// A `kuroko serve` process, killed when dropped.
pub struct Serve {
    pub child: Child,
    /// Where it takes OTLP/gRPC.
    pub grpc: String,
    /// Where it takes OTLP/HTTP (and serves the UI and API).
    pub http: String,
}

impl Serve {
    /// Runs `kuroko serve ARGS` and waits for the line that says where it
    /// listens.
    pub fn start<S: AsRef<OsStr>>(args: &[S]) -> Serve {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kuroko"))
            .arg("serve")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the kuroko binary cargo built for this test starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let address = |after: &str| -> String {
            line.split(after)
                .nth(1)
                .and_then(|rest| rest.split(',').next())
                .unwrap_or_else(|| panic!("kuroko serve said {line:?}, not where it listens"))
                .to_owned()
        };
        Serve {
            grpc: address("OTLP/gRPC on "),
            http: address("OTLP/HTTP on "),
            child,
        }
    }

    /// Runs `kuroko serve` on loopback (ports the system picks) with
    /// `config` as its kuroko.toml and its store `kuroko.db`, both in `dir`.
    pub fn start_in(dir: &std::path::Path, config: &str) -> Serve {
        let store = dir.join("kuroko.db");
        Serve::start_configured(dir, config, &["--store".as_ref(), store.as_os_str()])
    }

    /// Runs `kuroko serve` on loopback with `config` as its kuroko.toml in
    /// `dir` (its store is the one `config` names), and `more` arguments.
    pub fn start_configured(dir: &std::path::Path, config: &str, more: &[&OsStr]) -> Serve {
        let toml = dir.join("kuroko.toml");
        std::fs::write(&toml, config).unwrap();
        let mut args: Vec<&OsStr> = vec![
            "--config".as_ref(),
            toml.as_os_str(),
            "--grpc".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--http".as_ref(),
            "127.0.0.1:0".as_ref(),
        ];
        args.extend_from_slice(more);
        Serve::start(&args)
    }

    /// Its resident memory, from /proc.
    pub fn rss(&self) -> u64 {
        memory(self.child.id(), "VmRSS").expect("VmRSS in /proc/PID/status")
    }

    /// SIGKILL: nothing is flushed or closed cleanly. Its addresses, to
    /// start it again on them.
    pub fn kill(mut self) -> (String, String) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        (self.grpc.clone(), self.http.clone())
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A memory figure of process `pid` from /proc/PID/status (`VmRSS` now,
/// `VmHWM` at its peak), in bytes; `None` once it has exited.
pub fn memory(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb << 10)
}

/// The value of `name` (with its labels, if any) in the `/metrics` of the
/// reporter at `http` (host:port); panics naming what it found otherwise.
pub async fn self_metric(http: &str, name: &str) -> f64 {
    let text = reqwest::get(format!("http://{http}/metrics"))
        .await
        .expect("/metrics answers")
        .text()
        .await
        .expect("/metrics has a body");
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
}

/// A string attribute.
pub fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

/// An integer attribute.
pub fn int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
        ..Default::default()
    }
}
