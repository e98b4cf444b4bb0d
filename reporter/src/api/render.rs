//! Answers as text: aligned tables for a terminal and CSV for spreadsheets,
//! both read from the JSON answer (the API's, or the same value computed
//! locally), so `kuroko query` prints the same thing whichever way it asked.
//!
//! Each question has one list of columns: a JSON path, how to show the value
//! and its names in the table and in the CSV. Tables humanise through
//! [`crate::format`] (`12 ms`, `4.5%`, `12,345`, `2 min 30 s`) and drop
//! columns empty in every row; CSV keeps the raw numbers (seconds, ratios 0
//! to 1) and every column. Nested lists are
//! flattened: a time series is one CSV row per point, a breakdown one per
//! segment, the servers of an error group one cell (`host (count); ...`).

use serde_json::{Map, Value};

use super::query::{Format, Question};
use crate::format;

/// How a value is shown.
#[derive(Clone, Copy)]
enum Kind {
    /// As it is.
    Text,
    /// A whole number: `12,345`.
    Count,
    /// A rate or ratio with a few digits: `12.3`.
    Number,
    /// A duration in seconds: `12.3 ms`.
    Seconds,
    /// Seconds gained or lost: `+1.2 min`.
    SignedSeconds,
    /// A share 0 to 1: `12.3%`.
    Percent,
    /// A relative change: `+31%`.
    Change,
    /// Apdex, 0 to 1: `0.94`.
    Apdex,
    /// Unix minutes, shown as UTC time.
    Minute,
    /// Unix nanoseconds, shown as UTC time.
    Nanos,
    /// `true` shows as the table name (`new`, `(est.)`), `false` as nothing.
    Flag,
    /// A list of strings.
    Strings,
    /// A list of objects with a `count`: these fields and the count.
    Counted(&'static [&'static str]),
    /// An object with `previous` and `current` seconds: `120 ms → 156 ms`.
    Before,
}

/// One column: where its value is, how it shows, its names (`None`: not in
/// that format).
struct Column {
    path: &'static [&'static str],
    kind: Kind,
    table: Option<&'static str>,
    csv: Option<&'static str>,
}

const fn col(
    path: &'static [&'static str],
    kind: Kind,
    table: Option<&'static str>,
    csv: Option<&'static str>,
) -> Column {
    Column { path, kind, table, csv }
}

/// A column with the same name in both formats.
macro_rules! both {
    ($name:literal, $kind:expr) => {
        col(&[$name], $kind, Some($name), Some($name))
    };
}

/// A column only in CSV.
macro_rules! csv_only {
    ($name:literal, $kind:expr) => {
        col(&[$name], $kind, None, Some($name))
    };
}

/// A column named differently in the table.
macro_rules! named {
    ($name:literal, $kind:expr, $table:literal) => {
        col(&[$name], $kind, Some($table), Some($name))
    };
}

const SLOWEST: &[Column] = &[
    both!("service", Kind::Text),
    both!("transaction", Kind::Text),
    both!("feature", Kind::Text),
    both!("team", Kind::Text),
    csv_only!("kind", Kind::Text),
    named!("count", Kind::Count, "runs"),
    named!("throughput", Kind::Number, "rpm"),
    both!("mean", Kind::Seconds),
    csv_only!("stddev", Kind::Seconds),
    csv_only!("min", Kind::Seconds),
    both!("p50", Kind::Seconds),
    both!("p95", Kind::Seconds),
    both!("p99", Kind::Seconds),
    both!("max", Kind::Seconds),
    named!("total_seconds", Kind::Seconds, "time"),
    both!("share", Kind::Percent),
    csv_only!("errors", Kind::Count),
    named!("error_rate", Kind::Percent, "errors"),
    both!("apdex", Kind::Apdex),
    csv_only!("apdex_threshold", Kind::Seconds),
    csv_only!("apdex_source", Kind::Text),
    named!("estimated", Kind::Flag, "(est.)"),
    col(
        &["shape", "headline"],
        Kind::Text,
        Some("where the time goes"),
        Some("shape"),
    ),
];

const POINTS: &[Column] = &[
    both!("service", Kind::Text),
    both!("transaction", Kind::Text),
    both!("feature", Kind::Text),
    named!("minute", Kind::Minute, "time (UTC)"),
    named!("count", Kind::Count, "runs"),
    named!("throughput", Kind::Number, "rpm"),
    csv_only!("mean", Kind::Seconds),
    both!("p50", Kind::Seconds),
    both!("p95", Kind::Seconds),
    both!("p99", Kind::Seconds),
    csv_only!("errors", Kind::Count),
    named!("error_rate", Kind::Percent, "errors"),
    named!("estimated", Kind::Flag, "(est.)"),
];

const KINDS: &[Column] = &[
    both!("kind", Kind::Text),
    both!("calls", Kind::Count),
    named!("total_seconds", Kind::Seconds, "time"),
    both!("share", Kind::Percent),
];

const SEGMENTS: &[Column] = &[
    both!("kind", Kind::Text),
    both!("name", Kind::Text),
    both!("calls", Kind::Count),
    named!("calls_per_run", Kind::Number, "per run"),
    named!("total_seconds", Kind::Seconds, "time"),
    csv_only!("inclusive_seconds", Kind::Seconds),
    both!("share", Kind::Percent),
    named!("seconds_per_call", Kind::Seconds, "per call"),
];

const TRACES: &[Column] = &[
    named!("trace_id", Kind::Text, "trace"),
    both!("host", Kind::Text),
    named!("start", Kind::Nanos, "start (UTC)"),
    both!("duration", Kind::Seconds),
];

