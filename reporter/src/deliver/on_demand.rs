//! Reports on demand, outside the schedule: `kuroko report weekly|digest
//! --send` ([`Runner::send_now`]) and `--preview` ([`write_preview`]), and
//! which period they cover.

use std::path::{Path, PathBuf};

use jiff::Timestamp;

use super::ledger::LedgerEntry;
use super::produce::ProduceError;
use super::schedule::{self, Period, Report, Schedule, ScheduleConfig, LATE_AFTER};
use super::settings::{DeliverError, Settings};
use super::{Channel, Origin, Runner, Target};
use crate::analysis::Analysis;
use crate::report::mail;
use crate::report::{build, chart, digest};
use crate::store::Store;

impl Runner {
    /// Sends `report` now, for `kuroko report weekly|digest --send`: for
    /// every target (or only `team`), the `period` given or else the latest
    /// scheduled one. Claims through the ledger like the schedule does, so
    /// it cannot double-send with a running `kuroko serve`; `force` resends
    /// what was already sent. Returns the rows written; an empty list means
    /// everything was already sent (or is being sent).
    pub async fn send_now(
        &self,
        report: Report,
        team: Option<&str>,
        period: Option<Period>,
        force: bool,
        now: Timestamp,
    ) -> Result<Vec<LedgerEntry>, DeliverError> {
        let settings = &self.inner.settings;
        let cadence = cadence_or_default(settings, report)?;
        let (period, scheduled_at) = match period {
            Some(period) => {
                check_period(report, &period)?;
                (period, cadence.scheduled_for(&period).unwrap_or(now))
            }
            None => cadence
                .latest(now)
                .ok_or_else(|| DeliverError::Usage("no scheduled period before now".to_owned()))?,
        };
        let due = schedule::Due {
            period,
            scheduled_at,
            late: now.duration_since(scheduled_at) > LATE_AFTER,
        };
        let mut targets = self.targets(report);
        if let Some(team) = team {
            if report == Report::Digest {
                return Err(DeliverError::Usage(
                    "the digest is company-wide; --team applies to weekly".into(),
                ));
            }
            targets.retain(|t| t.name == team);
            if targets.is_empty() {
                return Err(DeliverError::Usage(format!("no team {team:?} in the owners file")));
            }
        }
        let previous = self.inner.store.ledger(now.as_second() - 400 * 86_400)?;
        let targets: Vec<(Target, Vec<Channel>)> = targets
            .into_iter()
            .map(|t| {
                let channels = t.channels(settings.smtp.is_some());
                (t, channels)
            })
            .filter(|(_, channels)| !channels.is_empty())
            .collect();
        if targets.is_empty() {
            return Err(DeliverError::Usage(format!(
                "nothing to send the {report} report to: {}",
                match report {
                    Report::Weekly => "no team in the owners file has email addresses, or there is no [smtp]",
                    Report::Digest => "[digest] has no webhook_env set in the environment and no email (with [smtp])",
                }
            )));
        }
        let mut written = Vec::new();
        for (target, channels) in targets {
            written.extend(
                self.deliver(
                    report,
                    target,
                    channels,
                    due.clone(),
                    now,
                    Origin::Command { force },
                    &previous,
                )
                .await,
            );
        }
        Ok(written)
    }
}

/// Checks that `period` is what `report` covers: an ISO week for weekly, a
/// day for the digest.
pub fn check_period(report: Report, period: &Period) -> Result<(), DeliverError> {
    match (report, period) {
        (Report::Weekly, Period::Week { .. }) | (Report::Digest, Period::Day(_)) => Ok(()),
        _ => Err(DeliverError::Usage(format!(
            "the {report} report covers {}, not {period}",
            if report == Report::Weekly {
                "an ISO week such as 2026-W11"
            } else {
                "a day such as 2026-03-15"
            }
        ))),
    }
}

/// `report`'s cadence, or its default one (in the configured time zone)
/// when the schedule has it off: it still says which period is the latest.
fn cadence_or_default(settings: &Settings, report: Report) -> Result<schedule::Cadence, DeliverError> {
    if let Some(cadence) = settings.schedule.cadence(report) {
        return Ok(cadence.clone());
    }
    Schedule::from_config(&ScheduleConfig {
        time_zone: settings.schedule.time_zone_name.clone(),
        ..ScheduleConfig::default()
    })?
    .cadence(report)
    .cloned()
    .ok_or_else(|| DeliverError::Usage("no default schedule".to_owned()))
}

/// The latest period of `report` scheduled at or before `now`.
pub fn latest_period(settings: &Settings, report: Report, now: Timestamp) -> Result<Period, DeliverError> {
    cadence_or_default(settings, report)?
        .latest(now)
        .map(|(period, _)| period)
        .ok_or_else(|| DeliverError::Usage("no scheduled period before now".to_owned()))
}

/// Writes into `dir` (created if missing) what would be sent for `report`
/// over `period`, sending nothing, and returns the files written: for the
/// weekly report of `team`, `report.html`, `report.txt` and the charts
/// ([`mail::write_preview`]); for the digest, `digest.txt`, `digest.html`
/// and the chat payloads `slack-1.json`, ….
pub fn write_preview(
    store: &dyn Store,
    settings: &Settings,
    report: Report,
    team: Option<&str>,
    period: Period,
    dir: &Path,
) -> Result<Vec<PathBuf>, ProduceError> {
    check_period(report, &period)?;
    let analysis = Analysis::new(store, &settings.owners).with_problem_thresholds(&settings.problems);
    let tz = &settings.schedule.time_zone;
    match report {
        Report::Weekly => {
            let team =
                team.ok_or_else(|| DeliverError::Usage("--team is needed to preview the weekly report".into()))?;
            let view = build::weekly(&analysis, team, &period, tz, &settings.base_url)?;
            let charts = chart::render_charts(&view)?;
            Ok(mail::write_preview(dir, &view, &charts)?)
        }
        Report::Digest => {
            if team.is_some() {
                return Err(DeliverError::Usage("the digest is company-wide; --team applies to weekly".into()).into());
            }
            let view = build::digest(&analysis, &period, tz, &settings.base_url)?;
            std::fs::create_dir_all(dir)?;
            let mut files: Vec<(String, String)> = vec![
                ("digest.txt".into(), digest::render_text(&view)),
                ("digest.html".into(), digest::render_html(&view)),
            ];
            for (i, message) in digest::slack_messages(&view, digest::SlackLimits::default())
                .iter()
                .enumerate()
            {
                files.push((format!("slack-{}.json", i + 1), serde_json::to_string_pretty(message)?));
            }
            let mut written = Vec::with_capacity(files.len());
            for (name, contents) in files {
                let path = dir.join(name);
                std::fs::write(&path, contents)?;
                written.push(path);
            }
            Ok(written)
        }
    }
}
