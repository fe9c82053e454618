//! Fds a backend inherits from the process that started it (a supervisor
//! that opened the image, the tap queues or the listening socket), given by
//! number on the command line.
//!
//! Each is taken over once as an [`OwnedFd`] and made close-on-exec. It
//! must not know what the fds are for.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use rustix::io::{fcntl_getfd, fcntl_setfd, FdFlags};

/// Errors taking over inherited fds, each one line with what to do next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InheritError {
    /// 0, 1 and 2 are stdin, stdout and stderr.
    #[error("fd {0} is a standard stream; pass descriptors numbered 3 or above")]
    Standard(RawFd),
    /// The same number given twice.
    #[error("fd {0} is given twice; pass each descriptor once")]
    Twice(RawFd),
    /// Neither the path nor the fd form of an option was given.
    #[error("give {0}")]
    Neither(&'static str),
    /// Not open in this process.
    #[error("fd {0} is not open in this process; keep it open (without FD_CLOEXEC) when starting the backend")]
    NotOpen(RawFd),
}

/// Takes over `fds` (in order), checking each is open, above 2 and given
/// once; each becomes close-on-exec. Call once per fd number, early in
/// `main`, before anything else in the process could open or close fds.
pub fn take_inherited(fds: &[RawFd]) -> Result<Vec<OwnedFd>, InheritError> {
    for (i, &fd) in fds.iter().enumerate() {
        if fd <= 2 {
            return Err(InheritError::Standard(fd));
        }
        if fds[..i].contains(&fd) {
            return Err(InheritError::Twice(fd));
        }
        // SAFETY: F_GETFD on a number only reads its flags; a closed number
        // gives EBADF and nothing else happens.
        let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        if fcntl_getfd(borrowed).is_err() {
            return Err(InheritError::NotOpen(fd));
        }
    }
    let owned = fds
        .iter()
        .map(|&fd| {
            // SAFETY: the fd is open (checked above), was inherited from the
            // parent (the caller's contract: a number from the command
            // line), and each number is taken over once (checked above), so
            // nothing else in the process owns it.
            unsafe { OwnedFd::from_raw_fd(fd) }
        })
        .collect::<Vec<_>>();
    for fd in &owned {
        // Cannot fail on an open fd.
        let _ = fcntl_setfd(fd, FdFlags::CLOEXEC);
    }
    Ok(owned)
}

/// Takes over the optional fds `a` and `b` together (so that one number
/// cannot be given for both).
pub fn take_two(
    a: Option<RawFd>,
    b: Option<RawFd>,
) -> Result<(Option<OwnedFd>, Option<OwnedFd>), InheritError> {
    let numbers: Vec<RawFd> = a.iter().chain(&b).copied().collect();
    let mut owned = take_inherited(&numbers)?.into_iter();
    let first = a.and_then(|_| owned.next());
    let second = b.and_then(|_| owned.next());
    Ok((first, second))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsRawFd, IntoRawFd};

    #[test]
    fn inherited_fds_are_checked_and_made_cloexec() {
        assert_eq!(take_inherited(&[1]).unwrap_err(), InheritError::Standard(1));
        let f = std::fs::File::open("/dev/null").unwrap();
        let raw = f.into_raw_fd();
        rustix::io::fcntl_setfd(
            // SAFETY: `raw` was just released by the File and is open.
            unsafe { std::os::fd::BorrowedFd::borrow_raw(raw) },
            FdFlags::empty(),
        )
        .unwrap();
        assert_eq!(
            take_inherited(&[raw, raw]).unwrap_err(),
            InheritError::Twice(raw)
        );
        let owned = take_inherited(&[raw]).unwrap();
        assert_eq!(owned[0].as_raw_fd(), raw);
        assert!(fcntl_getfd(&owned[0]).unwrap().contains(FdFlags::CLOEXEC));
    }
}
