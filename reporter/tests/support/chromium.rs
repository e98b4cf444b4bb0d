//! Headless Chromium over the DevTools protocol, and `kuroko serve` on two
//! weeks of synthetic data: shared by `ui_chromium.rs` and
//! `email_links.rs` through `#[path]`.
//!
//! The protocol goes over `--remote-debugging-pipe` (NUL-separated JSON on
//! file descriptors 3 and 4, the transport Puppeteer uses by default), so
//! no WebSocket client is needed: `sh` maps the two descriptors onto the
//! child's standard input and output. Without `chromium` a test fails and
//! says how to install it (tests/run-all.sh does).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use kuroko_reporter::store::rollup::Retention;
use kuroko_reporter::store::sqlite::SqliteStore;
use kuroko_reporter::synthetic::{self, Spec};
use serde_json::{json, Value};

pub const TOKEN: &str = "ui-test-token";
/// How long one protocol answer may take before the test gives up (a hung
/// browser, not a slow page: nothing here is timed for speed).
const PATIENCE: Duration = Duration::from_secs(90);

/// A child process killed when the test ends, however it ends.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Two weeks of `Spec::small` ending about now, rolled up, in `dir`.
pub fn write_store(dir: &Path) -> PathBuf {
    let path = dir.join("kuroko.db");
    let now = jiff::Timestamp::now().as_second() / 60;
    let start = (now - 14 * 1_440).div_euclid(60) * 60;
    let store = SqliteStore::open(&path).unwrap();
    synthetic::write_to(&store, &Spec::small(start), |_, _| {}).unwrap();
    store.flush().unwrap();
    store.roller(Retention::default()).unwrap().run(now).unwrap();
    drop(store);
    path
}

/// Records `versions` of shop-api in `environment` in `store`, each
/// (version, first minute): the versions after the first are its deploys.
pub fn shop_versions(store: &Path, environment: &str, versions: &[(&str, i64)]) {
    use kuroko_reporter::store::deploys::{Deploys, VersionSeen};
    let seen: Vec<VersionSeen> = versions
        .iter()
        .map(|&(version, first_minute)| VersionSeen {
            service: "shop-api".into(),
            environment: environment.into(),
            version: version.into(),
            first_minute,
        })
        .collect();
    SqliteStore::open(store).unwrap().versions_seen(&seen).unwrap();
}

/// `kuroko serve` on `store` with the synthetic fleet's owners, the
/// repository's dashboards and a query token; returns it and its HTTP address.
pub fn serve(dir: &Path, store: &Path) -> (Killed, String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let config = dir.join("kuroko.toml");
    std::fs::write(
        &config,
        format!(
            "store = {:?}\nowners = {:?}\ndashboards = {:?}\n[auth]\nquery_token = {TOKEN:?}\n",
            store.display().to_string(),
            root.join("tests/ui/owners.toml").display().to_string(),
            root.join("dashboards").display().to_string(),
        ),
    )
    .unwrap();
    let log = dir.join("serve.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kuroko"))
        .args(["serve", "--grpc", "127.0.0.1:0", "--http", "127.0.0.1:0", "--config"])
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let http = line
        .split("OTLP/HTTP on ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_else(|| {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("kuroko serve did not start: {line:?}\n{log}")
        })
        .to_owned();
    (Killed(child), format!("http://{http}"))
}

/// A DevTools protocol connection to one page of a headless Chromium.
pub struct Browser {
    _child: Killed,
    input: ChildStdin,
    messages: Receiver<Value>,
    next_id: u64,
    session: String,
    /// Events read while waiting for something else.
    events: Vec<Value>,
}

