//! The kit's cache directory and the file lock that guards work in it.
//!
//! The kernel package is downloaded and unpacked once per machine, not once
//! per test. Several test threads and several test processes may ask for it
//! at the same time, so whoever fills the cache holds an exclusive `flock` on
//! a lock file beside the entry it fills, and publishes the entry with a
//! `rename` only when it is complete.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Errors from finding the cache directory or locking in it.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// Neither `PVIO_CACHE_DIR`, `XDG_CACHE_HOME` nor `HOME` is set.
    #[error("no cache directory: set PVIO_CACHE_DIR (or HOME)")]
    NoCacheDir,
    /// The cache directory could not be created.
    #[error("cannot create the cache directory {path}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The lock file could not be opened or locked.
    #[error("cannot lock {path}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The environment variable that names the cache directory.
pub const CACHE_DIR_ENV: &str = "PVIO_CACHE_DIR";

/// The kit's cache directory: `$PVIO_CACHE_DIR`, else `$XDG_CACHE_HOME/pvio`,
/// else `~/.cache/pvio`. It is created if missing.
pub fn cache_dir() -> Result<PathBuf, CacheError> {
    let dir = resolve_cache_dir(
        std::env::var_os(CACHE_DIR_ENV),
        std::env::var_os("XDG_CACHE_HOME"),
        std::env::var_os("HOME"),
    )
    .ok_or(CacheError::NoCacheDir)?;
    std::fs::create_dir_all(&dir).map_err(|source| CacheError::CreateDir {
        path: dir.clone(),
        source,
    })?;
    Ok(dir)
}

/// The cache directory from the values of `PVIO_CACHE_DIR`,
/// `XDG_CACHE_HOME` and `HOME` (empty values count as unset, as the XDG
/// specification says).
fn resolve_cache_dir(
    pvio: Option<std::ffi::OsString>,
    xdg: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
) -> Option<PathBuf> {
    let set = |v: Option<std::ffi::OsString>| v.filter(|v| !v.is_empty()).map(PathBuf::from);
    set(pvio)
        .or_else(|| set(xdg).map(|x| x.join("pvio")))
        .or_else(|| set(home).map(|h| h.join(".cache").join("pvio")))
}

/// An exclusive `flock` on a lock file, released on drop (when the file is
/// closed). It excludes other processes and, since each holder opens the
/// file anew, other threads of this process too.
#[derive(Debug)]
pub struct FileLock {
    _file: File,
}

impl FileLock {
    /// Blocks until the exclusive lock on `path` is held. The file is created
    /// if missing and is never removed (removing it would let two holders
    /// lock two different files).
    pub fn acquire(path: &Path) -> Result<FileLock, CacheError> {
        let lock_err = |source| CacheError::Lock {
            path: path.to_owned(),
            source,
        };
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(lock_err)?;
        loop {
            // SAFETY: flock on a file descriptor that `file` owns and keeps
            // open for the duration of the call; it touches no memory.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 {
                return Ok(FileLock { _file: file });
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(lock_err(err));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn os(s: &str) -> Option<OsString> {
        Some(OsString::from(s))
    }

    #[test]
    fn pvio_cache_dir_wins() {
        assert_eq!(
            resolve_cache_dir(os("/c"), os("/x"), os("/h")),
            Some(PathBuf::from("/c"))
        );
    }

    #[test]
    fn xdg_then_home() {
        assert_eq!(
            resolve_cache_dir(None, os("/x"), os("/h")),
            Some(PathBuf::from("/x/pvio"))
        );
        assert_eq!(
            resolve_cache_dir(os(""), os(""), os("/h")),
            Some(PathBuf::from("/h/.cache/pvio"))
        );
        assert_eq!(resolve_cache_dir(None, None, None), None);
    }

    #[test]
    fn lock_excludes_a_second_holder_until_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("l.lock");
        let first = FileLock::acquire(&path).expect("first lock");
        let (tx, rx) = std::sync::mpsc::channel();
        let p2 = path.clone();
        let t = std::thread::spawn(move || {
            let _second = FileLock::acquire(&p2).expect("second lock");
            tx.send(()).expect("send");
        });
        assert!(rx
            .recv_timeout(std::time::Duration::from_millis(200))
            .is_err());
        drop(first);
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .expect("second holder got the lock after the first dropped it");
        t.join().expect("join");
    }
}
