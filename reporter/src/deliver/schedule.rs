//! When reports are due: `[schedule]` in `kuroko.toml`, read in one time zone.
//!
//! ```toml
//! [schedule]
//! time_zone = "Europe/Berlin"   # IANA name; default UTC
//! weekly = "MON 08:00"          # weekday and time; "off" to send none
//! digest = "08:30"              # every day at this time; "off" to send none
//! ```
//!
//! A schedule answers one question, [`Cadence::backlog`]: given the last
//! period already sent, which reports are due now, and for which
//! [`Period`]s? A period names
//! what a report covers (the previous ISO week for the weekly report, the
//! previous day for the digest), so the answer depends only on the clock and
//! the ledger, never on how long the reporter has been running: after a
//! restart a period already sent is not due again, and after downtime across
//! one or more scheduled times each missed period is due, once, marked late,
//! oldest first, back to a limit (`[delivery] catch_up_weeks`,
//! `catch_up_days`): periods missed before it are recorded skipped. Times are civil times in the configured zone (jiff resolves
//! them, so "08:00" stays 08:00 across DST changes; a time that a spring
//! change skips fires at the first instant after the gap, and one a fall
//! change repeats fires at its first occurrence).
//!
//! A target that has never been sent a report starts at its next scheduled
//! time: with no history, downtime cannot be told from a fresh install or a
//! newly added team, and neither should get a late report out of the blue.

use std::fmt;
use std::str::FromStr;

use jiff::civil::{Date, ISOWeekDate, Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ToSpan};
use serde::Deserialize;

/// A report sent this long after its scheduled time is marked late.
pub(crate) const LATE_AFTER: SignedDuration = SignedDuration::from_mins(10);

/// `[schedule]` as written.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct ScheduleConfig {
    /// An IANA time zone name, e.g. `Europe/Berlin`. Default `UTC`.
    pub time_zone: String,
    /// The weekly report: `DAY HH:MM` (`MON 08:00`), or `off`.
    pub weekly: String,
    /// The morning digest: `HH:MM`, daily, or `off`.
    pub digest: String,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig {
            time_zone: "UTC".to_owned(),
            weekly: "MON 08:00".to_owned(),
            digest: "08:30".to_owned(),
        }
    }
}

/// A `[schedule]` value that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("[schedule] {key} = {value:?}: expected {expected}")]
pub struct ScheduleError {
    /// The key, e.g. `weekly`.
    pub key: &'static str,
    /// Its value as written.
    pub value: String,
    /// What it should look like.
    pub expected: String,
}

/// Which report a cadence sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Report {
    /// The weekly performance report, per team.
    Weekly,
    /// The morning error digest.
    Digest,
}

impl Report {
    /// The name used in the ledger and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Report::Weekly => "weekly",
            Report::Digest => "digest",
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a report covers: an ISO week (weekly) or a day (digest), in the
/// schedule's time zone. Periods of one kind order in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Period {
    /// ISO 8601 week `week` of ISO year `year`, Monday to Sunday.
    Week {
        /// The ISO week-numbering year.
        year: i16,
        /// The week, 1 to 53.
        week: i8,
    },
    /// One calendar day.
    Day(Date),
}

impl Period {
    /// The ISO week holding `date`.
    pub(crate) fn week_of(date: Date) -> Period {
        let iso = date.iso_week_date();
        Period::Week {
            year: iso.year(),
            week: iso.week(),
        }
    }

    /// The first day of the period.
    pub(crate) fn first_day(&self) -> Result<Date, jiff::Error> {
        match *self {
            Period::Week { year, week } => Ok(ISOWeekDate::new(year, week, Weekday::Monday)?.date()),
            Period::Day(date) => Ok(date),
        }
    }

    /// The day after the period's last day.
    pub(crate) fn end_day(&self) -> Result<Date, jiff::Error> {
        let days = match self {
            Period::Week { .. } => 7,
            Period::Day(_) => 1,
        };
        self.first_day()?.checked_add(days.days())
    }

    /// The period as instants in `tz`: its first midnight up to (excluded)
    /// the midnight after it.
    pub fn window(&self, tz: &TimeZone) -> Result<(Timestamp, Timestamp), jiff::Error> {
        let start = self.first_day()?.to_zoned(tz.clone())?.timestamp();
        let end = self.end_day()?.to_zoned(tz.clone())?.timestamp();
        Ok((start, end))
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Period::Week { year, week } => write!(f, "{year:04}-W{week:02}"),
            Period::Day(date) => write!(f, "{date}"),
        }
    }
}

