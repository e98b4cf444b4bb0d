//! Locks that outlive a panic, and scoped threads joined.
//!
//! A panic while a lock is held (a bug in one request's handling) must not
//! take every later request down with it: what the reporter keeps behind its
//! locks (caches, counters, budgets, pending rows) stays usable, so these
//! take the lock whether or not it was poisoned.

use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Locks `mutex`, poisoned or not.
pub(crate) fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Read-locks `rw`, poisoned or not.
pub(crate) fn read<T: ?Sized>(rw: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    rw.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Write-locks `rw`, poisoned or not.
pub(crate) fn write<T: ?Sized>(rw: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    rw.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What scoped thread `thread` returned, once it ends; its panic goes on
/// in the caller, as if the work had been done there.
pub(crate) fn joined<T>(thread: std::thread::ScopedJoinHandle<'_, T>) -> T {
    thread.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}
