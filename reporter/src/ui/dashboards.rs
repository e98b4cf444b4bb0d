//! Dashboards as files: `dashboards/*.toml`, each a list of panels (a
//! metric, a filter, a chart kind, a window) that the UI lists and draws,
//! plus one dashboard per feature of `owners.toml`, generated in memory.
//!
//! Dashboards live in the repository next to the code so they are reviewed
//! and versioned like it. A mistake should not silently drop a panel, so a
//! file is checked strictly (unknown keys, unknown metrics or chart kinds, a
//! window that is not a duration, a team `owners.toml` does not declare, a
//! chart that cannot show its metric) and every problem is reported as
//! `file:line:col: what is wrong`: on `/dashboards` and in the start-up log.
//! Files are read again on every visit to `/dashboards`, so an edit shows
//! without a restart.
//!
//! ```toml
//! title = "Checkout"
//! description = "Paying for a cart"
//!
//! [[panels]]
//! title = "p95 of checkout's transactions"
//! metric = "p95"          # p50 p95 p99 average throughput error_rate apdex
//! chart = "line"          # line bar table
//! window = "7d"           # a duration before now: 90m, 24h, 7d, 2w
//! filter = { feature = "checkout" }   # service feature transaction team environment
//! group = "transaction"   # optional: one line or row per transaction or per feature
//! limit = 5               # optional: lines or rows shown (default 8 lines, 10 rows)
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::analysis::endpoints::Group;
use crate::analysis::scope::parse_window;
use crate::owners::{Feature, Owners};

/// What a panel shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Median response time.
    P50,
    /// 95th percentile response time.
    P95,
    /// 99th percentile response time.
    P99,
    /// Mean response time.
    Average,
    /// Runs per minute.
    Throughput,
    /// Failed runs over runs.
    ErrorRate,
    /// Apdex (no time series: bar or table only).
    Apdex,
}

impl Metric {
    /// The name as written in a file and in `data-series`.
    pub fn name(self) -> &'static str {
        match self {
            Metric::P50 => "p50",
            Metric::P95 => "p95",
            Metric::P99 => "p99",
            Metric::Average => "average",
            Metric::Throughput => "throughput",
            Metric::ErrorRate => "error_rate",
            Metric::Apdex => "apdex",
        }
    }
}

/// How a panel draws its metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Chart {
    /// Over time, one line per row.
    Line,
    /// Horizontal bars over the window, one per row.
    Bar,
    /// A table over the window.
    Table,
}

/// Which series a panel is about; `None` matches all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PanelFilter {
    /// Only this service.
    pub service: Option<String>,
    /// Only this feature.
    pub feature: Option<String>,
    /// Only this transaction.
    pub transaction: Option<String>,
    /// Only what this team owns.
    pub team: Option<String>,
    /// Only this deployment environment.
    pub environment: Option<String>,
}

/// One panel of a dashboard.
#[derive(Clone, Debug, PartialEq)]
pub struct Panel {
    /// Its heading.
    pub title: String,
    /// What it shows.
    pub metric: Metric,
    /// How.
    pub chart: Chart,
    /// Its window, a duration before now (`7d`).
    pub window: String,
    /// Which series.
    pub filter: PanelFilter,
    /// One line or row per transaction or per feature.
    pub group: Group,
    /// Lines or rows shown.
    pub limit: usize,
}

/// Where a dashboard came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A file of the dashboards folder.
    File(PathBuf),
    /// Generated for a feature of `owners.toml`.
    Owners,
}

/// A dashboard: panels under a title.
#[derive(Clone, Debug, PartialEq)]
pub struct Dashboard {
    /// Its name in URLs: the file's stem, or `feature-NAME`.
    pub name: String,
    /// Its heading.
    pub title: String,
    /// What it is for.
    pub description: Option<String>,
    /// Where it came from.
    pub source: Source,
    /// Its panels, in file order.
    pub panels: Vec<Panel>,
}

