//! The web UI, `/metrics`, `kuroko sql` and chat delivery against careless
//! or hostile users, on the real `kuroko` binary (cargo built it for these
//! tests) over loopback, with `[auth]` configured:
//!
//! - `/login?next=` never sends a reader off the site (`/%09/evil.example`
//!   became `//evil.example` in a browser);
//! - wrong tokens (at `/login`, and as a header or cookie on the API, the
//!   pages and `/metrics`) are throttled per client address and in total
//!   (429 with `Retry-After`, counted in `/metrics`); `POST /logout` clears
//!   the cookie;
//! - `/metrics` asks for the query token unless `public_metrics = true`;
//! - `kuroko sql` stops at its row and time limits and says which flag
//!   lifts them, streaming rows in bounded memory;
//! - a chat webhook slower than the timeout gets the digest once, the
//!   ledger says `unknown`, and `--force` resends it with the same
//!   `Idempotency-Key`;
//! - a real Kuroko agent's own health (points it dropped while the reporter
//!   was down) shows on `/health`.

#[path = "support/kuroko_serve.rs"]
mod kuroko_serve;
use kuroko_serve::Serve;

use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{redirect, Client, StatusCode};

const TOKEN: &str = "hostile-ui-token";

/// A `kuroko serve` with a query token, on a store of its own.
struct Reporter {
    serve: Serve,
    base: String,
}

impl Reporter {
    /// With `extra` appended to its kuroko.toml (after `[auth]`'s token:
    /// start it with a table header).
    fn start(tag: &str, extra: &str) -> Reporter {
        let dir = scratch(tag);
        let toml = dir.join("kuroko.toml");
        std::fs::write(
            &toml,
            format!("store = {:?}\n{extra}\n", dir.join("kuroko.db").display().to_string()),
        )
        .unwrap();
        Reporter::start_config(&toml, &["--grpc", "127.0.0.1:0", "--http", "127.0.0.1:0"])
    }

