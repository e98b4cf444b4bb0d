//! `kuroko query` and the HTTP API, through the real binary, over a
//! synthetic fortnight whose answers are planted (`synthetic::Spec::small`):
//! the slow endpoints, the regression and the error burst come out where a
//! user looks for them, in every format, and asking a running reporter prints
//! exactly what opening the store prints.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use kuroko_reporter::store::rollup::Retention;
use kuroko_reporter::store::sqlite::SqliteStore;
use kuroko_reporter::synthetic::{write_to, Spec, Truths};

const DAY: i64 = 1_440;
const TOKEN: &str = "query-token-for-tests";

struct Fixture {
    /// First minute of the data: midnight UTC two weeks ago, so a reporter
    /// started on it has little to roll up (its first pass rolls every
    /// hour up to now, and would hold the store meanwhile).
    start: i64,
    dir: PathBuf,
    store: PathBuf,
    truths: Truths,
}

/// The fortnight, written and rolled up once, its store closed again so the
/// binary can own it.
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("query-fixture");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("kuroko.db");
        let store = SqliteStore::open(&path).unwrap();
        let today = jiff::Timestamp::now().as_second().div_euclid(60 * DAY) * DAY;
        let start = today - 14 * DAY;
        let spec = Spec::small(start);
        let truths = write_to(&store, &spec, |_, _| {}).unwrap();
        store.flush().unwrap();
        // Rolled as `kuroko serve` would (keeping everything), so a reporter
        // started on a copy has nothing left to change.
        store.roller(keep_all()).unwrap().run(spec.end_minute() + 60).unwrap();
        drop(store);
        Fixture {
            start,
            dir,
            store: path,
            truths,
        }
    })
}

fn keep_all() -> Retention {
    Retention {
        minute_days: 100_000,
        hour_days: 100_000,
        day_days: 100_000,
    }
}

/// RFC 3339 for a unix minute.
fn at(minute: i64) -> String {
    jiff::Timestamp::from_second(minute * 60).unwrap().to_string()
}

fn kuroko(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kuroko"))
        .args(args)
        .env_remove("KUROKO_STORE")
        .env_remove("KUROKO_QUERY_TOKEN")
        .output()
        .unwrap()
}