/// A problem in a dashboard file: `file:line:col: message`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The file, as shown.
    pub file: String,
    /// Line, from 1.
    pub line: usize,
    /// Column in characters, from 1.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file, self.line, self.column, self.message)
    }
}

/// Every dashboard the UI shows, and the problems of the files it could not read.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Dashboards {
    /// Files first (by name), then one per feature not shadowed by a file.
    pub dashboards: Vec<Dashboard>,
    /// Problems, by file and position.
    pub problems: Vec<Problem>,
}

impl Dashboards {
    /// The dashboard named `name`.
    pub fn get(&self, name: &str) -> Option<&Dashboard> {
        self.dashboards.iter().find(|d| d.name == name)
    }
}

/// `filter = { … }` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFilter {
    service: Option<String>,
    feature: Option<String>,
    transaction: Option<String>,
    team: Option<Spanned<String>>,
    environment: Option<String>,
}

/// `[[panels]]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPanel {
    title: String,
    metric: Spanned<Metric>,
    chart: Chart,
    window: Option<Spanned<String>>,
    #[serde(default)]
    filter: RawFilter,
    group: Option<Group>,
    limit: Option<Spanned<i64>>,
}

/// A dashboard file as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDashboard {
    title: Option<String>,
    description: Option<String>,
    #[serde(default)]
    panels: Vec<RawPanel>,
}

/// A panel's window when the file names none.
pub(crate) const DEFAULT_WINDOW: &str = "7d";

/// Reads every `*.toml` of `dir` (a missing folder has none) and adds a
/// dashboard per feature of `owners`.
pub fn load(dir: &Path, owners: &Owners) -> Dashboards {
    let mut all = Dashboards::default();
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml") && p.is_file())
            .collect(),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(error) => {
            all.problems.push(Problem {
                file: dir.display().to_string(),
                line: 1,
                column: 1,
                message: format!("cannot read the dashboards folder: {error}"),
            });
            Vec::new()
        }
    };
    files.sort();
    for path in files {
        let shown = path.display().to_string();
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let parsed = std::fs::read_to_string(&path)
            .map_err(|error| {
                vec![Problem {
                    file: shown.clone(),
                    line: 1,
                    column: 1,
                    message: format!("cannot read the file: {error}"),
                }]
            })
            .and_then(|text| parse(&text, &shown, &name, owners));
        match parsed {
            Ok(mut dashboard) => {
                dashboard.source = Source::File(path);
                all.dashboards.push(dashboard);
            }
            Err(problems) => all.problems.extend(problems),
        }
    }
    for feature in owners.features() {
        let generated = for_feature(feature);
        if all.get(&generated.name).is_none() {
            all.dashboards.push(generated);
        }
    }
    all
}

