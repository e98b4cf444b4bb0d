//! Delivery: sending reports on a schedule and alerts when rules fire, so
//! that people can trust what arrives — once, on time or marked late, and
//! with failures kept where they can be seen.
//!
//! The pieces: [`schedule`] says which period of which report is due;
//! [`ledger`] (a table in the store) makes each delivery happen once across
//! restarts, replicas and `kuroko report … --send`; [`alerts`] evaluates
//! rules. The [`Runner`] ties them together: every minute `kuroko serve`
//! calls [`Runner::tick`], which for each due report and target claims the
//! delivery in the ledger, asks the [`Producer`] for the content
//! ([`analysis_producer`] builds it from the store through
//! [`crate::report::build`]; the runner itself only knows "a job that
//! produces something to send"), sends it — email through
//! [`crate::report::mail::send`] on a blocking thread, chat through
//! [`crate::report::webhook::post_json`], both retried with backoff — and
//! records the outcome. Every target and channel is delivered on its own
//! task: a dead SMTP server delays nothing but its own emails.
//!
//! Where each part lives: this file, the runner and its scheduling pass
//! (what is due, claiming it, one task per target); `settings.rs` what it
//! reads from the configuration; `produce.rs` the [`Job`] and the producers
//! that make its content; `send.rs` one round over email and chat;
//! `record.rs` its outcome in the ledger; `mime.rs` the email messages;
//! `notify.rs` the alert pass; `on_demand.rs` `kuroko report … --send` and
//! `--preview`.
//!
//! A delivery is one report to one target over one channel, e.g. the weekly
//! report to `payments:email`, the digest to `company:chat`. A failed round
//! is recorded `retrying` and tried again once the claim's lease has run out
//! (15 minutes), up to [`Settings::max_rounds`] rounds; a refusal that would
//! not change (a bad address, a revoked webhook) is recorded `failed` at once.
//!
//! ```toml
//! owners = "owners.toml"                   # teams, their emails and chat webhooks
//! base_url = "https://kuroko.example.com"  # links in reports
//! [schedule]                               # see `schedule`
//! time_zone = "Europe/Berlin"
//! [smtp]                                   # see `report::mail::SmtpConfig`
//! host = "smtp.example.com"
//! from = "Kuroko <kuroko@example.com>"
//! password_file = "/run/secrets/smtp"
//! [digest]                                 # the company-wide morning digest
//! webhook_env = "KUROKO_DIGEST_WEBHOOK"
//! email = ["dev@example.com"]
//! [delivery]                               # after downtime: missed periods sent late
//! catch_up_weeks = 4                       # (oldest first; older ones recorded skipped)
//! catch_up_days = 7
//! ```

pub mod alerts;
pub mod ledger;
mod mime;
mod notify;
mod on_demand;
mod produce;
mod record;
pub mod schedule;
mod send;
mod settings;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use jiff::Timestamp;

use crate::config::Secret;
use crate::report::late::Late;
use crate::store::Store;
use ledger::LedgerEntry;
use record::Sending;
use schedule::{Period, Report, LATE_AFTER};

pub use mime::{html_message, plain_message};
pub use on_demand::{check_period, latest_period, write_preview};
pub use produce::{
    analysis_producer, analysis_producer_with, placeholder_producer, Job, Outgoing, ProduceError, Producer,
};
pub use settings::{DeliverError, DeliveryConfig, DigestDelivery, Settings};

/// How a delivery reaches people.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Channel {
    /// Email over SMTP.
    Email,
    /// A chat webhook.
    Chat,
}

impl Channel {
    /// `email` or `chat`.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Chat => "chat",
        }
    }
}

/// The name of the company-wide digest's target in the ledger.
pub(crate) const COMPANY: &str = "company";

/// The ledger's target for `name` over `channel`, e.g. `payments:email`.
pub(crate) fn target_key(name: &str, channel: Channel) -> String {
    format!("{name}:{}", channel.as_str())
}

/// One target of a report: who, and over which channels.
#[derive(Clone, Debug)]
struct Target {
    name: String,
    team: Option<String>,
    email_to: Vec<String>,
    webhook: Option<Secret>,
}

