//! The ingest journal: acknowledged batches, appended to a file before they
//! are acknowledged, until a flush has merged them into the tables.
//!
//! The journal lives beside the store, in `<store>-ingest/` (not
//! `-journal`, SQLite's own rollback journal's name), as numbered
//! segments (`00000000000000000001.log`, ...). A record is a little-endian
//! `u32` length and that many bytes of the batch (postcard-encoded, its
//! points by series and label id: `super::pending::RecordRef`). A flush
//! rotates to a new segment, commits what the older segments held to the
//! tables together with their number (`journal_flushed_through` in `meta`),
//! then deletes them; on open, segments past that number are replayed. An
//! append that fails (a full disk) is cut back off, so the segment never
//! holds a torn record before good ones; a torn record at the very end, left
//! by a crash in the middle of an append, was never acknowledged and is
//! dropped on replay.
//!
//! By default a record is in the kernel once `write` returns: it survives a
//! crash of the reporter (kill -9), like SQLite's WAL with
//! `synchronous=NORMAL`, though not a power cut. With
//! [`Journal::set_fsync`] (`[journal] fsync = "batch"`) each append is also
//! `fdatasync`ed before it returns, and the directory after a new segment is
//! created, so an acknowledged batch survives a power cut too (at the cost
//! the README measures).
//!
//! One process at a time owns the journal: it holds an exclusive lock on
//! `<store>-ingest/lock` while the journal is open. Another process opening
//! the store (`kuroko sql`, `kuroko report`, `kuroko query`) gets
//! [`io::ErrorKind::WouldBlock`] and opens the store without the journal, so
//! it never replays segments a running reporter still holds in memory; a
//! second `kuroko serve` is refused, naming the holder: the lock file holds
//! the pid of the process that locked it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Bytes before each record: its length, little-endian.
pub(crate) const FRAME: usize = 4;

/// The open journal: the segment being appended to.
#[derive(Debug)]
pub(crate) struct Journal {
    dir: PathBuf,
    segment: u64,
    file: File,
    len: u64,
    /// Whether each append is synced to the disk before it returns.
    fsync: bool,
    /// Syncs done since the journal was opened.
    fsyncs: u64,
    /// Held locked while the journal is open; unlocked when dropped (or when
    /// the process dies).
    _lock: File,
}

/// A segment's records, and whether it ended in a torn record.
#[derive(Debug)]
pub(crate) struct Segment {
    /// Its number.
    pub(crate) number: u64,
    /// Its whole records, in order.
    pub(crate) records: Vec<Vec<u8>>,
    /// Bytes of a torn last record, dropped.
    pub(crate) torn: usize,
}

fn segment_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("{segment:020}.log"))
}

/// Segment numbers in `dir`, ascending.
fn segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut numbers = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        if let Some(number) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| n.parse::<u64>().ok())
        {
            numbers.push(number);
        }
    }
    numbers.sort_unstable();
    Ok(numbers)
}

impl Journal {
    /// The journal directory of the store at `store`.
    pub(crate) fn dir_of(store: &Path) -> PathBuf {
        let mut name = store.as_os_str().to_owned();
        name.push("-ingest");
        PathBuf::from(name)
    }

    /// Reads the segments after `flushed_through` in `dir` (creating it),
    /// and opens a new segment after every existing one for appending.
    #[cfg(test)]
    pub(crate) fn open(dir: &Path, flushed_through: u64) -> io::Result<(Journal, Vec<Segment>)> {
        Journal::open_locked(dir, flushed_through, Journal::lock(dir)?)
    }