const JUDGED: &[Column] = &[
    csv_only!("outcome", Kind::Text),
    both!("service", Kind::Text),
    both!("transaction", Kind::Text),
    both!("feature", Kind::Text),
    named!("environment", Kind::Text, "env"),
    both!("team", Kind::Text),
    col(&["trigger", "summary"], Kind::Text, Some("why"), None),
    col(&["cause", "headline"], Kind::Text, Some("cause"), None),
    col(&["trigger", "metric"], Kind::Text, None, Some("metric")),
    col(&["trigger", "relative"], Kind::Change, None, Some("relative")),
    col(&["trigger", "test"], Kind::Text, None, Some("test")),
    col(&["trigger", "low"], Kind::Change, None, Some("relative_low")),
    col(&["trigger", "high"], Kind::Change, None, Some("relative_high")),
    col(&["trigger", "p_value"], Kind::Number, None, Some("p_value")),
    col(&["trigger", "q_value"], Kind::Number, None, Some("q_value")),
    col(&["began_minute"], Kind::Minute, Some("began"), Some("began_minute")),
    col(&["p50"], Kind::Before, Some("p50"), None),
    col(&["p95"], Kind::Before, Some("p95"), None),
    col(&["p50", "previous"], Kind::Seconds, None, Some("p50_previous")),
    col(&["p50", "current"], Kind::Seconds, None, Some("p50_current")),
    col(&["p95", "previous"], Kind::Seconds, None, Some("p95_previous")),
    col(&["p95", "current"], Kind::Seconds, None, Some("p95_current")),
    col(&["p99", "previous"], Kind::Seconds, None, Some("p99_previous")),
    col(&["p99", "current"], Kind::Seconds, None, Some("p99_current")),
    col(&["mean", "previous"], Kind::Seconds, None, Some("mean_previous")),
    col(&["mean", "current"], Kind::Seconds, None, Some("mean_current")),
    named!("previous_count", Kind::Count, "runs before"),
    named!("current_count", Kind::Count, "runs now"),
    named!("impact_seconds", Kind::SignedSeconds, "extra time"),
    named!("estimated", Kind::Flag, "(est.)"),
    // Last, so that CSV read by position keeps its columns.
    col(&["cause", "summary"], Kind::Text, None, Some("cause")),
];

const ERRORS: &[Column] = &[
    // Shown in the table too: `kuroko errors resolve <id>` names a group by it.
    both!("id", Kind::Text),
    named!("new", Kind::Flag, "new"),
    both!("count", Kind::Count),
    named!("previous_count", Kind::Count, "before"),
    named!("relative_increase", Kind::Change, "change"),
    csv_only!("increase", Kind::Count),
    csv_only!("error_type", Kind::Text),
    both!("title", Kind::Text),
    both!("location", Kind::Text),
    col(&["servers"], Kind::Counted(&["host"]), Some("hosts"), None),
    col(&["servers"], Kind::Counted(&["service", "host"]), None, Some("servers")),
    col(
        &["transactions"],
        Kind::Counted(&["transaction"]),
        Some("transactions"),
        None,
    ),
    col(
        &["transactions"],
        Kind::Counted(&["service", "transaction"]),
        None,
        Some("transactions"),
    ),
    both!("teams", Kind::Strings),
    col(&["first_seen_minute"], Kind::Minute, None, Some("first_seen")),
    col(&["last_seen"], Kind::Nanos, None, Some("last_seen")),
    csv_only!("samples", Kind::Strings),
    csv_only!("custom", Kind::Flag),
    // Last, so that CSV read by position keeps its columns.
    col(&["triage", "status"], Kind::Text, Some("status"), Some("status")),
    col(
        &["triage", "assigned_team"],
        Kind::Text,
        Some("assigned"),
        Some("assigned_team"),
    ),
];

const PROBLEMS: &[Column] = &[
    // Shown in the table too: `kuroko errors resolve <id>` names a group by it.
    both!("id", Kind::Text),
    named!("new", Kind::Flag, "new"),
    both!("title", Kind::Text),
    csv_only!("pattern", Kind::Text),
    csv_only!("kind", Kind::Text),
    both!("service", Kind::Text),
    both!("transaction", Kind::Text),
    both!("statement", Kind::Text),
    named!("count_per_run", Kind::Number, "count"),
    named!("cost_per_run", Kind::Seconds, "cost/run"),
    csv_only!("seconds_per_run", Kind::Seconds),
    named!("cost_share", Kind::Percent, "of run"),
    named!("runs_affected", Kind::Count, "kept runs"),
    csv_only!("runs_examined", Kind::Count),
    named!("affected_runs_per_day", Kind::Number, "runs/day"),
    named!("seconds_per_day", Kind::Seconds, "time/day"),
    both!("team", Kind::Text),
    csv_only!("feature", Kind::Text),
    col(&["first_seen"], Kind::Nanos, None, Some("first_seen")),
    col(&["last_seen"], Kind::Nanos, None, Some("last_seen")),
    col(&["example", "trace_id"], Kind::Text, None, Some("example_trace")),
    col(&["triage", "status"], Kind::Text, Some("status"), Some("status")),
    col(
        &["triage", "assigned_team"],
        Kind::Text,
        Some("assigned"),
        Some("assigned_team"),
    ),
];

