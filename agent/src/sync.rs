//! Small helpers over `std::sync` and the per-thread shard index.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
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

static NEXT_THREAD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static THREAD_INDEX: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// A small number that tells this thread's recording shard, handed out in
/// order of first use so that the first N threads get distinct shards.
#[inline(always)]
pub(crate) fn thread_index() -> usize {
    THREAD_INDEX
        .try_with(|cell| {
            let index = cell.get();
            if index != usize::MAX {
                return index;
            }
            let index = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
            cell.set(index);
            index
        })
        .unwrap_or(0)
}