/// Stdout of a command that must succeed.
fn ok(args: &[&str]) -> String {
    let output = kuroko(args);
    assert!(
        output.status.success(),
        "kuroko {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap()
}

#[test]
fn the_planted_slow_endpoints_come_first() {
    let f = fixture();
    let store = f.store.to_str().unwrap();
    let (since, until) = (at(f.start), at(f.start + 14 * DAY));
    let window = ["--since", since.as_str(), "--until", until.as_str()];
    let answer = json(&ok(&[
        &["query", "slowest", "--store", store, "--format", "json"],
        &window[..],
    ]
    .concat()));
    let rows = answer["rows"].as_array().unwrap();
    let first_two: Vec<(String, String)> = rows[..2]
        .iter()
        .map(|r| {
            (
                r["service"].as_str().unwrap().to_owned(),
                r["transaction"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for planted in &f.truths.slow_endpoints {
        assert!(
            first_two.contains(&(planted.service.clone(), planted.transaction.clone())),
            "{planted:?} not among {first_two:?}"
        );
    }
    assert_eq!(answer["rank"], "p95");
    assert_eq!(answer["scope"]["from"], f.start);

    // The same as a table: a heading, aligned columns, humanised durations.
    let table = ok(&[&["query", "slowest", "--store", store, "--limit", "3"], &window[..]].concat());
    let lines: Vec<&str> = table.lines().collect();
    let day = |minute: i64| {
        jiff::Timestamp::from_second(minute * 60)
            .unwrap()
            .strftime("%Y-%m-%d 00:00")
            .to_string()
    };
    let heading = format!(
        "Slowest transactions by p95 · {} → {} UTC",
        day(f.start),
        day(f.start + 14 * DAY)
    );
    assert!(lines[0].starts_with(&heading), "{table}");
    assert!(
        lines[2]
            .split_whitespace()
            .take(3)
            .eq(["service", "transaction", "feature"]),
        "{table}"
    );
    assert!(
        lines[3].contains(&f.truths.slow_endpoints[0].transaction)
            || lines[4].contains(&f.truths.slow_endpoints[0].transaction),
        "{table}"
    );
    assert!(
        lines[3].contains(" ms") || lines[3].contains(" s "),
        "durations with units: {table}"
    );
    assert!(table.contains("(3 of "), "{table}");

    // And as CSV: a header and one line per row, raw seconds.
    let csv = ok(&[
        &["query", "slowest", "--store", store, "--format", "csv", "--limit", "5"],
        &window[..],
    ]
    .concat());
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 6, "{csv}");
    assert!(
        lines[0].starts_with("service,transaction,feature,team,kind,count,"),
        "{csv}"
    );
    let p95_column = lines[0].split(',').position(|c| c == "p95").unwrap();
    let p95: f64 = lines[1].split(',').nth(p95_column).unwrap().parse().unwrap();
    assert_eq!(p95, rows[0]["p95"].as_f64().unwrap(), "the same number as the JSON");
}

#[test]
fn regressions_and_the_error_burst_are_found() {
    let f = fixture();
    let store = f.store.to_str().unwrap();
    let (since, until) = (at(f.start + 7 * DAY), at(f.start + 14 * DAY));
    let answer = json(&ok(&[
        "query",
        "regressions",
        "--store",
        store,
        "--since",
        &since,
        "--until",
        &until,
        "--format",
        "json",
    ]));
    let regressions = answer["regressions"].as_array().unwrap();
    let planted = &f.truths.regression;
    assert_eq!(regressions.len(), 1, "{answer:#}");
    assert_eq!(regressions[0]["transaction"], planted.transaction.as_str());
    assert_eq!(regressions[0]["service"], planted.service.as_str());
    assert_eq!(regressions[0]["trigger"]["metric"], "p95");
    assert!(answer.get("improvements").is_none(), "only when asked for");
    let table = ok(&[
        "query",
        "regressions",
        "--store",
        store,
        "--since",
        &since,
        "--until",
        &until,
        "--include",
        "all",
    ]);
    assert!(table.contains("Regressions, most extra time first (1)"), "{table}");
    assert!(
        table.contains(&planted.transaction) && table.contains("p95 +"),
        "{table}"
    );
    assert!(table.contains("Improvements (0)"), "{table}");

    let burst = &f.truths.error_burst;
    let day = burst.from_minute.div_euclid(DAY) * DAY;
    let (since, until) = (at(day), at(day + DAY));
    let answer = json(&ok(&[
        "query", "errors", "--store", store, "--since", &since, "--until", &until, "--format", "json",
    ]));
    // New groups first, and the burst's first among them (by count); its
    // groups are all on the one host and add up to the burst.
    let groups = answer["groups"].as_array().unwrap();
    let first = &groups[0];
    assert_eq!(
        first["error_type"],
        burst.error_type.as_str(),
        "the new burst first: {answer:#}"
    );
    assert_eq!(first["new"], true);
    let of_burst: Vec<&serde_json::Value> = groups
        .iter()
        .filter(|g| g["error_type"] == burst.error_type.as_str())
        .collect();
    assert_eq!(
        of_burst.iter().map(|g| g["count"].as_u64().unwrap()).sum::<u64>(),
        burst.count
    );
    for group in &of_burst {
        assert_eq!(group["servers"].as_array().unwrap().len(), 1, "{group:#}");
        assert_eq!(group["servers"][0]["host"], burst.host.as_str());
    }
    let csv = ok(&[
        "query", "errors", "--store", store, "--since", &since, "--until", &until, "--format", "csv",
    ]);
    let row = csv.lines().nth(1).unwrap();
    assert!(
        row.starts_with(&format!("{},true,{},0,", first["id"].as_str().unwrap(), first["count"])),
        "{csv}"
    );
    assert!(
        row.contains(&format!(
            ",{} {} ({}),",
            burst.transaction.service, burst.host, first["count"]
        )),
        "{csv}"
    );
    let table = ok(&[
        "query", "errors", "--store", store, "--since", &since, "--until", &until,
    ]);
    assert!(
        table
            .lines()
            .nth(5)
            .unwrap()
            .contains(&format!("{} ({})", burst.host, first["count"])),
        "{table}"
    );
}

/// `kuroko query … | head`, and any reader that stops early: the answer
/// meets a closed pipe, and kuroko exits quietly (it once panicked, with a
/// backtrace, on the broken pipe).
#[test]
fn a_reader_that_stops_early_gets_a_quiet_exit() {
    let store = fixture().store.to_str().unwrap().to_owned();
    for args in [
        vec![
            "query", "slowest", "--store", &store, "--since", "30d", "--format", "csv",
        ],
        vec![
            "sql",
            "--store",
            &store,
            "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n LIMIT 50000) SELECT x FROM n",
        ],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kuroko"))
            .args(&args)
            .env_remove("KUROKO_STORE")
            .env_remove("KUROKO_QUERY_TOKEN")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // The reader goes before the first line is written.
        drop(child.stdout.take());
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "kuroko {args:?}: {} {stderr}", output.status);
        assert!(
            !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
            "{stderr}"
        );
    }
}

#[test]
fn mistakes_are_explained_and_missing_stores_are_not_created() {
    let f = fixture();
    let store = f.store.to_str().unwrap();
    let output = kuroko(&["query", "slowest", "--store", store, "--since", "last tuesday"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("`last tuesday` is not a time"), "{stderr}");
    let missing = f.dir.join("nothing-here.db");
    let output = kuroko(&["query", "slowest", "--store", missing.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&output.stderr).contains("no store at"));
    assert!(!missing.exists());
}

/// A `kuroko serve` child, killed when dropped.
struct Served {
    child: std::process::Child,
    http: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(config: &Path) -> Served {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kuroko"))
        .args(["serve", "--config"])
        .arg(config)
        .env_remove("KUROKO_STORE")
        .env_remove("KUROKO_QUERY_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let http = line
        .split("OTLP/HTTP on ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_else(|| panic!("no address line: {line:?}"))
        .to_owned();
    Served { child, http }
}

fn get(url: &str, token: Option<&str>) -> (u16, String, String) {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut request = agent.get(url);
    if let Some(token) = token {
        request = request.header("Cookie", &format!("theme=dark; kuroko_token={token}"));
    }
    let response = request.call().unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, content_type, response.into_body().read_to_string().unwrap())
}

#[test]
fn a_running_reporter_answers_as_the_store_does() {
    let f = fixture();
    let dir = f.dir.join("served");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("kuroko.db");
    std::fs::copy(&f.store, &copy).unwrap();
    let config = dir.join("kuroko.toml");
    std::fs::write(
        &config,
        format!(
            "store = {:?}\ngrpc_listen = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\n\
             rollup_interval_seconds = 86400\n\
             [retention]\nminute_days = 100000\nhour_days = 100000\nday_days = 100000\n\
             [auth]\nquery_token = \"{TOKEN}\"\n",
            copy.to_str().unwrap()
        ),
    )
    .unwrap();
    let served = serve(&config);
    let server = format!("http://{}", served.http);
    let (since, until) = (at(f.start + 7 * DAY), at(f.start + 14 * DAY));
    let window = ["--since", since.as_str(), "--until", until.as_str()];
    let copy = copy.to_str().unwrap();
    for (question, format) in [
        ("slowest", "json"),
        ("slowest", "table"),
        ("regressions", "table"),
        ("errors", "csv"),
    ] {
        let local = ok(&[&["query", question, "--store", copy, "--format", format], &window[..]].concat());
        let remote = ok(&[
            &[
                "query",
                question,
                "--server",
                server.as_str(),
                "--token",
                TOKEN,
                "--format",
                format,
            ],
            &window[..],
        ]
        .concat());
        assert_eq!(remote, local, "{question} as {format}");
        assert!(local.len() > 100, "{local}");
    }

    // Without the token: 401, and the CLI says what to do.
    let url = format!("{server}/api/v1/slowest?since={since}&until={until}");
    let (status, _, body) = get(&url, None);
    assert_eq!(status, 401, "{body}");
    assert!(json(&body)["error"].as_str().unwrap().contains("Bearer"), "{body}");
    let (status, _, _) = get(&url, Some("wrong"));
    assert_eq!(status, 401);
    let output = kuroko(&[&["query", "slowest", "--server", server.as_str()], &window[..]].concat());
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("401"));

    // With the UI's cookie: a wrong window is a 400 saying how to write one.
    let (status, _, body) = get(&format!("{server}/api/v1/slowest?since=yesterday"), Some(TOKEN));
    assert_eq!(status, 400, "{body}");
    assert!(
        json(&body)["error"]
            .as_str()
            .unwrap()
            .contains("`yesterday` is not a time"),
        "{body}"
    );
    let (status, _, body) = get(&format!("{server}/api/v1/slowest?sinse=7d"), Some(TOKEN));
    assert_eq!(status, 400);
    assert!(body.contains("unknown parameter `sinse`"), "{body}");
    let (status, _, body) = get(&format!("{server}/api/v1/slow"), Some(TOKEN));
    assert_eq!(status, 404);
    assert!(body.contains("slowest, consumers"), "{body}");

    // CSV for downloads: the same rows the CLI prints.
    let (status, content_type, body) = get(&format!("{url}&format=csv&limit=4"), Some(TOKEN));
    assert_eq!((status, content_type.as_str()), (200, "text/csv; charset=utf-8"));
    let local = ok(&[
        &["query", "slowest", "--store", copy, "--format", "csv", "--limit", "4"],
        &window[..],
    ]
    .concat());
    assert_eq!(body, local);
    assert_eq!(body.lines().count(), 5);
    drop(served);
}

#[test]
fn serve_refuses_an_owners_file_with_an_unknown_team() {
    let f = fixture();
    let dir = f.dir.join("bad-owners");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let owners = dir.join("owners.toml");
    std::fs::write(&owners, "[teams.shop]\n\n[features.checkout]\nteam = \"nobody\"\n").unwrap();
    let config = dir.join("kuroko.toml");
    std::fs::write(
        &config,
        format!(
            "store = {:?}\nowners = {:?}\ngrpc_listen = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\n",
            dir.join("kuroko.db").to_str().unwrap(),
            owners.to_str().unwrap()
        ),
    )
    .unwrap();
    let output = kuroko(&["serve", "--config", config.to_str().unwrap()]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("{}:4:", owners.display())), "{stderr}");
    assert!(stderr.contains("nobody"), "{stderr}");
}

/// docs/openapi.json parses, and documents every question and parameter the
/// code knows (and no parameter it does not).
#[test]
fn the_openapi_document_matches_the_code() {
    use kuroko_reporter::api::query::{Question, PARAMETERS};
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
    let doc = json(&std::fs::read_to_string(path).unwrap());
    assert_eq!(doc["openapi"], "3.1.0");
    let documented: Vec<&String> = doc["components"]["parameters"].as_object().unwrap().keys().collect();
    let mut known: Vec<&str> = PARAMETERS.to_vec();
    known.sort_unstable();
    assert_eq!(documented, known);
    for question in Question::ALL {
        let operation = &doc["paths"][format!("/api/v1/{}", question.name())]["get"];
        let parameters = operation["parameters"]
            .as_array()
            .unwrap_or_else(|| panic!("{question:?} undocumented"));
        for parameter in parameters {
            let name = parameter["$ref"].as_str().unwrap().rsplit('/').next().unwrap();
            assert!(PARAMETERS.contains(&name), "{question:?}: {name}");
        }
        let schema = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
            .as_str()
            .unwrap();
        let schema = schema.rsplit('/').next().unwrap();
        assert!(doc["components"]["schemas"][schema].is_object(), "{schema}");
    }
}

#[test]
fn a_users_mistake_is_said_without_a_stack_trace_even_with_rust_backtrace_set() {
    let output = Command::new(env!("CARGO_BIN_EXE_kuroko"))
        .args(["query", "slowest", "--store", "/nonexistent/kuroko.db"])
        .env("RUST_BACKTRACE", "1")
        .env_remove("KUROKO_STORE")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("Error: no store at /nonexistent/kuroko.db"),
        "{stderr}"
    );
    assert!(!stderr.to_lowercase().contains("backtrace"), "{stderr}");
}

#[test]
fn serve_says_where_the_web_ui_is_and_it_answers_there() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("serve-ui-address");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kuroko"))
        .args(["serve", "--grpc", "127.0.0.1:0", "--http", "127.0.0.1:0", "--store"])
        .arg(dir.join("kuroko.db"))
        .env_remove("KUROKO_QUERY_TOKEN")
        .env_remove("KUROKO_INGEST_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let second = lines.next().unwrap().unwrap();
    let http = first
        .split("OTLP/HTTP on ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .unwrap();
    let url = format!("http://{http}/");
    assert_eq!(second, format!("kuroko: web UI and API on {url}"));
    // The reader goes; the reporter keeps serving.
    drop(lines);
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut page = agent.get(&url).call().unwrap();
    let status = page.status();
    let body = page.body_mut().read_to_string().unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Kuroko"), "{body}");
}
