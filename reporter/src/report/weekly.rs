//! The weekly per-team performance report: a plain view model, and its
//! rendering as the HTML and plain-text parts of an email.
//!
//! The view model ([`WeeklyReport`]) holds numbers already computed: the
//! analysis fills it, this module only lays it out, so rendering can be built
//! and tested apart from the analysis, and the same model serialises for the
//! web UI's API. Links are paths into the web UI (see [`ui_path`]), joined to
//! the report's `base_url` when rendered.
//!
//! Email HTML is its own dialect: Gmail and Outlook for Windows drop external
//! CSS, web fonts, scripts and SVG, and honour `<style>` blocks only in part.
//! So the layout is tables with inline styles, and charts are PNG images
//! referenced as `cid:` parts of the message, each with alt text and its
//! numbers in a table next to it, for readers who block images.
//!
//! Transaction names, error messages, hosts, feature and team names come from
//! the monitored services and are not trusted: every one goes through
//! [`escape_html`], a hand-rolled escaper of `& < > " '` (attributes are
//! always double-quoted, so these five suffice). A link is rendered only when
//! it is a path starting with `/`, so no `javascript:` URL can get in.

use std::borrow::Cow;
use std::fmt::Write as _;

use serde::Serialize;

use super::chart::{ChartRef, CHART_HEIGHT, CHART_WIDTH};

/// One team's week, ready to render.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct WeeklyReport {
    /// The team, as named in `owners.toml`.
    pub team: String,
    /// The first day of the week, e.g. `2026-03-09`.
    pub week_start: String,
    /// The last day of the week, e.g. `2026-03-15`.
    pub week_end: String,
    /// The web UI's address, e.g. `https://kuroko.example.com`; item links are
    /// paths under it. Empty: the report has no links.
    pub base_url: String,
    /// The team's features, in the order to show them.
    pub features: Vec<FeatureRow>,
    /// The slowest endpoints (by p95), slowest first.
    pub slowest: Vec<EndpointRow>,
    /// The endpoints that took the most time in all (count × average), most first.
    pub consumers: Vec<EndpointRow>,
    /// The regressions found against last week, as the analysis ranks them.
    pub regressions: Vec<RegressionRow>,
    /// New and growing error groups, as the analysis ranks them.
    pub errors: Vec<ErrorRow>,
    /// Set when the report goes out after its time: said in the subject and
    /// at the top.
    pub late: Option<super::late::Late>,
}

/// One feature's week and its change against last week.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct FeatureRow {
    /// The feature's name.
    pub name: String,
    /// Average duration over the week, in seconds.
    pub avg_s: f64,
    /// 95th percentile over the week, in seconds.
    pub p95_s: f64,
    /// Runs per minute over the week.
    pub throughput_per_min: f64,
    /// Apdex score (0–1); `None` when no threshold applies.
    pub apdex: Option<f64>,
    /// Relative change of the average against last week (0.31 = +31 %);
    /// `None` when last week had no runs.
    pub avg_change: Option<f64>,
    /// Relative change of the p95 against last week.
    pub p95_change: Option<f64>,
    /// Relative change of the throughput against last week.
    pub throughput_change: Option<f64>,
    /// Change of the Apdex score in points (0.94 → 0.91 is -0.03).
    pub apdex_change: Option<f64>,
    /// Daily values over the last 4–8 weeks, oldest first, for the chart.
    pub daily: Vec<DailyPoint>,
    /// Its percentiles are estimates (an SDK's explicit buckets).
    pub estimated: bool,
    /// Path into the web UI; empty for none.
    pub link: String,
}

/// One day of a feature's chart.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DailyPoint {
    /// The day's label, e.g. `03-09` or `2026-03-09`.
    pub day: String,
    /// Average duration that day in seconds; `None` for a day without runs.
    pub avg_s: Option<f64>,
    /// 95th percentile that day in seconds; `None` for a day without runs.
    pub p95_s: Option<f64>,
}

/// One endpoint (transaction) of the team.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct EndpointRow {
    /// The service that serves it.
    pub service: String,
    /// The transaction's name, e.g. `POST /pay`.
    pub transaction: String,
    /// The feature it belongs to, if tagged.
    pub feature: Option<String>,
    /// Runs this week.
    pub count: u64,
    /// Average duration in seconds.
    pub avg_s: f64,
    /// 95th percentile in seconds.
    pub p95_s: f64,
    /// 99th percentile in seconds.
    pub p99_s: f64,
    /// Its share (0–1) of the time spent by all the team's endpoints.
    pub share_of_time: f64,
    /// Its percentiles are estimates (an SDK's explicit buckets).
    pub estimated: bool,
    /// Path into the web UI; empty for none.
    pub link: String,
}

/// A regression the analysis found significant.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RegressionRow {
    /// The service that serves it.
    pub service: String,
    /// The transaction's name.
    pub transaction: String,
    /// The metric that regressed, e.g. `p95` or `avg`.
    pub metric: String,
    /// Last week's value, in seconds.
    pub before_s: f64,
    /// This week's value, in seconds.
    pub after_s: f64,
    /// Relative change (0.31 = +31 %).
    pub change: f64,
    /// The test's p-value.
    pub p_value: f64,
    /// The test's name, e.g. `Mann-Whitney U`.
    pub test: String,
    /// Extra time the regression cost this week, in seconds (runs × added time).
    pub impact_s: f64,
    /// Path into the web UI; empty for none.
    pub link: String,
}

