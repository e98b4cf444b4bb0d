//! Free-space headroom on the embedded store's file system.
//!
//! Every write first appends to the journal, and a flush then needs room
//! for the rows (and SQLite's WAL) before it can delete journal segments: a
//! disk filled by the journal would leave the flush no space, and nothing
//! could move until someone freed some. So writes are refused while less
//! than `[limits] min_free_bytes` would remain free after them: the headroom
//! is what a flush (and a roll-up pass) can always use. The refusal is a
//! [`StoreError::DiskLow`], answered 503 with `Retry-After` (OTLP/HTTP) or
//! UNAVAILABLE (gRPC); clients retry, nothing acknowledged is lost.
//!
//! One log line per condition, not one per refused request
//! ([`crate::spell`]): when refusing starts, every 30 s while it lasts (with
//! the count refused since the last line), and when it clears (with the
//! total).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::StoreError;
use crate::spell::{Hit, Spell};

/// The headroom kept on the store's file system; see the
/// [module documentation](self).
#[derive(Debug)]
pub(crate) struct Headroom {
    /// A folder on the store's file system (the store's own folder).
    dir: PathBuf,
    /// Bytes that must stay free; 0: not checked.
    min_free: AtomicU64,
    /// Writes refused for want of space, since start.
    refused: AtomicU64,
    /// Writes being refused, as one condition.
    low: Spell,
}

impl Headroom {
    /// The headroom of the file system holding `store`, not yet checked
    /// (see [`Headroom::set_min_free`]).
    pub(crate) fn new(store: &Path) -> Headroom {
        let dir = match store.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
            _ => PathBuf::from("."),
        };
        Headroom {
            dir,
            min_free: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            low: Spell::default(),
        }
    }

    /// Keeps `bytes` free from now on (0: no check).
    pub(crate) fn set_min_free(&self, bytes: u64) {
        self.min_free.store(bytes, Ordering::Relaxed);
    }

    /// The bytes kept free (0: not checked).
    pub(crate) fn min_free(&self) -> u64 {
        self.min_free.load(Ordering::Relaxed)
    }

    /// Bytes free for an unprivileged writer on the store's file system;
    /// `None` when it cannot be told (then nothing is refused).
    pub(crate) fn free_bytes(&self) -> Option<u64> {
        let stat = rustix::fs::statvfs(&self.dir).ok()?;
        Some(stat.f_bavail.saturating_mul(stat.f_frsize))
    }

    /// Writes refused for want of space since start.
    pub(crate) fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Whether writes are being refused now.
    pub(crate) fn is_low(&self) -> bool {
        self.low.is_on()
    }

    /// Whether `bytes` more may be written while keeping the headroom: a
    /// [`StoreError::DiskLow`] (logged once per condition) when not.
    pub(crate) fn check(&self, bytes: u64) -> Result<(), StoreError> {
        let min_free = self.min_free();
        if min_free == 0 && !self.is_low() {
            return Ok(());
        }
        let Some(free) = self.free_bytes() else {
            return Ok(());
        };
        let fits = if min_free == 0 {
            // Refused only by the file system itself ([`Headroom::full`]).
            free >= bytes
        } else {
            free >= min_free.saturating_add(bytes)
        };
        if fits {
            self.clear(free);
            Ok(())
        } else {
            Err(self.refuse(free))
        }
    }

    /// The file system refused a write (no space left: the headroom off, or
    /// outrun by another process): refused like a write past the headroom,
    /// and logged the same way.
    pub(crate) fn full(&self) -> StoreError {
        self.refuse(self.free_bytes().unwrap_or(0))
    }

    /// Ends a spell of refusals, if one is under way (logged, with its count).
    fn clear(&self, free: u64) {
        if let Some(ended) = self.low.end() {
            tracing::warn!(
                free_bytes = free,
                min_free_bytes = self.min_free(),
                refused = ended.total,
                lasted_seconds = ended.lasted.as_secs(),
                dir = %self.dir.display(),
                "disk space is back above the headroom: accepting writes again"
            );
        }
    }

    /// Counts a refusal, logged as one condition.
    fn refuse(&self, free: u64) -> StoreError {
        let min_free = self.min_free();
        self.refused.fetch_add(1, Ordering::Relaxed);
        match self.low.hit() {
            Hit::Started => tracing::error!(
                free_bytes = free,
                min_free_bytes = min_free,
                dir = %self.dir.display(),
                "disk space low: refusing writes (503, Retry-After) so that acknowledged data can still be \
                 flushed; free space on this file system or lower [limits] min_free_bytes"
            ),
            Hit::Remind {
                since_last,
                total,
                lasted,
            } => tracing::error!(
                free_bytes = free,
                min_free_bytes = min_free,
                refused = since_last,
                refused_total = total,
                since_seconds = lasted.as_secs(),
                dir = %self.dir.display(),
                "disk space still low: writes refused since the last line"
            ),
            Hit::Quiet => {}
        }
        StoreError::DiskLow {
            dir: self.dir.display().to_string(),
            free,
            min_free,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_past_the_headroom_and_counts() {
        let headroom = Headroom::new(&std::env::temp_dir().join("kuroko.db"));
        headroom.check(1 << 40).unwrap();
        let free = headroom.free_bytes().expect("statvfs works on the temporary folder");
        headroom.set_min_free(free.saturating_add(1 << 40));
        let refused = headroom.check(0).unwrap_err();
        assert!(matches!(refused, StoreError::DiskLow { .. }), "{refused}");
        assert!(refused.to_string().contains("min_free_bytes"), "{refused}");
        assert!(headroom.is_low());
        assert_eq!(headroom.refused(), 1);
        headroom.set_min_free(1);
        headroom.check(0).unwrap();
        assert!(!headroom.is_low(), "cleared once space is back");
    }
}
