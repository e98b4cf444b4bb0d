//! Small helpers over `std::sync`, and the thread slots that pick a shard.

use std::cell::Cell;
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Locks a mutex, ignoring poisoning: the agent's tables stay consistent
/// across a panic elsewhere, and the host must never be brought down by one.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Read-locks, ignoring poisoning (see [`lock`]).
pub(crate) fn read<T>(rw: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    rw.read().unwrap_or_else(|e| e.into_inner())
}

/// Write-locks, ignoring poisoning (see [`lock`]).
pub(crate) fn write<T>(rw: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    rw.write().unwrap_or_else(|e| e.into_inner())
}

/// Thread slots: the lowest free one is handed to a thread when it first
/// records, and given back when the thread exits.
struct Slots {
    free: Vec<usize>,
    next: usize,
}

static SLOTS: Mutex<Slots> = Mutex::new(Slots {
    free: Vec::new(),
    next: 0,
});

/// The slot a thread holds while it lives.
struct Slot(Cell<usize>);

impl Drop for Slot {
    fn drop(&mut self) {
        let slot = self.0.get();
        if slot != NO_SLOT {
            lock(&SLOTS).free.push(slot);
        }
    }
}

thread_local! {
    static SLOT: Slot = const { Slot(Cell::new(NO_SLOT)) };
}

/// What [`thread_slot`] returns when the thread's slot can no longer be read
/// (during its exit): a slot that owns nothing.
pub(crate) const NO_SLOT: usize = usize::MAX;

/// A small number that tells this thread's recording shard.
///
/// No two live threads hold the same slot, which is what lets the thread
/// whose slot equals a shard's index write that shard's owned totals with
/// plain stores (see `series.rs`). A slot is handed out on first use, the
/// lowest free one first, and given back when its thread exits, so the live
/// recording threads keep the low slots even where threads come and go. The
/// hand-over goes through a mutex, so the next holder sees everything the
/// previous one wrote. Returns [`NO_SLOT`] once the thread's slot is gone.
#[inline(always)]
pub(crate) fn thread_slot() -> usize {
    SLOT.try_with(|cell| {
        let slot = cell.0.get();
        if slot != NO_SLOT {
            return slot;
        }
        let slot = claim_slot();
        cell.0.set(slot);
        slot
    })
    .unwrap_or(NO_SLOT)
}

#[cold]
fn claim_slot() -> usize {
    let mut slots = lock(&SLOTS);
    let lowest = slots
        .free
        .iter()
        .enumerate()
        .min_by_key(|&(_, slot)| *slot)
        .map(|(at, _)| at);
    match lowest {
        Some(at) => slots.free.swap_remove(at),
        None => {
            slots.next += 1;
            slots.next - 1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_threads_hold_distinct_slots_and_exited_ones_give_theirs_back() {
        let mine = thread_slot();
        assert_eq!(thread_slot(), mine, "a thread keeps its slot");
        let first = std::thread::spawn(thread_slot).join().unwrap();
        assert_ne!(first, mine);
        // The exited thread's slot is free again, and the lowest free one is
        // handed out first (other tests' threads may hold lower ones).
        let second = std::thread::spawn(thread_slot).join().unwrap();
        assert!(second <= first, "{second} > {first}");
        let barrier = std::sync::Barrier::new(4);
        let live: Vec<usize> = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..4)
                .map(|_| {
                    scope.spawn(|| {
                        let slot = thread_slot();
                        barrier.wait();
                        slot
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        });
        let mut distinct = live.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 4, "{live:?}");
        assert!(!live.contains(&mine));
    }
}
