//! A condition that repeats with every request while it lasts (a full disk,
//! a failing store), logged as one condition: once when it starts, every
//! [`REMIND_EVERY`] while it lasts with the count since the last line, and
//! once when it ends; not once per request.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often a lasting condition is logged again, with its count.
pub(crate) const REMIND_EVERY: Duration = Duration::from_secs(30);

/// One condition's spells; see the [module documentation](self).
#[derive(Debug, Default)]
pub(crate) struct Spell {
    /// Whether a spell is under way (read without the lock on every request).
    on: AtomicBool,
    state: Mutex<Option<State>>,
}

#[derive(Debug)]
struct State {
    since: Instant,
    logged: Instant,
    /// Occurrences since `logged`.
    unlogged: u64,
    /// Occurrences since `since`.
    total: u64,
}

/// What to log for one occurrence.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Hit {
    /// The spell starts: log the condition.
    Started,
    /// The spell lasts, and its last line is [`REMIND_EVERY`] old: log the
    /// count since that line (`since_last`), the spell's total and age.
    Remind {
        /// Occurrences since the last line, this one included.
        since_last: u64,
        /// Occurrences in the spell.
        total: u64,
        /// Its age.
        lasted: Duration,
    },
    /// Nothing to log.
    Quiet,
}

/// A spell that ended: its occurrences and how long it lasted.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Ended {
    /// Occurrences in the spell.
    pub(crate) total: u64,
    /// How long it lasted.
    pub(crate) lasted: Duration,
}

impl Spell {
    /// Whether a spell is under way.
    pub(crate) fn is_on(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    /// One occurrence: what to log for it.
    pub(crate) fn hit(&self) -> Hit {
        let now = Instant::now();
        let mut state = crate::sync::lock(&self.state);
        let Some(spell) = state.as_mut() else {
            *state = Some(State {
                since: now,
                logged: now,
                unlogged: 0,
                total: 1,
            });
            self.on.store(true, Ordering::Relaxed);
            return Hit::Started;
        };
        spell.unlogged += 1;
        spell.total += 1;
        if now.duration_since(spell.logged) < REMIND_EVERY {
            return Hit::Quiet;
        }
        let hit = Hit::Remind {
            since_last: spell.unlogged,
            total: spell.total,
            lasted: now.duration_since(spell.since),
        };
        spell.logged = now;
        spell.unlogged = 0;
        hit
    }

    /// The condition is over: the spell that ended, if one was under way.
    pub(crate) fn end(&self) -> Option<Ended> {
        if !self.is_on() {
            return None;
        }
        let ended = crate::sync::lock(&self.state).take()?;
        self.on.store(false, Ordering::Relaxed);
        Some(Ended {
            total: ended.total,
            lasted: ended.since.elapsed(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spell_is_logged_when_it_starts_and_ends_not_per_occurrence() {
        let spell = Spell::default();
        assert_eq!(spell.end(), None);
        assert_eq!(spell.hit(), Hit::Started);
        assert!(spell.is_on());
        for _ in 0..1_000 {
            assert_eq!(spell.hit(), Hit::Quiet);
        }
        let ended = spell.end().expect("a spell was under way");
        assert_eq!(ended.total, 1_001);
        assert!(!spell.is_on());
        assert_eq!(spell.hit(), Hit::Started, "a new spell");
    }
}
