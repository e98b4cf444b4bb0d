//! How a window is read when coarser rows stand for finer ones: both stores
//! roll minutes up into hours and days and drop the finer rows past their
//! retention, so a read of `from..to` is split ([`plan`]) into whole days
//! read from the day rows, whole hours from the hour rows and the rest from
//! the minute rows, by how far roll-ups and retention have got
//! ([`Progress`]). The embedded store ([`super::sqlite`]) and ClickHouse
//! ([`super::clickhouse`]) each say how far they have got, and read each
//! [`Stretch`] from their own tables.

/// A stretch of a window read at one resolution, in that resolution's units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stretch {
    /// `minute`, `hour` or `day`: the table suffix and key column.
    pub(crate) resolution: &'static str,
    pub(crate) from: i64,
    pub(crate) to: i64,
}

/// A minute before any data: "nothing rolled" (far from `i64::MIN`, so that
/// rounding it cannot overflow).
pub(crate) const NEVER: i64 = i64::MIN / 4;

/// `minute` rounded down to a multiple of `period`.
pub(crate) fn floor_to(minute: i64, period: i64) -> i64 {
    minute.div_euclid(period) * period
}

/// `minute` rounded up to a multiple of `period`.
pub(crate) fn ceil_to(minute: i64, period: i64) -> i64 {
    -floor_to(-minute, period)
}

/// How far the store's roll-ups and retention have got, in unix minutes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Progress {
    pub(crate) hours_until: i64,
    pub(crate) days_until: i64,
    pub(crate) minutes_from: i64,
    pub(crate) hours_from: i64,
}

/// Splits the window `from..to` (unix minutes) into disjoint stretches: whole
/// days rolled at day resolution, whole hours rolled at hour resolution, the
/// rest at minute resolution. A window edge older than what is kept at a
/// resolution is widened to the next coarser boundary (the whole hour, or
/// the whole day), since only the coarser rows remain there.
pub(crate) fn plan(from: i64, to: i64, progress: Progress) -> Vec<Stretch> {
    let Progress {
        hours_until,
        days_until,
        minutes_from,
        hours_from,
    } = progress;
    let mut out = Vec::new();
    if from >= to {
        return out;
    }
    let widen = |edge: i64, round: fn(i64, i64) -> i64| {
        if edge < hours_from {
            round(edge, 1_440)
        } else if edge < minutes_from {
            round(edge, 60)
        } else {
            edge
        }
    };
    let (from, to) = (widen(from, floor_to), widen(to, ceil_to));
    let (d0, d1) = (
        ceil_to(from, 1_440),
        floor_to(to, 1_440).min(floor_to(days_until, 1_440)),
    );
    let rest = if d0 < d1 {
        out.push(Stretch {
            resolution: "day",
            from: d0 / 1_440,
            to: d1 / 1_440,
        });
        vec![(from, d0), (d1, to)]
    } else {
        vec![(from, to)]
    };
    for (a, b) in rest.into_iter().filter(|(a, b)| a < b) {
        let (h0, h1) = (ceil_to(a, 60), floor_to(b, 60).min(floor_to(hours_until, 60)));
        if h0 < h1 {
            out.push(Stretch {
                resolution: "hour",
                from: h0 / 60,
                to: h1 / 60,
            });
            for (x, y) in [(a, h0), (h1, b)] {
                if x < y {
                    out.push(Stretch {
                        resolution: "minute",
                        from: x,
                        to: y,
                    });
                }
            }
        } else {
            out.push(Stretch {
                resolution: "minute",
                from: a,
                to: b,
            });
        }
    }
    out
}

/// Minutes in one row of `resolution`.
pub(crate) fn minutes_of(resolution: &str) -> i64 {
    match resolution {
        "day" => 1_440,
        "hour" => 60,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_days_hours_and_minutes_without_overlap() {
        let day = 20_000 * 1_440;
        // Two days and a bit, everything rolled: day, hour and minute stretches.
        let rolled = Progress {
            hours_until: day + 3 * 1_440,
            days_until: day + 2 * 1_440,
            minutes_from: NEVER,
            hours_from: NEVER,
        };
        let stretches = plan(day - 90, day + 2 * 1_440 + 75, rolled);
        assert_eq!(
            stretches,
            [
                Stretch {
                    resolution: "day",
                    from: day / 1_440,
                    to: day / 1_440 + 2
                },
                Stretch {
                    resolution: "hour",
                    from: (day - 60) / 60,
                    to: day / 60
                },
                Stretch {
                    resolution: "minute",
                    from: day - 90,
                    to: day - 60
                },
                Stretch {
                    resolution: "hour",
                    from: (day + 2 * 1_440) / 60,
                    to: (day + 2 * 1_440) / 60 + 1
                },
                Stretch {
                    resolution: "minute",
                    from: day + 2 * 1_440 + 60,
                    to: day + 2 * 1_440 + 75
                },
            ]
        );
        let covered: i64 = stretches
            .iter()
            .map(|s| {
                (s.to - s.from)
                    * match s.resolution {
                        "day" => 1_440,
                        "hour" => 60,
                        _ => 1,
                    }
            })
            .sum();
        assert_eq!(covered, 2 * 1_440 + 165, "every minute once");
        // Nothing rolled: minutes only.
        let nothing = Progress {
            hours_until: NEVER,
            days_until: NEVER,
            minutes_from: NEVER,
            hours_from: NEVER,
        };
        assert_eq!(
            plan(100, 200, nothing),
            [Stretch {
                resolution: "minute",
                from: 100,
                to: 200
            }]
        );
        // Past the minute retention, an edge widens to its hour.
        let cut = Progress {
            minutes_from: day,
            ..rolled
        };
        assert_eq!(
            plan(day - 90, day - 30, cut),
            [Stretch {
                resolution: "hour",
                from: (day - 120) / 60,
                to: day / 60
            }]
        );
    }
}