    fn start_config(toml: &Path, listen: &[&str]) -> Reporter {
        let mut args: Vec<std::ffi::OsString> = vec!["--config".into(), toml.into()];
        args.extend(listen.iter().map(Into::into));
        let serve = Serve::start(&args);
        Reporter {
            base: format!("http://{}", serve.http),
            serve,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// An empty folder for one test.
fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kuroko-hostile-ui-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn auth(extra: &str) -> String {
    format!("[auth]\nquery_token = {TOKEN:?}\n{extra}")
}

/// A client that follows no redirect (the test reads `Location`), from
/// `local` (any 127.x address is this machine).
fn client_from(local: Option<IpAddr>) -> Client {
    Client::builder()
        .redirect(redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .local_address(local)
        .build()
        .unwrap()
}

fn client() -> Client {
    client_from(None)
}

/// POSTs the login form with `token` and `next`.
async fn login(client: &Client, reporter: &Reporter, token: &str, next: &str) -> reqwest::Response {
    let body = serde_urlencoded::to_string([("token", token), ("next", next)]).unwrap();
    client
        .post(reporter.url("/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap()
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn login_sends_the_reader_back_only_to_a_path_of_this_site() {
    let reporter = Reporter::start("next", &auth(""));
    let client = client();
    let hostile = [
        "/\t/evil.example",
        "/\n/evil.example",
        "/\r\n/evil.example",
        "/ /evil.example",
        "//evil.example",
        "/\\evil.example",
        "/%09/evil.example",
        "/%5C%5Cevil.example",
        "/%2F/evil.example",
        "https://evil.example/",
        "javascript:alert(1)",
        " /evil.example",
        "/\u{3000}/evil.example",
        "",
    ];
    for next in hostile {
        let response = login(&client, &reporter, TOKEN, next).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "next={next:?}");
        assert_eq!(
            header(&response, "location"),
            "/",
            "next={next:?} must not leave the site"
        );
        // The form carries the same safe value.
        let form = client
            .get(reporter.url(&format!(
                "/login?{}",
                serde_urlencoded::to_string([("next", next)]).unwrap()
            )))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(form.contains(r#"name="next" value="/""#), "next={next:?}: {form}");
    }
    // A path of the site, with its query, is kept.
    let response = login(&client, &reporter, TOKEN, "/errors?since=1d&service=a%20b").await;
    assert_eq!(header(&response, "location"), "/errors?since=1d&service=a%20b");
}

/// The counter `name` in `/metrics` text.
fn counter(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} is not in /metrics:\n{metrics}"))
}

/// `GET path` with the query token: its body, once it answered 200.
async fn read(client: &Client, reporter: &Reporter, path: &str) -> String {
    let response = client.get(reporter.url(path)).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    response.text().await.unwrap()
}

async fn metrics(client: &Client, reporter: &Reporter) -> String {
    read(client, reporter, "/metrics").await
}

#[tokio::test]
async fn wrong_tokens_are_throttled_per_address_and_in_total() {
    let reporter = Reporter::start(
        "throttle",
        &format!(
            "[limits]\nmax_login_failures_per_address = 5\nmax_login_failures = 8\n{}",
            auth("")
        ),
    );
    let guesser = client_from(Some("127.0.0.2".parse().unwrap()));
    // 300 wrong tries as fast as they go: 5 are checked, the rest get 429.
    let started = Instant::now();
    let mut statuses = Vec::new();
    let mut retry_after = Vec::new();
    for attempt in 0..300 {
        let response = login(&guesser, &reporter, &format!("guess-{attempt}"), "/").await;
        statuses.push(response.status());
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            retry_after.push(header(&response, "retry-after").parse::<u64>().unwrap());
        }
    }
    println!("300 wrong tries in {:?}", started.elapsed());
    let unauthorized = statuses.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count();
    assert_eq!(unauthorized, 5, "{statuses:?}");
    assert!(statuses[5..].iter().all(|s| *s == StatusCode::TOO_MANY_REQUESTS));
    assert!(retry_after.iter().all(|s| (1..=60).contains(s)), "{retry_after:?}");
    // While throttled even the right token is refused: a guesser learns nothing.
    let right = login(&guesser, &reporter, TOKEN, "/").await;
    assert_eq!(right.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(right.text().await.unwrap().contains("Too many wrong tokens"));

    // Another address still may sign in, and try, until the total (8) is spent.
    let other = client_from(Some("127.0.0.3".parse().unwrap()));
    assert_eq!(
        login(&other, &reporter, TOKEN, "/").await.status(),
        StatusCode::SEE_OTHER
    );
    for attempt in 0..3 {
        let status = login(&other, &reporter, &format!("other-{attempt}"), "/")
            .await
            .status();
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let third = client_from(Some("127.0.0.4".parse().unwrap()));
    assert_eq!(
        login(&third, &reporter, TOKEN, "/").await.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "8 wrong tokens in the minute, all addresses together"
    );

    // The total closes /login only: a script with the token still reads.
    let text = metrics(&client(), &reporter).await;
    assert_eq!(counter(&text, "kuroko_reporter_logins_failed_total"), 8);
    // 295 guesses, the guesser's right token, the third address's.
    assert_eq!(counter(&text, "kuroko_reporter_logins_throttled_total"), 297);
}

#[tokio::test]
async fn guesses_over_the_api_pages_and_metrics_spend_the_same_budget() {
    let reporter = Reporter::start(
        "guard",
        &format!("[limits]\nmax_login_failures_per_address = 5\n{}", auth("")),
    );
    let get = |client: &Client, path: &str| client.get(reporter.url(path));
    // Bearer guesses at the API and /metrics: 5 are answered, then 429.
    let api = client_from(Some("127.0.0.5".parse().unwrap()));
    let mut statuses = Vec::new();
    for attempt in 0..20 {
        let path = if attempt % 2 == 0 {
            "/api/v1/slowest"
        } else {
            "/metrics"
        };
        let response = get(&api, path)
            .bearer_auth(format!("guess-{attempt}"))
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses[..5], [401; 5], "{statuses:?}");
    assert!(statuses[5..].iter().all(|s| *s == 429), "{statuses:?}");
    let right = get(&api, "/api/v1/slowest").bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(
        right.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "right or not, while throttled"
    );
    assert!(header(&right, "retry-after")
        .parse::<u64>()
        .is_ok_and(|s| (1..=60).contains(&s)));

    // Cookie guesses at the pages: sent to /login 5 times, then 429.
    let pages = client_from(Some("127.0.0.6".parse().unwrap()));
    let mut statuses = Vec::new();
    for attempt in 0..10 {
        let cookie = format!("kuroko_token=guess-{attempt}");
        let response = get(&pages, "/errors").header("cookie", cookie).send().await.unwrap();
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses[..5], [303; 5], "{statuses:?}");
    assert!(statuses[5..].iter().all(|s| *s == 429), "{statuses:?}");

    // A stale cookie riding along to /login and the static files decides
    // nothing and costs nothing: its reader can still sign in.
    let stale = client_from(Some("127.0.0.7".parse().unwrap()));
    for _ in 0..10 {
        for path in ["/login", "/static/ui.css"] {
            let response = get(&stale, path)
                .header("cookie", "kuroko_token=old")
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{path}");
        }
    }
    assert_eq!(
        login(&stale, &reporter, TOKEN, "/").await.status(),
        StatusCode::SEE_OTHER
    );
    let fine = get(&stale, "/api/v1/slowest").bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(fine.status(), StatusCode::OK);
    let text = metrics(&client(), &reporter).await;
    assert_eq!(counter(&text, "kuroko_reporter_logins_failed_total"), 10);
}

#[tokio::test]
async fn logout_clears_the_cookie_and_pages_offer_it() {
    let reporter = Reporter::start("logout", &auth(""));
    let client = client();
    let signed_in = login(&client, &reporter, TOKEN, "/health").await;
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    let cookie = header(&signed_in, "set-cookie");
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let page = client
        .get(reporter.url("/health"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let page = page.text().await.unwrap();
    assert!(
        page.contains(r#"action="/logout""#) && page.contains("Sign out"),
        "{page}"
    );

    let out = client
        .post(reporter.url("/logout"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert_eq!(header(&out, "location"), "/login");
    let cleared = header(&out, "set-cookie");
    assert!(
        cleared.starts_with("kuroko_token=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );

    // Without a token the UI offers no sign-out.
    let open = Reporter::start("logout-open", "");
    let page = client
        .get(open.url("/health"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!page.contains("/logout"), "{page}");
}

#[tokio::test]
async fn metrics_ask_for_the_query_token_unless_public() {
    let reporter = Reporter::start("metrics", &auth(""));
    let client = client();
    let open = client.get(reporter.url("/metrics")).send().await.unwrap();
    assert_eq!(open.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(header(&open, "www-authenticate"), "Bearer");
    assert!(open.text().await.unwrap().contains("public_metrics"));
    let wrong = client
        .get(reporter.url("/metrics"))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let text = metrics(&client, &reporter).await;
    assert_eq!(counter(&text, "kuroko_reporter_points_stored_total"), 0);

    let public = Reporter::start("metrics-public", &auth("public_metrics = true\n"));
    let open = client.get(public.url("/metrics")).send().await.unwrap();
    assert_eq!(open.status(), StatusCode::OK);
    assert!(open
        .text()
        .await
        .unwrap()
        .contains("kuroko_reporter_logins_failed_total"));
}

/// An empty store's file, as `kuroko serve` leaves it.
fn store(tag: &str) -> PathBuf {
    let dir = scratch(tag);
    let path = dir.join("kuroko.db");
    drop(kuroko_reporter::store::sqlite::SqliteStore::open(&path).unwrap());
    path
}

/// Every row of the counter `x` from 1 on, without end unless `upto`.
fn counting(upto: Option<u64>, select: &str) -> String {
    let bound = upto.map_or(String::new(), |n| format!(" WHERE x < {n}"));
    format!("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c{bound}) SELECT {select} FROM c")
}

/// `kuroko sql` on `store` with `args`: exit status, stdout, stderr.
fn sql(store: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kuroko"))
        .arg("sql")
        .arg("--store")
        .arg(store)
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn sql_stops_at_its_row_limit_and_says_which_flag_lifts_it() {
    let store = store("sql-rows");
    let endless = counting(None, "x");
    let (ok, out, err) = sql(&store, &["--format", "csv", "--max-rows", "1000", &endless]);
    assert!(!ok, "a cut result is not a success");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1_001, "the header and 1,000 rows");
    assert_eq!(lines[1_000], "1000");
    assert!(
        err.contains("stopped after 1000 rows") && err.contains("--max-rows"),
        "{err}"
    );
    // The default limit holds without the flag; a JSON array is still closed.
    let (ok, out, err) = sql(&store, &["--format", "json", &endless]);
    assert!(!ok);
    assert!(err.contains("stopped after 100000 rows"), "{err}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(rows.len(), 100_000);
    // Within the limit: every row, exit 0.
    let (ok, out, _) = sql(&store, &["--format", "csv", &counting(Some(50), "x")]);
    assert!(ok);
    assert_eq!(out.lines().count(), 51);
}

#[test]
fn sql_stops_at_its_time_limit_and_says_so() {
    let store = store("sql-time");
    let started = Instant::now();
    let (ok, _, err) = sql(&store, &["--timeout", "2", &counting(None, "count(*)")]);
    let took = started.elapsed();
    assert!(!ok);
    assert!(err.contains("stopped after 2 s") && err.contains("--timeout"), "{err}");
    assert!(took < Duration::from_secs(60), "an endless query stopped, in {took:?}");
}

#[test]
fn sql_streams_a_large_result_in_bounded_memory() {
    const ROWS: u64 = 2_000_000;
    const CEILING: u64 = 100 << 20;
    let store = store("sql-memory");
    let query = counting(Some(ROWS), "x, printf('%.100c', 'k') AS padding");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kuroko"))
        .args(["sql", "--format", "csv", "--max-rows", "0", "--timeout", "0", "--store"])
        .arg(&store)
        .arg(&query)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let (mut bytes, mut lines, mut buffer) = (0u64, 0u64, vec![0u8; 1 << 16]);
        loop {
            match stdout.read(&mut buffer) {
                Ok(0) | Err(_) => return (bytes, lines),
                Ok(n) => {
                    bytes += n as u64;
                    lines += buffer[..n].iter().filter(|b| **b == b'\n').count() as u64;
                }
            }
        }
    });
    let mut peak = 0;
    while child.try_wait().unwrap().is_none() {
        peak = peak.max(kuroko_serve::memory(pid, "VmHWM").unwrap_or(0));
        std::thread::sleep(Duration::from_millis(20));
    }
    let (bytes, lines) = reader.join().unwrap();
    println!("{lines} lines, {} MB written, peak RSS {} MB", bytes >> 20, peak >> 20);
    assert_eq!(lines, ROWS + 1);
    assert!(bytes > 200 << 20, "{bytes}");
    assert!(peak > 0, "the process was seen");
    assert!(peak < CEILING, "peak RSS {} MB", peak >> 20);
}

/// A chat webhook that takes `first_delay` to answer its first request and
/// answers the others at once; it records each request's `Idempotency-Key`.
async fn slow_webhook(first_delay: Duration) -> (String, Arc<Mutex<Vec<String>>>) {
    use axum::http::HeaderMap;
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let state = seen.clone();
    let app = axum::Router::new().route(
        "/hook/secret",
        axum::routing::post(move |headers: HeaderMap, _body: String| {
            let seen = state.clone();
            async move {
                let first = {
                    let mut seen = seen.lock().unwrap();
                    let key = headers
                        .get("idempotency-key")
                        .map(|v| v.to_str().unwrap_or("?").to_owned())
                        .unwrap_or_default();
                    seen.push(key);
                    seen.len() == 1
                };
                if first {
                    tokio::time::sleep(first_delay).await;
                }
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{address}/hook/secret"), seen)
}

/// `kuroko report ARGS` with the digest's webhook in `HOOK`.
async fn report(config: &Path, hook: &str, args: &[&str]) -> (bool, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kuroko"));
    command
        .arg("report")
        .args(args)
        .arg("--config")
        .arg(config)
        .env("HOOK", hook)
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE");
    // Off the runtime, which serves the webhook meanwhile.
    let out = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_slower_than_the_timeout_gets_the_digest_once_and_the_ledger_says_unknown() {
    // The client gives up after 15 s; this receiver answers after 25.
    let (hook, seen) = slow_webhook(Duration::from_secs(25)).await;
    let store = store("webhook");
    let config = store.with_file_name("kuroko.toml");
    std::fs::write(
        &config,
        format!(
            "store = {:?}\n[digest]\nwebhook_env = \"HOOK\"\n",
            store.display().to_string()
        ),
    )
    .unwrap();
    let period = ["--period", "2026-03-15"];
    let (ok, text) = report(&config, &hook, &["digest", "--send", period[0], period[1]]).await;
    assert!(!ok, "{text}");
    assert!(text.contains("unknown") && text.contains("may have arrived"), "{text}");
    assert_eq!(seen.lock().unwrap().len(), 1, "sent once, not again on the timeout");

    // The ledger says so, and a second run does not send it blindly.
    let (_, status) = report(&config, &hook, &["status", "--days", "3650"]).await;
    assert!(status.contains("unknown"), "{status}");
    let (ok, text) = report(&config, &hook, &["digest", "--send", period[0], period[1]]).await;
    assert!(ok && text.contains("nothing sent"), "{text}");
    assert_eq!(seen.lock().unwrap().len(), 1);

    // A person who checked resends it: with the same Idempotency-Key.
    let (ok, text) = report(&config, &hook, &["digest", "--send", "--force", period[0], period[1]]).await;
    assert!(ok, "{text}");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen[0].starts_with("kuroko-digest-2026-03-15-"), "{seen:?}");
    assert_eq!(
        seen[0], seen[1],
        "the resend is the same message to a receiver that dedupes"
    );
    let (_, status) = report(&config, &hook, &["status", "--days", "3650"]).await;
    assert!(status.contains("sent") && !status.contains("unknown"), "{status}");
}

/// A free loopback port (bound and let go).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agents_dropped_points_show_on_the_health_page() {
    use kuroko_agent::export::ExportConfig;
    use kuroko_agent::{Agent, AgentConfig};

    // The agent starts while its reporter is down: with room for one
    // interval, it drops the older ones and counts their points.
    let port = free_port();
    let agent = Agent::new(AgentConfig::default().with_service_name("checkout")).unwrap();
    let exporter = agent
        .export(
            ExportConfig::default()
                .with_endpoint(format!("http://127.0.0.1:{port}"))
                .with_interval(Duration::from_millis(200))
                .with_buffer_intervals(1)
                .with_timeout(Duration::from_secs(2))
                .with_service_name("checkout")
                .with_host_name("web-7"),
        )
        .unwrap();
    let record = {
        let agent = agent.clone();
        tokio::spawn(async move {
            loop {
                agent.record("GET /cart", Duration::from_millis(12));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while exporter.stats().dropped_points == 0 {
        assert!(
            Instant::now() < deadline,
            "the agent dropped nothing while its reporter was down"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let dir = scratch("agents");
    let toml = dir.join("kuroko.toml");
    std::fs::write(
        &toml,
        format!(
            "store = {:?}\n{}",
            dir.join("kuroko.db").display().to_string(),
            auth("")
        ),
    )
    .unwrap();
    let http = format!("127.0.0.1:{port}");
    let reporter = Reporter::start_config(&toml, &["--grpc", "127.0.0.1:0", "--http", &http]);
    let client = client();
    let dropped = loop {
        let page = read(&client, &reporter, "/health").await;
        let shown = page
            .split(r#"data-metric="kuroko.agent.export.dropped_points">"#)
            .nth(1)
            .and_then(|rest| rest.split('<').next())
            .and_then(|value| value.parse::<f64>().ok());
        if let Some(dropped) = shown.filter(|d| *d > 0.0) {
            assert!(page.contains("checkout") && page.contains("web-7"), "{page}");
            break dropped;
        }
        assert!(Instant::now() < deadline, "no agent health on /health:\n{page}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    record.abort();
    let reported = exporter.stats().dropped_points;
    println!("the agent dropped {reported} points; /health shows {dropped}");
    assert!(dropped as u64 <= reported, "{dropped} > {reported}");
    exporter.shutdown().await;
    drop(reporter.serve);
}