/// A period that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a period: expected an ISO week such as 2026-W11 or a day such as 2026-03-15")]
pub struct BadPeriod(pub String);

impl FromStr for Period {
    type Err = BadPeriod;

    fn from_str(text: &str) -> Result<Period, BadPeriod> {
        let bad = || BadPeriod(text.to_owned());
        let text = text.trim();
        if let Some((year, week)) = text.split_once("-W").or_else(|| text.split_once("-w")) {
            let year: i16 = year.parse().map_err(|_| bad())?;
            let week: i8 = week.parse().map_err(|_| bad())?;
            ISOWeekDate::new(year, week, Weekday::Monday).map_err(|_| bad())?;
            return Ok(Period::Week { year, week });
        }
        text.parse::<Date>().map(Period::Day).map_err(|_| bad())
    }
}

/// A report due now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Due {
    /// What the report covers.
    pub period: Period,
    /// When it was scheduled.
    pub scheduled_at: Timestamp,
    /// Whether it is being sent more than [`LATE_AFTER`] after that.
    pub late: bool,
}

/// When one report fires: a time of day, every day or on one weekday, in a
/// time zone.
#[derive(Clone, Debug, PartialEq)]
pub struct Cadence {
    report: Report,
    weekday: Option<Weekday>,
    time: Time,
    time_zone: TimeZone,
}

impl Cadence {
    /// Which report this is.
    pub fn report(&self) -> Report {
        self.report
    }

    /// The schedule's time zone.
    pub fn time_zone(&self) -> &TimeZone {
        &self.time_zone
    }

    /// The instant the report for `date` fires (`date` is the firing day).
    fn fire(&self, date: Date) -> Option<Timestamp> {
        let zoned = date.to_datetime(self.time).to_zoned(self.time_zone.clone()).ok()?;
        Some(zoned.timestamp())
    }

    /// Days between two firings.
    fn step(&self) -> i64 {
        if self.weekday.is_some() {
            7
        } else {
            1
        }
    }

    /// What the report firing on `date` covers.
    fn period_for(&self, date: Date) -> Option<Period> {
        let covered = date.checked_sub(self.step().days()).ok()?;
        Some(match self.report {
            Report::Weekly => Period::week_of(covered),
            Report::Digest => Period::Day(covered),
        })
    }

    /// The latest firing at or before `now`: its firing day and instant.
    fn latest_firing(&self, now: Timestamp) -> Option<(Date, Timestamp)> {
        let local = now.to_zoned(self.time_zone.clone());
        let mut date = local.date();
        if let Some(weekday) = self.weekday {
            date = date
                .checked_sub(i64::from(local.weekday().since(weekday)).days())
                .ok()?;
        }
        let mut at = self.fire(date)?;
        if at > now {
            date = date.checked_sub(self.step().days()).ok()?;
            at = self.fire(date)?;
        }
        Some((date, at))
    }

    /// The latest scheduled period at or before `now`, and when it fired.
    pub fn latest(&self, now: Timestamp) -> Option<(Period, Timestamp)> {
        let (date, at) = self.latest_firing(now)?;
        Some((self.period_for(date)?, at))
    }

    /// The next firing after `now`.
    pub fn next(&self, now: Timestamp) -> Option<Timestamp> {
        let (date, _) = self.latest_firing(now)?;
        self.fire(date.checked_add(self.step().days()).ok()?)
    }

    /// When the report for `period` is (or was) scheduled.
    pub(crate) fn scheduled_for(&self, period: &Period) -> Option<Timestamp> {
        let mut date = period.end_day().ok()?;
        if let Some(weekday) = self.weekday {
            // The first such weekday on or after the day after the period.
            date = date.checked_add(i64::from(date.weekday().until(weekday)).days()).ok()?;
        }
        self.fire(date)
    }

