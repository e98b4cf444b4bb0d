//! What `hostile_store.rs` and `chaos.rs` share: a real `kuroko serve`
//! whose log (stderr) is kept in a file, a small tmpfs to fill, OTLP
//! histogram requests whose runs can be counted back, and reads of the
//! store's file. Its includer also includes `kuroko_serve.rs` (for `kv`).

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;

use super::kuroko_serve::{kv, memory, self_metric};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, AggregationTemporality, Histogram, HistogramDataPoint, Metric, ResourceMetrics, ScopeMetrics,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

/// A `kuroko serve` process, killed (SIGKILL) when dropped.
pub struct Reporter {
    pub child: Child,
    /// Where it takes OTLP/HTTP, serves the UI, the API and `/metrics`.
    pub http: String,
    /// Where it takes OTLP/gRPC.
    pub grpc: String,
    /// Its log: everything it wrote to stderr.
    pub log: PathBuf,
}

impl Reporter {
    /// `kuroko serve --config CONFIG --store STORE` on loopback ports of its
    /// own (`http`: this address, else any), logging to `log`; the log's
    /// text when it stops before saying where it listens.
    pub fn start(config: &Path, store: &Path, log: &Path, http: Option<&str>) -> Result<Reporter, String> {
        let stderr = std::fs::File::create(log).map_err(|e| format!("creating {}: {e}", log.display()))?;
        let mut child = Command::new(env!("CARGO_BIN_EXE_kuroko"))
            .arg("serve")
            .arg("--config")
            .arg(config)
            .arg("--store")
            .arg(store)
            .args(["--grpc", "127.0.0.1:0", "--http", http.unwrap_or("127.0.0.1:0")])
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("the kuroko binary cargo built for this test does not start: {e}"))?;
        let mut line = String::new();
        let _ = BufReader::new(child.stdout.take().expect("piped stdout")).read_line(&mut line);
        let address = |after: &str| {
            line.split(after)
                .nth(1)
                .and_then(|rest| rest.split(',').next())
                .map(str::to_owned)
        };
        let (Some(http), Some(grpc)) = (address("OTLP/HTTP on "), address("OTLP/gRPC on ")) else {
            let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
            return Err(format!(
                "kuroko serve stopped ({status}) saying {line:?}; its log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            ));
        };
        Ok(Reporter {
            child,
            http,
            grpc,
            log: log.to_owned(),
        })
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (up to `within`) until its log holds `text`; whether it did.
    pub fn wait_for_log(&self, text: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.log_text().contains(text) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        self.log_text().contains(text)
    }

    /// One value of its `/metrics`.
    pub async fn metric(&self, name: &str) -> f64 {
        self_metric(&self.http, name).await
    }

    /// Its peak resident memory (VmHWM), from /proc.
    pub fn peak_rss(&self) -> u64 {
        memory(self.child.id(), "VmHWM").expect("VmHWM in /proc/PID/status")
    }

    /// SIGKILL: nothing is flushed or closed cleanly.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tmpfs mounted on a fresh folder, unmounted (and the folder removed)
/// when dropped: a real file system that really fills.
pub struct Tmpfs {
    pub dir: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `megabytes` on a new folder named for `tag`; panics
    /// saying why when it cannot (the test needs root, as CI has).
    pub fn mount(tag: &str, megabytes: u64) -> Tmpfs {
        let dir = std::env::temp_dir().join(format!("kuroko-tmpfs-{}-{tag}", std::process::id()));
        let _ = Command::new("umount").arg(&dir).output();
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(&dir)
            .output()
            .unwrap_or_else(|e| panic!("this test needs mount(8) to make a full disk: {e}"));
        assert!(
            output.status.success(),
            "this test mounts a {megabytes} MB tmpfs to fill (it needs root, as CI has): mount said {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
        Tmpfs { dir }
    }

    /// Bytes free on it.
    pub fn free(&self) -> u64 {
        let output = Command::new("df")
            .args(["-B1", "--output=avail"])
            .arg(&self.dir)
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .expect("df prints the bytes available")
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Waits until `check` holds (up to 60 s); whether it did.
pub fn eventually(mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    check()
}

pub fn now_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
}

/// A metrics request: for each `(route, time)` in `points`, `runs` runs of
/// `GET route` of service `service` on host `host`, ending at `time`
/// (ns), each taking 10 ms. `padding` bytes of attribute make it larger
/// (a request's size in the journal).
pub fn runs_request(service: &str, host: &str, points: &[(String, u64)], runs: u64, padding: usize) -> Vec<u8> {
    let data_points = points
        .iter()
        .map(|(route, time)| {
            let mut attributes = vec![kv("http.request.method", "GET"), kv("http.route", route)];
            if padding > 0 {
                attributes.push(kv("padding", &"x".repeat(padding)));
            }
            HistogramDataPoint {
                attributes,
                start_time_unix_nano: time - 60_000_000_000,
                time_unix_nano: *time,
                count: runs,
                sum: Some(0.01 * runs as f64),
                bucket_counts: vec![0, runs, 0],
                explicit_bounds: vec![0.005, 0.05],
                min: Some(0.01),
                max: Some(0.01),
                ..Default::default()
            }
        })
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![kv("service.name", service), kv("host.name", host)],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "http.server.request.duration".into(),
                    unit: "s".into(),
                    data: Some(metric::Data::Histogram(Histogram {
                        data_points,
                        aggregation_temporality: AggregationTemporality::Delta as i32,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

/// POSTs an OTLP/HTTP metrics body: the status, `Retry-After`, and the body's text.
pub async fn post_metrics(client: &reqwest::Client, http: &str, body: Vec<u8>) -> (u16, Option<String>, String) {
    match client
        .post(format!("http://{http}/v1/metrics"))
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .await
    {
        Ok(response) => {
            let status = response.status().as_u16();
            let retry = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let bytes = response.bytes().await.unwrap_or_default();
            (status, retry, String::from_utf8_lossy(&bytes).into_owned())
        }
        // The reporter was killed mid-request: nothing acknowledged.
        Err(_) => (0, None, String::new()),
    }
}

/// Runs per transaction (`service`, `GET route`) stored in the file at
/// `store` over all resolutions' finest rows kept: the sum of
/// `histogram_minute` counts, by route.
pub fn minute_runs(store: &Path) -> std::collections::BTreeMap<String, u64> {
    let connection = rusqlite::Connection::open_with_flags(store, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut statement = connection
        .prepare(
            "SELECT s.txn, SUM(h.count) FROM histogram_minute h JOIN series s ON s.id = h.series
             GROUP BY s.txn",
        )
        .unwrap();
    statement
        .query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)? as u64)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// `SELECT` rows of the store at `store`, each as text columns joined by `|`.
pub fn rows(store: &Path, sql: &str) -> Vec<String> {
    let connection = rusqlite::Connection::open_with_flags(store, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut statement = connection.prepare(sql).unwrap();
    let columns = statement.column_count();
    statement
        .query_map([], |row| {
            Ok((0..columns)
                .map(|i| match row.get_ref(i).unwrap() {
                    rusqlite::types::ValueRef::Null => "NULL".to_owned(),
                    rusqlite::types::ValueRef::Integer(v) => v.to_string(),
                    rusqlite::types::ValueRef::Real(v) => v.to_string(),
                    rusqlite::types::ValueRef::Text(v) => String::from_utf8_lossy(v).into_owned(),
                    rusqlite::types::ValueRef::Blob(v) => format!("{v:02x?}"),
                })
                .collect::<Vec<_>>()
                .join("|"))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
}