/// A new or growing error group.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ErrorRow {
    /// The group's title, e.g. the exception type and where it was raised.
    pub title: String,
    /// One message of the group.
    pub message: String,
    /// Occurrences this week.
    pub count: u64,
    /// Occurrences last week.
    pub previous_count: u64,
    /// Whether the group first appeared this week.
    pub new: bool,
    /// The hosts that reported it, with their counts, most first.
    pub servers: Vec<ServerCount>,
    /// Path into the web UI; empty for none.
    pub link: String,
}

/// A host and how often it reported an error.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ServerCount {
    /// The host's name.
    pub host: String,
    /// Occurrences on it.
    pub count: u64,
}

/// Longest error message shown, in characters.
const MAX_MESSAGE_CHARS: usize = 300;

/// Escapes `& < > " '` for HTML text and double-quoted attribute values.
pub fn escape_html(text: &str) -> Cow<'_, str> {
    if !text.contains(['&', '<', '>', '"', '\'']) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A web UI path: `route` (a fixed path such as `/transactions`) with
/// `params` percent-encoded as its query, for the rows' `link` fields.
pub fn ui_path(route: &str, params: &[(&str, &str)]) -> String {
    let mut path = route.to_owned();
    for (i, (key, value)) in params.iter().enumerate() {
        path.push(if i == 0 { '?' } else { '&' });
        percent_encode(key, &mut path);
        path.push('=');
        percent_encode(value, &mut path);
    }
    path
}

fn percent_encode(text: &str, out: &mut String) {
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
}

/// A duration for people: `850 µs`, `4.2 ms`, `120 ms`, `1.25 s`, `2 min 5 s`, `1 h 20 min`.
pub fn format_duration(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return "–".to_owned();
    }
    let ms = seconds * 1e3;
    if ms < 0.9995 {
        format!("{:.0} µs", seconds * 1e6)
    } else if ms < 9.95 {
        format!("{ms:.1} ms")
    } else if ms < 999.5 {
        format!("{ms:.0} ms")
    } else if seconds < 9.995 {
        format!("{seconds:.2} s")
    } else if seconds < 59.95 {
        format!("{seconds:.1} s")
    } else if seconds < 3599.5 {
        let total = seconds.round() as u64;
        format!("{} min {} s", total / 60, total % 60)
    } else {
        let minutes = (seconds / 60.0).round() as u64;
        format!("{} h {} min", minutes / 60, minutes % 60)
    }
}

/// A percentile, marked `≈` when it is an estimate.
pub fn format_percentile(seconds: f64, estimated: bool) -> String {
    if estimated {
        format!("≈{}", format_duration(seconds))
    } else {
        format_duration(seconds)
    }
}

/// What `≈` means, under a report that shows one.
pub const ESTIMATE_NOTE: &str = "≈: an estimate, interpolated within the explicit bucket an OpenTelemetry SDK \
     sent; the true value lies in that bucket (counts, averages and error rates are exact).";

/// Whether the report shows an estimated percentile.
fn shows_estimates(report: &WeeklyReport) -> bool {
    report.features.iter().any(|f| f.estimated) || report.slowest.iter().chain(&report.consumers).any(|e| e.estimated)
}

/// A relative change: `+31%`, `-4.2%`, `±0%`; `–` when unknown.
pub fn format_change(change: Option<f64>) -> String {
    match change {
        Some(c) if c.is_finite() => {
            let percent = c * 100.0;
            if percent.abs() < 0.05 {
                "±0%".to_owned()
            } else if percent.abs() < 9.95 {
                format!("{percent:+.1}%")
            } else {
                format!("{percent:+.0}%")
            }
        }
        _ => "–".to_owned(),
    }
}

/// Runs per minute: `0.05/min`, `12.3/min`, `840/min`, `12.5k/min`.
pub fn format_rate(per_min: f64) -> String {
    if !per_min.is_finite() || per_min < 0.0 {
        "–".to_owned()
    } else if per_min < 1.0 {
        format!("{per_min:.2}/min")
    } else if per_min < 99.95 {
        format!("{per_min:.1}/min")
    } else if per_min < 9999.5 {
        format!("{per_min:.0}/min")
    } else {
        format!("{:.1}k/min", per_min / 1e3)
    }
}