    /// What is due at `now` for a target last sent `last_sent`: every
    /// scheduled period after it up to the latest at or before `now`, oldest
    /// first; of those, the `catch_up` most recent are [`Backlog::due`] and
    /// any older ones [`Backlog::skipped`]. With nothing ever sent, only a
    /// period whose time has just come (not late) is due: a fresh install or
    /// a new team gets no late report out of the blue.
    pub fn backlog(&self, last_sent: Option<&Period>, now: Timestamp, catch_up: u32) -> Backlog {
        let mut backlog = Backlog::default();
        let Some((latest, _)) = self.latest_firing(now) else {
            return backlog;
        };
        let due_on = |date: Date| {
            let scheduled_at = self.fire(date)?;
            Some(Due {
                period: self.period_for(date)?,
                scheduled_at,
                late: now.duration_since(scheduled_at) > LATE_AFTER,
            })
        };
        let Some(sent) = last_sent else {
            backlog.due.extend(due_on(latest).filter(|due| !due.late));
            return backlog;
        };
        // Newest first, back to the period sent (a bound keeps a far-off
        // `last_sent` from walking for ever: the ledger is read 60 days back).
        let mut missed = Vec::new();
        let mut date = latest;
        for _ in 0..MAX_BACKLOG {
            match due_on(date) {
                Some(due) if due.period > *sent => missed.push(due),
                _ => break,
            }
            let Ok(earlier) = date.checked_sub(self.step().days()) else {
                break;
            };
            date = earlier;
        }
        let keep = missed.len().min(catch_up as usize);
        backlog.skipped = missed.split_off(keep);
        backlog.skipped.reverse();
        missed.reverse();
        backlog.due = missed;
        backlog
    }
}

/// Periods a [`Cadence::backlog`] walks back at most.
const MAX_BACKLOG: usize = 400;

/// What [`Cadence::backlog`] finds: periods to send now, and periods missed
/// longer ago than the catch-up allows, each oldest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Backlog {
    /// To send now: on time, or late after downtime.
    pub due: Vec<Due>,
    /// Missed, and older than the catch-up: recorded, not sent.
    pub skipped: Vec<Due>,
}

/// The whole `[schedule]`, parsed.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    /// The time zone's name as configured.
    pub time_zone_name: String,
    /// The time zone.
    pub time_zone: TimeZone,
    /// The weekly report's cadence, unless `off`.
    pub weekly: Option<Cadence>,
    /// The digest's cadence, unless `off`.
    pub digest: Option<Cadence>,
}

impl Schedule {
    /// Checks and resolves `[schedule]`; the error names the key and what
    /// it expects.
    pub fn from_config(config: &ScheduleConfig) -> Result<Schedule, ScheduleError> {
        let time_zone = TimeZone::get(config.time_zone.trim()).map_err(|e| ScheduleError {
            key: "time_zone",
            value: config.time_zone.clone(),
            expected: format!("an IANA time zone name such as Europe/Berlin or UTC ({e})"),
        })?;
        let weekly = parse_slot(&config.weekly, true)
            .map_err(|expected| ScheduleError {
                key: "weekly",
                value: config.weekly.clone(),
                expected,
            })?
            .map(|(weekday, time)| Cadence {
                report: Report::Weekly,
                weekday,
                time,
                time_zone: time_zone.clone(),
            });
        let digest = parse_slot(&config.digest, false)
            .map_err(|expected| ScheduleError {
                key: "digest",
                value: config.digest.clone(),
                expected,
            })?
            .map(|(weekday, time)| Cadence {
                report: Report::Digest,
                weekday,
                time,
                time_zone: time_zone.clone(),
            });
        Ok(Schedule {
            time_zone_name: config.time_zone.trim().to_owned(),
            time_zone,
            weekly,
            digest,
        })
    }

    /// The cadence of `report`, unless it is off.
    pub(crate) fn cadence(&self, report: Report) -> Option<&Cadence> {
        match report {
            Report::Weekly => self.weekly.as_ref(),
            Report::Digest => self.digest.as_ref(),
        }
    }
}

/// `DAY HH:MM` (weekly) or `HH:MM` (daily); `off` gives `None`.
#[allow(clippy::type_complexity)]
fn parse_slot(text: &str, weekly: bool) -> Result<Option<(Option<Weekday>, Time)>, String> {
    let expected = if weekly {
        "a weekday and a 24-hour time such as \"MON 08:00\", or \"off\""
    } else {
        "a 24-hour time such as \"08:30\" (every day), or \"off\""
    };
    let text = text.trim();
    if text.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let mut words = text.split_whitespace();
    let weekday = if weekly {
        let word = words.next().unwrap_or_default();
        Some(parse_weekday(word).ok_or_else(|| format!("{expected}; {word:?} is not a weekday (MON … SUN)"))?)
    } else {
        None
    };
    let clock = words.next().ok_or_else(|| expected.to_owned())?;
    if words.next().is_some() {
        return Err(expected.to_owned());
    }
    let time = parse_time(clock).ok_or_else(|| format!("{expected}; {clock:?} is not a time HH:MM"))?;
    Ok(Some((weekday, time)))
}

