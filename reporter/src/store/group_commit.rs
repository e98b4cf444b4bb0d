//! Group commit: concurrent writers' rows gathered into one write.
//!
//! The ClickHouse store must not send one INSERT per OTLP request: every
//! INSERT makes a part per table (and per materialised view), and at
//! hundreds of small INSERTs per second ClickHouse's merges fall behind
//! until it refuses inserts ("Too many parts"). Yet a request may be
//! acknowledged only once its rows are stored. So writers hand their rows
//! to a [`GroupCommit`] and wait: the first writer of a group (its *leader*)
//! waits until the previous group's write is done and `interval` has passed
//! since it started (or the group holds `max_rows`), then writes the whole
//! group at once; every writer of the group returns that one write's
//! outcome. A write that finds the store idle goes at once, so a lone
//! writer waits at most `interval` between its writes; under load there is
//! at most one write per `interval`, however many writers there are.
//!
//! No thread of its own: the leader is a writer already blocked in
//! [`crate::store::Store::write`], so nothing needs starting or stopping.

use std::sync::{mpsc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Rows waiting to be written, which can take in another writer's.
pub(crate) trait Gather: Sized {
    /// Rows held, compared with `max_rows`.
    fn rows(&self) -> usize;
    /// Takes in `other`'s rows.
    fn gather(&mut self, other: Self);
}

/// Gathers concurrent writers' rows into one write; see the
/// [module documentation](self).
pub(crate) struct GroupCommit<G, E> {
    interval: Duration,
    max_rows: usize,
    state: Mutex<State<G, E>>,
    changed: Condvar,
}

struct State<G, E> {
    /// The group being gathered, if any: its leader is waiting.
    open: Option<Open<G, E>>,
    /// A group's write is under way.
    writing: bool,
    /// When the last group's write started.
    last_write: Option<Instant>,
}

struct Open<G, E> {
    rows: G,
    /// Where each writer but the leader waits for the outcome.
    followers: Vec<mpsc::Sender<Result<(), E>>>,
}

/// Clears `writing` when a leader's write ends, even by a panic, so that the
/// next group is not stuck behind it.
struct Writing<'a, G, E>(&'a GroupCommit<G, E>);

impl<G, E> Drop for Writing<'_, G, E> {
    fn drop(&mut self) {
        self.0.lock().writing = false;
        self.0.changed.notify_all();
    }
}

impl<G, E> GroupCommit<G, E> {
    fn lock(&self) -> MutexGuard<'_, State<G, E>> {
        crate::sync::lock(&self.state)
    }
}

impl<G: Gather, E: Clone> GroupCommit<G, E> {
    /// Writes at most once per `interval` (a group of `max_rows` or more
    /// goes as soon as the previous write is done).
    pub(crate) fn new(interval: Duration, max_rows: usize) -> Self {
        GroupCommit {
            interval,
            max_rows,
            state: Mutex::new(State {
                open: None,
                writing: false,
                last_write: None,
            }),
            changed: Condvar::new(),
        }
    }

    /// Adds `rows` to the open group (or opens one) and returns once the
    /// write holding them is done, with its outcome. `write` is called, by
    /// one writer of the group, with the whole group's rows; `lost` is the
    /// error returned if that writer vanished without an outcome.
    pub(crate) fn commit(
        &self,
        rows: G,
        write: impl FnOnce(G) -> Result<(), E>,
        lost: impl FnOnce() -> E,
    ) -> Result<(), E> {
        let mut state = self.lock();
        if let Some(open) = &mut state.open {
            open.rows.gather(rows);
            let (sender, outcome) = mpsc::channel();
            open.followers.push(sender);
            if open.rows.rows() >= self.max_rows {
                self.changed.notify_all();
            }
            drop(state);
            return outcome.recv().unwrap_or_else(|_| Err(lost()));
        }
        state.open = Some(Open {
            rows,
            followers: Vec::new(),
        });
        // The leader: wait for the previous write, then for the interval
        // unless the group is full.
        loop {
            if state.writing {
                state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            let full = state.open.as_ref().is_some_and(|o| o.rows.rows() >= self.max_rows);
            let due = state.last_write.map_or(Duration::ZERO, |last| {
                (last + self.interval).saturating_duration_since(Instant::now())
            });
            if full || due.is_zero() {
                break;
            }
            state = self
                .changed
                .wait_timeout(state, due)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        let Some(open) = state.open.take() else {
            return Err(lost());
        };
        state.writing = true;
        state.last_write = Some(Instant::now());
        drop(state);
        let writing = Writing(self);
        let outcome = write(open.rows);
        drop(writing);
        for follower in open.followers {
            // A follower that is gone no longer needs its answer.
            let _ = follower.send(outcome.clone());
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;

    #[derive(Debug)]
    struct Rows(Vec<u32>);

    impl Gather for Rows {
        fn rows(&self) -> usize {
            self.0.len()
        }
        fn gather(&mut self, other: Self) {
            self.0.extend(other.0);
        }
    }

    /// A writer's outcome: on failure, the rows of the write refused.
    type Outcome = Result<(), Vec<u32>>;

    /// Sixteen writers at once, writer `i` writing row `i`: each writer's
    /// outcome (on failure, the rows of the write refused), the rows
    /// written, and how many writes there were.
    fn writers(fail: bool) -> (Vec<Outcome>, Vec<u32>, usize) {
        // A long interval: the first write goes at once, the rest gather behind it.
        let group = Arc::new(GroupCommit::<Rows, Vec<u32>>::new(
            Duration::from_millis(300),
            usize::MAX,
        ));
        let written = Arc::new(Mutex::new(Vec::new()));
        let writes = Arc::new(AtomicUsize::new(0));
        let barrier = Arc::new(std::sync::Barrier::new(16));
        let threads: Vec<_> = (0..16u32)
            .map(|i| {
                let (group, written, writes, barrier) =
                    (group.clone(), written.clone(), writes.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    group.commit(
                        Rows(vec![i]),
                        |rows| {
                            writes.fetch_add(1, Ordering::Relaxed);
                            if fail {
                                return Err(rows.0);
                            }
                            written.lock().unwrap().extend(rows.0);
                            Ok(())
                        },
                        Vec::new,
                    )
                })
            })
            .collect();
        let outcomes = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let mut rows = written.lock().unwrap().clone();
        rows.sort_unstable();
        (outcomes, rows, writes.load(Ordering::Relaxed))
    }

    #[test]
    fn concurrent_writers_share_writes_and_all_rows_land_once() {
        let (outcomes, rows, writes) = writers(false);
        assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
        assert_eq!(rows, (0..16).collect::<Vec<_>>());
        assert!(writes < 16, "{writes} writes for 16 writers");
    }

    #[test]
    fn a_failed_write_fails_every_writer_whose_rows_it_held() {
        let (outcomes, rows, writes) = writers(true);
        assert!(rows.is_empty());
        for (i, outcome) in outcomes.iter().enumerate() {
            let refused = outcome.as_ref().expect_err("every write failed");
            assert!(refused.contains(&(i as u32)), "writer {i} was told of {refused:?}");
        }
        assert!(writes < 16);
    }

    #[test]
    fn a_full_group_does_not_wait_for_the_interval() {
        let group = GroupCommit::<Rows, Vec<u32>>::new(Duration::from_secs(3_600), 2);
        let mut writes = 0;
        for i in 0..3 {
            group
                .commit(
                    Rows(vec![i, i]),
                    |_| {
                        writes += 1;
                        Ok(())
                    },
                    Vec::new,
                )
                .unwrap();
        }
        assert_eq!(writes, 3, "three full groups written without waiting an hour");
    }
}
