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
//! ```

pub mod alerts;
pub mod ledger;
pub mod schedule;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use jiff::tz::TimeZone;
use jiff::Timestamp;
use lettre::message::{Mailbox, MultiPart};
use lettre::Message;
use serde::Deserialize;

use crate::analysis::Analysis;
use crate::config::{Config, Secret};
use crate::owners::{Owners, OwnersError};
use crate::report::mail::{self, MailError, SmtpConfig};
use crate::report::webhook::{self, WebhookError};
use crate::report::{build, chart, digest, weekly};
use crate::store::{Store, StoreError};
use alerts::{AlertError, AlertRule};
use ledger::{LedgerEntry, LedgerStatus};
use schedule::{Period, Report, Schedule, ScheduleConfig, ScheduleError, LATE_AFTER};

/// `[digest]`: where the company-wide morning digest goes.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct DigestDelivery {
    /// The environment variable holding the chat webhook URL (a secret, so
    /// never written in the file).
    pub webhook_env: Option<String>,
    /// Addresses that receive the digest by email (needs `[smtp]`).
    pub email: Vec<String>,
}

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
pub const COMPANY: &str = "company";

/// The ledger's target for `name` over `channel`, e.g. `payments:email`.
pub fn target_key(name: &str, channel: Channel) -> String {
    format!("{name}:{}", channel.as_str())
}

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
    /// Whether it goes out late.
    pub late: bool,
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