    /// Takes the journal's lock (creating `dir`): an error of kind
    /// [`io::ErrorKind::WouldBlock`] when another process holds it.
    pub(crate) fn lock(dir: &Path) -> io::Result<File> {
        fs::create_dir_all(dir)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(Journal::lock_path(dir))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    "another kuroko process is writing to this store",
                ))
            }
            Err(fs::TryLockError::Error(error)) => return Err(error),
        }
        // Who holds it, for a second reporter's refusal (not needed for
        // the lock itself: a full disk may refuse it).
        let _ = lock
            .set_len(0)
            .and_then(|()| (&lock).write_all(std::process::id().to_string().as_bytes()));
        Ok(lock)
    }

    /// The lock file of the journal in `dir`.
    pub(crate) fn lock_path(dir: &Path) -> PathBuf {
        dir.join("lock")
    }

    /// The pid the lock file in `dir` names (the process that took it last).
    pub(crate) fn holder(dir: &Path) -> Option<u32> {
        fs::read_to_string(Journal::lock_path(dir)).ok()?.trim().parse().ok()
    }

    /// Reads the segments after `flushed_through` in `dir` and opens a new
    /// segment after every existing one for appending, under the lock
    /// [`Journal::lock`] took.
    pub(crate) fn open_locked(dir: &Path, flushed_through: u64, lock: File) -> io::Result<(Journal, Vec<Segment>)> {
        let numbers = segments(dir)?;
        let mut unflushed = Vec::new();
        for &number in &numbers {
            if number <= flushed_through {
                // Flushed, but the reporter stopped before deleting it.
                fs::remove_file(segment_path(dir, number))?;
                continue;
            }
            let segment = read_segment(dir, number)?;
            if segment.records.is_empty() {
                // Nothing acknowledged in it (a reporter stopped with nothing
                // pending, or mid-way through its first append).
                fs::remove_file(segment_path(dir, number))?;
                continue;
            }
            unflushed.push(segment);
        }
        let after = numbers.last().copied().unwrap_or(0).max(flushed_through);
        Ok((Journal::new_after(dir, after, lock)?, unflushed))
    }

    /// Opens a new segment after every existing one in `dir`, under the lock
    /// [`Journal::lock`] took, and returns the existing segments' numbers
    /// unread, oldest first: a reader that takes the backlog a record at a
    /// time ([`Journal::read_each`]) holds one in memory, not all of them.
    pub(crate) fn open_backlog(dir: &Path, lock: File) -> io::Result<(Journal, Vec<u64>)> {
        let numbers = segments(dir)?;
        let after = numbers.last().copied().unwrap_or(0);
        Ok((Journal::new_after(dir, after, lock)?, numbers))
    }

    fn new_after(dir: &Path, after: u64, lock: File) -> io::Result<Journal> {
        let segment = after + 1;
        Ok(Journal {
            dir: dir.to_owned(),
            segment,
            file: create(dir, segment)?,
            len: 0,
            fsync: false,
            fsyncs: 0,
            _lock: lock,
        })
    }

    /// Calls `record` with each whole record of segment `number` in `dir`,
    /// in order, reading the file a buffer at a time (a segment may be
    /// larger than what memory should hold at once); returns the bytes of
    /// a torn last record, dropped.
    pub(crate) fn read_each(dir: &Path, number: u64, record: impl FnMut(&[u8])) -> io::Result<usize> {
        each_record(io::BufReader::new(File::open(segment_path(dir, number))?), record)
    }

    /// Bytes in segment `number` of `dir` (0 when it is gone).
    pub(crate) fn segment_len(dir: &Path, number: u64) -> u64 {
        fs::metadata(segment_path(dir, number)).map_or(0, |m| m.len())
    }

    /// Deletes segment `number` of `dir`, now in the tables.
    pub(crate) fn remove(dir: &Path, number: u64) -> io::Result<()> {
        match fs::remove_file(segment_path(dir, number)) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        }
    }

    /// The segment being appended to.
    #[cfg(test)]
    pub(crate) fn segment(&self) -> u64 {
        self.segment
    }

    /// Appends one record; on failure, cuts the segment back to where it was.
    #[cfg(test)]
    pub(crate) fn append(&mut self, record: &[u8]) -> io::Result<()> {
        let mut framed = Vec::with_capacity(record.len() + FRAME);
        framed.extend_from_slice(&[0; FRAME]);
        framed.extend_from_slice(record);
        self.append_framed(&mut framed)
    }

    /// Appends a record built behind [`FRAME`] bytes left for its length
    /// (which this writes), so that it is not copied again; on failure,
    /// cuts the segment back to where it was.
    pub(crate) fn append_framed(&mut self, framed: &mut [u8]) -> io::Result<()> {
        let len = framed
            .len()
            .checked_sub(FRAME)
            .and_then(|len| u32::try_from(len).ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "a batch over 4 GiB, or no frame"))?;
        framed[..FRAME].copy_from_slice(&len.to_le_bytes());
        let written = self.file.write_all(framed).and_then(|()| {
            if self.fsync {
                self.file.sync_data()?;
                self.fsyncs += 1;
            }
            Ok(())
        });
        match written {
            Ok(()) => {
                self.len += framed.len() as u64;
                Ok(())
            }
            Err(error) => {
                // Not acknowledged, so not kept: a record whose sync failed
                // may or may not be on the disk.
                let _ = self.file.set_len(self.len);
                Err(error)
            }
        }
    }

    /// Syncs every append to the disk before it returns (`true`), or leaves
    /// it in the kernel's page cache (`false`, the default). Turning it on
    /// syncs the segment being appended to and the directory now.
    pub(crate) fn set_fsync(&mut self, on: bool) -> io::Result<()> {
        if on && !self.fsync {
            self.file.sync_all()?;
            sync_dir(&self.dir)?;
        }
        self.fsync = on;
        Ok(())
    }

    /// Syncs done since the journal was opened
    /// (`kuroko_reporter_journal_fsyncs_total`).
    pub(crate) fn fsyncs(&self) -> u64 {
        self.fsyncs
    }

    /// Bytes in the segment being appended to (all the journal holds since
    /// the last flush rotated it).
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Starts a new segment; returns the number of the last one closed.
    pub(crate) fn rotate(&mut self) -> io::Result<u64> {
        let next = create(&self.dir, self.segment + 1)?;
        if self.fsync {
            // The new segment's name must survive a power cut with the
            // records appended to it.
            sync_dir(&self.dir)?;
            self.fsyncs += 1;
        }
        self.file = next;
        self.len = 0;
        self.segment += 1;
        Ok(self.segment - 1)
    }

    /// Deletes the segments up to `through`, now in the tables.
    pub(crate) fn remove_through(&self, through: u64) -> io::Result<()> {
        for number in segments(&self.dir)? {
            if number <= through && number != self.segment {
                fs::remove_file(segment_path(&self.dir, number))?;
            }
        }
        Ok(())
    }
}

