//! The SMTP server on loopback that the mail tests send to
//! (`tests/python/smtp_sink.py`, on aiosmtpd), and a chat webhook receiver,
//! shared by the test files that include it with
//! `#[path = "support/smtp_sink.rs"] mod smtp_sink;`.

// Each test file uses part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::routing::post;
use axum::Router;
use serde_json::Value;

use kuroko_reporter::report::mail::{Security, SmtpConfig};

const SINK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/python/smtp_sink.py");
const HOW_TO_INSTALL: &str = "run tests/run-all.sh, which installs python3's aiosmtpd package \
     (or: python3 -m pip install aiosmtpd)";

/// The sink, stopped (and its folder removed) when dropped.
pub struct Sink {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Where it writes `<n>.eml` and `<n>.rcpt`.
    pub dir: PathBuf,
}

impl Sink {
    /// A sink writing into a fresh temporary folder named after `name`.
    pub fn start(name: &str) -> Sink {
        let dir = std::env::temp_dir().join(format!("kuroko-smtp-sink-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Sink::start_in(dir)
    }

    /// A sink writing into `dir`; fails with what to install when it cannot start.
    pub fn start_in(dir: PathBuf) -> Sink {
        let mut child = Command::new("python3")
            .arg(SINK)
            .arg(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run python3 {SINK}: {e}; {HOW_TO_INSTALL}"));
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let Some(port) = line.trim().strip_prefix("PORT ").and_then(|p| p.parse().ok()) else {
            let output = child.wait_with_output().unwrap();
            panic!(
                "the SMTP sink did not start (said {line:?}): {}\n{HOW_TO_INSTALL}",
                String::from_utf8_lossy(&output.stderr)
            );
        };
        Sink { child, port, dir }
    }

    /// Plain SMTP to this sink, giving up on a connection after `timeout_seconds`.
    pub fn config(&self, timeout_seconds: u64) -> SmtpConfig {
        smtp_to(self.port, timeout_seconds)
    }

    /// The messages received, in order: (envelope recipients, raw message).
    pub fn received(&self) -> Vec<(Vec<String>, Vec<u8>)> {
        (1..)
            .map_while(|n| {
                let raw = std::fs::read(self.dir.join(format!("{n}.eml"))).ok()?;
                let rcpt = std::fs::read_to_string(self.dir.join(format!("{n}.rcpt"))).ok()?;
                Some((rcpt.lines().map(str::to_owned).collect(), raw))
            })
            .collect()
    }

    /// Each message's recipients (one line per message), sorted: teams are
    /// sent to concurrently, in any order.
    pub fn recipients(&self) -> Vec<String> {
        let mut all: Vec<String> = (1..)
            .map_while(|n| std::fs::read_to_string(self.dir.join(format!("{n}.rcpt"))).ok())
            .map(|r| r.trim().to_owned())
            .collect();
        all.sort();
        all
    }
}

/// Plain SMTP to `port` on 127.0.0.1 (a dead one, for the failure cases).
pub fn smtp_to(port: u16, timeout_seconds: u64) -> SmtpConfig {
    SmtpConfig {
        host: "127.0.0.1".into(),
        port: Some(port),
        security: Security::None,
        username: None,
        password_file: None,
        password_env: None,
        from: "Kuroko <kuroko@example.com>".into(),
        timeout_seconds,
        file_dir: None,
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What a [`receiver`] was posted: (path, JSON body), in order.
pub type Posts = Arc<Mutex<Vec<(String, Value)>>>;

/// A chat webhook receiver on loopback: its base URL (post to
/// `<url>/<name>`) and every post, with its path.
pub async fn receiver() -> (String, Posts) {
    async fn keep(State(posts): State<Posts>, uri: axum::http::Uri, body: String) -> &'static str {
        posts
            .lock()
            .unwrap()
            .push((uri.path().to_owned(), serde_json::from_str(&body).unwrap()));
        "ok"
    }
    let posts = Posts::default();
    let app = Router::new()
        .route("/hooks/{name}", post(keep))
        .with_state(posts.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/hooks"), posts)
}
