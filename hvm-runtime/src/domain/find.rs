//! Finding the domains that run: a domain whose supervisor died is
//! adopted by a new supervisor when its QEMU still runs, and cleaned up
//! after otherwise. These are [`RunRoot`]'s lookups; they live here,
//! above adoption and clean-up, so that the run dir's layout and name
//! reservation (`rundir.rs`) need neither.

use std::fs;

use super::files::{LOCK, RECORD};
use super::lock::FileLock;
use super::record::{DomainRecord, DomainState};
use super::rundir::{valid_name, Found, RunRoot};
use super::{adopt, cleanup, DomainError};

impl RunRoot {
    /// Every domain that runs (or is starting, paused, preserved). A domain
    /// whose supervisor died is cleaned on the way and reported through
    /// `on_dead`.
    pub fn live_domains(&self, mut on_dead: impl FnMut(&DomainRecord)) -> Vec<Found> {
        let Ok(entries) = fs::read_dir(self.path()) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        let mut out = Vec::new();
        for name in names {
            match self.live(&name) {
                Ok(f) => out.push(f),
                Err(DomainError::SupervisorDied { record, .. }) => on_dead(&record),
                Err(_) => {}
            }
        }
        out.sort_by_key(|f| f.record.identity.id);
        out
    }

    /// The running domain `name`. A dead supervisor's domain is cleaned
    /// and reported as [`DomainError::SupervisorDied`].
    pub fn live(&self, name: &str) -> Result<Found, DomainError> {
        if !valid_name(name) {
            return Err(DomainError::NoSuchDomain(name.to_owned()));
        }
        let dir = self.domain_dir(name);
        let no_such = || DomainError::NoSuchDomain(name.to_owned());
        let record = DomainRecord::load(&dir.join(RECORD)).map_err(|_| no_such())?;
        let held = FileLock::is_held(&dir.join(LOCK)).unwrap_or(false);
        if held {
            return Ok(Found { dir, record });
        }
        if record.state == DomainState::Ended {
            return Err(no_such());
        }
        // The supervisor is gone but never recorded an end: clean up
        // under the global lock (a `create` may be racing for the name).
        let _global = self.lock_global()?;
        let mut record = DomainRecord::load(&dir.join(RECORD)).map_err(|_| no_such())?;
        if FileLock::is_held(&dir.join(LOCK)).unwrap_or(false) {
            return Ok(Found { dir, record });
        }
        if record.state == DomainState::Ended {
            return Err(no_such());
        }
        // QEMU outlived its supervisor: a new one adopts the domain.
        if adopt::adoptable(&record) {
            match adopt::respawn(&dir) {
                Ok(record) => return Ok(Found { dir, record }),
                Err(e) => tracing::warn!(
                    "domain {name}: {}; cleaning up after it",
                    crate::report::error_line(&e)
                ),
            }
            record = DomainRecord::load(&dir.join(RECORD)).map_err(|_| no_such())?;
            if record.state == DomainState::Ended {
                return Err(no_such());
            }
        }
        cleanup::reap_dead(&dir, &mut record);
        Err(DomainError::SupervisorDied {
            name: name.to_owned(),
            record: Box::new(record),
        })
    }
}
