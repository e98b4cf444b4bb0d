//! A guard on the public API: no `pub` signature of the agent names a type
//! of a crate it uses privately (the OTLP and transport stack, the async
//! runtime, the HDR histogram), so that upgrading one of them is never a
//! breaking change of kuroko-agent. The crate docs ("Features and
//! stability") list the foreign crates that are in the API on purpose.
//!
//! It reads the sources, as a reviewer would: every `pub` item and field
//! (not `pub(crate)`), its signature up to the body, checked for paths into
//! those crates and for names imported from them. A heuristic, not a
//! compiler: `RUSTDOCFLAGS="-D warnings" cargo doc -p kuroko-agent` and a
//! `cargo semver-checks` run remain the review before a release.

use std::fs;
use std::path::{Path, PathBuf};

/// Crates whose types must not appear in the public API.
const PRIVATE_CRATES: [&str; 12] = [
    "opentelemetry_proto",
    "prost",
    "tonic",
    "reqwest",
    "tokio",
    "rustls",
    "rustls_pki_types",
    "hyper",
    "axum",
    "flate2",
    "percent_encoding",
    "hdrhistogram",
];

/// The one exception: `to_hdrhistogram`, behind the `hdrhistogram` feature
/// (or the crate's own unit tests).
const ALLOWED_GATE: &str = "feature = \"hdrhistogram\"";

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("read agent/src") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Names a file imports from the private crates (`use tonic::Status;`,
/// `use opentelemetry_proto::...::{Resource, KeyValue};`).
fn imported_names(source: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut statement = String::new();
    for line in source.lines().map(str::trim) {
        if statement.is_empty() && !line.starts_with("use ") {
            continue;
        }
        statement.push_str(line);
        statement.push(' ');
        if !line.ends_with(';') {
            continue;
        }
        let path = statement.trim_start_matches("use ").trim();
        if PRIVATE_CRATES.iter().any(|c| path.starts_with(&format!("{c}::"))) {
            let tail = path.trim_end_matches(';');
            let last = tail.rsplit("::").next().unwrap_or_default();
            let tail = if last.contains('}') || tail.contains('{') {
                &tail[tail.find('{').map_or(0, |i| i + 1)..]
            } else {
                last
            };
            for name in tail.split(|c: char| !(c.is_alphanumeric() || c == '_')) {
                if name.chars().next().is_some_and(char::is_uppercase) {
                    names.push(name.to_owned());
                }
            }
        }
        statement.clear();
    }
    names
}

fn mentions_word(text: &str, word: &str) -> bool {
    text.match_indices(word).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + word.len()..].chars().next();
        let boundary = |c: Option<char>| c.is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        boundary(before) && boundary(after)
    })
}

/// `(line, signature)` of every `pub` item or field, with the attributes
/// just above it.
fn public_signatures(source: &str) -> Vec<(usize, String, String)> {
    let lines: Vec<&str> = source.lines().collect();
    let mut out = Vec::new();
    let mut in_tests = false;
    for (i, raw) in lines.iter().enumerate() {
        let line = raw.trim();
        if line == "#[cfg(test)]" && lines.get(i + 1).is_some_and(|l| l.trim().starts_with("mod ")) {
            in_tests = true;
        }
        if in_tests {
            continue;
        }
        if !line.starts_with("pub ") || line.starts_with("pub use ") || line.starts_with("pub mod ") {
            continue;
        }
        // A function's parameters may span lines ending in commas; a field
        // or variant ends at its comma.
        let function = line.contains(" fn ");
        let mut signature = String::new();
        for next in &lines[i..] {
            signature.push_str(next.trim());
            signature.push(' ');
            let t = next.trim_end();
            if t.ends_with('{') || t.ends_with(';') || t.ends_with('}') || (!function && t.ends_with(',')) {
                break;
            }
        }
        let body = signature.find(" {").map_or(signature.as_str(), |b| &signature[..b]);
        let attributes: String = lines[..i]
            .iter()
            .rev()
            .map(|l| l.trim())
            .take_while(|l| l.starts_with("#[") || l.starts_with("///"))
            .filter(|l| l.starts_with("#["))
            .collect();
        out.push((i + 1, body.to_owned(), attributes));
    }
    out
}

#[test]
fn no_private_crate_type_is_in_a_public_signature() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    assert!(files.len() > 20, "the agent's sources are found: {files:?}");
    let mut leaks = Vec::new();
    let mut checked = 0;
    for file in &files {
        let source = fs::read_to_string(file).expect("read a source file");
        let imported = imported_names(&source);
        for (line, signature, attributes) in public_signatures(&source) {
            checked += 1;
            if attributes.contains(ALLOWED_GATE) {
                continue;
            }
            let by_path = PRIVATE_CRATES
                .iter()
                .find(|c| signature.contains(&format!("{c}::")))
                .map(|c| c.to_string());
            let by_name = imported.iter().find(|n| mentions_word(&signature, n)).cloned();
            if let Some(what) = by_path.or(by_name) {
                leaks.push(format!(
                    "{}:{line}: {signature} (uses {what})",
                    file.strip_prefix(&src).unwrap_or(file).display()
                ));
            }
        }
    }
    assert!(checked > 200, "the public items are found ({checked})");
    assert!(
        leaks.is_empty(),
        "types of privately used crates in the public API:\n{}",
        leaks.join("\n")
    );
}

/// The guard bites: a signature that returns an OTLP message is caught.
#[test]
fn the_guard_catches_a_leak() {
    let source = "use opentelemetry_proto::tonic::resource::v1::{Resource, KeyValue};\n\
                  pub struct Config {\n    pub name: String,\n}\n\
                  impl Config {\n    pub fn resource(&self) -> Resource {\n        todo!()\n    }\n}\n\
                  pub fn encode(request: &prost::bytes::Bytes) -> Vec<u8> {\n    todo!()\n}\n";
    let imported = imported_names(source);
    assert_eq!(imported, ["Resource", "KeyValue"]);
    let flagged: Vec<usize> = public_signatures(source)
        .into_iter()
        .filter(|(_, signature, _)| {
            PRIVATE_CRATES.iter().any(|c| signature.contains(&format!("{c}::")))
                || imported.iter().any(|n| mentions_word(signature, n))
        })
        .map(|(line, ..)| line)
        .collect();
    assert_eq!(flagged, [6, 10]);
}