/// A count with thousands separators: `12,345`.
pub fn format_count(count: u64) -> String {
    let digits = count.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn format_apdex(apdex: Option<f64>) -> String {
    apdex.map_or_else(|| "–".to_owned(), |a| format!("{a:.2}"))
}

fn format_apdex_change(change: Option<f64>) -> String {
    match change {
        Some(c) if c.is_finite() && c.abs() >= 0.005 => format!("{c:+.2}"),
        Some(c) if c.is_finite() => "±0".to_owned(),
        _ => "–".to_owned(),
    }
}

fn format_p(p: f64) -> String {
    if p < 0.001 {
        "p < 0.001".to_owned()
    } else {
        format!("p = {p:.3}")
    }
}

fn format_share(share: f64) -> String {
    format!("{:.0}%", share * 100.0)
}

/// User strings in plain text: control characters (a newline in a
/// transaction name) would break the layout, so they become spaces.
fn clean(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

fn truncate(text: &str, max_chars: usize) -> Cow<'_, str> {
    match text.char_indices().nth(max_chars) {
        Some((end, _)) => Cow::Owned(format!("{}…", &text[..end])),
        None => Cow::Borrowed(text),
    }
}

fn is_growing(error: &ErrorRow) -> bool {
    !error.new && error.count > error.previous_count
}

/// The report's short summary, most important first: a busy reader can stop
/// after it. Plain strings (escape them for HTML).
pub fn summary(report: &WeeklyReport) -> Vec<String> {
    let mut lines = Vec::new();
    if report.features.is_empty() && report.slowest.is_empty() && report.consumers.is_empty() {
        lines.push("No runs recorded for this team this week.".to_owned());
    }
    let worst = report
        .regressions
        .iter()
        .max_by(|a, b| a.impact_s.total_cmp(&b.impact_s).then(a.change.total_cmp(&b.change)));
    match worst {
        None => lines.push("No regressions found.".to_owned()),
        Some(w) => {
            let n = report.regressions.len();
            lines.push(format!(
                "{n} regression{}, worst: {} {} {} ({} → {}, {} more time this week)",
                if n == 1 { "" } else { "s" },
                clean(&w.transaction),
                w.metric,
                format_change(Some(w.change)),
                format_duration(w.before_s),
                format_duration(w.after_s),
                format_duration(w.impact_s),
            ));
        }
    }
    let largest_change = report
        .features
        .iter()
        .filter_map(|f| f.p95_change.filter(|c| c.is_finite()).map(|c| (f, c)))
        .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()));
    if let Some((feature, change)) = largest_change {
        lines.push(format!(
            "Largest feature change: {} p95 {} ({})",
            clean(&feature.name),
            format_change(Some(change)),
            format_duration(feature.p95_s)
        ));
    }
    if let Some(slowest) = report.slowest.first() {
        lines.push(format!(
            "Slowest: {} p95 {} ({})",
            clean(&slowest.transaction),
            format_duration(slowest.p95_s),
            clean(&slowest.service)
        ));
    }
    if let Some(top) = report.consumers.first() {
        lines.push(format!(
            "Most time: {}, {} of the team's time",
            clean(&top.transaction),
            format_share(top.share_of_time)
        ));
    }
    let new = report.errors.iter().filter(|e| e.new).count();
    let growing = report.errors.iter().filter(|e| is_growing(e)).count();
    if new + growing == 0 {
        lines.push("No new or growing errors.".to_owned());
    } else {
        lines.push(format!(
            "Errors: {new} new group{}, {growing} growing",
            if new == 1 { "" } else { "s" }
        ));
    }
    lines
}

/// The message's subject line.
pub fn subject(report: &WeeklyReport) -> String {
    let subject = format!(
        "Kuroko weekly: {}, {} to {}",
        clean(&report.team),
        clean(&report.week_start),
        clean(&report.week_end)
    );
    super::late::subject(report.late.as_ref(), subject)
}

/// The full URL of an item's link, when it has a usable one.
fn full_url(report: &WeeklyReport, link: &str) -> Option<String> {
    if report.base_url.is_empty() || !link.starts_with('/') || link.starts_with("//") {
        return None;
    }
    Some(format!("{}{link}", report.base_url.trim_end_matches('/')))
}

const FONT: &str = "font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;";
const MUTED: &str = "color:#59636e;";
const TABLE: &str = "border-collapse:collapse;width:100%;font-size:13px;margin:0 0 8px 0;";
const TH: &str = "text-align:left;padding:4px 6px;border-bottom:2px solid #d1d9e0;color:#59636e;font-weight:600;";
const TH_NUM: &str = "text-align:right;padding:4px 6px;border-bottom:2px solid #d1d9e0;color:#59636e;\
                      font-weight:600;white-space:nowrap;";
const TD: &str = "padding:4px 6px;border-bottom:1px solid #eaeef2;vertical-align:top;word-break:break-word;";
const TD_NUM: &str =
    "padding:4px 6px;border-bottom:1px solid #eaeef2;vertical-align:top;text-align:right;white-space:nowrap;";
const H2: &str = "font-size:16px;margin:24px 0 8px 0;color:#1f2328;";

/// Which way a change is good.
#[derive(Clone, Copy)]
enum Better {
    Lower,
    Higher,
    Neither,
}

fn change_color(change: Option<f64>, better: Better, threshold: f64) -> &'static str {
    let Some(c) = change.filter(|c| c.is_finite() && c.abs() >= threshold) else {
        return "#59636e";
    };
    match (better, c > 0.0) {
        (Better::Neither, _) => "#59636e",
        (Better::Lower, true) | (Better::Higher, false) => "#cf222e",
        _ => "#1a7f37",
    }
}

