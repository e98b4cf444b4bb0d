//! Filling the reports' view models from the analysis layer: a team's week
//! ([`weekly`]) and a day's errors ([`digest()`]).
//!
//! The renderers ([`super::weekly`], [`super::digest`]) only lay out numbers;
//! this module asks [`Analysis`] for them, so every number a report shows is
//! one the CLI, the API and the web UI would answer for the same window and
//! filters. Windows are the report's [`Period`] in the schedule's time zone:
//! a week is Monday 00:00 to Monday 00:00 local time, the week before is the
//! one before that, and each point of a feature's chart is one local day.
//! The store steps days in UTC, so when the zone's midnights are not UTC's
//! the days are asked one by one instead (slower, still exact).
//!
//! Links are paths into the web UI (`/features/{name}`,
//! `/transactions?service=..&transaction=..`, `/regressions?..`,
//! `/errors/{id}`), with the report's window as `since`/`until` (RFC 3339)
//! where the page shows a window, and an error group's with the team too
//! (the page then counts the team's part of the group, as the email does).

use std::collections::BTreeMap;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

use super::digest::{self, Digest, DigestGroup};
use super::weekly::{
    ui_path, ChartDeploy, DailyPoint, DeployRow, EndpointRow, ErrorRow, FeatureRow, ProblemRow, RegressionRow,
    ServerCount, WeeklyReport, TOP_PROBLEMS,
};
use crate::analysis::endpoints::{self, Group, Rank};
use crate::analysis::errors::ErrorGroup;
use crate::analysis::regressions;
use crate::analysis::stats::{self, RegressionRule};
use crate::analysis::timeseries::Step;
use crate::analysis::triage::Status;
use crate::analysis::{Analysis, AnalysisError, Scope};
use crate::deliver::schedule::Period;
use crate::format;
use crate::store::Filter;

/// Weeks of daily points in a feature's chart.
pub(crate) const CHART_WEEKS: i64 = 6;
/// Endpoints listed as slowest, and as most time-consuming.
pub(crate) const TOP_ENDPOINTS: usize = 10;
/// New or growing error groups listed in the weekly report.
pub(crate) const TOP_ERRORS: usize = 20;

const DAY_MINUTES: i64 = 1_440;

/// Why a report could not be built.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BuildError {
    /// The analysis failed (the store, or a team the owners file lacks).
    #[error(transparent)]
    Analysis(#[from] AnalysisError),
    /// The period is of the wrong kind for the report.
    #[error("the {report} report covers {expected}, not {period}")]
    WrongPeriod {
        /// `weekly` or `digest`.
        report: &'static str,
        /// What it covers.
        expected: &'static str,
        /// The period given.
        period: Period,
    },
    /// The period has no instants in the time zone (a date out of range).
    #[error("the period {period} cannot be placed in time: {source}")]
    Window {
        /// The period.
        period: String,
        /// jiff's reason.
        source: jiff::Error,
    },
}

fn window_error(period: impl std::fmt::Display) -> impl FnOnce(jiff::Error) -> BuildError {
    move |source| BuildError::Window {
        period: period.to_string(),
        source,
    }
}

/// A local midnight as unix minutes.
fn midnight(date: Date, tz: &TimeZone) -> Result<i64, BuildError> {
    let instant = date.to_zoned(tz.clone()).map_err(window_error(date))?.timestamp();
    Ok(instant.as_second().div_euclid(60))
}

/// `period`'s window in unix minutes.
fn window(period: &Period, tz: &TimeZone) -> Result<(i64, i64), BuildError> {
    let (from, to) = period.window(tz).map_err(window_error(period))?;
    Ok((from.as_second().div_euclid(60), to.as_second().div_euclid(60)))
}

fn rfc3339(minute: i64) -> String {
    Timestamp::from_second(minute.saturating_mul(60)).map_or_else(|_| String::new(), |t| t.to_string())
}

/// Relative change, `None` without a previous value.
fn relative(current: f64, previous: Option<f64>) -> Option<f64> {
    previous.filter(|p| *p > 0.0).map(|p| current / p - 1.0)
}

