//! Every link of the weekly emails and the morning digest, followed in a
//! real browser: the emails are rendered by `kuroko report … --dry-run` from
//! a store of two weeks of synthetic data, with `base_url` pointing at a
//! `kuroko serve` on that store; headless Chromium (the support code of
//! `ui_chromium.rs`) reads each email's HTML, collects its links and what
//! each says, signs in, and opens every link. Each page must load with
//! status 200, without console errors, not be "Not found", keep the window
//! the link carries, and show the thing the link names: the group (with the
//! count the email gave), the day's errors (the groups and errors the digest
//! counted), the transaction or feature.

use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "support/chromium.rs"]
mod chromium;

use chromium::{login, serve, text_of, write_store, Browser};

/// One link of an email: where it goes, its text, and its table row's text.
#[derive(Debug)]
struct Link {
    email: String,
    href: String,
    text: String,
    row: String,
}

/// Runs `kuroko report ARGS --config CONFIG --dry-run --out OUT`.
fn report(config: &Path, args: &[&str], out: &Path) {
    let output = Command::new(env!("CARGO_BIN_EXE_kuroko"))
        .arg("report")
        .args(args)
        .arg("--config")
        .arg(config)
        .args(["--dry-run", "--out"])
        .arg(out)
        .output()
        .expect("the kuroko binary starts");
    assert!(
        output.status.success(),
        "kuroko report {args:?}: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The `.html` files under `dir`, recursively.
fn html_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(html_files(&path));
        } else if path.extension().is_some_and(|e| e == "html") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// The links of the email at `path`, as the browser reads them.
fn links_of(browser: &mut Browser, path: &Path) -> Vec<Link> {
    browser.open(&format!("file://{}", path.display()));
    let found = browser.eval(
        "[...document.querySelectorAll('a[href]')].map(a => [a.href, a.textContent.trim(), (a.closest('tr') || a.parentElement).innerText])",
    );
    let found: Vec<(String, String, String)> = serde_json::from_value(found).unwrap();
    found
        .into_iter()
        .map(|(href, text, row)| Link {
            email: path.display().to_string(),
            href,
            text,
            row,
        })
        .collect()
}

/// The query parameter `name` of `url`, decoded.
fn parameter(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then(|| decode(value))
    })
}

fn decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

/// The value shown after the summary's `label` on a group page.
fn summary(browser: &mut Browser, label: &str) -> String {
    let value = browser.eval(&format!(
        "(() => {{ const d = [...document.querySelectorAll('dl.summary div')].find(d => d.querySelector('dt').textContent.trim() === {label:?}); return d ? d.querySelector('dd').textContent.trim() : null; }})()"
    ));
    value
        .as_str()
        .unwrap_or_else(|| panic!("no {label} on the page"))
        .to_owned()
}