fn create(dir: &Path, segment: u64) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(segment_path(dir, segment))
}

/// Syncs `dir` itself: the names of the files created in it.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn read_segment(dir: &Path, number: u64) -> io::Result<Segment> {
    let mut records = Vec::new();
    let torn = Journal::read_each(dir, number, |record| records.push(record.to_vec()))?;
    Ok(Segment { number, records, torn })
}

/// The records of a segment's bytes, one at a time ([`Journal::read_each`]).
fn each_record(mut from: impl Read, mut record: impl FnMut(&[u8])) -> io::Result<usize> {
    let mut buffer = Vec::new();
    loop {
        let mut frame = [0u8; FRAME];
        let got = read_up_to(&mut from, &mut frame)?;
        if got < FRAME {
            return Ok(got);
        }
        let len = u32::from_le_bytes(frame) as usize;
        buffer.clear();
        let got = (&mut from).take(len as u64).read_to_end(&mut buffer)?;
        if got < len {
            return Ok(FRAME + got);
        }
        record(&buffer);
    }
}

/// Fills `buf` from `from` until it is full or the input ends; how many
/// bytes it got.
fn read_up_to(from: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match from.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replays_unflushed_segments_and_drops_a_torn_tail() {
        let dir = std::env::temp_dir().join(format!("kuroko-journal-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let (mut journal, old) = Journal::open(&dir, 0).unwrap();
        assert!(old.is_empty());
        journal.append(b"one").unwrap();
        let closed = journal.rotate().unwrap();
        journal.append(b"two").unwrap();
        journal.append(b"three").unwrap();
        // A crash in the middle of an append leaves half a record.
        journal.file.write_all(&9u32.to_le_bytes()).unwrap();
        journal.file.write_all(b"thr").unwrap();
        drop(journal);

        // Segment `closed` was flushed: only the later one comes back.
        let (journal, unflushed) = Journal::open(&dir, closed).unwrap();
        assert_eq!(unflushed.len(), 1);
        assert_eq!(unflushed[0].records, [b"two".to_vec(), b"three".to_vec()]);
        assert_eq!(unflushed[0].torn, 7);
        assert!(!segment_path(&dir, closed).exists(), "a flushed segment is deleted");
        assert!(journal.segment() > unflushed[0].number, "appends go to a new segment");
        // While it is open, no one else gets the journal.
        let refused = Journal::open(&dir, closed).unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::WouldBlock);
        drop(journal);
        assert!(Journal::open(&dir, closed).is_ok(), "free again once closed");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn with_fsync_every_append_is_synced_and_without_none() {
        let dir = std::env::temp_dir().join(format!("kuroko-journal-fsync-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let (mut journal, _) = Journal::open(&dir, 0).unwrap();
        journal.append(b"one").unwrap();
        assert_eq!(journal.fsyncs(), 0, "off by default");
        journal.set_fsync(true).unwrap();
        journal.append(b"two").unwrap();
        journal.append(b"three").unwrap();
        assert_eq!(journal.fsyncs(), 2, "one sync per append");
        journal.rotate().unwrap();
        assert_eq!(journal.fsyncs(), 3, "and one for the new segment's name");
        journal.set_fsync(false).unwrap();
        journal.append(b"four").unwrap();
        assert_eq!(journal.fsyncs(), 3);
        drop(journal);
        let _ = fs::remove_dir_all(&dir);
    }
}
