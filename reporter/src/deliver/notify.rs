//! The alert pass of each tick: every rule evaluated
//! ([`super::alerts`]), its state kept in the store, and the owning team
//! notified once per transition (fired, resolved) through the ledger.

use std::time::Instant;

use jiff::Timestamp;

use super::alerts::{self, AlertRule};
use super::ledger::LedgerEntry;
use super::mime::plain_message;
use super::produce::Outgoing;
use super::record::Sending;
use super::{target_key, Channel, Runner, Target};
use crate::store::StoreError;

impl Runner {
    pub(super) async fn run_alerts(&self, now: Timestamp) -> Vec<LedgerEntry> {
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

    /// Why a firing rule fires ([`alerts::cause`]); a failure is logged and
    /// the alert goes out without it.
    async fn alert_cause(&self, rule: &AlertRule, now: Timestamp) -> Option<String> {
        let (store, owners, checked) = (
            self.inner.store.clone(),
            self.inner.settings.owners.clone(),
            rule.clone(),
        );
        let minute = now.as_second().div_euclid(60);
        match tokio::task::spawn_blocking(move || alerts::cause(store.as_ref(), &owners, &checked, minute)).await {
            Ok(Ok(cause)) => cause,
            Ok(Err(error)) => {
                tracing::warn!(%error, rule = %rule.name, "an alert's cause could not be found; it is sent without");
                None
            }
            Err(error) => {
                tracing::warn!(%error, rule = %rule.name, "an alert's cause could not be found; it is sent without");
                None
            }
        }
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
        let cause = match transition {
            alerts::Transition::Fired => self.alert_cause(rule, now).await,
            alerts::Transition::Resolved => None,
        };
        let (subject, body) = alerts::message_text(rule, transition, state.value, window, cause.as_deref());
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
                chat: vec![alerts::chat_message(
                    rule,
                    transition,
                    state.value,
                    window,
                    cause.as_deref(),
                    &link,
                )],
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