/// Why delivery could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    /// `[schedule]` is wrong.
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    /// `owners.toml` is wrong.
    #[error(transparent)]
    Owners(#[from] OwnersError),
    /// An `[[alerts]]` rule is wrong.
    #[error(transparent)]
    Alert(#[from] AlertError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A command was asked something it cannot do.
    #[error("{0}")]
    Usage(String),
}

/// Everything delivery needs from the configuration, checked.
#[derive(Clone, Debug)]
pub struct Settings {
    /// When reports are due.
    pub schedule: Schedule,
    /// Teams and who owns what.
    pub owners: Owners,
    /// Where mail goes out; no email without it.
    pub smtp: Option<SmtpConfig>,
    /// The company-wide digest's recipients.
    pub digest: DigestDelivery,
    /// The web UI's address.
    pub base_url: String,
    /// Alert rules.
    pub alerts: Vec<AlertRule>,
    /// How email is retried within a round.
    pub mail_retry: mail::Retry,
    /// How chat is retried within a round.
    pub webhook_retry: webhook::Retry,
    /// Rounds before a delivery is given up.
    pub max_rounds: u32,
}

impl Settings {
    /// Reads the schedule, owners file and alert rules `config` names.
    pub fn from_config(config: &Config) -> Result<Settings, DeliverError> {
        let owners = match &config.owners {
            Some(path) => Owners::load(path)?,
            None => Owners::empty(),
        };
        alerts::check_all(&config.alerts)?;
        Ok(Settings {
            schedule: Schedule::from_config(&config.schedule)?,
            owners,
            smtp: config.smtp.clone(),
            digest: config.digest.clone(),
            base_url: config.base_url.clone(),
            alerts: config.alerts.clone(),
            mail_retry: mail::Retry::default(),
            webhook_retry: webhook::Retry::default(),
            max_rounds: 3,
        })
    }
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

/// How one channel's round went.
struct Round {
    attempts: u32,
    result: Result<(), (String, Settle)>,
}

/// What a failed round leaves to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Settle {
    /// Try again next round (until [`Settings::max_rounds`]).
    Retry,
    /// Trying again would fail the same way.
    Permanent,
    /// It may have arrived (a timeout after it was sent): not resent
    /// blindly; recorded [`LedgerStatus::Unknown`].
    Unknown,
}

impl Settle {
    fn permanent_if(permanent: bool) -> Settle {
        if permanent {
            Settle::Permanent
        } else {
            Settle::Retry
        }
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
                let channels: Vec<(Channel, schedule::Due)> = target
                    .channels(inner.settings.smtp.is_some())
                    .into_iter()
                    .filter_map(|channel| {
                        let key = target_key(&target.name, channel);
                        let last = ledger::last_sent::<Period>(&entries, report.as_str(), &key);
                        cadence
                            .due(last.as_ref(), now)
                            .or_else(|| open_round(cadence, &entries, report, &key, now))
                            .map(|due| (channel, due))
                    })
                    .collect();
                let Some((_, due)) = channels.first().cloned() else {
                    continue;
                };
                let channels = channels.into_iter().map(|(c, _)| c).collect();
                let runner = self.clone();
                let entries = entries.clone();
                tasks.spawn(async move {
                    runner
                        .deliver(report, target, channels, due, now, false, &entries)
                        .await
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

    /// Claims (unless `force`), produces once, sends over every claimed
    /// channel concurrently, and records each outcome.
    #[allow(clippy::too_many_arguments)]
    async fn deliver(
        &self,
        report: Report,
        target: Target,
        channels: Vec<Channel>,
        due: schedule::Due,
        now: Timestamp,
        force: bool,
        previous: &[LedgerEntry],
    ) -> Vec<LedgerEntry> {
        let inner = &self.inner;
        let period = due.period.to_string();
        let claimed = self.claim_all(report.as_str(), &target, channels, &period, now, force);
        if claimed.is_empty() {
            return Vec::new();
        }
        let settings = &inner.settings;
        let job = Job {
            report,
            team: target.team.clone(),
            period: due.period,
            scheduled_at: due.scheduled_at,
            late: due.late,
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

    /// Sends `outgoing` over every channel in `claimed`, concurrently, and
    /// records each outcome in the ledger.
    async fn send_and_record(
        &self,
        target: &Target,
        claimed: &[Channel],
        outgoing: Result<Outgoing, String>,
        sending: &Sending<'_>,
    ) -> Vec<LedgerEntry> {
        let inner = &self.inner;
        let settings = &inner.settings;
        let rounds: Vec<(Channel, Round)> = match outgoing {
            Err(error) => claimed
                .iter()
                .map(|&c| {
                    let result = Err((error.clone(), Settle::Retry));
                    (c, Round { attempts: 0, result })
                })
                .collect(),
            Ok(outgoing) => {
                let email = claimed
                    .contains(&Channel::Email)
                    .then(|| self.send_email(outgoing.email));
                let chat = claimed.contains(&Channel::Chat).then(|| {
                    let delivery = (sending.kind, target.name.as_str(), sending.period);
                    self.send_chat(target.webhook.clone(), outgoing.chat, delivery)
                });
                let (email, chat) = tokio::join!(maybe(email), maybe(chat));
                email
                    .map(|r| (Channel::Email, r))
                    .into_iter()
                    .chain(chat.map(|r| (Channel::Chat, r)))
                    .collect()
            }
        };
        let elapsed = i64::try_from(sending.started.elapsed().as_secs()).unwrap_or(0);
        let mut written = Vec::new();
        for (channel, round) in rounds {
            let key = target_key(&target.name, channel);
            let before = ledger::find(sending.previous, sending.kind, &key, sending.period);
            let rounds = before.map_or(0, |b| b.rounds) + 1;
            let (status, error) = match round.result {
                Ok(()) => (LedgerStatus::Sent, None),
                Err((error, Settle::Unknown)) => (LedgerStatus::Unknown, Some(error)),
                Err((error, settle)) if settle == Settle::Permanent || rounds >= settings.max_rounds => {
                    (LedgerStatus::Failed, Some(error))
                }
                Err((error, _)) => (LedgerStatus::Retrying, Some(error)),
            };
            let entry = LedgerEntry {
                kind: sending.kind.to_owned(),
                target: key,
                period: sending.period.to_owned(),
                holder: inner.holder.clone(),
                status,
                attempts: before.map_or(0, |b| b.attempts) + round.attempts,
                rounds,
                error,
                late: sending.late,
                scheduled_at: sending.scheduled_at.as_second(),
                claimed_at: sending.now.as_second(),
                finished_at: Some(sending.now.as_second() + elapsed),
            };
            match &entry.error {
                None => tracing::info!(kind = %entry.kind, target = %entry.target, period = %entry.period,
                    late = entry.late, "delivered"),
                Some(error) => tracing::error!(kind = %entry.kind, target = %entry.target, period = %entry.period,
                    status = %entry.status, %error, "delivery failed"),
            }
            if let Err(error) = inner.store.ledger_record(&entry) {
                tracing::error!(%error, target = %entry.target, "recording a delivery in the ledger failed");
            }
            written.push(entry);
        }
        written
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

    async fn send_email(&self, message: Option<Message>) -> Round {
        let (Some(smtp), Some(message)) = (self.inner.settings.smtp.clone(), message) else {
            return Round {
                attempts: 0,
                result: Err((
                    "no email was made (or no [smtp] is configured)".to_owned(),
                    Settle::Permanent,
                )),
            };
        };
        let retry = self.inner.settings.mail_retry;
        let sent = tokio::task::spawn_blocking(move || mail::send(&smtp, &message, retry)).await;
        match sent {
            Ok(Ok(attempts)) => Round {
                attempts,
                result: Ok(()),
            },
            Ok(Err(error)) => {
                let (attempts, permanent) = match &error {
                    MailError::Send {
                        attempts, permanent, ..
                    } => (*attempts, *permanent),
                    MailError::Address { .. } | MailError::NoRecipients | MailError::Build(_) => (0, true),
                    _ => (0, false),
                };
                Round {
                    attempts,
                    result: Err((error.to_string(), Settle::permanent_if(permanent))),
                }
            }
            Err(join) => Round {
                attempts: 0,
                result: Err((format!("the sending thread failed: {join}"), Settle::Retry)),
            },
        }
    }

    /// Posts the chat messages of delivery `(kind, team, period)`, keyed
    /// by it ([`webhook::idempotency_key`]).
    async fn send_chat(
        &self,
        url: Option<Secret>,
        payloads: Vec<serde_json::Value>,
        (kind, team, period): (&str, &str, &str),
    ) -> Round {
        let Some(url) = url else {
            return Round {
                attempts: 0,
                result: Err(("no webhook URL".to_owned(), Settle::Permanent)),
            };
        };
        if payloads.is_empty() {
            return Round {
                attempts: 0,
                result: Err(("no chat message was made".to_owned(), Settle::Permanent)),
            };
        }
        let target = target_key(team, Channel::Chat);
        let key = webhook::idempotency_key(kind, &target, period, url.expose());
        let retry = self.inner.settings.webhook_retry;
        match webhook::post_json_keyed(url.expose(), &payloads, retry, Some(&key)).await {
            Ok(delivery) => Round {
                attempts: delivery.attempts,
                result: Ok(()),
            },
            Err(error) => {
                let (attempts, settle) = match &error {
                    WebhookError::GaveUp { attempts, .. } => (*attempts, Settle::Retry),
                    WebhookError::Unknown { attempts, .. } => (*attempts, Settle::Unknown),
                    WebhookError::Refused { .. } | WebhookError::InvalidUrl(_) => (1, Settle::Permanent),
                    WebhookError::Client(_) => (0, Settle::Retry),
                };
                Round {
                    attempts,
                    result: Err((error.to_string(), settle)),
                }
            }
        }
    }

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
                self.deliver(report, target, channels, due.clone(), now, force, &previous)
                    .await,
            );
        }
        Ok(written)
    }

    async fn run_alerts(&self, now: Timestamp) -> Vec<LedgerEntry> {
        if self.inner.settings.alerts.is_empty() {
            return Vec::new();
        }
        // One pass at a time: a pass still notifying holds the next back.
        let Ok(_pass) = self.inner.alerts_pass.try_lock() else {
            return Vec::new();
        };
        let mut written = Vec::new();
        for rule in &self.inner.settings.alerts {
            written.extend(self.run_alert(rule, now).await);
        }
        written
    }

    async fn run_alert(&self, rule: &AlertRule, now: Timestamp) -> Vec<LedgerEntry> {
        let inner = &self.inner;
        let minute = now.as_second().div_euclid(60);
        let store = inner.store.clone();
        let (owners, checked) = (inner.settings.owners.clone(), rule.clone());
        let read = tokio::task::spawn_blocking(move || {
            let value = alerts::measure(store.as_ref(), &owners, &checked, minute)?;
            let previous = store.alert_state_get(&checked.name)?;
            let series = store.series()?;
            Ok::<_, StoreError>((value, previous, series))
        })
        .await;
        let (value, previous, series) = match read {
            Ok(Ok(read)) => read,
            Ok(Err(error)) => {
                tracing::error!(%error, rule = %rule.name, "evaluating an alert rule failed");
                return Vec::new();
            }
            Err(error) => {
                tracing::error!(%error, rule = %rule.name, "evaluating an alert rule failed");
                return Vec::new();
            }
        };
        let breached = value.is_some_and(|v| rule.breached(v));
        let (mut state, _) = alerts::step(previous.as_ref(), value, breached, minute);
        if previous.as_ref() != Some(&state) {
            if let Err(error) = inner.store.alert_state_put(&rule.name, &state) {
                tracing::error!(%error, rule = %rule.name, "storing an alert's state failed");
                return Vec::new();
            }
        }
        if state.notified {
            return Vec::new();
        }
        let transition = if state.firing {
            alerts::Transition::Fired
        } else {
            alerts::Transition::Resolved
        };
        tracing::warn!(rule = %rule.name, transition = transition.as_str(), value = ?state.value, "alert");
        let (written, done) = self.notify(rule, transition, &state, &series, now).await;
        if done {
            state.notified = true;
            if let Err(error) = inner.store.alert_state_put(&rule.name, &state) {
                tracing::error!(%error, rule = %rule.name, "storing an alert's state failed");
            }
        }
        written
    }

    /// Notifies the owning team of a transition; `done` when every channel
    /// is settled (sent, given up, or there is no one to tell).
    async fn notify(
        &self,
        rule: &AlertRule,
        transition: alerts::Transition,
        state: &alerts::AlertState,
        series: &[crate::store::SeriesKey],
        now: Timestamp,
    ) -> (Vec<LedgerEntry>, bool) {
        let settings = &self.inner.settings;
        let Some(team) = alerts::owning_team(rule, &settings.owners, series) else {
            tracing::warn!(rule = %rule.name, "no team owns what this alert watches: set `team` in the rule or add the feature to owners.toml");
            return (Vec::new(), true);
        };
        let window = rule.window_minutes().unwrap_or(5);
        let (subject, body) = alerts::message_text(rule, transition, state.value, window);
        let link = if settings.base_url.is_empty() {
            String::new()
        } else {
            format!("{}/alerts", settings.base_url.trim_end_matches('/'))
        };
        let target = Target {
            name: team.name.clone(),
            team: Some(team.name.clone()),
            email_to: team.email.clone(),
            webhook: team.webhook_url_from(|name| (self.inner.env)(name)),
        };
        let channels = target.channels(settings.smtp.is_some());
        if channels.is_empty() {
            tracing::warn!(rule = %rule.name, team = %team.name, "the team has no chat webhook or email (with [smtp]) to alert");
            return (Vec::new(), true);
        }
        let period = format!("{}@{}:{}", rule.name, state.since, transition.as_str());
        let previous = self
            .inner
            .store
            .ledger(now.as_second() - 60 * 86_400)
            .unwrap_or_default();
        let claimed = self.claim_all("alert", &target, channels.clone(), &period, now, false);
        let mut written = Vec::new();
        if !claimed.is_empty() {
            let email = match (&settings.smtp, claimed.contains(&Channel::Email)) {
                (Some(smtp), true) => plain_message(&smtp.from, &team.email, &subject, &body)
                    .map_err(|error| tracing::error!(%error, rule = %rule.name, "cannot build the alert email"))
                    .ok(),
                _ => None,
            };
            let outgoing = Ok(Outgoing {
                email,
                chat: vec![alerts::chat_message(rule, transition, state.value, window, &link)],
            });
            let sending = Sending {
                kind: "alert",
                period: &period,
                scheduled_at: Timestamp::from_second(state.since * 60).unwrap_or(now),
                late: false,
                now,
                started: Instant::now(),
                previous: &previous,
            };
            written = self.send_and_record(&target, &claimed, outgoing, &sending).await;
        }
        let settled = channels.iter().all(|&channel| {
            let key = target_key(&team.name, channel);
            written
                .iter()
                .chain(previous.iter())
                .find(|e| e.kind == "alert" && e.target == key && e.period == period)
                .is_some_and(|e| e.status.is_final())
        });
        (written, settled)
    }
}

/// What is being sent, for the ledger.
struct Sending<'a> {
    kind: &'a str,
    period: &'a str,
    scheduled_at: Timestamp,
    late: bool,
    now: Timestamp,
    started: Instant,
    previous: &'a [LedgerEntry],
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

async fn maybe<F: std::future::Future>(future: Option<F>) -> Option<F::Output> {
    match future {
        Some(future) => Some(future.await),
        None => None,
    }
}

/// A plain-text email from `from` to `to`.
pub fn plain_message(from: &str, to: &[String], subject: &str, text: &str) -> Result<Message, MailError> {
    html_message(from, to, subject, text, None)
}

/// An email with a text part and, when given, an HTML alternative.
pub fn html_message(
    from: &str,
    to: &[String],
    subject: &str,
    text: &str,
    html: Option<String>,
) -> Result<Message, MailError> {
    if to.is_empty() {
        return Err(MailError::NoRecipients);
    }
    let parse = |role: &'static str, address: &str| {
        address.parse::<Mailbox>().map_err(|e| MailError::Address {
            role,
            address: address.to_owned(),
            reason: e.to_string(),
        })
    };
    let mut builder = Message::builder().from(parse("sender", from)?).subject(subject);
    for address in to {
        builder = builder.to(parse("recipient", address)?);
    }
    Ok(match html {
        Some(html) => builder.multipart(MultiPart::alternative_plain_html(text.to_owned(), html))?,
        None => builder.body(text.to_owned())?,
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

/// The producer `kuroko serve` and `kuroko report … --send` use: each job's
/// report built from `store` by the analysis layer
/// ([`crate::report::build`]), with features and teams from `owners`, and
/// rendered for the job's channels.
pub fn analysis_producer(store: Arc<dyn Store>, owners: Arc<Owners>) -> Producer {
    Arc::new(move |job: &Job| {
        let analysis = Analysis::new(store.as_ref(), &owners);
        match job.report {
            Report::Weekly => {
                let team = job.team.as_deref().ok_or("the weekly report is made for a team")?;
                let report = build::weekly(&analysis, team, &job.period, &job.time_zone, &job.base_url)?;
                weekly_outgoing(&report, job)
            }
            Report::Digest => {
                let view = build::digest(&analysis, &job.period, &job.time_zone, &job.base_url)?;
                digest_outgoing(&view, job)
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
            weekly_outgoing(&report, job)
        }
        Report::Digest => {
            let view = digest::Digest {
                day: job.period.to_string(),
                time_zone: job.time_zone_name.clone(),
                base_url: job.base_url.clone(),
                ..digest::Digest::default()
            };
            digest_outgoing(&view, job)
        }
    })
}

/// The weekly report as the job's email, charts inline.
fn weekly_outgoing(report: &weekly::WeeklyReport, job: &Job) -> Result<Outgoing, ProduceError> {
    let mut out = Outgoing::default();
    if job.channels.contains(&Channel::Email) {
        let charts = chart::render_charts(report)?;
        out.email = Some(mail::build_message(report, &job.email_to, &job.from, &charts)?);
    }
    Ok(out)
}

/// The digest's subject line.
fn digest_subject(view: &digest::Digest) -> String {
    let day: String = view.day.chars().filter(|c| !c.is_control()).collect();
    format!("Kuroko error digest for {day}")
}

/// The digest as the job's chat messages and email.
fn digest_outgoing(view: &digest::Digest, job: &Job) -> Result<Outgoing, ProduceError> {
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
    let analysis = Analysis::new(store, &settings.owners);
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
