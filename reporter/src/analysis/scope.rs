//! What a question is about: a window of time and the series in it.
//!
//! Every question (slowest endpoints, time series, regressions, errors) takes
//! a [`Scope`]: the window `from..to` in unix minutes, and filters by
//! service, host, environment, transaction, feature and team. Service, host,
//! environment and transaction are pushed down into the store
//! ([`Scope::store_filter`]); feature and team go through `owners.toml`
//! ([`Scope::matches`]), because a transaction the agent did not tag gets its
//! feature from the owners' patterns. A feature that no pattern names can
//! hold only tagged transactions, so it is pushed down too: a feature's page
//! on a fleet then reads its own series, not all of them.
//!
//! Windows are written as users write them: `--since 7d` (minutes `m`, hours
//! `h`, days `d`, weeks `w` before now), or an RFC 3339 instant
//! (`2026-11-23T09:00:00Z`), or a date (`2026-11-23`, midnight UTC). A
//! window without `--until` ends with the current minute, which is still
//! arriving: what was sent a second ago is in it, and answers say that
//! their last minute is partial.

use crate::owners::Owners;
use crate::store::{Filter, SeriesKey};

/// A window and the series a question is about; `None` matches all.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Scope {
    /// First minute of the window (unix minutes), included.
    pub from: i64,
    /// End of the window (unix minutes), excluded.
    pub to: i64,
    /// Only this service.
    pub service: Option<String>,
    /// Only this host.
    pub host: Option<String>,
    /// Only this deployment environment.
    pub environment: Option<String>,
    /// Only this transaction.
    pub transaction: Option<String>,
    /// Only this feature (tagged by the agent, or assigned by `owners.toml`).
    pub feature: Option<String>,
    /// Only what this team owns, per `owners.toml`.
    pub team: Option<String>,
}

/// A window or filter that cannot be understood.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScopeError {
    /// Not a duration nor a time.
    #[error("`{0}` is not a time: write a duration before now (`90m`, `24h`, `7d`, `2w`), an RFC 3339 instant (`2026-11-23T09:00:00Z`) or a date (`2026-11-23`)")]
    Time(String),
    /// The window ends before it starts.
    #[error("the window is empty: --since ({since}) must be before --until ({until})")]
    Empty {
        /// Its start, as given.
        since: String,
        /// Its end, as given.
        until: String,
    },
    /// `--team` names no team of `owners.toml`.
    #[error("no team `{team}` in {owners}: teams are {known}")]
    UnknownTeam {
        /// The team asked for.
        team: String,
        /// The owners file.
        owners: String,
        /// The teams it declares.
        known: String,
    },
}

impl Scope {
    /// A scope over `from..to` with no filters.
    pub fn window(from: i64, to: i64) -> Scope {
        Scope {
            from,
            to,
            ..Scope::default()
        }
    }

    /// The window's length in minutes.
    pub fn minutes(&self) -> i64 {
        (self.to - self.from).max(0)
    }

    /// The same filters over the window of the same length just before.
    pub fn previous(&self) -> Scope {
        Scope {
            from: self.from - self.minutes(),
            to: self.from,
            ..self.clone()
        }
    }

    /// The filters the store can apply itself, given `owners`.
    pub(crate) fn store_filter(&self, owners: &Owners) -> Filter {
        Filter {
            service: self.service.clone(),
            host: self.host.clone(),
            transaction: self.transaction.clone(),
            environment: self.environment.clone(),
            // The feature of an untagged transaction comes from owners.toml's
            // patterns (filtered in `matches`); without any, only the tag counts.
            feature: self.feature.clone().filter(|f| owners.tags_only(f)),
            across_hosts: false,
        }
    }

    /// [`Scope::store_filter`] answered per transaction series, hosts merged
    /// ([`Filter::across_hosts`]), unless the scope names a host: what the
    /// reads that do not tell hosts apart ask, so that they read roll-ups
    /// across hosts where the store keeps them.
    pub(crate) fn transactions_filter(&self, owners: &Owners) -> Filter {
        Filter {
            across_hosts: self.host.is_none(),
            ..self.store_filter(owners)
        }
    }

    /// Whether `key` is in scope: the store's filters, then its feature and
    /// team as `owners` resolve them.
    pub fn matches(&self, key: &SeriesKey, owners: &Owners) -> bool {
        let same = |wanted: &Option<String>, value: &str| wanted.as_deref().is_none_or(|w| w == value);
        if !(same(&self.service, &key.service)
            && same(&self.host, &key.host)
            && same(&self.environment, &key.environment)
            && same(&self.transaction, &key.transaction))
        {
            return false;
        }
        let tagged = Some(key.feature.as_str()).filter(|f| !f.is_empty());
        if let Some(feature) = &self.feature {
            if owners.feature_of(&key.service, &key.transaction, tagged) != Some(feature.as_str()) {
                return false;
            }
        }
        match &self.team {
            Some(team) => owners.owns(team, &key.service, &key.transaction, tagged),
            None => true,
        }
    }