/// One team's report for the ISO week `period`, its windows in `tz`, its
/// links under `base_url`: the team's features (week stats and change
/// against the week before, daily average and p95 over [`CHART_WEEKS`]
/// weeks), its slowest and most time-consuming transactions, its
/// regressions against the week before, and its new and growing error groups.
pub(crate) fn weekly(
    analysis: &Analysis<'_>,
    team: &str,
    period: &Period,
    tz: &TimeZone,
    base_url: &str,
) -> Result<WeeklyReport, BuildError> {
    if !matches!(period, Period::Week { .. }) {
        return Err(BuildError::WrongPeriod {
            report: "weekly",
            expected: "an ISO week such as 2026-W11",
            period: *period,
        });
    }
    let first_day = period.first_day().map_err(window_error(period))?;
    let end_day = period.end_day().map_err(window_error(period))?;
    let previous = Period::week_of(first_day.checked_sub(7.days()).map_err(window_error(period))?);
    let (from, to) = window(period, tz)?;
    let (previous_from, previous_to) = window(&previous, tz)?;
    let scope = Scope {
        team: Some(team.to_owned()),
        ..Scope::window(from, to)
    };
    scope.check_team(analysis.owners).map_err(AnalysisError::from)?;
    let before = Scope {
        from: previous_from,
        to: previous_to,
        ..scope.clone()
    };
    let window_params = [("since", rfc3339(from)), ("until", rfc3339(to))];
    // An error group's link opens it as the email counted it: the team's
    // part of the group (a group may also occur in other teams' transactions).
    let team_params = [
        ("since", rfc3339(from)),
        ("until", rfc3339(to)),
        ("team", team.to_owned()),
    ];

    let mut comparison = analysis.compare(&scope, &RegressionRule::default(), regressions::Group::Transaction)?;
    analysis.attribute_rows(&scope, &scope.previous(), &mut comparison.regressions)?;
    let mut features = feature_rows(analysis, &scope, &before, end_day, tz, &window_params)?;
    if !comparison.coverage.enough {
        // Changes against a week the store barely holds are not changes.
        for row in &mut features {
            (row.avg_change, row.p95_change, row.throughput_change, row.apdex_change) = (None, None, None, None);
        }
    }
    let (slowest, consumers) = endpoint_rows(analysis, &scope, &window_params)?;
    let regressions = comparison
        .regressions
        .iter()
        .filter_map(|row| {
            let trigger = row.verdict.trigger?;
            let change = row.verdict.changes.get(trigger.metric);
            Some(RegressionRow {
                service: row.service.clone(),
                transaction: row.transaction.clone(),
                metric: trigger.metric.to_string(),
                before_s: change.previous,
                after_s: change.current,
                change: trigger.relative,
                p_value: trigger.p_value,
                q_value: trigger.q_value,
                change_low: trigger.low,
                change_high: trigger.high.is_finite().then_some(trigger.high),
                test: trigger.test.to_string(),
                impact_s: row.verdict.impact_seconds,
                cause: row.attribution.as_ref().map(|a| a.summary.clone()).unwrap_or_default(),
                link: with_window(
                    "/regressions",
                    &[("service", &row.service), ("transaction", &row.transaction)],
                    &window_params,
                ),
            })
        })
        .collect();
    // "New": first seen in this window, over all the store keeps
    // (`ErrorGroup::new`); "growing": a significant rise of errors per run.
    let (runs_now, runs_before) = (runs(analysis, &scope)?, runs(analysis, &before)?);
    let (ignored, listed): (Vec<ErrorGroup>, Vec<ErrorGroup>) = analysis
        .errors_against(&scope, &before)?
        .into_iter()
        .partition(|g| g.triage.status == Status::Ignored);
    let errors = listed
        .into_iter()
        .filter_map(|g| {
            let growing = !g.new
                && stats::error_growing(
                    g.count,
                    g.previous_count,
                    runs_now,
                    runs_before,
                    RegressionRule::default().p_value,
                );
            let mut row = error_row(&g, &team_params, tz);
            row.growing = growing;
            (g.new || growing || row.regressed).then_some(row)
        })
        .take(TOP_ERRORS)
        .collect();
    let found = analysis.problems(&scope)?;
    let total = |new_only: bool| {
        let chosen = found.open().filter(|p| p.new || !new_only);
        chosen.fold((0u64, 0.0), |(n, cost), p| (n + 1, cost + p.seconds_per_day))
    };
    let ((open_problems, open_problems_seconds_per_day), (new_problems, new_problems_seconds_per_day)) =
        (total(false), total(true));
    let problems = found
        .open()
        .take(TOP_PROBLEMS)
        .map(|p| ProblemRow {
            title: p.title.clone(),
            statement: p.statement.clone(),
            service: p.service.clone(),
            transaction: p.transaction.clone(),
            new: p.new,
            count_per_run: p.count_per_run,
            cost_per_run_s: p.cost_per_run,
            seconds_per_day: p.seconds_per_day,
            link: with_window(
                &format!("/problems/{}", format::url_component(&p.id)),
                &[],
                &window_params,
            ),
        })
        .collect();
    Ok(WeeklyReport {
        team: team.to_owned(),
        team_name: analysis
            .owners
            .team(team)
            .and_then(|t| t.display_name.clone())
            .unwrap_or_default(),
        week_start: first_day.to_string(),
        week_end: end_day.yesterday().map_err(window_error(period))?.to_string(),
        base_url: base_url.to_owned(),
        features,
        slowest,
        consumers,
        regressions,
        regressions_note: comparison.coverage.shortfall(),
        errors,
        ignored_groups: ignored.len() as u64,
        problems,
        open_problems,
        open_problems_seconds_per_day,
        new_problems,
        new_problems_seconds_per_day,
        late: None,
        deploys: deploy_rows(analysis, &scope, tz, &window_params)?,
    })
}