const APDEX: &[Column] = &[
    both!("service", Kind::Text),
    both!("transaction", Kind::Text),
    both!("feature", Kind::Text),
    both!("team", Kind::Text),
    both!("apdex", Kind::Apdex),
    named!("threshold", Kind::Seconds, "T"),
    named!("runs", Kind::Count, "runs"),
    both!("satisfied", Kind::Count),
    both!("tolerating", Kind::Count),
    both!("frustrated", Kind::Count),
    both!("source", Kind::Text),
    named!("estimated", Kind::Flag, "(est.)"),
];

/// Longest text cell in a table; longer ones are cut with `…`.
const MAX_CELL: usize = 60;

const ESTIMATED_NOTE: &str = "(est.): from explicit-bucket histograms (an OpenTelemetry SDK): \
percentiles are estimates within a bucket, not within 1%";

/// The answer to `question` as `format` (JSON pretty-printed), ending in a newline.
pub fn render(question: Question, answer: &Value, format: Format) -> String {
    match format {
        Format::Json => {
            let mut text = serde_json::to_string_pretty(answer).unwrap_or_default();
            text.push('\n');
            text
        }
        Format::Csv => csv(question, answer),
        Format::Table => table(question, answer),
    }
}

/// The answer to `question` as CSV with a header row.
pub fn csv(question: Question, answer: &Value) -> String {
    let (columns, rows) = match question {
        Question::Slowest | Question::Consumers => (SLOWEST, list(answer, "rows")),
        Question::Apdex => (APDEX, list(answer, "rows")),
        Question::Errors => (ERRORS, list(answer, "groups")),
        Question::Problems => (PROBLEMS, list(answer, "groups")),
        Question::Timeseries => (POINTS, points(answer)),
        Question::Breakdown => {
            let mut rows = list(answer, "segments");
            let mut own = Map::new();
            own.insert("kind".into(), "own code".into());
            own.insert("total_seconds".into(), at(answer, &["other_seconds"]).clone());
            own.insert("share".into(), at(answer, &["other_share"]).clone());
            rows.push(Value::Object(own));
            (SEGMENTS, rows)
        }
        Question::Regressions => {
            let rows = ["regressions", "improvements", "too_little_traffic", "unchanged"]
                .iter()
                .flat_map(|key| list(answer, key))
                .collect();
            (JUDGED, rows)
        }
    };
    let columns: Vec<&Column> = columns.iter().filter(|c| c.csv.is_some()).collect();
    let mut out = String::new();
    let header: Vec<String> = columns.iter().map(|c| c.csv.unwrap_or_default().to_owned()).collect();
    push_csv_line(&mut out, &header);
    for row in &rows {
        let cells: Vec<String> = columns.iter().map(|c| raw(at(row, c.path), c.kind)).collect();
        push_csv_line(&mut out, &cells);
    }
    out
}

fn push_csv_line(out: &mut String, cells: &[String]) {
    let quoted: Vec<String> = cells
        .iter()
        .map(|cell| {
            if cell.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", cell.replace('"', "\"\""))
            } else {
                cell.clone()
            }
        })
        .collect();
    out.push_str(&quoted.join(","));
    out.push_str("\r\n");
}

/// The answer to `question` as text for a terminal.
pub fn table(question: Question, answer: &Value) -> String {
    let mut out = String::new();
    let estimated = at(answer, &["estimated"]).as_bool().unwrap_or(false);
    match question {
        Question::Slowest | Question::Consumers => {
            let rank = text(at(answer, &["rank"]));
            let what = plural_group(answer);
            let title = match rank.as_str() {
                "time_consumed" => format!("Where the time goes: {what} by time consumed"),
                "apdex" => format!("Worst Apdex: {what}"),
                "average" => format!("Slowest {what} by mean"),
                other => format!("Slowest {what} by {other}"),
            };
            heading(&mut out, &title, answer);
            rows_table(&mut out, SLOWEST, &list(answer, "rows"));
            shown_of(&mut out, list(answer, "rows").len(), at(answer, &["total_rows"]));
            advice(&mut out, answer);
        }
        Question::Apdex => {
            heading(
                &mut out,
                &format!("Apdex of {}, worst first", plural_group(answer)),
                answer,
            );
            rows_table(&mut out, APDEX, &list(answer, "rows"));
            shown_of(&mut out, list(answer, "rows").len(), at(answer, &["total_rows"]));
        }
        Question::Timeseries => {
            let step = text(at(answer, &["step"]));
            heading(
                &mut out,
                &format!("{} per {step}", capitalised(&plural_group(answer))),
                answer,
            );
            rows_table(&mut out, POINTS, &points(answer));
            shown_of(&mut out, list(answer, "series").len(), at(answer, &["total_series"]));
        }
        Question::Breakdown => breakdown(&mut out, answer),
        Question::Regressions => regressions(&mut out, answer),
        Question::Errors => {
            heading(&mut out, "Error groups, new and growing first", answer);
            let baseline = at(answer, &["baseline"]);
            out.push_str(&format!(
                "compared with {}\n\n",
                window(at(baseline, &["from"]), at(baseline, &["to"]))
            ));
            rows_table(&mut out, ERRORS, &list(answer, "groups"));
            shown_of(&mut out, list(answer, "groups").len(), at(answer, &["total_groups"]));
        }
        Question::Problems => {
            heading(&mut out, "Performance problems, the most time a day first", answer);
            out.push_str(&format!(
                "from {} kept runs; resolve or ignore one with `kuroko errors resolve <id>`\n\n",
                format::count(at(answer, &["runs_examined"]).as_u64().unwrap_or(0))
            ));
            rows_table(&mut out, PROBLEMS, &list(answer, "groups"));
            shown_of(&mut out, list(answer, "groups").len(), at(answer, &["total_groups"]));
        }
    }
    if estimated {
        out.push('\n');
        out.push_str(ESTIMATED_NOTE);
        out.push('\n');
    }
    out
}

