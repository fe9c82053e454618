//! `pvio create` without `--dry-run`: reserve the name, write what the
//! supervisor starts, start the supervisor as a detached process (a
//! re-exec of `pvio` in its own session, its output in
//! `supervisor.log`, the domain lock handed over on descriptor 3), and
//! wait until the guest runs.

use std::os::fd::BorrowedFd;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use super::files::{qemu_log_tail, LOG, RECORD};
use super::handover::spawn_supervisor_for;
use super::launch::{Incoming, LaunchSpec};
use super::record::{DomainRecord, DomainState};
use super::rundir::RunRoot;
use super::DomainError;
use crate::config::options::Serial;
use crate::plan::DomainPlan;

/// How long a domain may take to run once its supervisor started.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

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
