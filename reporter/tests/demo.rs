//! `kuroko demo`, run as a user runs it: the real binary, in a fresh folder,
//! for a bounded time; then what it left behind is checked.

use std::collections::BTreeSet;
use std::path::Path;

use kuroko_reporter::demo::{backfill, fleet};
use kuroko_reporter::store::sqlite::SqliteStore;
use kuroko_reporter::store::{Filter, Store};

#[path = "support/demo_run.rs"]
mod demo_run;

use demo_run::temp_dir;

fn demo(dir: &Path, minutes: &str) -> std::process::Output {
    let dir = dir.to_str().expect("a temporary folder's name is text");
    demo_run::demo(
        Path::new("."),
        &["--export-interval", "2", "--minutes", minutes, "--dir", dir],
    )
}

/// (recipients, subject) of every `.eml` in `mailbox`.
fn mails(mailbox: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(mailbox).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(path.extension().unwrap(), "eml", "{}", path.display());
        let raw = std::fs::read(&path).unwrap();
        let parsed = mailparse::parse_mail(&raw).unwrap();
        let header = |name: &str| {
            parsed
                .headers
                .iter()
                .find(|h| h.get_key().eq_ignore_ascii_case(name))
                .map(|h| h.get_value())
                .unwrap_or_default()
        };
        out.push((header("To"), header("Subject")));
    }
    out.sort();
    out
}

/// `kuroko query QUESTION --store STORE --format json`, with its defaults.
fn query(store: &Path, question: &str) -> serde_json::Value {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_kuroko"))
        .args(["query", question, "--format", "json", "--store"])
        .arg(store)
        .output()
        .expect("the kuroko binary starts");
    assert!(
        output.status.success(),
        "kuroko query {question}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON")
}

