//! The TEMP views `kuroko sql` creates over the store's tables: series
//! names joined in, every resolution in one view (`histograms`, `counters`,
//! `errors`, `traces`) and `*_best` views that hold each period once.

use super::HISTOGRAM_COLUMNS;

/// One union view over the resolutions' tables of `stem` (`histogram`,
/// `counter`, `error`): `columns` are the table's own (alias `t`), `join`
/// more joins, and `keep` per resolution an extra condition (for `*_best`),
/// on `period` (the period's start in unix minutes).
fn union_view(name: &str, stem: &str, columns: &str, join: &str, keep: &[(&str, i64, &str)]) -> String {
    let selects: Vec<String> = keep
        .iter()
        .map(|&(resolution, minutes, condition)| {
            let period = if minutes == 1 {
                format!("t.{resolution}")
            } else {
                format!("t.{resolution} * {minutes}")
            };
            let condition = condition.replace("period", &period);
            let condition = if condition.is_empty() {
                String::new()
            } else {
                format!(" WHERE {condition}")
            };
            format!(
                "SELECT '{resolution}' AS resolution, {period} AS period_start, {minutes} AS period_minutes,
                        s.service, s.host, s.txn, s.feature, s.kind, s.environment, {columns}
                 FROM main.{stem}_{resolution} t JOIN main.series s ON s.id = t.series{join}{condition}"
            )
        })
        .collect();
    format!("CREATE TEMP VIEW {name} AS {};\n", selects.join("\nUNION ALL\n"))
}

/// The session's TEMP views.
pub(super) fn views() -> String {
    let histogram_columns: String = HISTOGRAM_COLUMNS
        .split(", ")
        .map(|c| format!("t.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let counter_columns = "l.name, l.labels, t.value";
    let counter_join = " JOIN main.counter_label l ON l.id = t.label";
    let error_columns = "t.error_type, t.message, t.location, t.count, t.last_seen";
    // Where each resolution is the finest kept: days before the first whole
    // day of hours kept, minutes from the first whole hour of minutes kept
    // (and not before the days end), hours between. Retention cuts only
    // what is rolled up, so together they hold every period once.
    let edges = "CREATE TEMP VIEW retention_edges AS
        SELECT d AS days_before, MAX(d, ((m + 59) / 60) * 60) AS minutes_from FROM (SELECT
            ((MAX(COALESCE((SELECT CAST(value AS INTEGER) FROM main.meta WHERE key = 'hours_kept_from'), 0), 0)
              + 1439) / 1440) * 1440 AS d,
            MAX(COALESCE((SELECT CAST(value AS INTEGER) FROM main.meta WHERE key = 'minutes_kept_from'), 0), 0) AS m);\n";
    let days = "period < (SELECT days_before FROM retention_edges)";
    let hours =
        "period >= (SELECT days_before FROM retention_edges) AND period < (SELECT minutes_from FROM retention_edges)";
    let error_hours = "period < (SELECT minutes_from FROM retention_edges)";
    let minutes = "period >= (SELECT minutes_from FROM retention_edges)";
    let all = [("minute", 1, ""), ("hour", 60, ""), ("day", 1440, "")];
    let best = [("minute", 1, minutes), ("hour", 60, hours), ("day", 1440, days)];
    let error_all = [("minute", 1, ""), ("hour", 60, "")];
    let error_best = [("minute", 1, minutes), ("hour", 60, error_hours)];
    let mut sql = String::from(edges);
    sql += &union_view("histograms", "histogram", &histogram_columns, "", &all);
    sql += &union_view("histograms_best", "histogram", &histogram_columns, "", &best);
    sql += &union_view("counters", "counter", counter_columns, counter_join, &all);
    sql += &union_view("counters_best", "counter", counter_columns, counter_join, &best);
    sql += &union_view("errors", "error", error_columns, "", &error_all);
    sql += &union_view("errors_best", "error", error_columns, "", &error_best);
    sql += "CREATE TEMP VIEW traces AS
        SELECT s.service, s.host, s.txn, s.feature, s.kind, s.environment,
               t.trace_id, t.start, t.start / 60000000000 AS start_minute, t.duration, t.spans
        FROM main.kept_trace t JOIN main.series s ON s.id = t.series;\n";
    sql
}