#[test]
fn every_link_of_the_weekly_email_and_the_digest_opens_what_it_names() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("email-links");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let store = write_store(&dir);
    // shop-api deployed 1.1.0 last Wednesday at 14:00: the weekly email lists it.
    let now = jiff::Timestamp::now().as_second() / 60;
    let monday = (now + 3 * 1_440).div_euclid(7 * 1_440) * 7 * 1_440 - 3 * 1_440;
    let deployed = monday - 5 * 1_440 + 14 * 60;
    chromium::shop_versions(
        &store,
        "production",
        &[("1.0.0", now - 14 * 1_440), ("1.1.0", deployed)],
    );
    let (_server, base) = serve(&dir, &store);

    // The reports' configuration: the same store and owners, links to the server.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let config = dir.join("report.toml");
    std::fs::write(
        &config,
        format!(
            "store = {:?}\nowners = {:?}\nbase_url = {base:?}\n",
            store.display().to_string(),
            root.join("tests/ui/owners.toml").display().to_string(),
        ),
    )
    .unwrap();
    let out = dir.join("emails");
    for team in ["payments", "catalog", "platform"] {
        report(&config, &["weekly", "--team", team], &out.join(team));
    }
    report(&config, &["digest"], &out.join("digest"));

    let mut browser = Browser::start(&dir.join("profile"));
    let mut links = Vec::new();
    let emails = html_files(&out);
    assert_eq!(emails.len(), 4, "three weekly emails and the digest: {emails:?}");
    for email in &emails {
        let found = links_of(&mut browser, email);
        assert!(!found.is_empty(), "{}: no links", email.display());
        links.extend(found);
    }
    // The digest's headline: `4,741 errors in 5 groups`.
    let digest = std::fs::read_to_string(out.join("digest").join("digest.html")).unwrap();
    let headline = regex_lite_counts(&digest).expect("the digest counts its errors and groups");

    login(&mut browser, &base);
    let mut opened = 0;
    let mut marked = 0;
    let mut kinds = std::collections::BTreeMap::<&str, usize>::new();
    for link in &links {
        assert!(
            link.href.starts_with(&base),
            "{}: a link off the reporter: {}",
            link.email,
            link.href
        );
        let what = format!("{} → {} ({:?})", link.email, link.href, link.text);
        let wall = browser.open(&link.href);
        browser.assert_clean(&what, wall);
        opened += 1;
        let title = text_of(&mut browser, "h1").join(" ");
        let body = browser.eval("document.body.innerText");
        let body = body.as_str().unwrap_or_default().to_owned();
        let problem = text_of(&mut browser, "p.problem");
        assert!(
            problem.is_empty() && title != "Not found",
            "{what}: {title}: {problem:?}"
        );
        // The window and the service the link carries are the page's.
        for key in ["since", "until", "service"] {
            if key == "service" && browser.count("input[name=service]") == 0 {
                continue;
            }
            if let Some(value) = parameter(&link.href, key) {
                let shown = browser.eval(&format!("document.querySelector('input[name={key}]').value"));
                assert_eq!(shown.as_str(), Some(value.as_str()), "{what}: {key}");
            }
        }
        let path = link.href[base.len()..].split('?').next().unwrap_or("/").to_owned();
        let kind = if let Some(id) = path.strip_prefix("/errors/") {
            // The group: its fingerprint, its name, and the count the email gave.
            assert_eq!(
                summary(&mut browser, "Fingerprint").split(' ').next(),
                Some(id),
                "{what}"
            );
            assert!(body.contains(&link.text), "{what}: the page names {:?}", link.text);
            let count = summary(&mut browser, "Count");
            assert!(
                link.row.contains(&count),
                "{what}: the page counts {count}, the email's row says {:?}",
                link.row
            );
            "error group"
        } else if path == "/errors" {
            if link.email.ends_with("digest.html") {
                let context = text_of(&mut browser, "p.context").join(" ");
                let expected = format!("{} groups, {} errors", headline.1, headline.0);
                assert!(
                    context.starts_with(&expected),
                    "{what}: {context:?}, the digest: {expected}"
                );
            }
            "errors of a window"
        } else if path == "/transactions" {
            let transaction = parameter(&link.href, "transaction").unwrap();
            assert!(title.contains(&transaction), "{what}: {title}");
            // shop-api's deploy is marked on its transactions' charts of its week.
            let minute = |key| {
                parameter(&link.href, key)
                    .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                    .map(|t| t.as_second() / 60)
            };
            let holds_deploy =
                (minute("since").unwrap_or(i64::MAX)..minute("until").unwrap_or(i64::MIN)).contains(&deployed);
            let shop = parameter(&link.href, "service").as_deref() == Some("shop-api");
            assert_eq!(
                browser.count("[data-marker=\"shop-api 1.1.0\"]"),
                u64::from(shop && holds_deploy),
                "{what}: the deploy's marker"
            );
            marked += u64::from(shop && holds_deploy);
            "transaction"
        } else if let Some(feature) = path.strip_prefix("/features/") {
            assert!(title.contains(feature), "{what}: {title}");
            "feature"
        } else if path == "/regressions" {
            // A regression's link lists it; a deploy's opens its service's week.
            if let Some(transaction) = parameter(&link.href, "transaction") {
                let subjects = chromium::attributes(&mut browser, "#regressions tbody tr", "data-subject");
                assert!(
                    subjects.iter().any(|s| s.ends_with(&transaction)),
                    "{what}: the regression is listed: {subjects:?}"
                );
            } else {
                assert!(link.text.starts_with("shop-api 1.1.0 (after 1.0.0)"), "{what}");
            }
            "regressions"
        } else {
            "other"
        };
        *kinds.entry(kind).or_default() += 1;
    }
    println!("opened {opened} links: {kinds:?}; {marked} charts marked with the deploy");
    assert!(
        marked > 0,
        "shop-api's transactions in the weekly email show its deploy"
    );
    for kind in [
        "error group",
        "errors of a window",
        "transaction",
        "feature",
        "regressions",
    ] {
        assert!(
            kinds.get(kind).is_some_and(|n| *n > 0),
            "no {kind} link among {kinds:?}"
        );
    }

    // A group's link whose window holds none of it: the page says so and
    // shows the group from its history, with a way to its last day.
    let group = links
        .iter()
        .find(|l| l.href.contains("/errors/"))
        .expect("a group link");
    let id = group.href[base.len()..].split('?').next().unwrap().to_owned();
    let wall = browser.open(&format!("{base}{id}?since=2020-01-06&until=2020-01-07"));
    browser.assert_clean("a group outside its window", wall);
    let note = text_of(&mut browser, "p.absent").join(" ");
    assert!(
        note.contains("No occurrence of this group between 2020-01-06 00:00 UTC and 2020-01-07 00:00 UTC"),
        "{note:?}"
    );
    let wall = browser.follow("document.querySelector('p.absent a').click()");
    browser.assert_clean("the day it was last seen", wall);
    assert_eq!(text_of(&mut browser, "p.absent").len(), 0, "the group is in that day");
    let count: u64 = summary(&mut browser, "Count").replace(',', "").parse().unwrap();
    assert!(count > 0);
    drop(browser);
    // Best effort: Chromium may still be writing its profile as it exits.
    let _ = std::fs::remove_dir_all(&dir);
}

/// (errors, groups) of the digest's `N errors in M groups`, as printed.
fn regex_lite_counts(html: &str) -> Option<(String, String)> {
    let at = html.find(" errors in ")?;
    let errors = html[..at].rsplit(|c: char| !(c.is_ascii_digit() || c == ',')).next()?;
    let rest = &html[at + " errors in ".len()..];
    let groups: String = rest.chars().take_while(|c| c.is_ascii_digit() || *c == ',').collect();
    Some((errors.to_owned(), groups))
}