#[test]
fn the_demo_shows_the_whole_job_and_leaves_its_data() {
    let dir = temp_dir("run");
    let output = demo(&dir, "0.25");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "exit {:?}\n{stdout}\n{stderr}", output.status);
    // Where to look.
    assert!(stdout.contains("Web UI          http://127.0.0.1:"), "{stdout}");
    let store_path = dir.join("kuroko.db");
    assert!(
        stdout.contains(&format!("query consumers --store {} --since 1h", store_path.display())),
        "{stdout}"
    );
    assert!(stdout.contains("the data stays in"), "{stdout}");
    assert!(stderr.contains("backfilling") && stderr.contains("100%"), "{stderr}");
    if let Some(ready) = stdout.lines().find(|l| l.contains("ready in")) {
        eprintln!("{ready}");
    }

    // The live fleet: every service from several hosts.
    let store = SqliteStore::open(&store_path).unwrap();
    let series = store.series().unwrap();
    for service in fleet::SERVICES {
        let live: BTreeSet<&str> = series
            .iter()
            .filter(|k| k.service == service && !k.host.starts_with("synthetic-"))
            .map(|k| k.host.as_str())
            .collect();
        assert!(live.len() >= 2, "{service}: live hosts {live:?}");
    }

    // The backfilled past, marked, with the fleet's names.
    let marking = backfill::marked(&store_path).unwrap().expect("the backfill is marked");
    let (from, to) = marking.split_once("..").unwrap();
    let from: jiff::Timestamp = from.parse().unwrap();
    let to: jiff::Timestamp = to.parse().unwrap();
    assert!(to.duration_since(from).as_hours() >= 14 * 24, "{marking}");
    let week_ago = to.as_second() / 60 - 7 * 1_440;
    let previous_week = store
        .histograms(&Filter::default(), week_ago - 7 * 1_440, week_ago)
        .unwrap();
    let synthetic: BTreeSet<(&str, &str)> = previous_week
        .iter()
        .filter(|(k, h)| k.host.starts_with("synthetic-") && h.count > 0)
        .map(|(k, _)| (k.service.as_str(), k.transaction.as_str()))
        .collect();
    assert_eq!(synthetic.len(), fleet::SERVICES.len() * fleet::TRANSACTIONS);
    let live_transactions: BTreeSet<(&str, &str)> = series
        .iter()
        .filter(|k| !k.host.starts_with("synthetic-") && !k.transaction.starts_with("kuroko."))
        .map(|k| (k.service.as_str(), k.transaction.as_str()))
        .collect();
    assert!(
        live_transactions.iter().all(|t| synthetic.contains(t)),
        "live transactions without a past: {:?}",
        live_transactions.difference(&synthetic).collect::<Vec<_>>()
    );
    // The planted error is one group, whatever its order and user ids
    // (users whose hex id has no digit, like `deeeabba`, made groups of
    // their own).
    let owners = kuroko_reporter::owners::Owners::empty();
    let window = kuroko_reporter::analysis::Scope::window(from.as_second() / 60, to.as_second() / 60 + 60);
    let groups = kuroko_reporter::analysis::Analysis::new(&store, &owners)
        .errors(&window)
        .unwrap();
    let planted: Vec<&str> = groups
        .iter()
        .filter(|g| g.error_type.ends_with("OrderNotFound"))
        .map(|g| g.title.as_str())
        .collect();
    assert_eq!(planted.len(), 1, "{planted:?}");
    // The slow endpoint's N+1 is a performance problem, the costliest one.
    let problems = kuroko_reporter::analysis::Analysis::new(&store, &owners)
        .problems(&kuroko_reporter::analysis::Scope::window(
            to.as_second() / 60 - 1_440,
            to.as_second() / 60 + 60,
        ))
        .unwrap();
    let costliest = problems.groups.first().expect("the demo has performance problems");
    assert_eq!(
        (
            costliest.transaction.as_str(),
            costliest.statement.as_str(),
            costliest.count_per_run
        ),
        ("GET /account/orders/export", "SELECT report_rows", 12.0),
        "{costliest:?}"
    );
    drop(store);
    // And the first page a newcomer opens, the overview, shows it first.
    let store: std::sync::Arc<dyn Store> = std::sync::Arc::new(SqliteStore::open(&store_path).unwrap());
    let app = kuroko_reporter::app::App::new(store, std::sync::Arc::new(owners), String::new(), None);
    let params = kuroko_reporter::ui::Params::parse(Some("")).unwrap();
    let overview = kuroko_reporter::ui::pages::overview(&app, &params, to.as_second() / 60 + 1)
        .unwrap()
        .into_string();
    let problems_at = overview
        .find("id=\"problems\"")
        .expect("the overview has a problems section");
    let services_at = overview.find("id=\"services\"").unwrap();
    assert!(problems_at < services_at, "the problems come first");
    let section = &overview[problems_at..services_at];
    let first = section.find("data-problem=").expect("a problem is listed");
    assert!(
        section[first..].contains("12 × SELECT report_rows") && section[first..].contains("GET /account/orders/export"),
        "{section}"
    );

    // What the banner advertises, a newcomer finds by the default questions.
    assert!(
        stdout.contains("a regression: shop-api GET /products/{id}, p95 +40% since"),
        "{stdout}"
    );
    let regressions = query(&store_path, "regressions");
    let called: Vec<(&str, &str)> = regressions["regressions"]
        .as_array()
        .expect("a regressions list")
        .iter()
        .map(|r| {
            (
                r["service"].as_str().unwrap_or(""),
                r["transaction"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(called, [("shop-api", "GET /products/{id}")], "{regressions:#}");
    let p95 = regressions["regressions"][0]["p95"]["relative"].as_f64().unwrap();
    assert!((0.3..=0.5).contains(&p95), "p95 {p95:+.3}, the banner says +40%");
    // The recurring error recurs: about as many in the last 24 hours as in
    // the 24 before (traffic differs between days), not a burst that is over.
    let errors = query(&store_path, "errors");
    let recurring = errors["groups"]
        .as_array()
        .expect("a groups list")
        .iter()
        .find(|g| g["error_type"].as_str().is_some_and(|t| t.ends_with("OrderNotFound")))
        .unwrap_or_else(|| panic!("the recurring error is in the last 24 hours: {errors:#}"));
    let change = recurring["relative_increase"].as_f64().unwrap_or(f64::NAN);
    assert!((-0.5..=1.0).contains(&change), "its change {change:+.3}: {recurring:#}");
    let hosts: Vec<&str> = recurring["servers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["host"].as_str())
        .collect();
    assert!(
        hosts.iter().all(|h| h.ends_with("shop-api-1")),
        "one host (live and its synthetic past): {hosts:?}"
    );

    // The reports: a weekly email per team and the digest by email, the
    // digest's chat messages in the webhook log, a preview per team.
    let mails = mails(&dir.join("mailbox"));
    let recipients: Vec<&str> = mails.iter().map(|(to, _)| to.as_str()).collect();
    for (team, _, _) in fleet::TEAMS {
        let address = format!("{team}@demo.invalid");
        assert_eq!(
            recipients.iter().filter(|r| r.contains(&address)).count(),
            1,
            "{mails:?}"
        );
        assert!(dir.join("reports").join(team).join("report.html").is_file());
    }
    assert!(
        recipients.iter().any(|r| r.contains("everyone@demo.invalid")),
        "{mails:?}"
    );
    assert_eq!(mails.len(), fleet::TEAMS.len() + 1, "{mails:?}");
    let log = std::fs::read_to_string(dir.join("webhook.log")).unwrap();
    let posts: Vec<serde_json::Value> = log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(
        !posts.is_empty() && posts.iter().all(|p| p.get("text").is_some()),
        "{log}"
    );
    assert!(dir.join("kuroko.toml").is_file() && dir.join("owners.toml").is_file());

    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_folder_the_demo_did_not_make_is_left_alone() {
    let dir = temp_dir("foreign");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("notes.txt"), "mine").unwrap();
    let output = demo(&dir, "0.1");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("was not made by `kuroko demo`"), "{stderr}");
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["notes.txt"]);
    std::fs::remove_dir_all(&dir).unwrap();
}
