//! `pvio create` without `--dry-run`: reserve the name, write what the
//! supervisor starts, start the supervisor as a detached process (a
//! re-exec of `pvio` in its own session, its output in
//! `supervisor.log`, the domain lock handed over on descriptor 3), and
//! wait until the guest runs.

use std::fs::OpenOptions;
use std::os::fd::BorrowedFd;
use std::os::unix::io::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::incoming::INCOMING_FD;
use super::launch::{Incoming, LaunchSpec};
use super::record::{DomainRecord, DomainState};
use super::rundir::{RunRoot, LOG, RECORD};
use super::supervisor::{qemu_log_tail, LOCK_FD};
use super::DomainError;
use crate::config::options::Serial;
use crate::plan::DomainPlan;

/// How long a domain may take to run once its supervisor started.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The hidden command that runs a supervisor: `pvio supervise DIR`.
pub const SUPERVISE: &str = "supervise";

/// What the domain starts from besides its plan.
#[derive(Debug, Default)]
pub struct Origin<'a> {
    /// The config file.
    pub config: Option<&'a Path>,
    /// The config's first serial port.
    pub serial: Option<&'a Serial>,
    /// The config's text and the `key=value` overrides (a save carries
    /// them).
    pub config_text: Option<String>,
    /// The overrides.
    pub overrides: Vec<String>,
    /// The config's `nomigrate`.
    pub nomigrate: bool,
    /// A saved or migrated state to start from, and the descriptor it is
    /// read from (handed to the supervisor on `INCOMING_FD`).
    pub incoming: Option<(Incoming, BorrowedFd<'a>)>,
}

/// Starts the domain of `plan` and returns its record once it runs (or,
/// with `wait` false, once its supervisor started).
pub fn start(plan: &DomainPlan, from: Origin<'_>, wait: bool) -> Result<DomainRecord, DomainError> {
    let root = RunRoot::new(plan.run_dir.parent().unwrap_or(Path::new("/")));
    let res = root.reserve(&plan.name)?;
    let mut launch = LaunchSpec::from_plan(plan, res.id, from.config, from.serial);
    launch.config_text = from.config_text;
    launch.overrides = from.overrides;
    launch.nomigrate = from.nomigrate;
    let stream = from.incoming.map(|(inc, fd)| {
        launch.incoming = Some(inc);
        fd
    });
    launch.store(&res.dir)?;
    let first = launch.initial_record();
    first.store(&res.dir.join(RECORD))?;
    let child = spawn_supervisor_for(&res.dir, &res.lock, false, stream)?;
    let dir = res.dir.clone();
    // The supervisor holds the lock now (the same open file); ours goes.
    drop(res);
    if !wait {
        return Ok(first);
    }
    wait_running(&plan.name, &dir, child)
}

/// Starts `pvio supervise [--adopt] DIR` detached, with `lock` (held) on
/// [`LOCK_FD`]: a new domain's, or one that adopts a running QEMU whose
/// supervisor died.
pub(super) fn spawn_supervisor_for(
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

fn wait_running(name: &str, dir: &Path, mut child: Child) -> Result<DomainRecord, DomainError> {
    let failed = |why: String| DomainError::StartFailed {
        name: name.to_owned(),
        why,
    };
    let start = Instant::now();
    loop {
        if let Ok(r) = DomainRecord::load(&dir.join(RECORD)) {
            match r.state {
                DomainState::Running | DomainState::Paused => return Ok(r),
                DomainState::Ended => {
                    let why = r.ended.map_or_else(String::new, |e| e.detail);
                    return Err(failed(format!("{why} (log: {})", dir.join(LOG).display())));
                }
                _ => {}
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            // It may have recorded its end just before exiting.
            if let Ok(r) = DomainRecord::load(&dir.join(RECORD)) {
                if r.state != DomainState::Starting {
                    continue;
                }
            }
            return Err(failed(format!(
                "its supervisor exited ({status}){}; see {}",
                log_tail(dir),
                dir.join(LOG).display()
            )));
        }
        if start.elapsed() > START_TIMEOUT {
            return Err(failed(format!(
                "not running after {START_TIMEOUT:?}{}; see {}",
                qemu_log_tail(dir),
                dir.join(LOG).display()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn log_tail(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join(LOG)).unwrap_or_default();
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map_or_else(String::new, |l| format!(": {}", l.trim()))
}