    /// Checks that `--team` names a team of `owners`.
    pub(crate) fn check_team(&self, owners: &Owners) -> Result<(), ScopeError> {
        match &self.team {
            Some(team) if owners.team(team).is_none() => Err(ScopeError::UnknownTeam {
                team: team.clone(),
                owners: owners.path().to_owned(),
                known: owners.teams().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", "),
            }),
            _ => Ok(()),
        }
    }
}

/// The window `--since` .. `--until` in unix minutes, with `now` the
/// current unix minute. Without `--until` the window ends at the end of the
/// current minute, so that it holds what arrived a moment ago; durations
/// count back from that end (`--since 7d` is seven whole days of minutes,
/// the last one partial).
pub(crate) fn parse_window(since: &str, until: Option<&str>, now: i64) -> Result<(i64, i64), ScopeError> {
    let end = now.saturating_add(1);
    let from = parse_time(since, end)?;
    let to = match until {
        Some(until) => parse_time(until, end)?,
        None => end,
    };
    if from >= to {
        return Err(ScopeError::Empty {
            since: since.to_owned(),
            until: until.unwrap_or("now").to_owned(),
        });
    }
    Ok((from, to))
}

/// A time as unix minutes: a duration before `now` (`90m`, `24h`, `7d`,
/// `2w`), an RFC 3339 instant, or a date (midnight UTC).
pub fn parse_time(text: &str, now: i64) -> Result<i64, ScopeError> {
    let text = text.trim();
    let bad = || ScopeError::Time(text.to_owned());
    if let Some(unit) = text.chars().last().filter(|c| c.is_ascii_alphabetic()) {
        if let Ok(amount) = text[..text.len() - 1].parse::<i64>() {
            let minutes = match unit {
                'm' => 1,
                'h' => 60,
                'd' => 1_440,
                'w' => 10_080,
                _ => return Err(bad()),
            };
            return amount
                .checked_mul(minutes)
                .and_then(|back| now.checked_sub(back))
                .filter(|_| amount >= 0)
                .ok_or_else(bad);
        }
    }
    if let Ok(instant) = text.parse::<jiff::Timestamp>() {
        return Ok(instant.as_second().div_euclid(60));
    }
    if let Ok(date) = text.parse::<jiff::civil::Date>() {
        let midnight = date.to_zoned(jiff::tz::TimeZone::UTC).map_err(|_| bad())?;
        return Ok(midnight.timestamp().as_second().div_euclid(60));
    }
    Err(bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 29_405_215;

    #[test]
    fn windows_read_as_users_write_them() {
        // The current minute, still arriving, is the window's last.
        assert_eq!(parse_window("7d", None, NOW), Ok((NOW + 1 - 7 * 1_440, NOW + 1)));
        assert_eq!(parse_window("2h", Some("1h"), NOW), Ok((NOW + 1 - 120, NOW + 1 - 60)));
        assert_eq!(
            parse_window("1970-01-01", Some("1970-01-02"), NOW),
            Ok((0, 1_440)),
            "instants are not moved"
        );
        assert_eq!(parse_time("90m", NOW), Ok(NOW - 90));
        assert_eq!(parse_time("2w", NOW), Ok(NOW - 2 * 10_080));
        assert_eq!(parse_time("1970-01-01T01:00:00Z", NOW), Ok(60));
        assert_eq!(parse_time("1970-01-02", NOW), Ok(1_440));
        assert_eq!(
            parse_window("1d", Some("2d"), NOW),
            Err(ScopeError::Empty {
                since: "1d".into(),
                until: "2d".into()
            })
        );
        let error = parse_time("last tuesday", NOW).unwrap_err().to_string();
        assert!(error.contains("`last tuesday` is not a time"), "{error}");
        assert!(parse_time("5y", NOW).is_err());
    }

    #[test]
    fn the_previous_window_is_as_long_and_just_before() {
        let week = Scope {
            service: Some("shop".into()),
            ..Scope::window(1_000, 1_500)
        };
        let before = week.previous();
        assert_eq!((before.from, before.to), (500, 1_000));
        assert_eq!(before.service, week.service);
    }

    #[test]
    fn a_feature_without_patterns_is_asked_of_the_store() {
        let owners = Owners::parse(
            r#"
[teams.shop]
[features.cart]
team = "shop"
[features.legacy]
team = "shop"
patterns = [{ service = "old-*" }]
"#,
            "owners.toml",
        )
        .unwrap();
        let cart = Scope {
            feature: Some("cart".into()),
            ..Scope::window(0, 60)
        };
        assert_eq!(
            cart.store_filter(&owners).feature.as_deref(),
            Some("cart"),
            "only tags put series in it"
        );
        let legacy = Scope {
            feature: Some("legacy".into()),
            ..cart.clone()
        };
        assert_eq!(
            legacy.store_filter(&owners).feature,
            None,
            "patterns may add untagged series"
        );
    }
}
