//! What `pvio create` (and a command that finds a domain whose supervisor
//! died) hands a new supervisor: the process itself, detached in its own
//! session, with the domain's lock on [`LOCK_FD`] and, for a domain that
//! starts from a saved or migrated state, the stream on [`INCOMING_FD`];
//! every other descriptor closed.

use std::fs::OpenOptions;
use std::os::fd::BorrowedFd;
use std::os::unix::io::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::files::LOG;
use super::DomainError;

/// The hidden command that runs a supervisor: `pvio supervise DIR`.
pub const SUPERVISE: &str = "supervise";
/// The descriptor of the domain lock the supervisor inherits.
pub const LOCK_FD: RawFd = 3;
/// Where the supervisor of an incoming domain finds the stream.
pub const INCOMING_FD: RawFd = 4;

/// Starts `pvio supervise [--adopt] DIR` detached, with `lock` (held) on
/// [`LOCK_FD`]: a new domain's, or one that adopts a running QEMU whose
/// supervisor died.
pub fn spawn_supervisor_for(
    dir: &Path,
    lock: &super::lock::FileLock,
    adopt: bool,
    stream: Option<BorrowedFd<'_>>,
) -> Result<Child, DomainError> {
    struct Res<'a> {
        dir: &'a Path,
        lock: &'a super::lock::FileLock,
    }
    let res = Res { dir, lock };
    let exe = std::env::current_exe().map_err(DomainError::Spawn)?;
    let log_path = res.dir.join(LOG);
    let open_log = || {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|source| DomainError::Io {
                what: "open",
                path: log_path.clone(),
                source,
            })
    };
    let mut cmd = Command::new(exe);
    cmd.arg(SUPERVISE);
    if adopt {
        cmd.arg("--adopt");
    }
    if stream.is_some() {
        cmd.arg("--incoming");
    }
    cmd.arg(res.dir)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(open_log()?)
        .stderr(open_log()?);
    super::access::protect(
        &log_path,
        super::access::RECORD_MODE,
        super::access::operators_gid(),
    )
    .map_err(|source| DomainError::Io {
        what: "set the mode of",
        path: log_path.clone(),
        source,
    })?;
    let fd = res.lock.file().as_raw_fd();
    let stream_fd = stream.map(|s| s.as_raw_fd());
    // SAFETY: the closure runs in the forked child before exec and calls
    // only setsid, umask, dup2, fcntl and close_range, which are
    // async-signal-safe. setsid detaches the supervisor from the terminal
    // (it survives its closing); the lock lands on LOCK_FD without
    // close-on-exec; an incoming domain's stream lands on INCOMING_FD the
    // same way; every other descriptor the caller had open (a file,
    // a pipe of the shell that ran `pvio create`) is closed, and the
    // supervisor creates its files private unless it says otherwise.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::umask(0o077);
            // The stream out of the way first: it may sit on LOCK_FD.
            let stream_hi = match stream_fd {
                Some(s) => {
                    let hi = libc::fcntl(s, libc::F_DUPFD, 64);
                    if hi < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Some(hi)
                }
                None => None,
            };
            let rc = if fd == LOCK_FD {
                libc::fcntl(fd, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, LOCK_FD)
            };
            if rc < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let mut last = LOCK_FD;
            if let Some(s) = stream_hi {
                // Its copy (above 63, so neither the lock nor the stream's
                // place) lands on INCOMING_FD without close-on-exec.
                if libc::dup2(s, INCOMING_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                last = INCOMING_FD;
            }
            let first = libc::c_uint::try_from(last + 1).unwrap_or(4);
            if libc::syscall(libc::SYS_close_range, first, libc::c_uint::MAX, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn().map_err(DomainError::Spawn)
}