/// HTML building: a `String` and the few shapes the report repeats.
struct Html<'a> {
    out: String,
    report: &'a WeeklyReport,
}

impl Html<'_> {
    fn push(&mut self, s: &str) {
        self.out.push_str(s);
    }

    fn text(&mut self, s: &str) {
        self.out.push_str(&escape_html(s));
    }

    /// `text`, escaped, as a link when `link` is usable.
    fn linked(&mut self, text: &str, link: &str) {
        match full_url(self.report, link) {
            Some(url) => {
                let _ = write!(
                    self.out,
                    "<a href=\"{}\" style=\"color:#0969da;text-decoration:none;\">{}</a>",
                    escape_html(&url),
                    escape_html(text)
                );
            }
            None => self.text(text),
        }
    }

    fn h2(&mut self, title: &str) {
        let _ = write!(self.out, "<h2 style=\"{H2}\">{}</h2>", escape_html(title));
    }

    fn head_row(&mut self, columns: &[(&str, bool)]) {
        let _ = write!(
            self.out,
            "<table role=\"presentation\" cellpadding=\"0\" cellspacing=\"0\" style=\"{TABLE}\"><tr>"
        );
        for (name, numeric) in columns {
            let style = if *numeric { TH_NUM } else { TH };
            let _ = write!(self.out, "<th style=\"{style}\">{}</th>", escape_html(name));
        }
        self.push("</tr>");
    }

    fn num(&mut self, value: &str) {
        let _ = write!(self.out, "<td style=\"{TD_NUM}\">{}</td>", escape_html(value));
    }

    /// A number with its change below it, coloured by whether it is better.
    fn num_change(&mut self, value: &str, change: &str, color: &str) {
        let _ = write!(
            self.out,
            "<td style=\"{TD_NUM}\">{}<br><span style=\"font-size:11px;color:{color};\">{}</span></td>",
            escape_html(value),
            escape_html(change)
        );
    }
}

/// The report as email HTML. `charts` are the features' chart images
/// (matched to features by name); each is referenced as `cid:<content_id>`.
pub fn render_html(report: &WeeklyReport, charts: &[ChartRef]) -> String {
    render_html_with(report, charts, |chart| format!("cid:{}", chart.content_id))
}

/// The report as HTML, with each chart's `src` given by `source`: `cid:`
/// references in the email, file names in a preview.
pub(crate) fn render_html_with(
    report: &WeeklyReport,
    charts: &[ChartRef],
    source: impl Fn(&ChartRef) -> String,
) -> String {
    let mut h = Html {
        out: String::with_capacity(16 * 1024),
        report,
    };
    let title = subject(report);
    let summary = summary(report);
    let _ = write!(
        h.out,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{}</title></head>\
         <body style=\"margin:0;padding:0;background:#f6f8fa;\">",
        escape_html(&title)
    );
    // The preview line mail clients show after the subject.
    if let Some(first) = summary.first() {
        let _ = write!(
            h.out,
            "<div style=\"display:none;max-height:0;overflow:hidden;\">{}</div>",
            escape_html(first)
        );
    }
    let _ = write!(
        h.out,
        "<table role=\"presentation\" width=\"100%\" cellpadding=\"0\" cellspacing=\"0\" style=\"background:#f6f8fa;\">\
         <tr><td align=\"center\" style=\"padding:16px 8px;\">\
         <table role=\"presentation\" width=\"640\" cellpadding=\"0\" cellspacing=\"0\" \
         style=\"width:100%;max-width:640px;background:#ffffff;border:1px solid #d1d9e0;{FONT}color:#1f2328;\">\
         <tr><td style=\"padding:20px 20px 28px 20px;\">"
    );
    let _ = write!(
        h.out,
        "<h1 style=\"font-size:20px;margin:0 0 4px 0;\">Weekly performance: {}</h1>\
         <p style=\"margin:0 0 16px 0;{MUTED}font-size:13px;\">{} to {}</p>",
        escape_html(&report.team),
        escape_html(&report.week_start),
        escape_html(&report.week_end)
    );
    if let Some(late) = &report.late {
        let _ = write!(
            h.out,
            "<p style=\"margin:0 0 16px 0;color:#9a6700;font-weight:600;\">{}</p>",
            escape_html(&late.sentence())
        );
    }

    h.push("<table role=\"presentation\" cellpadding=\"0\" cellspacing=\"0\" style=\"width:100%;background:#f6f8fa;border-left:4px solid #0969da;\"><tr><td style=\"padding:8px 12px;font-size:14px;line-height:1.5;\">");
    for line in &summary {
        let _ = write!(h.out, "<div>{}</div>", escape_html(line));
    }
    h.push("</td></tr></table>");

    features_html(&mut h);
    regressions_html(&mut h);
    endpoints_html(&mut h, "Slowest endpoints (by p95)", &report.slowest);
    endpoints_html(&mut h, "Most time-consuming endpoints", &report.consumers);
    errors_html(&mut h);
    charts_html(&mut h, charts, &source);
    if shows_estimates(report) {
        let _ = write!(
            h.out,
            "<p style=\"margin:16px 0 0 0;font-size:12px;color:#59636e;\">{}</p>",
            escape_html(ESTIMATE_NOTE)
        );
    }

    h.push("<p style=\"margin:24px 0 0 0;font-size:12px;color:#59636e;\">Sent by Kuroko");
    if let Some(url) = full_url(report, "/") {
        let _ = write!(
            h.out,
            " · <a href=\"{}\" style=\"color:#0969da;\">Open the dashboard</a>",
            escape_html(&url)
        );
    }
    h.push("</p></td></tr></table></td></tr></table></body></html>\n");
    h.out
}

