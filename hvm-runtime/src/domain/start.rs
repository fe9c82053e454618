//! `pvio create` without `--dry-run`: reserve the name, write what the
//! supervisor starts, start the supervisor as a detached process (a
//! re-exec of `pvio` in its own session, its output in
//! `supervisor.log`, the domain lock handed over on descriptor 3), and
//! wait until the guest runs.

use std::fs::OpenOptions;
use std::os::unix::io::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::launch::LaunchSpec;
use super::record::{DomainRecord, DomainState};
use super::rundir::{Reservation, RunRoot, LOG, RECORD};
use super::supervisor::{qemu_log_tail, LOCK_FD};
use super::DomainError;
use crate::config::options::Serial;
use crate::plan::DomainPlan;

/// How long a domain may take to run once its supervisor started.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The hidden command that runs a supervisor: `pvio supervise DIR`.
pub const SUPERVISE: &str = "supervise";

/// Starts the domain of `plan` and returns its record once it runs.
/// `serial` is the config's first serial port.
pub fn start(
    plan: &DomainPlan,
    config: Option<&Path>,
    serial: Option<&Serial>,
) -> Result<DomainRecord, DomainError> {
    let root = RunRoot::new(plan.run_dir.parent().unwrap_or(Path::new("/")));
    let res = root.reserve(&plan.name)?;
    let launch = LaunchSpec::from_plan(plan, res.id, config, serial);
    launch.store(&res.dir)?;
    launch.initial_record().store(&res.dir.join(RECORD))?;
    let child = spawn_supervisor(&res)?;
    let dir = res.dir.clone();
    // The supervisor holds the lock now (the same open file); ours goes.
    drop(res);
    wait_running(&plan.name, &dir, child)
}

fn spawn_supervisor(res: &Reservation) -> Result<Child, DomainError> {
    spawn_supervisor_for(&res.dir, &res.lock, false)
}

/// Starts `pvio supervise [--adopt] DIR` detached, with `lock` (held) on
/// [`LOCK_FD`]: a new domain's, or one that adopts a running QEMU whose
/// supervisor died.
pub(super) fn spawn_supervisor_for(
    dir: &Path,
    lock: &super::lock::FileLock,
    adopt: bool,
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
    // SAFETY: the closure runs in the forked child before exec and calls
    // only setsid, umask, dup2, fcntl and close_range, which are
    // async-signal-safe. setsid detaches the supervisor from the terminal
    // (it survives its closing); the lock lands on LOCK_FD without
    // close-on-exec; every other descriptor the caller had open (a file,
    // a pipe of the shell that ran `pvio create`) is closed, and the
    // supervisor creates its files private unless it says otherwise.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::umask(0o077);
            let rc = if fd == LOCK_FD {
                libc::fcntl(fd, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, LOCK_FD)
            };
            if rc < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let first = libc::c_uint::try_from(LOCK_FD + 1).unwrap_or(4);
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