/// What the senders should change in their instrumentation, one paragraph
/// per service and problem.
fn advice(out: &mut String, answer: &Value) {
    for advice in list(answer, "advice") {
        let runs = format::thousands(at(&advice, &["runs"]).as_f64().unwrap_or(0.0));
        let transactions: Vec<String> = list(&advice, "transactions").iter().map(text).collect();
        out.push_str(&format!(
            "\nTo fix in {} ({}): {} runs {}.\n",
            text(at(&advice, &["service"])),
            transactions.join(", "),
            runs,
            text(at(&advice, &["message"]))
        ));
    }
}

fn breakdown(out: &mut String, answer: &Value) {
    let title = format!(
        "Where {} {} spends its time",
        text(at(answer, &["service"])),
        text(at(answer, &["transaction"]))
    );
    heading(out, &title, answer);
    let runs = at(answer, &["runs"]);
    if runs.as_u64().unwrap_or(0) == 0 {
        out.push_str("no runs in this window (check the service and transaction with `kuroko query slowest`)\n");
        return;
    }
    out.push_str(&format!(
        "{} runs, mean {}, {} in all; own code (no segment) {} ({})\n",
        shown(runs, Kind::Count),
        shown(at(answer, &["mean"]), Kind::Seconds),
        shown(at(answer, &["total_seconds"]), Kind::Seconds),
        shown(at(answer, &["other_seconds"]), Kind::Seconds),
        shown(at(answer, &["other_share"]), Kind::Percent),
    ));
    out.push_str("\nBy kind\n");
    rows_table(out, KINDS, &list(answer, "kinds"));
    out.push_str("\nSegments, most time first\n");
    rows_table(out, SEGMENTS, &list(answer, "segments"));
    let traces = list(answer, "traces");
    if !traces.is_empty() {
        out.push_str("\nSlowest kept traces\n");
        rows_table(out, TRACES, &traces);
    }
}

fn regressions(out: &mut String, answer: &Value) {
    heading(out, "What got slower", answer);
    let previous = at(answer, &["previous"]);
    out.push_str(&format!(
        "compared with {}\n",
        window(at(previous, &["from"]), at(previous, &["to"]))
    ));
    let deploy = at(answer, &["deploy"]);
    if let (Some(service), Some(version), Some(previous)) = (
        deploy.get("service").and_then(Value::as_str),
        deploy.get("version").and_then(Value::as_str),
        deploy.get("previous_version").and_then(Value::as_str),
    ) {
        out.push_str(&format!(
            "split at the deploy of {service} {version} (after {previous}), as first seen\n"
        ));
    }
    let rule = at(answer, &["rule"]);
    let counts = at(answer, &["counts"]);
    out.push_str(&format!(
        "hourly blocks compared within the same hours of the day; a change counts when q < {} (p adjusted across this answer), it moves by {} or more and its interval excludes changes under half that, with {} runs or more in each period\n",
        raw(at(rule, &["p_value"]), Kind::Number),
        shown(at(rule, &["min_change"]), Kind::Percent),
        shown(at(rule, &["min_count"]), Kind::Count),
    ));
    if let Some(note) = at(answer, &["not_enough_baseline"]).as_str() {
        out.push_str(&format!("\n{note}\n"));
    }
    let sections = [
        ("regressions", "Regressions, most extra time first"),
        ("improvements", "Improvements"),
        ("too_little_traffic", "Too little traffic to judge"),
        ("unchanged", "Judged unchanged"),
    ];
    // A named transaction's empty lists say nothing.
    let named = !at(answer, &["scope", "transaction"]).is_null();
    for (key, title) in sections {
        let rows = list(answer, key);
        let total = at(counts, &[key]).as_u64().unwrap_or(0);
        if at(answer, &[key]).is_null() || (named && rows.is_empty() && key != "regressions") {
            continue;
        }
        out.push_str(&format!("\n{title} ({total})\n"));
        rows_table(out, JUDGED, &rows);
        shown_of(out, rows.len(), at(counts, &[key]));
    }
    for (key, _) in sections {
        for row in list(answer, key) {
            explained(out, &row);
        }
    }
    out.push_str(&format!(
        "\n{} unchanged; {} improved; {} with too little traffic{}\n",
        shown(at(counts, &["unchanged"]), Kind::Count),
        shown(at(counts, &["improvements"]), Kind::Count),
        shown(at(counts, &["too_little_traffic"]), Kind::Count),
        if at(answer, &["improvements"]).is_null() {
            " (include=all, or --include all, lists them)"
        } else {
            ""
        }
    ));
}

