//! The run dir (`PVIO_RUN_DIR`, default `/run/pvio`): one directory per
//! domain holding its record, its supervisor lock, its log and its
//! sockets. Reserving a name happens under a global lock, so of two
//! `pvio create` with the same name one wins and the other gets a clear
//! error; a directory left by a dead supervisor is cleaned and reused.
//!
//! ```text
//! <run dir>/.lock                 global lock (name reservation, clean-up)
//! <run dir>/.next-id              the next domain id
//! <run dir>/<name>/lock           held by the domain's supervisor
//! <run dir>/<name>/domain.json    the record
//! <run dir>/<name>/launch.json    what the supervisor starts
//! <run dir>/<name>/supervisor.log the supervisor's and QEMU's output
//! <run dir>/<name>/*.sock         QMP, control and vhost-user sockets
//! ```

use std::fs;
use std::path::{Path, PathBuf};

use super::lock::FileLock;
use super::record::{DomainRecord, DomainState};
use super::{cleanup, DomainError};

pub use super::files::{CONTROL, LAUNCH, LOCK, LOG, QMP_EVENTS, RECORD};

/// The root of runtime state.
#[derive(Debug, Clone)]
pub struct RunRoot {
    root: PathBuf,
}

/// A domain name reserved for a new domain: its dir exists, its lock is
/// held (and is handed to the supervisor), its id is allocated.
#[derive(Debug)]
pub struct Reservation {
    /// The domain's dir.
    pub dir: PathBuf,
    /// The domain's id.
    pub id: u32,
    /// The held supervisor lock.
    pub lock: FileLock,
}

/// A domain found in the run dir.
#[derive(Debug, Clone)]
pub struct Found {
    /// The domain's dir.
    pub dir: PathBuf,
    /// Its record.
    pub record: DomainRecord,
}

impl RunRoot {
    /// The run dir of `PVIO_RUN_DIR` (or `/run/pvio`).
    pub fn from_env() -> RunRoot {
        RunRoot::new(crate::plan::run_root())
    }

    /// The run dir at `root`.
    pub fn new(root: impl Into<PathBuf>) -> RunRoot {
        RunRoot { root: root.into() }
    }

    /// The root directory.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// A domain's directory.
    pub fn domain_dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn ensure_root(&self) -> Result<(), DomainError> {
        super::access::make_root(&self.root).map_err(|source| DomainError::Io {
            what: "create the run dir",
            path: self.root.clone(),
            source,
        })
    }

    /// The run dir's global lock (names are reserved under it).
    pub fn lock_global(&self) -> Result<FileLock, DomainError> {
        self.global_lock()
    }

    fn global_lock(&self) -> Result<FileLock, DomainError> {
        self.ensure_root()?;
        let p = self.root.join(".lock");
        FileLock::exclusive(&p).map_err(|source| DomainError::Io {
            what: "lock",
            path: p,
            source,
        })
    }

    /// Reserves `name` for a new domain.
    pub fn reserve(&self, name: &str) -> Result<Reservation, DomainError> {
        if !valid_name(name) {
            return Err(DomainError::BadName(name.to_owned()));
        }
        let _global = self.global_lock()?;
        let dir = self.domain_dir(name);
        if dir.exists() {
            if FileLock::is_held(&dir.join(LOCK)).map_err(|source| DomainError::Io {
                what: "check the lock",
                path: dir.join(LOCK),
                source,
            })? {
                let id = DomainRecord::load(&dir.join(RECORD))
                    .ok()
                    .map(|r| r.identity.id);
                return Err(DomainError::Exists {
                    name: name.to_owned(),
                    id,
                });
            }
            // Left by an ended or dead domain: clean what may remain.
            if let Ok(mut r) = DomainRecord::load(&dir.join(RECORD)) {
                if r.state != DomainState::Ended {
                    cleanup::reap_dead(&dir, &mut r);
                }
            }
            fs::remove_dir_all(&dir).map_err(|source| DomainError::Io {
                what: "remove the old domain dir",
                path: dir.clone(),
                source,
            })?;
        }
        fs::create_dir(&dir)
            .and_then(|()| {
                super::access::protect(
                    &dir,
                    super::access::DOMAIN_DIR_MODE,
                    super::access::operators_gid(),
                )
            })
            .map_err(|source| DomainError::Io {
                what: "create the domain dir",
                path: dir.clone(),
                source,
            })?;
        let lock_path = dir.join(LOCK);
        let lock = FileLock::try_exclusive(&lock_path)
            .and_then(|l| {
                super::access::protect(
                    &lock_path,
                    super::access::RECORD_MODE,
                    super::access::operators_gid(),
                )?;
                Ok(l)
            })
            .map_err(|source| DomainError::Io {
                what: "lock",
                path: lock_path.clone(),
                source,
            })?
            .ok_or(DomainError::Exists {
                name: name.to_owned(),
                id: None,
            })?;
        let id = self.next_id()?;
        Ok(Reservation { dir, id, lock })
    }