fn parse_weekday(word: &str) -> Option<Weekday> {
    let word = word.to_ascii_lowercase();
    let days = [
        ("mon", "monday", Weekday::Monday),
        ("tue", "tuesday", Weekday::Tuesday),
        ("wed", "wednesday", Weekday::Wednesday),
        ("thu", "thursday", Weekday::Thursday),
        ("fri", "friday", Weekday::Friday),
        ("sat", "saturday", Weekday::Saturday),
        ("sun", "sunday", Weekday::Sunday),
    ];
    days.iter()
        .find(|(short, long, _)| word == *short || word == *long)
        .map(|(_, _, day)| *day)
}

fn parse_time(clock: &str) -> Option<Time> {
    let (hour, minute) = clock.split_once(':')?;
    if hour.is_empty() || hour.len() > 2 || minute.len() != 2 {
        return None;
    }
    Time::new(hour.parse().ok()?, minute.parse().ok()?, 0, 0).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(tz: &str, weekly: &str, digest: &str) -> Schedule {
        Schedule::from_config(&ScheduleConfig {
            time_zone: tz.into(),
            weekly: weekly.into(),
            digest: digest.into(),
        })
        .unwrap()
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    /// The one period due at `now` (none missed), if any.
    fn due_now(cadence: &Cadence, last_sent: Option<&Period>, now: Timestamp) -> Option<Due> {
        let backlog = cadence.backlog(last_sent, now, u32::MAX);
        assert!(backlog.due.len() <= 1 && backlog.skipped.is_empty(), "{backlog:?}");
        backlog.due.into_iter().next()
    }

    #[test]
    fn parse_errors_name_the_key_and_what_is_expected() {
        let bad = |tz: &str, weekly: &str, digest: &str| {
            Schedule::from_config(&ScheduleConfig {
                time_zone: tz.into(),
                weekly: weekly.into(),
                digest: digest.into(),
            })
            .unwrap_err()
            .to_string()
        };
        let e = bad("Europe/Berlim", "MON 08:00", "08:30");
        assert!(e.contains("time_zone") && e.contains("Europe/Berlim"), "{e}");
        let e = bad("UTC", "MONDAY 8", "08:30");
        assert!(e.contains("weekly") && e.contains("\"8\" is not a time"), "{e}");
        let e = bad("UTC", "FUN 08:00", "08:30");
        assert!(e.contains("\"FUN\" is not a weekday"), "{e}");
        let e = bad("UTC", "MON 08:00", "25:00");
        assert!(e.contains("[schedule] digest = \"25:00\""), "{e}");
        let e = bad("UTC", "MON 08:00", "MON 08:30");
        assert!(e.contains("digest"), "{e}");
        let off = schedule("UTC", "off", "OFF");
        assert!(off.weekly.is_none() && off.digest.is_none());
        assert!(schedule("UTC", "monday 8:05", "7:00").weekly.is_some());
    }

    #[test]
    fn periods_print_and_parse() {
        for text in ["2026-W11", "2026-W01", "2026-03-15"] {
            assert_eq!(text.parse::<Period>().unwrap().to_string(), text);
        }
        assert!("2026-W54".parse::<Period>().is_err());
        assert!("yesterday".parse::<Period>().is_err());
        let week: Period = "2026-W11".parse().unwrap();
        assert_eq!(week.first_day().unwrap().to_string(), "2026-03-09");
        assert_eq!(week.end_day().unwrap().to_string(), "2026-03-16");
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        let (start, end) = Period::Day("2026-03-29".parse().unwrap()).window(&berlin).unwrap();
        assert_eq!((start, end), (at("2026-03-28T23:00:00Z"), at("2026-03-29T22:00:00Z")));
    }

    #[test]
    fn weekly_reports_the_previous_iso_week_at_local_time_across_dst() {
        let s = schedule("Europe/Berlin", "MON 08:00", "08:30");
        let weekly = s.weekly.as_ref().unwrap();
        // Monday 23 March 2026, 08:00 CET = 07:00 UTC.
        let due = due_now(weekly, None, at("2026-03-23T07:00:30Z")).unwrap();
        assert_eq!(due.period.to_string(), "2026-W12");
        assert_eq!(due.scheduled_at, at("2026-03-23T07:00:00Z"));
        assert!(!due.late);
        // Clocks go forward on 29 March: the next Monday 08:00 is CEST, 06:00 UTC.
        assert_eq!(
            weekly.next(at("2026-03-23T07:00:30Z")),
            Some(at("2026-03-30T06:00:00Z"))
        );
        let sent = due.period;
        assert_eq!(due_now(weekly, Some(&sent), at("2026-03-30T05:59:00Z")), None);
        let next = due_now(weekly, Some(&sent), at("2026-03-30T06:00:00Z")).unwrap();
        assert_eq!(
            (next.period.to_string(), next.scheduled_at),
            ("2026-W13".to_owned(), at("2026-03-30T06:00:00Z"))
        );
        assert_eq!(weekly.scheduled_for(&next.period), Some(next.scheduled_at));
    }

    #[test]
    fn a_time_the_spring_change_skips_fires_once_after_the_gap_and_a_repeated_one_once() {
        let s = schedule("Europe/Berlin", "off", "02:30");
        let digest = s.digest.as_ref().unwrap();
        let saturday: Period = "2026-03-27".parse().unwrap();
        // 29 March 2026: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist.
        assert_eq!(due_now(digest, Some(&saturday), at("2026-03-29T01:29:00Z")), None);
        let due = due_now(digest, Some(&saturday), at("2026-03-29T01:30:00Z")).unwrap();
        assert_eq!(
            (due.period.to_string(), due.scheduled_at),
            ("2026-03-28".to_owned(), at("2026-03-29T01:30:00Z"))
        );
        // 25 October 2026: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice.
        let before: Period = "2026-10-23".parse().unwrap();
        let first = due_now(digest, Some(&before), at("2026-10-25T00:30:00Z")).unwrap();
        assert_eq!(first.period.to_string(), "2026-10-24");
        assert_eq!(due_now(digest, Some(&first.period), at("2026-10-25T01:30:00Z")), None);
    }

    #[test]
    fn after_downtime_each_missed_period_is_due_late_oldest_first_back_to_the_limit() {
        let s = schedule("Europe/Berlin", "MON 08:00", "08:30");
        let digest = s.digest.as_ref().unwrap();
        let last: Period = "2026-03-10".parse().unwrap();
        let days = |periods: &[Due]| periods.iter().map(|d| d.period.to_string()).collect::<Vec<_>>();
        // Down from 11 March (after its digest) to 14 March 12:00 CET.
        let backlog = digest.backlog(Some(&last), at("2026-03-14T11:00:00Z"), 7);
        assert_eq!(days(&backlog.due), ["2026-03-11", "2026-03-12", "2026-03-13"]);
        assert!(backlog.due.iter().all(|d| d.late) && backlog.skipped.is_empty());
        assert_eq!(
            backlog.due[0].scheduled_at,
            at("2026-03-12T07:30:00Z"),
            "the 11th was due on the 12th at 08:30 CET"
        );
        // Past the limit, the oldest are skipped.
        let backlog = digest.backlog(Some(&last), at("2026-03-14T11:00:00Z"), 2);
        assert_eq!(days(&backlog.due), ["2026-03-12", "2026-03-13"]);
        assert_eq!(days(&backlog.skipped), ["2026-03-11"]);
        let none = digest.backlog(Some(&last), at("2026-03-14T11:00:00Z"), 0);
        assert_eq!((none.due.len(), none.skipped.len()), (0, 3), "0: nothing is sent late");
        // Once the latest is sent, nothing (the ledger holds the rest).
        let sent: Period = "2026-03-13".parse().unwrap();
        assert_eq!(due_now(digest, Some(&sent), at("2026-03-14T23:59:00Z")), None);
        // Weekly: down over two Mondays.
        let weekly = s.weekly.as_ref().unwrap();
        let backlog = weekly.backlog(Some(&"2026-W08".parse().unwrap()), at("2026-03-11T10:00:00Z"), 4);
        assert_eq!(days(&backlog.due), ["2026-W09", "2026-W10"]);
        assert!(backlog.due.iter().all(|d| d.late));
        // Never sent: nothing late out of the blue; the next scheduled time is.
        assert_eq!(due_now(weekly, None, at("2026-03-11T10:00:00Z")), None);
        let first = due_now(weekly, None, at("2026-03-16T07:05:00Z")).unwrap();
        assert_eq!((first.period.to_string(), first.late), ("2026-W11".to_owned(), false));
    }
}