/// One finding's `explain`: how it was judged (blocks, each test, the
/// interval) and what its change of mean per run is made of.
fn explained(out: &mut String, row: &Value) {
    let explain = at(row, &["explain"]);
    if explain.is_null() {
        return;
    }
    let subject = if text(at(row, &["transaction"])).is_empty() {
        format!("feature {}", text(at(row, &["feature"])))
    } else {
        format!("{} {}", text(at(row, &["service"])), text(at(row, &["transaction"])))
    };
    out.push_str(&format!("\nWhy: {subject}\n  {}\n", text(at(explain, &["reason"]))));
    distributions(out, at(explain, &["distributions"]));
    let stats = at(explain, &["statistics"]);
    if !at(stats, &["current_blocks"]).is_null() {
        out.push_str(&format!(
            "  blocks of {} min; blocks with runs: {} now, {} before; time-of-day strata {} h wide; q adjusted across {} tests\n",
            text(at(stats, &["block_minutes"])),
            text(at(stats, &["current_blocks"])),
            text(at(stats, &["previous_blocks"])),
            text(at(stats, &["stratum_hours"])),
            shown(at(stats, &["tests_adjusted"]), Kind::Count),
        ));
    }
    for test in list(stats, "tests") {
        out.push_str(&format!(
            "  {:<5} {:<17} {:>7}  t = {:.2}, df = {:.0}, {}, {}\n",
            text(at(&test, &["metric"])),
            text(at(&test, &["test"])),
            shown(at(&test, &["relative"]), Kind::Change),
            at(&test, &["statistic"]).as_f64().unwrap_or(f64::NAN),
            at(&test, &["degrees_of_freedom"]).as_f64().unwrap_or(f64::NAN),
            format::p_value(at(&test, &["p_value"]).as_f64().unwrap_or(f64::NAN)),
            format::q_value(at(&test, &["q_value"]).as_f64().unwrap_or(f64::NAN)),
        ));
        let mut details = Vec::new();
        let interval = at(&test, &["interval"]);
        if !interval.is_null() {
            let high = at(interval, &["high"]);
            details.push(format!(
                "{:.1}% interval {} to {}",
                at(interval, &["confidence"]).as_f64().unwrap_or(f64::NAN) * 100.0,
                shown(at(interval, &["low"]), Kind::Change),
                if high.is_null() {
                    "unbounded".to_owned()
                } else {
                    shown(high, Kind::Change)
                },
            ));
        }
        let edge = at(&test, &["edge_seconds"]);
        if !edge.is_null() {
            details.push(format!(
                "edge {} (buckets {} wide there)",
                shown(edge, Kind::Seconds),
                shown(at(&test, &["resolution"]), Kind::Percent)
            ));
        }
        let blocks = at(&test, &["per_block"]);
        if !blocks.is_null() {
            let (what, kind) = if edge.is_null() {
                ("mean per block", Kind::Seconds)
            } else {
                ("runs above it per block", Kind::Percent)
            };
            let spread = |side: &str| {
                let value = |key: &str| shown(at(blocks, &[side, key]), kind);
                format!("{}/{}/{}", value("min"), value("median"), value("max"))
            };
            details.push(format!(
                "{what} (min/median/max): now {}, before {}",
                spread("current"),
                spread("previous")
            ));
        }
        if !details.is_empty() {
            out.push_str(&format!("        {}\n", details.join("; ")));
        }
        out.push_str(&format!("        → {}\n", text(at(&test, &["reason"]))));
    }
    let a = at(explain, &["attribution"]);
    if a.is_null() {
        return;
    }
    let seconds = |path: &[&str]| shown(at(a, path), Kind::Seconds);
    let signed = |value: &Value| shown(value, Kind::SignedSeconds);
    out.push_str(&format!(
        "  mean per run: {} → {} ({}; {} to {}), blocks of {} min\n  cause: {}\n",
        seconds(&["previous_mean"]),
        seconds(&["current_mean"]),
        signed(at(a, &["change"])),
        signed(at(a, &["change_low"])),
        signed(at(a, &["change_high"])),
        text(at(a, &["block_minutes"])),
        text(at(a, &["summary"])),
    ));
    let traced = at(a, &["traced"]).as_bool().unwrap_or(false);
    let sections = [
        (
            "segments",
            if traced {
                "by segment (per traced run)"
            } else {
                "by segment"
            },
        ),
        ("hosts", "by host (its own change, weighted by its runs)"),
        ("routes", "by route"),
        ("mix", "traffic mix"),
    ];
    for (key, title) in sections {
        let parts = list(a, key);
        if parts.is_empty() {
            continue;
        }
        out.push_str(&format!("  {title}\n"));
        for part in parts.iter().take(8) {
            let name = match text(at(part, &["axis"])).as_str() {
                "mix" => format!(
                    "{} ({} {} → {} of runs)",
                    text(at(part, &["kind"])),
                    text(at(part, &["name"])),
                    shown(at(part, &["previous"]), Kind::Percent),
                    shown(at(part, &["current"]), Kind::Percent)
                ),
                "segment" if text(at(part, &["kind"])) == "own" => format!(
                    "own code {} → {}",
                    shown(at(part, &["previous"]), Kind::Seconds),
                    shown(at(part, &["current"]), Kind::Seconds)
                ),
                "segment" => format!(
                    "{} ({}) {} → {}",
                    text(at(part, &["name"])),
                    text(at(part, &["kind"])),
                    shown(at(part, &["previous"]), Kind::Seconds),
                    shown(at(part, &["current"]), Kind::Seconds)
                ),
                _ => format!(
                    "{} {} → {}",
                    text(at(part, &["name"])),
                    shown(at(part, &["previous"]), Kind::Seconds),
                    shown(at(part, &["current"]), Kind::Seconds)
                ),
            };
            out.push_str(&format!(
                "    {:<48} {:>10}  {} ({} to {})\n",
                cut(&name),
                signed(at(part, &["seconds_per_run"])),
                shown(at(part, &["share"]), Kind::Percent),
                shown(at(part, &["low"]), Kind::Percent),
                shown(at(part, &["high"]), Kind::Percent),
            ));
        }
    }
    let release = at(a, &["release"]);
    if release.is_null() {
        out.push_str("  release (service.version): one version or none in the windows\n");
    } else {
        out.push_str(&format!(
            "  release (service.version)\n    {:<48} {:>10}  {} ({} to {})\n",
            format!(
                "{} → {} ({} → {}), from {} UTC",
                text(at(release, &["previous_version"])),
                text(at(release, &["name"])),
                shown(at(release, &["previous"]), Kind::Seconds),
                shown(at(release, &["current"]), Kind::Seconds),
                shown(at(release, &["minute"]), Kind::Minute),
            ),
            signed(at(release, &["seconds_per_run"])),
            shown(at(release, &["share"]), Kind::Percent),
            shown(at(release, &["low"]), Kind::Percent),
            shown(at(release, &["high"]), Kind::Percent),
        ));
    }
    let evidence = at(a, &["evidence"]);
    if !evidence.is_null() {
        out.push_str(&format!(
            "  slowest kept traces, before → after ({} → {}; {} → {} a trace), per trace\n",
            list(evidence, "before").len(),
            list(evidence, "after").len(),
            shown(at(evidence, &["durations"]).get(0).unwrap_or(&NULL), Kind::Seconds),
            shown(at(evidence, &["durations"]).get(1).unwrap_or(&NULL), Kind::Seconds),
        ));
        for segment in list(evidence, "segments").iter().take(8) {
            out.push_str(&format!(
                "    {:<48} {:>10} → {:<10} {:>10}  ({} → {} calls)\n",
                cut(&format!(
                    "{} ({})",
                    text(at(segment, &["name"])),
                    text(at(segment, &["kind"]))
                )),
                shown(at(segment, &["previous"]), Kind::Seconds),
                shown(at(segment, &["current"]), Kind::Seconds),
                signed(at(segment, &["change"])),
                format::number(at(segment, &["previous_calls"]).as_f64().unwrap_or(0.0)),
                format::number(at(segment, &["current_calls"]).as_f64().unwrap_or(0.0)),
            ));
        }
    }
}