impl Target {
    fn channels(&self, smtp: bool) -> Vec<Channel> {
        let mut channels = Vec::new();
        if smtp && !self.email_to.is_empty() {
            channels.push(Channel::Email);
        }
        if self.webhook.is_some() {
            channels.push(Channel::Chat);
        }
        channels
    }
}

type Lookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Runs deliveries: see the [module documentation](self). Cheap to clone.
#[derive(Clone)]
pub struct Runner {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    settings: Settings,
    producer: Producer,
    holder: String,
    env: Lookup,
    alerts_pass: tokio::sync::Mutex<()>,
}

impl Runner {
    /// A runner sending what `producer` makes, claiming as `holder` (unique
    /// per process, e.g. [`holder_id`]).
    pub fn new(store: Arc<dyn Store>, settings: Settings, producer: Producer, holder: impl Into<String>) -> Runner {
        if settings.smtp.is_none()
            && (settings.owners.teams().any(|t| !t.email.is_empty()) || !settings.digest.email.is_empty())
        {
            tracing::warn!("email recipients are configured but there is no [smtp] section: no email will be sent");
        }
        Runner {
            inner: Arc::new(Inner {
                store,
                settings,
                producer,
                holder: holder.into(),
                env: Arc::new(|name| std::env::var(name).ok()),
                alerts_pass: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// The same runner reading environment variables (webhook URLs) through
    /// `lookup`.
    pub fn with_env(self, lookup: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Runner {
        let inner = &self.inner;
        Runner {
            inner: Arc::new(Inner {
                store: inner.store.clone(),
                settings: inner.settings.clone(),
                producer: inner.producer.clone(),
                holder: inner.holder.clone(),
                env: Arc::new(lookup),
                alerts_pass: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// The targets of `report`: each team with addresses (weekly), or the
    /// company (digest).
    fn targets(&self, report: Report) -> Vec<Target> {
        let s = &self.inner.settings;
        match report {
            Report::Weekly => s
                .owners
                .teams()
                .map(|team| Target {
                    name: team.name.clone(),
                    team: Some(team.name.clone()),
                    email_to: team.email.clone(),
                    webhook: None,
                })
                .collect(),
            Report::Digest => {
                let webhook = s
                    .digest
                    .webhook_env
                    .as_deref()
                    .and_then(|name| (self.inner.env)(name))
                    .map(|url| url.trim().to_owned())
                    .filter(|url| !url.is_empty())
                    .map(Secret::new);
                vec![Target {
                    name: COMPANY.to_owned(),
                    team: None,
                    email_to: s.digest.email.clone(),
                    webhook,
                }]
            }
        }
    }

    /// One pass: sends every report due at `now` and evaluates the alert
    /// rules; returns the ledger rows it wrote. Deliveries run concurrently;
    /// this returns when all have finished.
    pub async fn tick(&self, now: Timestamp) -> Vec<LedgerEntry> {
        let (mut reports, alerts) = tokio::join!(self.run_schedule(now), self.run_alerts(now));
        reports.extend(alerts);
        reports
    }

    async fn run_schedule(&self, now: Timestamp) -> Vec<LedgerEntry> {
        let inner = &self.inner;
        let since = now.as_second() - 60 * 86_400;
        let entries = match inner.store.ledger(since) {
            Ok(entries) => entries,
            Err(error) => {
                tracing::error!(%error, "reading the delivery ledger failed; no report sent this minute");
                return Vec::new();
            }
        };
        let mut tasks = tokio::task::JoinSet::new();
        for report in [Report::Weekly, Report::Digest] {
            let Some(cadence) = inner.settings.schedule.cadence(report) else {
                continue;
            };
            for target in self.targets(report) {
                let work = self.work(cadence, &target, &entries, now);
                if work.due.is_empty() && work.skipped.is_empty() {
                    continue;
                }
                let runner = self.clone();
                let entries = entries.clone();
                tasks.spawn(async move {
                    let mut written = Vec::new();
                    for (channel, due) in work.skipped {
                        written.extend(runner.skip(report, &target, channel, &due, now));
                    }
                    // Oldest first, one period after the other.
                    for (due, channels) in work.due.into_values() {
                        let origin = Origin::Schedule;
                        written.extend(
                            runner
                                .deliver(report, target.clone(), channels, due, now, origin, &entries)
                                .await,
                        );
                    }
                    written
                });
            }
        }
        let mut written = Vec::new();
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok(rows) => written.extend(rows),
                Err(error) => tracing::error!(%error, "a delivery task failed"),
            }
        }
        written
    }

    /// What the schedule has for `target` at `now`: per period (oldest
    /// first) the channels it is due over, and the (channel, period) pairs
    /// missed past the catch-up, to record skipped. Periods whose delivery
    /// is settled in `entries` are left out.
    fn work(&self, cadence: &schedule::Cadence, target: &Target, entries: &[LedgerEntry], now: Timestamp) -> Work {
        let settings = &self.inner.settings;
        let report = cadence.report();
        let (catch_up, _) = settings.delivery.catch_up(report);
        let mut work = Work::default();
        for channel in target.channels(settings.smtp.is_some()) {
            let key = target_key(&target.name, channel);
            let last = ledger::last_sent::<Period>(entries, report.as_str(), &key);
            let mut backlog = cadence.backlog(last.as_ref(), now, catch_up);
            if backlog.due.is_empty() {
                backlog.due.extend(open_round(cadence, entries, report, &key, now));
            }
            let settled = |due: &schedule::Due| {
                ledger::find(entries, report.as_str(), &key, &due.period.to_string())
                    .is_some_and(|e| e.status.is_final())
            };
            for due in backlog.due.into_iter().filter(|due| !settled(due)) {
                work.due
                    .entry(due.period)
                    .or_insert_with(|| (due, Vec::new()))
                    .1
                    .push(channel);
            }
            let skipped = backlog.skipped.into_iter().filter(|due| !settled(due));
            work.skipped.extend(skipped.map(|due| (channel, due)));
        }
        work
    }

    /// Claims (unless forced), produces once, sends over every claimed
    /// channel concurrently, and records each outcome.
    #[allow(clippy::too_many_arguments)]
    async fn deliver(
        &self,
        report: Report,
        target: Target,
        channels: Vec<Channel>,
        due: schedule::Due,
        now: Timestamp,
        origin: Origin,
        previous: &[LedgerEntry],
    ) -> Vec<LedgerEntry> {
        let inner = &self.inner;
        let period = due.period.to_string();
        let force = origin == Origin::Command { force: true };
        let claimed = self.claim_all(report.as_str(), &target, channels, &period, now, force);
        if claimed.is_empty() {
            return Vec::new();
        }
        let settings = &inner.settings;
        let retried = claimed.iter().any(|&channel| {
            let key = target_key(&target.name, channel);
            ledger::find(previous, report.as_str(), &key, &period).is_some_and(|e| e.rounds > 0)
        });
        let job = Job {
            report,
            team: target.team.clone(),
            period: due.period,
            scheduled_at: due.scheduled_at,
            // Sent by hand, it was asked for as it is: only the schedule's
            // late deliveries say so in their content (the ledger marks all).
            late: (due.late && origin == Origin::Schedule)
                .then(|| late_notice(&due, &settings.schedule.time_zone, retried)),
            channels: claimed.clone(),
            email_to: target.email_to.clone(),
            from: settings.smtp.as_ref().map(|s| s.from.clone()).unwrap_or_default(),
            base_url: settings.base_url.clone(),
            time_zone: settings.schedule.time_zone.clone(),
            time_zone_name: settings.schedule.time_zone_name.clone(),
        };
        let started = Instant::now();
        let producer = inner.producer.clone();
        let produced = tokio::task::spawn_blocking(move || producer(&job))
            .await
            .map_err(|e| e.to_string())
            .and_then(|made| made.map_err(|e| format!("producing the report: {e}")));
        let sending = Sending {
            kind: report.as_str(),
            period: &period,
            scheduled_at: due.scheduled_at,
            late: due.late,
            now,
            started,
            previous,
        };
        self.send_and_record(&target, &claimed, produced, &sending).await
    }

    /// The channels of `target` this runner may send `(kind, period)` over.
    fn claim_all(
        &self,
        kind: &str,
        target: &Target,
        channels: Vec<Channel>,
        period: &str,
        now: Timestamp,
        force: bool,
    ) -> Vec<Channel> {
        channels
            .into_iter()
            .filter(|&channel| {
                let key = target_key(&target.name, channel);
                let claimed = force || self.claim(kind, &key, period, now);
                if !claimed {
                    tracing::debug!(kind, target = %key, period, "already sent or being sent");
                }
                claimed
            })
            .collect()
    }

    /// Claims a delivery; a store error counts as "not claimed" (it is
    /// logged, and the next tick tries again).
    fn claim(&self, kind: &str, target: &str, period: &str, now: Timestamp) -> bool {
        let inner = &self.inner;
        inner
            .store
            .ledger_claim(kind, target, period, &inner.holder, now.as_second())
            .unwrap_or_else(|error| {
                tracing::error!(%error, kind, target, period, "claiming a delivery failed");
                false
            })
    }
}

/// Where a delivery comes from, which says why it may be late.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Origin {
    /// The schedule (`kuroko serve`).
    Schedule,
    /// `kuroko report … --send`, `force` to resend what was sent.
    Command { force: bool },
}

/// What the schedule has for one target: see [`Runner::work`].
#[derive(Default)]
struct Work {
    due: BTreeMap<Period, (schedule::Due, Vec<Channel>)>,
    skipped: Vec<(Channel, schedule::Due)>,
}

/// What a late report says about itself: what it covers, when it was due
/// (in the schedule's time zone) and why it is late.
fn late_notice(due: &schedule::Due, time_zone: &jiff::tz::TimeZone, retried: bool) -> Late {
    let covers = match (due.period, due.period.first_day()) {
        (Period::Week { .. }, Ok(monday)) => format!("the week of {monday}"),
        (period, _) => period.to_string(),
    };
    let reason = if retried {
        "the first attempts to send it failed"
    } else {
        "the reporter was not running then"
    };
    Late {
        covers,
        due: due
            .scheduled_at
            .to_zoned(time_zone.clone())
            .strftime("%a %Y-%m-%d %H:%M %Z")
            .to_string(),
        reason: reason.to_owned(),
    }
}

/// The latest period when its delivery to `key` is still open (claimed or
/// retrying): due again, for the next round, even if nothing was ever sent.
fn open_round(
    cadence: &schedule::Cadence,
    entries: &[LedgerEntry],
    report: Report,
    key: &str,
    now: Timestamp,
) -> Option<schedule::Due> {
    let (period, scheduled_at) = cadence.latest(now)?;
    let entry = ledger::find(entries, report.as_str(), key, &period.to_string())?;
    (!entry.status.is_final()).then(|| schedule::Due {
        period,
        scheduled_at,
        late: now.duration_since(scheduled_at) > LATE_AFTER,
    })
}

/// A unique name for this process's claims: host, process id, start time.
pub fn holder_id(role: &str) -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".to_owned());
    format!(
        "{role}@{host}/{}/{}",
        std::process::id(),
        Timestamp::now().as_millisecond()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_late_notice_says_what_it_covers_when_it_was_due_and_why() {
        let berlin = jiff::tz::TimeZone::get("Europe/Berlin").unwrap();
        let due = schedule::Due {
            period: "2026-W11".parse().unwrap(),
            scheduled_at: "2026-03-16T07:00:00Z".parse().unwrap(),
            late: true,
        };
        assert_eq!(
            late_notice(&due, &berlin, false).sentence(),
            "Late: this report for the week of 2026-03-09 was due Mon 2026-03-16 08:00 CET; \
             the reporter was not running then."
        );
        assert_eq!(
            late_notice(&due, &berlin, true).reason,
            "the first attempts to send it failed"
        );
        let day = schedule::Due {
            period: "2026-03-28".parse().unwrap(),
            scheduled_at: "2026-03-29T06:30:00Z".parse().unwrap(),
            late: true,
        };
        assert_eq!(
            late_notice(&day, &berlin, false).due,
            "Sun 2026-03-29 08:30 CEST",
            "in the schedule's zone, across the change to summer time"
        );
    }
}
