//! `flock(2)` locks on files in the run dir. The supervisor holds its
//! domain's lock for as long as it lives, so "the lock is free" means "the
//! supervisor is gone", whatever its pid became; a short-lived global lock
//! serialises name reservation and clean-up.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::fs::FlockOperation;

/// A held lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct FileLock {
    file: File,
}

impl FileLock {
    /// Waits for the exclusive lock on `path` (created if missing).
    pub fn exclusive(path: &Path) -> io::Result<FileLock> {
        let file = open(path)?;
        flock(&file, FlockOperation::LockExclusive)?;
        Ok(FileLock { file })
    }

    /// Takes the exclusive lock on `path` if nobody holds it.
    pub fn try_exclusive(path: &Path) -> io::Result<Option<FileLock>> {
        let file = open(path)?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(FileLock { file })),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Waits up to `timeout` for the lock on `path` to be free; true when
    /// it was (it is not kept).
    pub fn wait_free(path: &Path, timeout: Duration) -> io::Result<bool> {
        let start = Instant::now();
        loop {
            if Self::try_exclusive(path)?.is_some() {
                return Ok(true);
            }
            if start.elapsed() >= timeout {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether someone holds the lock on `path` (a missing file is free).
    pub fn is_held(path: &Path) -> io::Result<bool> {
        if !path.exists() {
            return Ok(false);
        }
        Ok(Self::try_exclusive(path)?.is_none())
    }

    /// The locked file (its descriptor is handed to the supervisor).
    pub fn file(&self) -> &File {
        &self.file
    }
}

fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
}

fn flock(file: &File, op: FlockOperation) -> io::Result<()> {
    loop {
        match rustix::fs::flock(file, op) {
            Err(rustix::io::Errno::INTR) => continue,
            r => return r.map_err(io::Error::from),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_taker_sees_it_held_until_drop() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("lock");
        assert!(!FileLock::is_held(&p).unwrap());
        let held = FileLock::exclusive(&p).unwrap();
        assert!(FileLock::is_held(&p).unwrap());
        assert!(FileLock::try_exclusive(&p).unwrap().is_none());
        assert!(!FileLock::wait_free(&p, Duration::from_millis(100)).unwrap());
        drop(held);
        assert!(FileLock::wait_free(&p, Duration::from_secs(1)).unwrap());
    }
}