/// Both periods' runs: counts, percentiles, mean, and their shares in bands
/// cut at the baseline's p50, p95 and p99.
fn distributions(out: &mut String, distributions: &Value) {
    let line = |side: &str| {
        let d = at(distributions, &[side]);
        let seconds = |key: &str| shown(at(d, &[key]), Kind::Seconds);
        format!(
            "{} runs, p50 {}, p95 {}, p99 {}, mean {}",
            shown(at(d, &["runs"]), Kind::Count),
            seconds("p50"),
            seconds("p95"),
            seconds("p99"),
            seconds("mean")
        )
    };
    out.push_str(&format!(
        "  before: {}\n  now:    {}\n",
        line("previous"),
        line("current")
    ));
    let edges = at(distributions, &["band_edges"]);
    if let Some(edges) = edges.as_array().filter(|e| e.len() == 3) {
        let edge = |i: usize| shown(&edges[i], Kind::Seconds);
        let names = [
            format!("≤ {}", edge(0)),
            format!("{}–{}", edge(0), edge(1)),
            format!("{}–{}", edge(1), edge(2)),
            format!("> {}", edge(2)),
        ];
        out.push_str(&format!(
            "  runs by duration (cut at the baseline's p50, p95, p99): {:>16} {:>16} {:>16} {:>16}\n",
            names[0], names[1], names[2], names[3]
        ));
        for (label, side) in [("before", "previous"), ("now", "current")] {
            let bands = at(distributions, &[side, "bands"]);
            let share = |i: usize| shown(bands.get(i).unwrap_or(&NULL), Kind::Percent);
            out.push_str(&format!(
                "    {:<52} {:>16} {:>16} {:>16} {:>16}\n",
                label,
                share(0),
                share(1),
                share(2),
                share(3)
            ));
        }
    }
}

/// `Title · window · filters`.
fn heading(out: &mut String, title: &str, answer: &Value) {
    let scope = at(answer, &["scope"]);
    out.push_str(title);
    out.push_str(" · ");
    out.push_str(&window(at(scope, &["from"]), at(scope, &["to"])));
    let filters: Vec<String> = ["service", "host", "environment", "transaction", "feature", "team"]
        .iter()
        .filter_map(|key| at(scope, &[key]).as_str().map(|v| format!("{key}={v}")))
        .collect();
    if !filters.is_empty() {
        out.push_str(" · ");
        out.push_str(&filters.join(" "));
    }
    out.push('\n');
    if at(answer, &["partial_last_minute"]).as_bool() == Some(true) {
        let last = at(scope, &["to"])
            .as_i64()
            .map(|to| Value::from(to - 1))
            .unwrap_or_default();
        out.push_str(&format!(
            "(partial: the last minute, {} UTC, is still arriving)\n",
            shown(&last, Kind::Minute)
        ));
    }
    out.push('\n');
}

fn shown_of(out: &mut String, shown_rows: usize, total: &Value) {
    if let Some(total) = total.as_u64().filter(|t| *t > shown_rows as u64) {
        out.push_str(&format!("({shown_rows} of {total}; --limit shows more)\n"));
    }
}