/// The deploys of the services that run the team's transactions, in the
/// week of `scope`, each linked to the service's regressions since it.
fn deploy_rows(
    analysis: &Analysis<'_>,
    scope: &Scope,
    tz: &TimeZone,
    window_params: &[(&str, String)],
) -> Result<Vec<DeployRow>, BuildError> {
    Ok(analysis
        .deploys(scope)?
        .into_iter()
        .map(|d| DeployRow {
            at: local_time(Timestamp::from_second(d.minute * 60).ok(), tz),
            link: with_window("/regressions", &[("service", &d.service)], window_params),
            service: d.service,
            version: d.version,
            previous_version: d.previous_version,
        })
        .collect())
}

/// Runs of the transactions in `scope` over its window (the denominator of
/// an error rate).
fn runs(analysis: &Analysis<'_>, scope: &Scope) -> Result<f64, BuildError> {
    let series = analysis.histograms(&scope.transactions_filter(analysis.owners), scope.from, scope.to)?;
    Ok(series
        .iter()
        .filter(|(key, _)| scope.matches(key, analysis.owners))
        .map(|(_, h)| h.count as f64)
        .sum())
}

/// A UI path with `params` and then the window's.
fn with_window(route: &str, params: &[(&str, &str)], window: &[(&str, String)]) -> String {
    let mut all: Vec<(&str, &str)> = params.to_vec();
    all.extend(window.iter().map(|(k, v)| (*k, v.as_str())));
    ui_path(route, &all)
}

/// The team's features with runs this week, by name.
fn feature_rows(
    analysis: &Analysis<'_>,
    scope: &Scope,
    before: &Scope,
    end_day: Date,
    tz: &TimeZone,
    window_params: &[(&str, String)],
) -> Result<Vec<FeatureRow>, BuildError> {
    let now = analysis.slowest_grouped(scope, Group::Feature, Rank::TimeConsumed, usize::MAX)?;
    let then = analysis.slowest_grouped(before, Group::Feature, Rank::TimeConsumed, usize::MAX)?;
    let previous: BTreeMap<&str, &endpoints::EndpointRow> = then
        .rows
        .iter()
        .filter_map(|r| Some((r.feature.as_deref()?, r)))
        .collect();
    let (mut daily, days) = daily_points(analysis, scope, end_day, tz)?;
    let mut rows = Vec::with_capacity(now.rows.len());
    for row in &now.rows {
        let Some(name) = row.feature.clone() else { continue };
        let last = previous.get(name.as_str());
        rows.push(FeatureRow {
            avg_s: row.mean,
            p95_s: row.p95,
            throughput_per_min: row.throughput,
            apdex: row.apdex,
            avg_change: relative(row.mean, last.map(|l| l.mean)),
            p95_change: relative(row.p95, last.map(|l| l.p95)),
            throughput_change: relative(row.throughput, last.map(|l| l.throughput)),
            apdex_change: row.apdex.zip(last.and_then(|l| l.apdex)).map(|(a, b)| a - b),
            daily: daily.remove(&name).unwrap_or_default(),
            deploys: chart_deploys(analysis, scope, &name, &days)?,
            estimated: row.estimated,
            link: with_window(
                &format!("/features/{}", format::url_component(&name)),
                &[],
                window_params,
            ),
            name,
        });
    }
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(rows)
}

/// Each feature's days, by name.
type DailyPoints = BTreeMap<String, Vec<DailyPoint>>;

/// The deploys of the services that run `feature`'s transactions (of
/// `scope`'s team) within the chart's `days` (their bounds, unix minutes),
/// each on the day it happened.
fn chart_deploys(
    analysis: &Analysis<'_>,
    scope: &Scope,
    feature: &str,
    days: &[i64],
) -> Result<Vec<ChartDeploy>, BuildError> {
    let (Some(&from), Some(&to)) = (days.first(), days.last()) else {
        return Ok(Vec::new());
    };
    let charted = Scope {
        from,
        to,
        feature: Some(feature.to_owned()),
        ..scope.clone()
    };
    Ok(analysis
        .deploys(&charted)?
        .into_iter()
        .filter_map(|d| {
            Some(ChartDeploy {
                day: days.windows(2).position(|w| (w[0]..w[1]).contains(&d.minute))?,
                label: format!("{} {}", d.service, d.version),
            })
        })
        .collect())
}