/// Parses one dashboard file's `text`; problems name `file`. Every problem
/// found after the file parses is returned, not only the first.
pub fn parse(text: &str, file: &str, name: &str, owners: &Owners) -> Result<Dashboard, Vec<Problem>> {
    let problem = |offset: usize, message: String| {
        let (line, column) = line_column(text, offset);
        Problem {
            file: file.to_owned(),
            line,
            column,
            message,
        }
    };
    let raw: RawDashboard = toml::from_str(text).map_err(|error| {
        let offset = error.span().map_or(0, |s| s.start);
        vec![problem(offset, error.message().trim().replace('\n', " "))]
    })?;
    let mut problems = Vec::new();
    if raw.panels.is_empty() {
        problems.push(problem(
            0,
            "no panels: add at least one [[panels]] with title, metric and chart".to_owned(),
        ));
    }
    let mut panels = Vec::new();
    for panel in raw.panels {
        let metric = *panel.metric.get_ref();
        if metric == Metric::Apdex && panel.chart == Chart::Line {
            problems.push(problem(
                panel.metric.span().start,
                "apdex has no time series: use chart = \"bar\" or \"table\"".to_owned(),
            ));
        }
        let window = match &panel.window {
            Some(window) => {
                let text = window.get_ref().trim();
                let is_duration = text.ends_with(['m', 'h', 'd', 'w']) && parse_window(text, None, 0).is_ok();
                if !is_duration {
                    problems.push(problem(
                        window.span().start,
                        format!("window `{text}` is not a duration before now: write 90m, 24h, 7d or 2w"),
                    ));
                }
                text.to_owned()
            }
            None => DEFAULT_WINDOW.to_owned(),
        };
        if let Some(team) = &panel.filter.team {
            if owners.team(team.get_ref()).is_none() {
                let known: Vec<&str> = owners.teams().map(|t| t.name.as_str()).collect();
                let known = if known.is_empty() {
                    "no owners.toml with teams is configured".to_owned()
                } else {
                    format!("teams are {}", known.join(", "))
                };
                problems.push(problem(
                    team.span().start,
                    format!("no team `{}` in owners.toml: {known}", team.get_ref()),
                ));
            }
        }
        let limit = match &panel.limit {
            Some(limit) if !(1..=100).contains(limit.get_ref()) => {
                problems.push(problem(limit.span().start, "limit must be from 1 to 100".to_owned()));
                10
            }
            Some(limit) => usize::try_from(*limit.get_ref()).unwrap_or(10),
            None if panel.chart == Chart::Line => 8,
            None => 10,
        };
        let filter = PanelFilter {
            service: panel.filter.service,
            feature: panel.filter.feature,
            transaction: panel.filter.transaction,
            team: panel.filter.team.map(Spanned::into_inner),
            environment: panel.filter.environment,
        };
        let group = panel
            .group
            .unwrap_or(if filter.feature.is_some() || filter.transaction.is_some() {
                Group::Transaction
            } else {
                Group::Feature
            });
        panels.push(Panel {
            title: panel.title,
            metric,
            chart: panel.chart,
            window,
            filter,
            group,
            limit,
        });
    }
    if !problems.is_empty() {
        problems.sort_by_key(|p| (p.line, p.column));
        return Err(problems);
    }
    Ok(Dashboard {
        name: name.to_owned(),
        title: raw.title.unwrap_or_else(|| name.to_owned()),
        description: raw.description,
        source: Source::File(PathBuf::from(file)),
        panels,
    })
}

/// The dashboard every feature gets: its p95 and average, throughput and
/// error rate over a week, and its slowest transactions.
pub(crate) fn for_feature(feature: &Feature) -> Dashboard {
    let panel = |title: &str, metric, chart| Panel {
        title: title.to_owned(),
        metric,
        chart,
        window: DEFAULT_WINDOW.to_owned(),
        filter: PanelFilter {
            feature: Some(feature.name.clone()),
            ..PanelFilter::default()
        },
        group: Group::Feature,
        limit: 8,
    };
    Dashboard {
        name: format!("feature-{}", feature.name),
        title: format!("Feature {}", feature.name),
        description: Some(match &feature.description {
            Some(d) => format!("{d} (team {}; generated from owners.toml)", feature.team),
            None => format!("Team {}; generated from owners.toml", feature.team),
        }),
        source: Source::Owners,
        panels: vec![
            panel("p95 response time", Metric::P95, Chart::Line),
            panel("Average response time", Metric::Average, Chart::Line),
            panel("Throughput", Metric::Throughput, Chart::Line),
            panel("Error rate", Metric::ErrorRate, Chart::Line),
            Panel {
                group: Group::Transaction,
                limit: 10,
                ..panel("Slowest transactions (p95)", Metric::P95, Chart::Table)
            },
        ],
    }
}

/// The 1-based line and column (in characters) of byte `offset` of `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (
        before.matches('\n').count() + 1,
        before[line_start..].chars().count() + 1,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWNERS: &str = r#"
