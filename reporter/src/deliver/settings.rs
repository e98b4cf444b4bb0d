//! What delivery needs from the configuration (`owners`, `base_url`,
//! `[schedule]`, `[smtp]`, `[digest]`, `[[alerts]]`), checked once at start.

use serde::Deserialize;

use super::alerts::{self, AlertError, AlertRule};
use super::schedule::{Report, Schedule, ScheduleError};
use crate::config::Config;
use crate::owners::{Owners, OwnersError};
use crate::report::mail::{self, SmtpConfig};
use crate::report::webhook;
use crate::store::StoreError;

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

/// `[delivery]`: how delivery catches up after the reporter was down.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Weekly reports missed while the reporter was down sent late on
    /// recovery, the most recent first kept; older ones are recorded
    /// skipped. 0: none is sent late. Default: 4.
    pub catch_up_weeks: u32,
    /// The same for the daily digest. Default: 7.
    pub catch_up_days: u32,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            catch_up_weeks: 4,
            catch_up_days: 7,
        }
    }
}

impl DeliveryConfig {
    /// How many missed periods of `report` are sent late, and the key that says so.
    pub(crate) fn catch_up(&self, report: Report) -> (u32, &'static str) {
        match report {
            Report::Weekly => (self.catch_up_weeks, "catch_up_weeks"),
            Report::Digest => (self.catch_up_days, "catch_up_days"),
        }
    }
}

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
    /// How missed periods are caught up (`[delivery]`).
    pub delivery: DeliveryConfig,
    /// What the performance problems' detectors flag (`[problems]`), for
    /// the weekly report's problems.
    pub problems: crate::analysis::problems::Thresholds,
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
            delivery: config.delivery,
            problems: config.problems.clone(),
        })
    }
}