    /// The next domain id (1, 2, ...), under the global lock.
    fn next_id(&self) -> Result<u32, DomainError> {
        let p = self.root.join(".next-id");
        let id = fs::read_to_string(&p)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .unwrap_or(1)
            .max(1);
        super::record::write_atomic(&p, id.saturating_add(1).to_string().as_bytes())?;
        Ok(id)
    }

    /// Whether this user may list the run dir: root and the operators'
    /// group may; anyone else is told so instead of seeing no domains. A
    /// run dir that does not exist yet holds no domains and is fine.
    pub fn check_readable(&self) -> Result<(), DomainError> {
        match fs::read_dir(&self.root) {
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Err(DomainError::Io {
                what: "read the run dir (root and members of group 'pvio' may: `usermod -aG pvio USER`, then log in again)",
                path: self.root.clone(),
                source: e,
            }),
            _ => Ok(()),
        }
    }

    /// The record of `name` whatever its state (`None` if there is none).
    pub fn record(&self, name: &str) -> Option<DomainRecord> {
        if !valid_name(name) {
            return None;
        }
        DomainRecord::load(&self.domain_dir(name).join(RECORD)).ok()
    }
}

/// Whether `name` can name a domain: usable as a directory name.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::record::sample;

    #[test]
    fn one_name_one_domain() {
        let tmp = tempfile::tempdir().unwrap();
        let root = RunRoot::new(tmp.path());
        let first = root.reserve("web").unwrap();
        assert_eq!(first.id, 1);
        let mut r = sample("web");
        r.identity.id = first.id;
        r.store(&first.dir.join(RECORD)).unwrap();
        let err = root.reserve("web").unwrap_err();
        assert_eq!(
            err.to_string(),
            "a domain named 'web' already exists (id 1); choose another name, e.g. `pvio create FILE name='web2'`"
        );
        assert_eq!(root.live("web").unwrap().record.identity.id, 1);
        let other = root.reserve("db").unwrap();
        assert_eq!(other.id, 2);
    }

    /// A `create` that loses the race for a name to one that has not
    /// written its record yet says so, not "id 0".
    #[test]
    fn a_name_taken_a_moment_ago_is_said_to_be_being_created() {
        let tmp = tempfile::tempdir().unwrap();
        let root = RunRoot::new(tmp.path());
        let _first = root.reserve("web").unwrap();
        let err = root.reserve("web").unwrap_err().to_string();
        assert!(!err.contains("id 0"), "{err}");
        assert!(
            err.starts_with("a domain named 'web' already exists (it is being created: another `pvio create` took the name a moment ago and has no id yet)"),
            "{err}"
        );
    }

    #[test]
    fn a_dead_supervisor_is_seen_and_cleaned() {
        let tmp = tempfile::tempdir().unwrap();
        let root = RunRoot::new(tmp.path());
        let res = root.reserve("web").unwrap();
        let sock = res.dir.join("blk-xvda.sock");
        fs::write(&sock, b"").unwrap();
        sample("web").store(&res.dir.join(RECORD)).unwrap();
        drop(res.lock); // the supervisor "dies"
        let mut dead = Vec::new();
        assert!(root
            .live_domains(|r| dead.push(r.identity.name.clone()))
            .is_empty());
        assert_eq!(dead, vec!["web".to_owned()]);
        assert!(!sock.exists());
        let r = root.record("web").unwrap();
        assert_eq!(r.state, DomainState::Ended);
        assert_eq!(r.ended.unwrap().cause, "supervisor-died");
        // The name is free again.
        root.reserve("web").unwrap();
    }

    #[test]
    fn unknown_and_unsafe_names_are_no_such_domain() {
        let tmp = tempfile::tempdir().unwrap();
        let root = RunRoot::new(tmp.path());
        for n in ["nope", "../etc", "", ".lock"] {
            let e = root.live(n).unwrap_err();
            assert!(matches!(e, DomainError::NoSuchDomain(_)), "{n}: {e}");
        }
    }
}