fn features_html(h: &mut Html<'_>) {
    let report = h.report;
    h.h2("Features");
    if report.features.is_empty() {
        h.push("<p style=\"font-size:13px;color:#59636e;\">No feature had runs this week.</p>");
        return;
    }
    h.head_row(&[
        ("Feature", false),
        ("Average", true),
        ("p95", true),
        ("Throughput", true),
        ("Apdex", true),
    ]);
    for f in &report.features {
        let _ = write!(h.out, "<tr><td style=\"{TD}\">");
        h.linked(&f.name, &f.link);
        h.push("</td>");
        h.num_change(
            &format_duration(f.avg_s),
            &format_change(f.avg_change),
            change_color(f.avg_change, Better::Lower, 0.05),
        );
        h.num_change(
            &format_percentile(f.p95_s, f.estimated),
            &format_change(f.p95_change),
            change_color(f.p95_change, Better::Lower, 0.05),
        );
        h.num_change(
            &format_rate(f.throughput_per_min),
            &format_change(f.throughput_change),
            change_color(f.throughput_change, Better::Neither, 0.0),
        );
        h.num_change(
            &format_apdex(f.apdex),
            &format_apdex_change(f.apdex_change),
            change_color(f.apdex_change, Better::Higher, 0.01),
        );
        h.push("</tr>");
    }
    h.push("</table><p style=\"margin:0;font-size:11px;color:#59636e;\">Changes are against last week.</p>");
}

fn regressions_html(h: &mut Html<'_>) {
    let report = h.report;
    h.h2("Regressions");
    if report.regressions.is_empty() {
        h.push("<p style=\"font-size:13px;color:#59636e;\">None found this week.</p>");
        return;
    }
    h.head_row(&[
        ("Endpoint", false),
        ("Metric", false),
        ("Last week", true),
        ("This week", true),
        ("Change", true),
        ("Significance", true),
        ("Extra time", true),
    ]);
    for r in &report.regressions {
        let _ = write!(h.out, "<tr><td style=\"{TD}\">");
        h.linked(&r.transaction, &r.link);
        let _ = write!(
            h.out,
            "<br><span style=\"font-size:11px;{MUTED}\">{}</span></td><td style=\"{TD}\">{}</td>",
            escape_html(&r.service),
            escape_html(&r.metric)
        );
        h.num(&format_duration(r.before_s));
        h.num(&format_duration(r.after_s));
        let _ = write!(
            h.out,
            "<td style=\"{TD_NUM}color:#cf222e;\">{}</td>",
            escape_html(&format_change(Some(r.change)))
        );
        let _ = write!(
            h.out,
            "<td style=\"{TD_NUM}\">{}<br><span style=\"font-size:11px;{MUTED}\">{}</span></td>",
            escape_html(&format_p(r.p_value)),
            escape_html(&r.test)
        );
        h.num(&format_duration(r.impact_s));
        h.push("</tr>");
    }
    h.push("</table>");
}

fn endpoints_html(h: &mut Html<'_>, title: &str, rows: &[EndpointRow]) {
    if rows.is_empty() {
        return;
    }
    h.h2(title);
    h.head_row(&[
        ("Endpoint", false),
        ("Calls", true),
        ("Average", true),
        ("p95", true),
        ("p99", true),
        ("Share of time", true),
    ]);
    for e in rows {
        let _ = write!(h.out, "<tr><td style=\"{TD}\">");
        h.linked(&e.transaction, &e.link);
        let context = match &e.feature {
            Some(feature) => format!("{} · {}", e.service, feature),
            None => e.service.clone(),
        };
        let _ = write!(
            h.out,
            "<br><span style=\"font-size:11px;{MUTED}\">{}</span></td>",
            escape_html(&context)
        );
        h.num(&format_count(e.count));
        h.num(&format_duration(e.avg_s));
        h.num(&format_percentile(e.p95_s, e.estimated));
        h.num(&format_percentile(e.p99_s, e.estimated));
        h.num(&format_share(e.share_of_time));
        h.push("</tr>");
    }
    h.push("</table>");
}

