//! A `kuroko serve` on a store and config of its own, with what the
//! hostile-input tests read of it: its RSS (from /proc), whether it still
//! runs, and its API's JSON answers.

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::kuroko_serve::Serve;

/// A `kuroko serve` process on a store of its own, in a directory removed
/// when dropped.
pub struct Reporter {
    pub serve: Serve,
    pub http: String,
    pub dir: PathBuf,
}

impl Reporter {
    /// With `config` as its kuroko.toml; `tag` names its directory, which
    /// holds its store.
    pub fn start(tag: &str, config: &str) -> Reporter {
        Reporter::start_on(tag, config, None)
    }

    /// The same, on `store` (a ClickHouse URL) when given.
    pub fn start_on(tag: &str, config: &str, store: Option<&str>) -> Reporter {
        let dir = std::env::temp_dir().join(format!("kuroko-hostile-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let toml = dir.join("kuroko.toml");
        // A ClickHouse store's journal goes in the reporter's folder too.
        let journal = match store {
            Some(_) => format!("\n[journal]\ndir = \"{}\"\n", dir.join("journal").display()),
            None => String::new(),
        };
        std::fs::write(&toml, format!("{config}{journal}")).unwrap();
        let serve = Serve::start(&[
            "--config".as_ref(),
            toml.as_os_str(),
            "--grpc".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--http".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--store".as_ref(),
            store
                .map_or(dir.join("kuroko.db").into_os_string(), Into::into)
                .as_os_str(),
        ]);
        Reporter {
            http: serve.http.clone(),
            serve,
            dir,
        }
    }

    /// Its store's file.
    pub fn store(&self) -> PathBuf {
        self.dir.join("kuroko.db")
    }

    /// Still running.
    pub fn alive(&mut self) -> bool {
        self.serve.child.try_wait().unwrap().is_none()
    }

    /// `kuroko query QUESTION --store …` on its store, until its output
    /// holds `expected` (the store file is a few seconds behind the running
    /// reporter): each run must exit 0; the last output.
    pub fn query_until(&self, question: &str, expected: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = self.query(question);
            if expected.iter().all(|e| text.contains(e)) || Instant::now() > deadline {
                return text;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// `kuroko query QUESTION --store …` on its store: exit 0 and its output.
    pub fn query(&self, question: &str) -> String {
        let until = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(60);
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_kuroko"))
            .args([
                "query",
                question,
                "--since",
                "1h",
                "--until",
                &until.to_string(),
                "--store",
            ])
            .arg(self.store())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "kuroko query {question} failed on the attacked store: {}\n{text}",
            String::from_utf8_lossy(&output.stderr)
        );
        text
    }

    /// Its resident memory, from /proc.
    pub fn rss(&self) -> u64 {
        self.serve.rss()
    }

    /// Still running, and its RSS under `ceiling`: the RSS.
    pub fn assert_up_and_under(&mut self, ceiling: u64) -> u64 {
        assert!(self.alive(), "the reporter died");
        let rss = self.rss();
        assert!(
            rss < ceiling,
            "RSS {} MB, over the ceiling of {} MB",
            rss >> 20,
            ceiling >> 20
        );
        rss
    }

    /// GET `path` (with its query): status, body and how long it took.
    pub async fn get(&self, path: &str) -> (u16, String, Duration) {
        let started = Instant::now();
        let response = reqwest::Client::new()
            .get(format!("http://{}{path}", self.http))
            .timeout(Duration::from_secs(120))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body = response.text().await.unwrap();
        (status, body, started.elapsed())
    }

    /// Waits until what it acknowledged is in the store: a ClickHouse
    /// store's journal sent (at once on the embedded store).
    pub async fn stored(&self) {
        let started = Instant::now();
        while super::kuroko_serve::self_metric(&self.http, "kuroko_reporter_journal_waiting_bytes").await > 0.0 {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the journal was not sent within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `/api/v1/QUESTION?QUERY&format=json` over the last hour, as JSON.
    pub async fn api(&self, question: &str, query: &str) -> serde_json::Value {
        let until = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(60);
        let (status, body, _) = self
            .get(&format!(
                "/api/v1/{question}?since=1h&until={until}&format=json&{query}"
            ))
            .await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// `kuroko sql QUERY` on its store file (a few seconds behind the
    /// running reporter), until `done` holds for its rows (30 s at most):
    /// the last rows.
    pub fn sql_until(&self, query: &str, done: impl Fn(&[serde_json::Value]) -> bool) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let output = std::process::Command::new(env!("CARGO_BIN_EXE_kuroko"))
                .args(["sql", "--format", "json", "--store"])
                .arg(self.store())
                .arg(query)
                .output()
                .unwrap();
            assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
            let rows: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
            if done(&rows) || Instant::now() > deadline {
                return rows;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Its `/metrics` value of `name`.
    pub async fn metric(&self, name: &str) -> f64 {
        let (_, text, _) = self.get("/metrics").await;
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in /metrics: {text}"))
    }

    /// POST protobuf `body` to `/v1/SIGNAL`: status and decoded answer.
    pub async fn post<R: prost::Message + Default>(&self, signal: &str, body: Vec<u8>) -> (u16, R) {
        let response = reqwest::Client::new()
            .post(format!("http://{}/v1/{signal}", self.http))
            .header("content-type", "application/x-protobuf")
            .timeout(Duration::from_secs(120))
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let bytes = response.bytes().await.unwrap();
        (status, R::decode(bytes.as_ref()).unwrap_or_default())
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        let _ = self.serve.child.kill();
        let _ = self.serve.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Now, in ns since the epoch.
pub fn now_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
}