impl Browser {
    pub fn start(profile: &Path) -> Browser {
        let found = Command::new("sh").args(["-c", "command -v chromium"]).output();
        assert!(
            found.is_ok_and(|o| o.status.success()),
            "chromium is not installed: install Debian's package (apt-get install chromium; tests/run-all.sh does)"
        );
        // Puppeteer's flags for a quiet browser: nothing in the background
        // reaches for the network.
        let flags = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--remote-debugging-pipe",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-default-apps",
            "--disable-extensions",
            "--disable-sync",
            "--disable-domain-reliability",
            "--disable-client-side-phishing-detection",
            "--metrics-recording-only",
            "--no-pings",
            "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication",
            "--window-size=1366,900",
        ];
        let script = format!(
            "exec chromium {} --user-data-dir='{}' about:blank 3<&0 4>&1 0</dev/null 1>&2",
            flags.join(" "),
            profile.display()
        );
        let mut child = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let input = child.stdin.take().unwrap();
        let mut output = BufReader::new(child.stdout.take().unwrap());
        let (sender, messages) = mpsc::channel();
        std::thread::spawn(move || loop {
            let mut message = Vec::new();
            match output.read_until(0, &mut message) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    message.pop();
                    if let Ok(value) = serde_json::from_slice::<Value>(&message) {
                        if sender.send(value).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        let mut browser = Browser {
            _child: Killed(child),
            input,
            messages,
            next_id: 0,
            session: String::new(),
            events: Vec::new(),
        };
        let target = browser.call(false, "Target.createTarget", json!({ "url": "about:blank" }));
        let target = target["targetId"].as_str().unwrap().to_owned();
        let attached = browser.call(
            false,
            "Target.attachToTarget",
            json!({ "targetId": target, "flatten": true }),
        );
        browser.session = attached["sessionId"].as_str().unwrap().to_owned();
        for domain in ["Page.enable", "Runtime.enable", "Log.enable"] {
            browser.call(true, domain, json!({}));
        }
        browser
    }

    /// Sends `method` (to the page's session when `on_page`) and returns its result.
    pub fn call(&mut self, on_page: bool, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if on_page {
            message["sessionId"] = json!(self.session);
        }
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        self.input.write_all(&bytes).unwrap();
        self.input.flush().unwrap();
        loop {
            let message = self.receive(method);
            if message["id"] == json!(id) {
                assert!(message.get("error").is_none(), "{method} failed: {message}");
                return message["result"].clone();
            }
            self.events.push(message);
        }
    }

    pub fn receive(&mut self, waiting_for: &str) -> Value {
        self.messages
            .recv_timeout(PATIENCE)
            .unwrap_or_else(|e| panic!("no answer from chromium while waiting for {waiting_for}: {e}"))
    }

    /// Waits for the page's `event`, kept or to come.
    pub fn wait_for(&mut self, event: &str) -> Value {
        if let Some(i) = self.events.iter().position(|e| e["method"] == event) {
            return self.events.remove(i);
        }
        loop {
            let message = self.receive(event);
            if message["method"] == event {
                return message;
            }
            self.events.push(message);
        }
    }

    /// Opens `url` and waits for its load event; returns the wall time it took.
    pub fn open(&mut self, url: &str) -> Duration {
        self.events.clear();
        let started = Instant::now();
        self.call(true, "Page.navigate", json!({ "url": url }));
        self.wait_for("Page.loadEventFired");
        started.elapsed()
    }

    /// Runs `action` (a click, a submit) and waits for the page it loads;
    /// returns the wall time it took.
    pub fn follow(&mut self, action: &str) -> Duration {
        self.events.clear();
        let started = Instant::now();
        self.eval(action);
        self.wait_for("Page.loadEventFired");
        started.elapsed()
    }

    /// The value of a JavaScript expression in the page.
    pub fn eval(&mut self, expression: &str) -> Value {
        let result = self.call(
            true,
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true }),
        );
        assert!(result.get("exceptionDetails").is_none(), "{expression} threw: {result}");
        result["result"]["value"].clone()
    }

    pub fn count(&mut self, selector: &str) -> u64 {
        let value = self.eval(&format!("document.querySelectorAll({selector:?}).length"));
        value.as_u64().unwrap_or_else(|| panic!("{selector}: {value}"))
    }

    /// Asserts the page loaded with status 200 and logged no error; prints its load time.
    pub fn assert_clean(&mut self, what: &str, wall: Duration) {
        let status = self.eval("performance.getEntriesByType('navigation')[0].responseStatus");
        assert_eq!(status, json!(200), "{what}: status {status}");
        let load = self.eval(
            "(() => { const n = performance.getEntriesByType('navigation')[0]; return n.loadEventEnd - n.startTime; })()",
        );
        // Drain what arrived, then look for errors among all events.
        while let Ok(message) = self.messages.try_recv() {
            self.events.push(message);
        }
        let problems: Vec<&Value> = self
            .events
            .iter()
            .filter(|e| match e["method"].as_str() {
                Some("Runtime.exceptionThrown") => true,
                Some("Runtime.consoleAPICalled") => matches!(e["params"]["type"].as_str(), Some("error" | "assert")),
                Some("Log.entryAdded") => e["params"]["entry"]["level"] == "error",
                _ => false,
            })
            .collect();
        assert!(problems.is_empty(), "{what}: console errors {problems:#?}");
        println!(
            "{what}: loaded in {:.0} ms (navigation timing), {} ms wall",
            load.as_f64().unwrap_or(f64::NAN),
            wall.as_millis()
        );
    }
}

pub fn text_of(browser: &mut Browser, selector: &str) -> Vec<String> {
    let value = browser.eval(&format!(
        "[...document.querySelectorAll({selector:?})].map(e => e.textContent.trim())"
    ));
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_owned())
        .collect()
}

pub fn attributes(browser: &mut Browser, selector: &str, attribute: &str) -> Vec<String> {
    let value = browser.eval(&format!(
        "[...document.querySelectorAll({selector:?})].map(e => e.getAttribute({attribute:?}))"
    ));
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Passes the token gate as a person does: `/login`'s form, then its cookie.
pub fn login(browser: &mut Browser, base: &str) {
    browser.open(&format!("{base}/login"));
    browser.follow(&format!(
        "document.querySelector('input[name=token]').value = {TOKEN:?}; document.querySelector('form.login').submit()"
    ));
}