fn plural_group(answer: &Value) -> String {
    match at(answer, &["group"]).as_str() {
        Some("feature") => "features".to_owned(),
        _ => "transactions".to_owned(),
    }
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

fn window(from: &Value, to: &Value) -> String {
    format!("{} → {} UTC", shown(from, Kind::Minute), shown(to, Kind::Minute))
}

/// An aligned table of `rows`, without the columns empty in all of them.
fn rows_table(out: &mut String, columns: &[Column], rows: &[Value]) {
    if rows.is_empty() {
        out.push_str("(none in this window: try a longer --since, or fewer filters)\n");
        return;
    }
    let mut grid: Vec<(&str, bool, Vec<String>)> = Vec::new();
    for column in columns {
        let Some(name) = column.table else { continue };
        let cells: Vec<String> = rows
            .iter()
            .map(|row| match column.kind {
                Kind::Flag if at(row, column.path).as_bool() == Some(true) => name.to_owned(),
                kind => cut(&shown(at(row, column.path), kind)),
            })
            .collect();
        if cells.iter().all(String::is_empty) {
            continue;
        }
        let right = !matches!(column.kind, Kind::Text | Kind::Strings | Kind::Counted(_) | Kind::Flag);
        grid.push((name, right, cells));
    }
    let widths: Vec<usize> = grid
        .iter()
        .map(|(name, _, cells)| {
            cells
                .iter()
                .map(|c| c.chars().count())
                .chain([name.chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cell: &dyn Fn(usize) -> String| -> String {
        let parts: Vec<String> = grid
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, ((_, right, _), width))| {
                let text = cell(i);
                let pad = " ".repeat(width.saturating_sub(text.chars().count()));
                if *right {
                    format!("{pad}{text}")
                } else {
                    format!("{text}{pad}")
                }
            })
            .collect();
        let mut joined = parts.join("  ");
        joined.truncate(joined.trim_end().len());
        joined.push('\n');
        joined
    };
    out.push_str(&line(&|i| {
        let (name, _, _) = &grid[i];
        if *name == "(est.)" {
            String::new()
        } else {
            (*name).to_owned()
        }
    }));
    for row in 0..rows.len() {
        out.push_str(&line(&|i| grid[i].2[row].clone()));
    }
}

fn cut(text: &str) -> String {
    if text.chars().count() <= MAX_CELL {
        return text.to_owned();
    }
    let mut short: String = text.chars().take(MAX_CELL - 1).collect();
    short.push('…');
    short
}

/// The rows at `key`, or none.
fn list(answer: &Value, key: &str) -> Vec<Value> {
    at(answer, &[key]).as_array().cloned().unwrap_or_default()
}

/// A time series' points as rows, each with its series' names.
fn points(answer: &Value) -> Vec<Value> {
    let mut rows = Vec::new();
    for series in list(answer, "series") {
        for point in at(&series, &["points"]).as_array().into_iter().flatten() {
            let mut row = Map::new();
            for key in ["service", "transaction", "feature", "estimated"] {
                row.insert(key.to_owned(), at(&series, &[key]).clone());
            }
            if let Some(fields) = point.as_object() {
                row.extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            rows.push(Value::Object(row));
        }
    }
    rows
}

static NULL: Value = Value::Null;

fn at<'a>(value: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().try_fold(value, |v, key| v.get(key)).unwrap_or(&NULL)
}

fn text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A CSV cell: numbers as JSON writes them (seconds, ratios), times in RFC 3339.
fn raw(value: &Value, kind: Kind) -> String {
    match (kind, value) {
        (_, Value::Null) => String::new(),
        (Kind::Minute, v) => v
            .as_i64()
            .and_then(|m| jiff::Timestamp::from_second(m.saturating_mul(60)).ok())
            .map_or_else(|| text(v), |t| t.to_string()),
        (Kind::Nanos, v) => v
            .as_u64()
            .and_then(|n| jiff::Timestamp::from_second(i64::try_from(n / 1_000_000_000).ok()?).ok())
            .map_or_else(|| text(v), |t| t.to_string()),
        (Kind::Strings, Value::Array(items)) => items.iter().map(text).collect::<Vec<_>>().join("; "),
        (Kind::Counted(fields), Value::Array(items)) => items
            .iter()
            .map(|item| counted(item, fields))
            .collect::<Vec<_>>()
            .join("; "),
        (_, v) => text(v),
    }
}

fn counted(item: &Value, fields: &[&str]) -> String {
    format!("{} ({})", counted_name(item, fields), text(at(item, &["count"])))
}

/// What a [`Kind::Counted`] item is named by: its `fields`, space separated.
fn counted_name(item: &Value, fields: &[&str]) -> String {
    fields
        .iter()
        .map(|f| text(at(item, &[f])))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A table cell: humanised.
fn shown(value: &Value, kind: Kind) -> String {
    if value.is_null() {
        return String::new();
    }
    let number = value.as_f64();
    match (kind, number) {
        (Kind::Count, Some(n)) => format::thousands(n),
        (Kind::Number, Some(n)) => format::number(n),
        (Kind::Seconds, Some(n)) => format::duration(n),
        (Kind::SignedSeconds, Some(n)) => format::signed_duration(n),
        (Kind::Percent, Some(n)) => format::percent(n),
        (Kind::Change, Some(n)) => format::change(Some(n)),
        (Kind::Apdex, Some(n)) => format::apdex(Some(n)),
        (Kind::Minute, _) => value
            .as_i64()
            .map(format::minute)
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| text(value)),
        (Kind::Nanos, _) => value
            .as_u64()
            .map(format::nanos)
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| text(value)),
        (Kind::Flag, _) => String::new(),
        (Kind::Strings, _) => raw(value, kind),
        (Kind::Counted(fields), _) => {
            let items = value.as_array().cloned().unwrap_or_default();
            // A table names hosts and transactions without their service,
            // for width, unless two of them would then read the same.
            let names: Vec<String> = items.iter().map(|item| counted_name(item, fields)).collect();
            let same = names.iter().enumerate().any(|(i, name)| names[i + 1..].contains(name));
            let mut parts: Vec<String> = items
                .iter()
                .take(2)
                .map(|item| match at(item, &["service"]) {
                    Value::String(service) if same && !fields.contains(&"service") => {
                        format!("{service} {}", counted(item, fields))
                    }
                    _ => counted(item, fields),
                })
                .collect();
            if items.len() > 2 {
                parts.push(format!("+{} more", items.len() - 2));
            }
            parts.join(", ")
        }
        (Kind::Before, _) => format!(
            "{} → {}",
            shown(at(value, &["previous"]), Kind::Seconds),
            shown(at(value, &["current"]), Kind::Seconds)
        ),
        _ => text(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durations_and_numbers_read_easily() {
        assert_eq!(shown(&json!(0.0123), Kind::Seconds), "12 ms");
        assert_eq!(shown(&json!(150.0), Kind::Seconds), "2 min 30 s");
        assert_eq!(shown(&json!(0), Kind::Seconds), "0 s");
        assert_eq!(shown(&json!(1_234_567.0), Kind::Count), "1,234,567");
        assert_eq!(shown(&json!(0.123), Kind::Percent), "12%");
        assert_eq!(shown(&json!(0.0004), Kind::Percent), "0.04%");
        assert_eq!(shown(&json!(0.31), Kind::Change), "+31%");
        assert_eq!(shown(&json!(-42.0), Kind::SignedSeconds), "-42.0 s");
        assert_eq!(shown(&json!(60), Kind::Minute), "1970-01-01 01:00");
    }

    fn slowest() -> Value {
        json!({
            "scope": { "from": 0, "to": 60, "service": "api" },
            "rank": "p95", "group": "transaction", "total_rows": 3, "estimated": true,
            "rows": [
                { "service": "api", "transaction": "GET /a", "feature": null, "count": 1200, "p95": 0.25,
                  "share": 0.5, "estimated": false },
                { "service": "api", "transaction": "GET /b, \"quoted\"", "feature": null, "count": 10, "p95": 0.0125,
                  "share": 0.1, "estimated": true }
            ]
        })
    }

    #[test]
    fn tables_align_humanise_and_drop_empty_columns() {
        let text = table(Question::Slowest, &slowest());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "Slowest transactions by p95 · 1970-01-01 00:00 → 1970-01-01 01:00 UTC · service=api"
        );
        assert!(lines[2].starts_with("service  transaction"), "{text}");
        assert!(!lines[2].contains("feature"), "empty columns are dropped: {text}");
        assert!(
            lines[3].contains("1,200") && lines[3].contains("250 ms") && lines[3].contains("50%"),
            "{text}"
        );
        assert!(lines[4].contains("12 ms") && lines[4].ends_with("(est.)"), "{text}");
        let p95 = |line: &str| line.find("ms").unwrap();
        assert_eq!(p95(lines[3]), p95(lines[4]), "numbers right-aligned:\n{text}");
        assert!(text.contains("(2 of 3; --limit shows more)"));
        assert!(text.contains(ESTIMATED_NOTE));
    }

    #[test]
    fn a_window_ending_now_says_its_last_minute_is_partial() {
        let mut answer = slowest();
        assert!(!table(Question::Slowest, &answer).contains("partial"));
        answer["partial_last_minute"] = json!(true);
        let text = table(Question::Slowest, &answer);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[1], "(partial: the last minute, 1970-01-01 00:59 UTC, is still arriving)",
            "{text}"
        );
        assert!(lines[3].starts_with("service  transaction"), "{text}");
    }

    #[test]
    fn csv_keeps_raw_numbers_and_quotes() {
        let text = csv(Question::Slowest, &slowest());
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("service,transaction,feature,team,kind,count,throughput,mean"));
        assert!(lines[1].starts_with("api,GET /a,,,,1200,,,,,,0.25,"), "{}", lines[1]);
        assert!(lines[2].starts_with("api,\"GET /b, \"\"quoted\"\"\","), "{}", lines[2]);
        assert_eq!(lines.len(), 3);
    }

    #[test]
    fn hosts_and_transactions_of_two_services_that_read_the_same_name_their_service() {
        let cell = |items: Value| shown(&items, Kind::Counted(&["host"]));
        let one = json!([{ "service": "pyshop", "host": "web-1", "count": 15 },
                         { "service": "pyshop", "host": "web-2", "count": 12 }]);
        assert_eq!(cell(one), "web-1 (15), web-2 (12)");
        let two = json!([{ "service": "pyshop", "host": "web-1", "count": 15 },
                         { "service": "checkout", "host": "web-1", "count": 12 },
                         { "service": "checkout", "host": "web-3", "count": 2 }]);
        assert_eq!(cell(two), "pyshop web-1 (15), checkout web-1 (12), +1 more");
    }

    #[test]
    fn a_time_series_is_one_csv_row_per_point() {
        let answer = json!({
            "scope": { "from": 0, "to": 120 }, "group": "transaction", "step": "hour",
            "series": [ { "service": "api", "transaction": "GET /a", "feature": "cards", "estimated": false,
                "points": [ { "minute": 0, "count": 5, "p95": 0.1 }, { "minute": 60, "count": 0, "p95": null } ] } ]
        });
        let text = csv(Question::Timeseries, &answer);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(
            lines[1].starts_with("api,GET /a,cards,1970-01-01T00:00:00Z,5,"),
            "{text}"
        );
        assert!(
            lines[2].starts_with("api,GET /a,cards,1970-01-01T01:00:00Z,0,"),
            "{text}"
        );
    }
}