[teams.payments]
email = ["p@example.com"]
[features.checkout]
team = "payments"
description = "Paying for a cart"
"#;

    fn owners() -> Owners {
        Owners::parse(OWNERS, "owners.toml").unwrap()
    }

    fn problems(text: &str) -> Vec<String> {
        parse(text, "dashboards/x.toml", "x", &owners())
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn a_valid_file_reads_with_defaults() {
        let text = r#"
title = "Checkout"
[[panels]]
title = "p95"
metric = "p95"
chart = "line"
filter = { feature = "checkout", team = "payments" }
[[panels]]
title = "apdex"
metric = "apdex"
chart = "table"
window = "30d"
limit = 3
"#;
        let dashboard = parse(text, "d/checkout.toml", "checkout", &owners()).unwrap();
        assert_eq!(dashboard.title, "Checkout");
        assert_eq!(dashboard.panels.len(), 2);
        let first = &dashboard.panels[0];
        assert_eq!((first.metric, first.chart), (Metric::P95, Chart::Line));
        assert_eq!(first.window, DEFAULT_WINDOW);
        assert_eq!(
            first.group,
            Group::Transaction,
            "a feature filter charts its transactions"
        );
        assert_eq!(first.filter.team.as_deref(), Some("payments"));
        assert_eq!(
            (dashboard.panels[1].window.as_str(), dashboard.panels[1].limit),
            ("30d", 3)
        );
        assert_eq!(dashboard.panels[1].group, Group::Feature);
    }

    #[test]
    fn problems_name_the_file_line_and_column() {
        // Unknown key: its line.
        let found = problems("[[panels]]\ntitle = \"a\"\nmetric = \"p95\"\nchart = \"line\"\ncolour = \"red\"\n");
        assert_eq!(found.len(), 1);
        assert!(
            found[0].starts_with("dashboards/x.toml:5:") && found[0].contains("colour"),
            "{found:?}"
        );
        // Unknown metric: the line of the value, and what would be accepted.
        let found = problems("[[panels]]\ntitle = \"a\"\nmetric = \"p90\"\nchart = \"line\"\n");
        assert!(
            found[0].starts_with("dashboards/x.toml:3:10:") && found[0].contains("p95"),
            "{found:?}"
        );
        // Broken TOML.
        let found = problems("title = \"a\n");
        assert!(found[0].starts_with("dashboards/x.toml:1:"), "{found:?}");
        // Several checks at once, in file order.
        let found = problems(
            "[[panels]]\ntitle = \"a\"\nmetric = \"apdex\"\nchart = \"line\"\nwindow = \"last week\"\n\
             filter = { team = \"nobody\" }\n",
        );
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(found[0].starts_with("dashboards/x.toml:3:10: apdex has no time series"));
        assert!(found[1].starts_with("dashboards/x.toml:5:10: window `last week`"));
        assert!(found[2].starts_with("dashboards/x.toml:6:19: no team `nobody`") && found[2].contains("payments"));
        // No panels at all.
        let found = problems("title = \"empty\"\n");
        assert!(found[0].contains("no panels"), "{found:?}");
    }

    #[test]
    fn each_feature_gets_a_dashboard_and_a_file_can_replace_it() {
        let dir = std::env::temp_dir().join(format!("kuroko-dashboards-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("broken.toml"), "[[panels]]\ntitle = 3\n").unwrap();
        std::fs::write(dir.join("notes.txt"), "not a dashboard").unwrap();
        let all = load(&dir, &owners());
        assert_eq!(all.dashboards.len(), 1);
        let generated = all.get("feature-checkout").unwrap();
        assert_eq!(generated.source, Source::Owners);
        assert!(generated
            .panels
            .iter()
            .all(|p| p.filter.feature.as_deref() == Some("checkout")));
        assert_eq!(all.problems.len(), 1);
        assert!(
            all.problems[0].to_string().contains("broken.toml:2:9:"),
            "{:?}",
            all.problems
        );

        std::fs::write(
            dir.join("feature-checkout.toml"),
            "title = \"Mine\"\n[[panels]]\ntitle = \"a\"\nmetric = \"p99\"\nchart = \"bar\"\n",
        )
        .unwrap();
        let all = load(&dir, &owners());
        assert_eq!(all.get("feature-checkout").unwrap().title, "Mine");
        assert_eq!(all.dashboards.len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();

        let missing = load(Path::new("/nonexistent/kuroko/dashboards"), &Owners::empty());
        assert_eq!(missing, Dashboards::default());
    }
}