fn errors_html(h: &mut Html<'_>) {
    let report = h.report;
    h.h2("New and growing errors");
    if report.errors.is_empty() {
        h.push("<p style=\"font-size:13px;color:#59636e;\">None this week.</p>");
        return;
    }
    h.head_row(&[
        ("Error", false),
        ("This week", true),
        ("Last week", true),
        ("Hosts", false),
    ]);
    for e in &report.errors {
        let _ = write!(h.out, "<tr><td style=\"{TD}\">");
        if e.new {
            h.push("<span style=\"font-size:11px;font-weight:600;color:#ffffff;background:#cf222e;padding:0 4px;\">NEW</span> ");
        } else if is_growing(e) {
            h.push("<span style=\"font-size:11px;font-weight:600;color:#ffffff;background:#9a6700;padding:0 4px;\">GROWING</span> ");
        }
        h.linked(&e.title, &e.link);
        let _ = write!(
            h.out,
            "<br><span style=\"font-size:11px;{MUTED}font-family:Consolas,Menlo,monospace;\">{}</span></td>",
            escape_html(&truncate(&e.message, MAX_MESSAGE_CHARS))
        );
        h.num(&format_count(e.count));
        h.num(&format_count(e.previous_count));
        let _ = write!(h.out, "<td style=\"{TD}font-size:12px;\">");
        for (i, s) in e.servers.iter().enumerate() {
            if i > 0 {
                h.push("<br>");
            }
            let _ = write!(h.out, "{}: {}", escape_html(&s.host), format_count(s.count));
        }
        h.push("</td></tr>");
    }
    h.push("</table>");
}

/// Alt text for a feature's chart: what it shows and where it ends.
pub fn chart_alt(feature: &FeatureRow) -> String {
    let first = feature.daily.first().map_or("", |p| p.day.as_str());
    let last = feature.daily.last().map_or("", |p| p.day.as_str());
    let last_p95 = feature
        .daily
        .iter()
        .rev()
        .find_map(|p| p.p95_s)
        .map_or_else(|| "no runs".to_owned(), format_duration);
    format!(
        "Daily average and p95 of {} from {first} to {last}; latest p95 {last_p95}. The numbers are in the table beside the chart.",
        clean(&feature.name)
    )
}

fn charts_html(h: &mut Html<'_>, charts: &[ChartRef], source: &impl Fn(&ChartRef) -> String) {
    let report = h.report;
    let with_days: Vec<&FeatureRow> = report.features.iter().filter(|f| !f.daily.is_empty()).collect();
    if with_days.is_empty() {
        return;
    }
    h.h2("Daily average and p95 by feature");
    for feature in with_days {
        let _ = write!(h.out, "<h3 style=\"font-size:14px;margin:16px 0 6px 0;\">");
        h.linked(&feature.name, &feature.link);
        h.push("</h3>");
        if let Some(chart) = charts.iter().find(|c| c.feature == feature.name) {
            let _ = write!(
                h.out,
                "<img src=\"{}\" width=\"{CHART_WIDTH}\" height=\"{CHART_HEIGHT}\" alt=\"{}\" \
                 style=\"display:block;width:100%;max-width:{CHART_WIDTH}px;height:auto;border:0;margin:0 0 6px 0;\">",
                escape_html(&source(chart)),
                escape_html(&chart_alt(feature))
            );
        }
        daily_table(h, &feature.daily);
    }
}

/// The chart's numbers, in two column groups so that eight weeks of days
/// stay a short table.
fn daily_table(h: &mut Html<'_>, days: &[DailyPoint]) {
    let rows = days.len().div_ceil(2);
    let _ = write!(
        h.out,
        "<table role=\"presentation\" cellpadding=\"0\" cellspacing=\"0\" style=\"{TABLE}font-size:11px;\"><tr>"
    );
    for _ in 0..2.min(days.len()) {
        let _ = write!(
            h.out,
            "<th style=\"{TH}\">Day</th><th style=\"{TH_NUM}\">Average</th><th style=\"{TH_NUM}\">p95</th>"
        );
    }
    h.push("</tr>");
    for row in 0..rows {
        h.push("<tr>");
        for point in [days.get(row), days.get(row + rows)].into_iter().flatten() {
            let _ = write!(h.out, "<td style=\"{TD}\">{}</td>", escape_html(&point.day));
            h.num(&point.avg_s.map_or_else(|| "–".to_owned(), format_duration));
            h.num(&point.p95_s.map_or_else(|| "–".to_owned(), format_duration));
        }
        h.push("</tr>");
    }
    h.push("</table>");
}