/// Each feature's daily average and p95 over the [`CHART_WEEKS`] weeks
/// ending at `end_day` (excluded), days being `tz`'s, from the first day
/// any of them has runs; and the bounds of those days (unix minutes, one
/// more than the days).
fn daily_points(
    analysis: &Analysis<'_>,
    scope: &Scope,
    end_day: Date,
    tz: &TimeZone,
) -> Result<(DailyPoints, Vec<i64>), BuildError> {
    let days = CHART_WEEKS * 7;
    let first = end_day.checked_sub(days.days()).map_err(window_error(end_day))?;
    let mut dates = Vec::with_capacity(days as usize + 1);
    let mut bounds = Vec::with_capacity(days as usize + 1);
    for i in 0..=days {
        let date = first.checked_add(i.days()).map_err(window_error(first))?;
        bounds.push(midnight(date, tz)?);
        dates.push(date);
    }
    let empty: Vec<DailyPoint> = dates[..days as usize]
        .iter()
        .map(|d| DailyPoint {
            day: d.strftime("%m-%d").to_string(),
            avg_s: None,
            p95_s: None,
        })
        .collect();
    let mut out = DailyPoints::new();
    let mut set = |feature: &str, day: usize, avg: Option<f64>, p95: Option<f64>| {
        if let Some(point) = out
            .entry(feature.to_owned())
            .or_insert_with(|| empty.clone())
            .get_mut(day)
        {
            point.avg_s = avg;
            point.p95_s = p95;
        }
    };
    let utc_days = bounds
        .windows(2)
        .all(|w| w[0].rem_euclid(DAY_MINUTES) == 0 && w[1] - w[0] == DAY_MINUTES);
    let (Some(&start), Some(&end)) = (bounds.first(), bounds.last()) else {
        return Ok((out, bounds));
    };
    if utc_days {
        let whole = Scope {
            from: start,
            to: end,
            ..scope.clone()
        };
        let series = analysis.timeseries(&whole, Group::Feature, Some(Step::Day))?;
        for s in &series.series {
            let Some(feature) = &s.feature else { continue };
            for point in s.points.iter().filter(|p| p.count > 0) {
                let day = usize::try_from((point.minute - start) / DAY_MINUTES).unwrap_or(usize::MAX);
                set(feature, day, point.mean, point.p95);
            }
        }
    } else {
        for (day, w) in bounds.windows(2).enumerate() {
            let one = Scope {
                from: w[0],
                to: w[1],
                ..scope.clone()
            };
            let table = analysis.slowest_grouped(&one, Group::Feature, Rank::TimeConsumed, usize::MAX)?;
            for row in &table.rows {
                if let Some(feature) = &row.feature {
                    set(feature, day, Some(row.mean), Some(row.p95));
                }
            }
        }
    }
    // The charts span the history held: days before the first with runs
    // of any of the team's features (a store younger than the chart's
    // weeks) are left out of every feature's, so they stay aligned.
    let first_held = out
        .values()
        .filter_map(|days| days.iter().position(|p| p.avg_s.is_some() || p.p95_s.is_some()))
        .min()
        .unwrap_or(0);
    for days in out.values_mut() {
        days.drain(..first_held.min(days.len()));
    }
    bounds.drain(..first_held.min(bounds.len().saturating_sub(1)));
    Ok((out, bounds))
}

/// The team's slowest transactions by p95, and those that took the most
/// time, each with its share of all the team's time.
fn endpoint_rows(
    analysis: &Analysis<'_>,
    scope: &Scope,
    window_params: &[(&str, String)],
) -> Result<(Vec<EndpointRow>, Vec<EndpointRow>), BuildError> {
    let all = analysis.slowest(scope, Rank::TimeConsumed, usize::MAX)?.rows;
    let total: f64 = all.iter().map(|r| r.total_seconds).sum();
    let row = |r: &endpoints::EndpointRow| EndpointRow {
        service: r.service.clone(),
        transaction: r.transaction.clone(),
        feature: r.feature.clone(),
        count: r.count,
        avg_s: r.mean,
        p95_s: r.p95,
        p99_s: r.p99,
        share_of_time: if total > 0.0 { r.total_seconds / total } else { 0.0 },
        estimated: r.estimated,
        link: with_window(
            "/transactions",
            &[("service", &r.service), ("transaction", &r.transaction)],
            window_params,
        ),
    };
    let consumers = all.iter().take(TOP_ENDPOINTS).map(row).collect();
    let mut by_p95: Vec<&endpoints::EndpointRow> = all.iter().collect();
    by_p95.sort_by(|a, b| {
        b.p95
            .total_cmp(&a.p95)
            .then_with(|| (&a.service, &a.transaction).cmp(&(&b.service, &b.transaction)))
    });
    let slowest = by_p95.into_iter().take(TOP_ENDPOINTS).map(row).collect();
    Ok((slowest, consumers))
}

