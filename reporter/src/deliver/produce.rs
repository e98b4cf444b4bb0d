//! Producing a report's content: the [`Job`] the runner asks for, the
//! [`Outgoing`] email and chat messages made for it, and the producers that
//! make them (from the store through the analysis layer, or empty ones for
//! tests of the delivery machinery).

use std::sync::Arc;

use jiff::tz::TimeZone;
use jiff::Timestamp;
use lettre::Message;

use super::mime::html_message;
use super::schedule::{Period, Report};
use super::Channel;
use crate::analysis::problems::Thresholds;
use crate::analysis::Analysis;
use crate::owners::Owners;
use crate::report::late::{self, Late};
use crate::report::mail;
use crate::report::{build, chart, digest, weekly};
use crate::store::Store;

/// What a producer is asked to make.
#[derive(Clone, Debug)]
pub struct Job {
    /// Which report.
    pub report: Report,
    /// The team it is for; `None` for the company-wide digest.
    pub team: Option<String>,
    /// What it covers.
    pub period: Period,
    /// When it was scheduled.
    pub scheduled_at: Timestamp,
    /// Set when it goes out late: what to say about it.
    pub late: Option<Late>,
    /// The channels it will be sent over (build only these).
    pub channels: Vec<Channel>,
    /// The email's recipients.
    pub email_to: Vec<String>,
    /// The email's sender (`[smtp] from`; empty without `[smtp]`).
    pub from: String,
    /// The web UI's address, for links.
    pub base_url: String,
    /// The schedule's time zone.
    pub time_zone: TimeZone,
    /// Its name, for showing.
    pub time_zone_name: String,
}

/// What a producer made: an email and/or chat messages, per the job's channels.
#[derive(Clone, Debug, Default)]
pub struct Outgoing {
    /// The email, addressed to `Job::email_to` from `Job::from`.
    pub email: Option<Message>,
    /// Chat payloads, posted in order.
    pub chat: Vec<serde_json::Value>,
}

/// Why a producer could not make a report.
pub type ProduceError = Box<dyn std::error::Error + Send + Sync>;

/// Makes the content of a job; runs on a blocking thread.
pub type Producer = Arc<dyn Fn(&Job) -> Result<Outgoing, ProduceError> + Send + Sync>;

/// The producer `kuroko serve` and `kuroko report … --send` use: each job's
/// report built from `store` by the analysis layer
/// ([`crate::report::build`]), with features and teams from `owners`, and
/// rendered for the job's channels.
pub fn analysis_producer(store: Arc<dyn Store>, owners: Arc<Owners>) -> Producer {
    analysis_producer_with(store, owners, Arc::new(Thresholds::default()))
}

/// [`analysis_producer`] finding performance problems with `problems`
/// (`[problems]` of `kuroko.toml`) rather than the defaults.
pub fn analysis_producer_with(store: Arc<dyn Store>, owners: Arc<Owners>, problems: Arc<Thresholds>) -> Producer {
    Arc::new(move |job: &Job| {
        let analysis = Analysis::new(store.as_ref(), &owners).with_problem_thresholds(&problems);
        match job.report {
            Report::Weekly => {
                let team = job.team.as_deref().ok_or("the weekly report is made for a team")?;
                let report = build::weekly(&analysis, team, &job.period, &job.time_zone, &job.base_url)?;
                weekly_outgoing(report, job)
            }
            Report::Digest => {
                let view = build::digest(&analysis, &job.period, &job.time_zone, &job.base_url)?;
                digest_outgoing(view, job)
            }
        }
    })
}

/// A producer that makes each report from empty view models, for tests of
/// the delivery machinery that need no data.
pub fn placeholder_producer() -> Producer {
    Arc::new(|job: &Job| match job.report {
        Report::Weekly => {
            let report = weekly::WeeklyReport {
                team: job.team.clone().unwrap_or_default(),
                week_start: job.period.first_day()?.to_string(),
                week_end: job.period.end_day()?.yesterday()?.to_string(),
                base_url: job.base_url.clone(),
                ..weekly::WeeklyReport::default()
            };
            weekly_outgoing(report, job)
        }
        Report::Digest => {
            let view = digest::Digest {
                day: job.period.to_string(),
                time_zone: job.time_zone_name.clone(),
                base_url: job.base_url.clone(),
                ..digest::Digest::default()
            };
            digest_outgoing(view, job)
        }
    })
}

/// The weekly report as the job's email, charts inline, marked late when
/// the job is.
fn weekly_outgoing(mut report: weekly::WeeklyReport, job: &Job) -> Result<Outgoing, ProduceError> {
    report.late = job.late.clone();
    let mut out = Outgoing::default();
    if job.channels.contains(&Channel::Email) {
        let charts = chart::render_charts(&report)?;
        out.email = Some(mail::build_message(&report, &job.email_to, &job.from, &charts)?);
    }
    Ok(out)
}

/// The digest's subject line.
fn digest_subject(view: &digest::Digest) -> String {
    let day: String = view.day.chars().filter(|c| !c.is_control()).collect();
    late::subject(view.late.as_ref(), format!("Kuroko error digest for {day}"))
}

/// The digest as the job's chat messages and email, marked late when the
/// job is.
fn digest_outgoing(mut view: digest::Digest, job: &Job) -> Result<Outgoing, ProduceError> {
    view.late = job.late.clone();
    let view = &view;
    let mut out = Outgoing::default();
    if job.channels.contains(&Channel::Chat) {
        out.chat = digest::slack_messages(view, digest::SlackLimits::default());
    }
    if job.channels.contains(&Channel::Email) {
        out.email = Some(html_message(
            &job.from,
            &job.email_to,
            &digest_subject(view),
            &digest::render_text(view),
            Some(digest::render_html(view)),
        )?);
    }
    Ok(out)
}