/// The report as plain text, the message's alternative for clients that
/// show no HTML; links are full URLs.
pub fn render_text(report: &WeeklyReport) -> String {
    let mut out = String::with_capacity(4096);
    let link = |out: &mut String, path: &str| {
        if let Some(url) = full_url(report, path) {
            let _ = writeln!(out, "    {url}");
        }
    };
    let _ = writeln!(out, "Weekly performance: {}", clean(&report.team));
    let _ = writeln!(out, "{} to {}\n", clean(&report.week_start), clean(&report.week_end));
    if let Some(late) = &report.late {
        let _ = writeln!(out, "{}\n", late.sentence());
    }
    for line in summary(report) {
        let _ = writeln!(out, "* {line}");
    }

    let _ = writeln!(out, "\nFEATURES (change against last week)");
    if report.features.is_empty() {
        let _ = writeln!(out, "  No feature had runs this week.");
    }
    for f in &report.features {
        let _ = writeln!(
            out,
            "- {}: avg {} ({}), p95 {} ({}), {} ({}), Apdex {} ({})",
            clean(&f.name),
            format_duration(f.avg_s),
            format_change(f.avg_change),
            format_percentile(f.p95_s, f.estimated),
            format_change(f.p95_change),
            format_rate(f.throughput_per_min),
            format_change(f.throughput_change),
            format_apdex(f.apdex),
            format_apdex_change(f.apdex_change),
        );
        link(&mut out, &f.link);
    }

    let _ = writeln!(out, "\nREGRESSIONS");
    if report.regressions.is_empty() {
        let _ = writeln!(out, "  None found this week.");
    }
    for r in &report.regressions {
        let _ = writeln!(
            out,
            "- {} ({}): {} {} -> {} ({}), {} ({}), {} extra time",
            clean(&r.transaction),
            clean(&r.service),
            clean(&r.metric),
            format_duration(r.before_s),
            format_duration(r.after_s),
            format_change(Some(r.change)),
            format_p(r.p_value),
            clean(&r.test),
            format_duration(r.impact_s),
        );
        link(&mut out, &r.link);
    }

    for (title, rows) in [
        ("SLOWEST ENDPOINTS (by p95)", &report.slowest),
        ("MOST TIME-CONSUMING ENDPOINTS", &report.consumers),
    ] {
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n{title}");
        for e in rows {
            let _ = writeln!(
                out,
                "- {} ({}): {} calls, avg {}, p95 {}, p99 {}, {} of the time",
                clean(&e.transaction),
                clean(&e.service),
                format_count(e.count),
                format_duration(e.avg_s),
                format_percentile(e.p95_s, e.estimated),
                format_percentile(e.p99_s, e.estimated),
                format_share(e.share_of_time),
            );
            link(&mut out, &e.link);
        }
    }

    let _ = writeln!(out, "\nNEW AND GROWING ERRORS");
    if report.errors.is_empty() {
        let _ = writeln!(out, "  None this week.");
    }
    for e in &report.errors {
        let marker = if e.new {
            "[new] "
        } else if is_growing(e) {
            "[growing] "
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "- {marker}{}: {} this week, {} last week",
            clean(&e.title),
            format_count(e.count),
            format_count(e.previous_count)
        );
        let _ = writeln!(out, "    {}", clean(&truncate(&e.message, MAX_MESSAGE_CHARS)));
        if !e.servers.is_empty() {
            let hosts: Vec<String> = e
                .servers
                .iter()
                .map(|s| format!("{} {}", clean(&s.host), format_count(s.count)))
                .collect();
            let _ = writeln!(out, "    hosts: {}", hosts.join(", "));
        }
        link(&mut out, &e.link);
    }
    if shows_estimates(report) {
        let _ = writeln!(out, "\n{ESTIMATE_NOTE}");
    }
    if let Some(url) = full_url(report, "/") {
        let _ = writeln!(out, "\nDashboard: {url}");
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A team's week with one of everything, and a hostile transaction name.
    pub(crate) fn sample() -> WeeklyReport {
        let daily = (0..14)
            .map(|d| DailyPoint {
                day: format!("03-{:02}", d + 2),
                avg_s: if d == 5 { None } else { Some(0.1 + 0.01 * f64::from(d)) },
                p95_s: if d == 5 { None } else { Some(0.4 + 0.02 * f64::from(d)) },
            })
            .collect();
        WeeklyReport {
            team: "payments".into(),
            week_start: "2026-03-09".into(),
            week_end: "2026-03-15".into(),
            base_url: "https://kuroko.example.com/".into(),
            features: vec![FeatureRow {
                name: "checkout".into(),
                avg_s: 0.12,
                p95_s: 0.48,
                throughput_per_min: 12.34,
                apdex: Some(0.94),
                avg_change: Some(0.05),
                p95_change: Some(0.31),
                throughput_change: Some(-0.02),
                apdex_change: Some(-0.03),
                daily,
                link: ui_path("/features", &[("name", "checkout")]),
                estimated: false,
            }],
            slowest: vec![EndpointRow {
                service: "shop".into(),
                transaction: "<script>alert(1)</script> & \"quotes\"".into(),
                feature: Some("checkout".into()),
                count: 12345,
                avg_s: 0.8,
                p95_s: 2.5,
                p99_s: 4.0,
                share_of_time: 0.23,
                link: ui_path("/transactions", &[("name", "<script>alert(1)</script> & \"quotes\"")]),
                estimated: false,
            }],
            consumers: vec![],
            regressions: vec![RegressionRow {
                service: "shop".into(),
                transaction: "POST /pay".into(),
                metric: "p95".into(),
                before_s: 0.366,
                after_s: 0.48,
                change: 0.31,
                p_value: 0.0004,
                test: "Mann-Whitney U".into(),
                impact_s: 5400.0,
                link: "javascript:alert(1)".into(),
            }],
            errors: vec![ErrorRow {
                title: "TimeoutError in pay()".into(),
                message: "upstream <bank> timed out".into(),
                count: 340,
                previous_count: 0,
                new: true,
                servers: vec![ServerCount {
                    host: "web-1".into(),
                    count: 300,
                }],
                link: "/errors/42".into(),
            }],
            late: None,
        }
    }

    #[test]
    fn escapes_the_five_characters() {
        assert_eq!(
            escape_html(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert!(matches!(escape_html("plain text"), Cow::Borrowed(_)));
    }

    #[test]
    fn durations_read_as_people_write_them() {
        let cases = [
            (0.00085, "850 µs"),
            (0.0042, "4.2 ms"),
            (0.12, "120 ms"),
            (0.9996, "1.00 s"),
            (1.25, "1.25 s"),
            (42.0, "42.0 s"),
            (125.0, "2 min 5 s"),
            (4800.0, "1 h 20 min"),
            (f64::NAN, "–"),
        ];
        for (seconds, expected) in cases {
            assert_eq!(format_duration(seconds), expected, "{seconds}");
        }
        assert_eq!(format_change(Some(0.31)), "+31%");
        assert_eq!(format_change(Some(-0.042)), "-4.2%");
        assert_eq!(format_change(None), "–");
        assert_eq!(format_count(1_234_567), "1,234,567");
        assert_eq!(format_count(999), "999");
        assert_eq!(format_rate(12.34), "12.3/min");
    }

    #[test]
    fn estimated_percentiles_are_marked_with_what_the_mark_means() {
        let exact = sample();
        assert!(!render_text(&exact).contains('≈'));
        let mut estimated = sample();
        estimated.features[0].estimated = true;
        estimated.slowest[0].estimated = true;
        let text = render_text(&estimated);
        let html = render_html(&estimated, &[]);
        for out in [&text, &html] {
            assert!(
                out.contains(&format!("p95 ≈{}", format_duration(estimated.features[0].p95_s)))
                    || out.contains(&format!("≈{}", format_duration(estimated.features[0].p95_s)))
            );
            assert!(out.contains(&format!("≈{}", format_duration(estimated.slowest[0].p99_s))));
        }
        assert!(text.contains(ESTIMATE_NOTE));
        assert!(html.contains(&*escape_html(ESTIMATE_NOTE)));
    }

    #[test]
    fn summary_names_the_worst_regression_and_the_errors() {
        let lines = summary(&sample());
        assert!(
            lines[0].starts_with("1 regression, worst: POST /pay p95 +31%"),
            "{lines:?}"
        );
        assert!(lines.iter().any(|l| l == "Errors: 1 new group, 0 growing"), "{lines:?}");
        assert!(lines.iter().any(|l| l.starts_with("Slowest: <script>")), "{lines:?}");
        let quiet = WeeklyReport::default();
        assert_eq!(
            summary(&quiet),
            [
                "No runs recorded for this team this week.",
                "No regressions found.",
                "No new or growing errors."
            ]
        );
    }

    #[test]
    fn html_escapes_user_strings_and_refuses_script_links() {
        let html = render_html(&sample(), &[]);
        assert!(!html.contains("<script>"), "raw script tag in the HTML");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;quotes&quot;"));
        assert!(html.contains("upstream &lt;bank&gt; timed out"));
        assert!(!html.contains("javascript:"), "a javascript: link was rendered");
        assert!(html.contains(
            "href=\"https://kuroko.example.com/transactions?name=%3Cscript%3Ealert%281%29%3C%2Fscript%3E%20%26%20%22quotes%22\""
        ));
        assert!(!html.contains("<svg") && !html.contains("<script") && !html.contains("<link"));
    }

    #[test]
    fn html_references_each_chart_by_content_id_with_alt_text_and_numbers() {
        let report = sample();
        let chart = ChartRef {
            feature: "checkout".into(),
            content_id: "chart-0@kuroko".into(),
            file_name: "chart-0.png".into(),
            png: vec![],
        };
        let html = render_html(&report, &[chart]);
        assert!(html.contains("src=\"cid:chart-0@kuroko\""));
        assert!(html.contains("alt=\"Daily average and p95 of checkout from 03-02 to 03-15; latest p95 660 ms."));
        // The table beside the chart: a day's numbers, and the day without runs.
        assert!(html.contains(">03-02</td>"));
        assert!(html.contains(">400 ms</td>"));
        assert!(html.contains(">03-07</td><td style=\"") && html.contains(">–</td>"));
    }

    #[test]
    fn text_has_the_numbers_and_full_links() {
        let text = render_text(&sample());
        assert!(
            text.contains("- checkout: avg 120 ms (+5.0%), p95 480 ms (+31%), 12.3/min (-2.0%), Apdex 0.94 (-0.03)")
        );
        assert!(text.contains("https://kuroko.example.com/features?name=checkout"));
        assert!(text.contains("- [new] TimeoutError in pay(): 340 this week, 0 last week"));
        assert!(text.contains("12,345 calls"));
        assert!(!text.contains("javascript:"));
    }

    #[test]
    fn control_characters_cannot_break_the_text_layout() {
        let mut report = sample();
        report.slowest[0].transaction = "GET /a\r\nBcc: x@example.com".into();
        let text = render_text(&report);
        assert!(text.contains("GET /a  Bcc: x@example.com"));
        assert!(!text.contains("\r"));
    }
}
