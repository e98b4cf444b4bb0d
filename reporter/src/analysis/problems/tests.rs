//! The detectors on hand-made runs: each planted shape found once, with its
//! statement, count and time; cheap repetition and fast runs left alone.

use super::*;
use crate::store::SeriesKey;

/// A span: (kind, name, statement attribute or "", start ms, duration ms).
type S<'a> = (&'a str, &'a str, &'a str, u64, u64);

fn trace(duration_ms: u64, spans: &[S<'_>]) -> TracePoint {
    let ms = 1_000_000u64;
    let base = 1_700_000_000_000_000_000u64;
    let mut json = vec![serde_json::json!({
        "name": "GET /x", "kind": "web", "span_id": "00000000000000ff", "start": base,
        "duration_ns": duration_ms * ms, "attributes": {},
    })];
    for (i, (kind, name, statement, start, duration)) in spans.iter().enumerate() {
        let mut attributes = serde_json::Map::new();
        if !statement.is_empty() {
            attributes.insert("db.statement".into(), (*statement).into());
        }
        json.push(serde_json::json!({
            "name": name, "kind": kind, "span_id": format!("{i:016x}"), "parent": "00000000000000ff",
            "start": base + start * ms, "duration_ns": duration * ms, "attributes": attributes,
        }));
    }
    TracePoint {
        key: SeriesKey {
            service: "shop".into(),
            host: "h1".into(),
            transaction: "GET /x".into(),
            feature: String::new(),
            kind: "web".into(),
            environment: String::new(),
        },
        trace_id: "ab".into(),
        start: base,
        duration: duration_ms as f64 / 1e3,
        spans: serde_json::Value::Array(json).to_string(),
    }
}

fn found(trace: &TracePoint) -> Vec<(Pattern, String, usize, f64)> {
    let run = run::read(trace).unwrap();
    detect(&run, &Thresholds::default())
        .into_iter()
        .map(|f| (f.pattern, f.statement, f.count, (f.cost * 1e3).round()))
        .collect()
}

#[test]
fn an_n_plus_one_loop_is_one_finding_with_its_count_and_time() {
    let mut spans = vec![("database", "SELECT", "SELECT * FROM orders WHERE user_id = 7", 0, 5)];
    for i in 0..8u64 {
        spans.push((
            "database",
            "SELECT",
            "SELECT * FROM items WHERE order_id = 1",
            10 + i * 30,
            25,
        ));
    }
    let statements: Vec<String> = (0..8)
        .map(|i| format!("SELECT * FROM items WHERE order_id = {i}"))
        .collect();
    for (span, statement) in spans.iter_mut().skip(1).zip(&statements) {
        span.2 = statement;
    }
    assert_eq!(
        found(&trace(300, &spans)),
        [(
            Pattern::NPlusOne,
            "SELECT * FROM items WHERE order_id = ?".to_owned(),
            8,
            200.0
        )]
    );
}

#[test]
fn cheap_repetition_and_fast_runs_are_not_problems() {
    let spans: Vec<S<'_>> = (0..20u64).map(|i| ("database", "SELECT 1", "", i * 2, 1)).collect();
    assert_eq!(found(&trace(50, &spans)), []);
    // Four calls are not a loop, however slow.
    let spans: Vec<S<'_>> = (0..4u64)
        .map(|i| ("database", "SELECT cards", "", i * 100, 100))
        .collect();
    assert_eq!(found(&trace(450, &spans)), []);
}

#[test]
fn two_independent_calls_one_after_the_other_could_overlap() {
    let spans = [
        ("external", "GET prices", "", 5, 200),
        ("external", "GET stock", "", 206, 150),
        ("code", "render", "", 360, 20),
    ];
    assert_eq!(
        found(&trace(400, &spans)),
        [(Pattern::Sequential, "GET prices → GET stock".to_owned(), 2, 150.0)]
    );
    // Overlapping already, or far apart: nothing.
    let overlapping = [
        ("external", "GET prices", "", 5, 200),
        ("external", "GET stock", "", 100, 150),
    ];
    assert_eq!(found(&trace(400, &overlapping)), []);
    let apart = [
        ("external", "GET prices", "", 5, 100),
        ("external", "GET stock", "", 300, 100),
    ];
    assert_eq!(found(&trace(450, &apart)), []);
}

#[test]
fn one_query_at_most_of_the_run_dominates_it() {
    let spans = [
        (
            "database",
            "SELECT",
            "SELECT sum(total) FROM orders WHERE day > '2024-01-01'",
            10,
            800,
        ),
        ("code", "render", "", 820, 100),
    ];
    assert_eq!(
        found(&trace(1_000, &spans)),
        [(
            Pattern::Dominant,
            "SELECT sum(total) FROM orders WHERE day > ?".to_owned(),
            1,
            800.0
        )]
    );
}

#[test]
fn a_slow_run_mostly_outside_segments_is_found_unless_its_spans_were_cut() {
    let spans = [
        ("database", "SELECT a", "", 0, 100),
        ("database", "SELECT b", "", 50, 100),
    ];
    assert_eq!(
        found(&trace(2_000, &spans)),
        [(Pattern::Outside, String::new(), 2, 1_850.0)]
    );
    let mut cut = trace(2_000, &spans);
    cut.spans = cut.spans.replacen(
        "\"attributes\":{}",
        "\"attributes\":{\"kuroko.trace.dropped_segments\":\"3\"}",
        1,
    );
    assert_eq!(found(&cut), []);
}

#[test]
fn group_ids_are_stable_and_tell_patterns_apart() {
    let id = group_id("shop", "GET /x", Pattern::NPlusOne, "SELECT ?");
    assert_eq!(id.len(), 16);
    assert_eq!(id, group_id("shop", "GET /x", Pattern::NPlusOne, "SELECT ?"));
    assert_ne!(id, group_id("shop", "GET /x", Pattern::Dominant, "SELECT ?"));
    assert_ne!(id, group_id("shop", "GET /y", Pattern::NPlusOne, "SELECT ?"));
}

#[test]
fn thresholds_parse_with_defaults_and_refuse_nonsense() {
    let t: Thresholds = toml::from_str("[n_plus_one]\nmin_count = 10\n").unwrap();
    assert_eq!(t.n_plus_one.min_count, 10);
    assert_eq!(t.n_plus_one.min_seconds, 0.1);
    assert_eq!(t.dominant, DEFAULT_THRESHOLDS.dominant);
    assert!(t.check().is_ok());
    let bad: Thresholds = toml::from_str("[dominant]\nmin_share = 5\n").unwrap();
    assert!(bad.check().unwrap_err().contains("dominant.min_share"));
}

#[test]
fn growth_thresholds_are_read_and_impossible_ones_refused() {
    let t: Thresholds = toml::from_str("growth = { min_runs = 500, min_ratio = 3.0 }\n").unwrap();
    assert_eq!((t.growth.min_runs, t.growth.min_ratio), (500, 3.0));
    assert_eq!(t.growth.min_added_seconds, DEFAULT_THRESHOLDS.growth.min_added_seconds);
    assert!(t.check().is_ok());
    let fewer: Thresholds = toml::from_str("[growth]\nmin_ratio = 0.5\n").unwrap();
    assert!(fewer.check().unwrap_err().contains("min_ratio"));
    let never: Thresholds = toml::from_str("[growth]\np_value = 0\n").unwrap();
    assert!(never.check().unwrap_err().contains("growth.p_value"));
}