/// The group's message without the `type: ` its title starts with.
fn message_of(group: &ErrorGroup) -> &str {
    group
        .title
        .strip_prefix(group.error_type.as_str())
        .and_then(|rest| rest.strip_prefix(": "))
        .unwrap_or(&group.title)
}

fn error_row(group: &ErrorGroup, window_params: &[(&str, String)], tz: &TimeZone) -> ErrorRow {
    let (first_seen, last_seen) = seen(group, tz);
    ErrorRow {
        first_seen,
        last_seen,
        title: group.title.clone(),
        message: group.samples.first().cloned().unwrap_or_default(),
        count: group.count,
        previous_count: group.previous_count,
        new: group.new,
        regressed: group.triage.status == Status::Regressed,
        assigned_team: group.triage.assigned_team.clone().unwrap_or_default(),
        growing: false,
        servers: group
            .servers
            .iter()
            .map(|s| ServerCount {
                host: s.host.clone(),
                count: s.count,
            })
            .collect(),
        link: with_window(
            &format!("/errors/{}", format::url_component(&group.id)),
            &[],
            window_params,
        ),
    }
}

/// A group's first and last seen (over the store's history) in `tz`.
fn seen(group: &ErrorGroup, tz: &TimeZone) -> (String, String) {
    let first = local_time(
        Timestamp::from_second(group.first_seen_minute.saturating_mul(60)).ok(),
        tz,
    );
    let last = local_time(
        Timestamp::from_nanosecond(i128::from(group.last_seen))
            .ok()
            .filter(|_| group.last_seen > 0),
        tz,
    );
    (first, last)
}

/// An instant as `2026-11-29 10:03` in `tz`; empty for none.
fn local_time(instant: Option<Timestamp>, tz: &TimeZone) -> String {
    instant.map_or_else(String::new, |t| {
        t.to_zoned(tz.clone()).strftime("%Y-%m-%d %H:%M").to_string()
    })
}

/// The company-wide digest of the day `day` in `tz`: its errors grouped by
/// fingerprint, against the day before; links under `base_url` (absolute,
/// as chat needs them).
pub(crate) fn digest(
    analysis: &Analysis<'_>,
    day: &Period,
    tz: &TimeZone,
    base_url: &str,
) -> Result<Digest, BuildError> {
    let Period::Day(date) = *day else {
        return Err(BuildError::WrongPeriod {
            report: "digest",
            expected: "a day such as 2026-03-15",
            period: *day,
        });
    };
    let yesterday = Period::Day(date.yesterday().map_err(window_error(day))?);
    let (from, to) = window(day, tz)?;
    let (previous_from, previous_to) = window(&yesterday, tz)?;
    let scope = Scope::window(from, to);
    let before = Scope::window(previous_from, previous_to);
    // Ignored groups are counted apart, and out of both days' totals.
    let (ignored, groups): (Vec<ErrorGroup>, Vec<ErrorGroup>) = analysis
        .errors_against(&scope, &before)?
        .into_iter()
        .partition(|g| g.triage.status == Status::Ignored);
    let previous_total_errors = analysis
        .store
        .errors(&Filter::default(), previous_from, previous_to)
        .map_err(AnalysisError::from)?
        .iter()
        .map(|e| e.count)
        .sum::<u64>()
        .saturating_sub(ignored.iter().map(|g| g.previous_count).sum());
    let base = base_url.trim_end_matches('/');
    let absolute = base.starts_with("https://") || base.starts_with("http://");
    // Links open the digest's own day, in its time zone, not the UI's
    // default window (the last 24 hours when the link is followed).
    let window_params = [("since", rfc3339(from)), ("until", rfc3339(to))];
    let mut digest = Digest {
        window: window_params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
        day: date.to_string(),
        time_zone: tz.iana_name().unwrap_or("UTC").to_owned(),
        base_url: base_url.to_owned(),
        total_errors: groups.iter().map(|g| g.count).sum(),
        previous_total_errors,
        late: None,
        ignored_groups: ignored.len() as u64,
        ignored_errors: ignored.iter().map(|g| g.count).sum(),
        problems: Vec::new(),
        groups: groups
            .iter()
            .map(|g| {
                let (first_seen, last_seen) = seen(g, tz);
                DigestGroup {
                    fingerprint_id: g.id.clone(),
                    error_type: g.error_type.clone(),
                    title: message_of(g).to_owned(),
                    sample_message: g.samples.first().cloned().unwrap_or_default(),
                    total: g.count,
                    previous_total: g.previous_count,
                    new: g.new,
                    regressed: g.triage.status == Status::Regressed,
                    assigned_team: g.triage.assigned_team.clone().unwrap_or_default(),
                    servers: g
                        .servers
                        .iter()
                        .map(|s| digest::ServerCount {
                            host: s.host.clone(),
                            service: s.service.clone(),
                            count: s.count,
                        })
                        .collect(),
                    first_seen,
                    last_seen,
                    link: if absolute {
                        let path = with_window(
                            &format!("/errors/{}", format::url_component(&g.id)),
                            &[],
                            &window_params,
                        );
                        format!("{base}{path}")
                    } else {
                        String::new()
                    },
                }
            })
            .collect(),
    };
    digest.problems = analysis
        .problems(&scope)?
        .open()
        .filter(|p| p.new)
        .take(digest::MAX_PROBLEMS)
        .map(|p| digest::DigestProblem {
            id: p.id.clone(),
            title: p.title.clone(),
            what: p.what(),
            service: p.service.clone(),
            transaction: p.transaction.clone(),
            cost_per_run: format::duration(p.cost_per_run),
            time_a_day: format::duration(p.seconds_per_day),
            link: if absolute {
                let path = with_window(
                    &format!("/problems/{}", format::url_component(&p.id)),
                    &[],
                    &window_params,
                );
                format!("{base}{path}")
            } else {
                String::new()
            },
        })
        .collect();
    digest.sort_groups();
    Ok(digest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::histogram::Histogram;
    use crate::owners::Owners;
    use crate::store::sqlite::SqliteStore;
    use crate::store::{Batch, ErrorPoint, HistogramPoint, SeriesKey, Store};

    const OWNERS: &str =
        "[teams.pay]\ndisplay_name = \"Pay & Bill\"\n[teams.other]\n[features.checkout]\nteam = \"pay\"\n\
                          [features.search]\nteam = \"other\"\n";

    fn key(transaction: &str, feature: &str) -> SeriesKey {
        SeriesKey {
            service: "shop".into(),
            host: "h1".into(),
            transaction: transaction.into(),
            feature: feature.into(),
            kind: "web".into(),
            environment: String::new(),
        }
    }

    fn point(key: &SeriesKey, minute: i64, seconds: &[f64]) -> HistogramPoint {
        let mut histogram = Histogram::empty();
        for s in seconds {
            histogram.record(*s).unwrap();
        }
        HistogramPoint {
            key: key.clone().into(),
            minute,
            histogram,
        }
    }

    fn store(name: &str) -> (SqliteStore, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("kuroko-build-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        (SqliteStore::open(&dir.join("kuroko.db")).unwrap(), dir)
    }

    /// 2026-03-09, a Monday, 00:00 UTC, in minutes.
    const MONDAY: i64 = 20_521 * DAY_MINUTES;

    #[test]
    fn a_week_in_utc_and_the_same_week_by_local_days_give_the_same_numbers() {
        let (store, dir) = store("week");
        let checkout = key("POST /pay", "checkout");
        let search = key("GET /search", "search");
        let mut histograms = Vec::new();
        // The week before at 100 ms, this week (2026-W11) at 200 ms; each day
        // at noon, so the UTC and the Berlin day hold the same runs.
        for day in -7..7 {
            let seconds = if day < 0 { [0.1; 4] } else { [0.2; 4] };
            histograms.push(point(&checkout, MONDAY + day * DAY_MINUTES + 720, &seconds));
            histograms.push(point(&search, MONDAY + day * DAY_MINUTES + 720, &[1.0]));
        }
        store
            .write(&Batch {
                histograms,
                ..Batch::default()
            })
            .unwrap();
        // The team's service was deployed on the week's Wednesday at 14:00
        // (after a version seen the week before); another service too.
        let seen = |service: &str, version: &str, first_minute| crate::store::deploys::VersionSeen {
            service: service.into(),
            environment: String::new(),
            version: version.into(),
            first_minute,
        };
        crate::store::deploys::Deploys::versions_seen(
            &store,
            &[
                seen("shop", "1.0", MONDAY - 7 * DAY_MINUTES),
                seen("shop", "1.1", MONDAY + 2 * DAY_MINUTES + 14 * 60),
                seen("elsewhere", "3", MONDAY - 7 * DAY_MINUTES),
                seen("elsewhere", "4", MONDAY + DAY_MINUTES),
            ],
        )
        .unwrap();
        let owners = Owners::parse(OWNERS, "owners.toml").unwrap();
        let analysis = Analysis::new(&store, &owners);
        let week: Period = "2026-W11".parse().unwrap();
        let utc = weekly(&analysis, "pay", &week, &TimeZone::UTC, "https://k.example").unwrap();
        let berlin_tz = TimeZone::get("Europe/Berlin").unwrap();
        let berlin = weekly(&analysis, "pay", &week, &berlin_tz, "https://k.example").unwrap();

        assert_eq!(
            (utc.week_start.as_str(), utc.week_end.as_str()),
            ("2026-03-09", "2026-03-15")
        );
        let names: Vec<&str> = utc.features.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["checkout"], "only the team's features");
        // The deploys of the team's services that week, and only those.
        let deploys: Vec<String> = utc.deploys.iter().map(|d| d.text()).collect();
        assert_eq!(deploys, ["shop 1.1 (after 1.0), first seen 2026-03-11 14:00"]);
        assert!(crate::report::weekly::render_text(&utc).contains("DEPLOYS THIS WEEK\n- shop 1.1 (after 1.0)"));
        // People read the team's display name (docs/owners.md).
        assert_eq!((utc.team.as_str(), utc.team_label()), ("pay", "Pay & Bill"));
        let subject = crate::report::weekly::subject(&utc);
        assert!(subject.contains("Kuroko weekly: Pay & Bill,"), "{subject}");
        assert!(crate::report::weekly::render_text(&utc).contains("Weekly performance: Pay & Bill"));
        let f = &utc.features[0];
        assert_eq!(
            f.p95_change.map(|c| (c * 100.0).round()),
            Some(100.0),
            "200 ms against 100 ms"
        );
        assert!((f.throughput_per_min - 28.0 / 10_080.0).abs() < 1e-12);
        // Two weeks held: the chart spans them, not six weeks mostly empty.
        assert_eq!(f.daily.len(), 14, "the fortnight held");
        assert_eq!((f.daily[0].day.as_str(), f.daily[13].day.as_str()), ("03-02", "03-15"));
        assert!(f.daily.iter().all(|d| d.p95_s.is_some()), "a point every day");
        assert!(
            f.link.starts_with("/features/checkout?since=2026-03-09T00%3A00%3A00Z"),
            "{}",
            f.link
        );
        // The chart marks shop's deploy on its day (Wednesday 03-11), not
        // the other service's.
        let marked = [ChartDeploy {
            day: 9,
            label: "shop 1.1".into(),
        }];
        assert_eq!(f.deploys, marked);
        assert!(
            crate::report::weekly::chart_alt(f).contains("deploys marked: shop 1.1 on 03-11"),
            "{}",
            crate::report::weekly::chart_alt(f)
        );
        // The per-local-day path (Berlin) agrees with the UTC day steps.
        assert_eq!(berlin.features[0].daily, f.daily);
        assert_eq!(berlin.features[0].deploys, marked);
        assert_eq!(utc.slowest.len(), 1);
        assert_eq!(utc.slowest[0].count, 28);
        assert!((utc.slowest[0].share_of_time - 1.0).abs() < 1e-12);
        assert_eq!(
            utc.slowest[0].link,
            "/transactions?service=shop&transaction=POST%20%2Fpay&since=2026-03-09T00%3A00%3A00Z&until=2026-03-16T00%3A00%3A00Z"
        );
        assert!(matches!(
            weekly(&analysis, "nobody", &week, &TimeZone::UTC, ""),
            Err(BuildError::Analysis(AnalysisError::Scope(_)))
        ));
        assert!(matches!(
            weekly(&analysis, "pay", &"2026-03-09".parse().unwrap(), &TimeZone::UTC, ""),
            Err(BuildError::WrongPeriod { .. })
        ));
        drop(store);
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn error(key: &SeriesKey, minute: i64, error_type: &str, message: &str, count: u64) -> ErrorPoint {
        ErrorPoint {
            key: key.clone(),
            minute,
            error_type: error_type.into(),
            message: message.into(),
            location: "src/x.rs:1".into(),
            fingerprint: String::new(),
            count,
            last_seen: u64::try_from(minute).unwrap() * 60_000_000_000,
            stacktrace: String::new(),
            trace_id: String::new(),
        }
    }

    #[test]
    fn the_digest_takes_the_local_day_against_the_one_before() {
        let (store, dir) = store("digest");
        let k = key("POST /pay", "checkout");
        // 2026-03-09 in Tokyo (UTC+9) is 2026-03-08T15:00Z..2026-03-09T15:00Z.
        let day_start = MONDAY - 9 * 60;
        store
            .write(&Batch {
                errors: vec![
                    error(&k, day_start + 10, "Timeout", "upstream timed out", 5),
                    error(&k, day_start - 10, "Timeout", "upstream timed out", 2),
                    error(&k, day_start + 20, "Gone", "order 42 not found", 3),
                    // The next local day: not in the digest.
                    error(&k, day_start + DAY_MINUTES + 5, "Late", "later", 7),
                ],
                ..Batch::default()
            })
            .unwrap();
        let owners = Owners::parse(OWNERS, "owners.toml").unwrap();
        let analysis = Analysis::new(&store, &owners);
        let tokyo = TimeZone::get("Asia/Tokyo").unwrap();
        let d = digest(&analysis, &"2026-03-09".parse().unwrap(), &tokyo, "https://k.example/").unwrap();
        assert_eq!((d.day.as_str(), d.time_zone.as_str()), ("2026-03-09", "Asia/Tokyo"));
        assert_eq!((d.total_errors, d.previous_total_errors), (8, 2));
        let summary: Vec<(&str, u64, u64, bool)> = d
            .groups
            .iter()
            .map(|g| (g.error_type.as_str(), g.total, g.previous_total, g.new))
            .collect();
        assert_eq!(summary, [("Gone", 3, 0, true), ("Timeout", 5, 2, false)], "new first");
        let gone = &d.groups[0];
        assert_eq!(gone.sample_message, "order 42 not found");
        assert_eq!(gone.servers[0].host, "h1");
        assert_eq!(gone.first_seen, "2026-03-09 00:20");
        // The link opens Tokyo's 9 March, whenever it is followed.
        let window = "since=2026-03-08T15%3A00%3A00Z&until=2026-03-09T15%3A00%3A00Z";
        assert_eq!(
            gone.link,
            format!("https://k.example/errors/{}?{window}", gone.fingerprint_id)
        );
        assert_eq!(d.full_list_url(), format!("https://k.example/errors?{window}"));
        drop(store);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_weekly_email_marks_regressed_groups_with_their_team_and_leaves_ignored_ones_out() {
        use crate::store::triage::{ErrorTriage, Triage, TriageStatus};
        let (store, dir) = store("weekly-triage");
        let k = key("POST /pay", "checkout");
        let noon = |day: i64| MONDAY + day * DAY_MINUTES + 720;
        store
            .write(&Batch {
                errors: vec![
                    // Fewer than the week before, but back after it was resolved.
                    error(&k, noon(-3), "Timeout", "upstream timed out", 9),
                    error(&k, noon(2), "Timeout", "upstream timed out", 5),
                    // New, and ignored.
                    error(&k, noon(3), "Noise", "client went away", 40),
                ],
                ..Batch::default()
            })
            .unwrap();
        let owners = Owners::parse(OWNERS, "owners.toml").unwrap();
        let analysis = Analysis::new(&store, &owners);
        let groups = analysis
            .errors(&Scope::window(MONDAY, MONDAY + 7 * DAY_MINUTES))
            .unwrap();
        let id = |error_type: &str| groups.iter().find(|g| g.error_type == error_type).unwrap().id.clone();
        let decide = |group: String, status, team: Option<&str>| {
            store
                .triage_put(&Triage {
                    group,
                    status,
                    // Monday, before this week's errors.
                    at: MONDAY * 60,
                    team: team.map(str::to_owned),
                    by: "test".into(),
                    ..Triage::default()
                })
                .unwrap();
        };
        decide(id("Timeout"), TriageStatus::Resolved, Some("pay"));
        decide(id("Noise"), TriageStatus::Ignored, None);
        let week: Period = "2026-W11".parse().unwrap();
        let report = weekly(&analysis, "pay", &week, &TimeZone::UTC, "https://k.example").unwrap();
        let rows: Vec<(&str, bool, bool, &str)> = report
            .errors
            .iter()
            .map(|e| (e.title.as_str(), e.new, e.regressed, e.assigned_team.as_str()))
            .collect();
        assert_eq!(rows, [("Timeout: upstream timed out", false, true, "pay")]);
        assert_eq!(report.ignored_groups, 1);
        let text = crate::report::weekly::render_text(&report);
        assert!(text.contains("[regressed] Timeout"), "{text}");
        assert!(
            text.contains("first seen 2026-03-06 12:00, last seen 2026-03-11 12:00"),
            "over the whole history: {text}"
        );
        assert!(
            text.contains("assigned to pay") && text.contains("1 ignored error group is not listed."),
            "{text}"
        );
        assert!(!text.contains("Noise"), "{text}");
        drop(store);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
