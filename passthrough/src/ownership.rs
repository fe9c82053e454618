//! The persistent record of which owner has which device, which driver it
//! had before, and how far the last operation on it got.
//!
//! It lives in `$PVIO_STATE_DIR/passthrough.json` (default `/var/lib/pvio`),
//! is replaced atomically (temp file, fsync, rename, fsync of the folder) and
//! is only read-modified-written under an exclusive `flock` on
//! `passthrough.lock`, so concurrent pvio processes (or threads) see each
//! other's claims. Sysfs work happens outside the lock; each step done is
//! written back, so a crash leaves a record that says what to finish.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::bdf::Bdf;
use crate::bind::Step;

/// The environment variable naming the state folder.
pub const STATE_DIR_ENV: &str = "PVIO_STATE_DIR";
/// The state folder when the variable is unset.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/pvio";

const RECORD_FILE: &str = "passthrough.json";
const LOCK_FILE: &str = "passthrough.lock";

/// Reading or writing the record failed.
#[derive(Debug, thiserror::Error)]
pub enum OwnershipError {
    /// A file of the state folder could not be used.
    #[error("cannot {what} {} (set {STATE_DIR_ENV} to use another folder)", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The record file is not valid.
    #[error("the passthrough record {} is damaged; fix or remove it by hand", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

type Result<T> = std::result::Result<T, OwnershipError>;

/// What was being done to a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// Taking it from its host driver for guests.
    Prepare,
    /// Giving it back to the host.
    GiveBack,
}

/// One device in the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The device.
    pub bdf: Bdf,
    /// Who has it; `None` while it is only prepared for guests.
    pub owner: Option<String>,
    /// The host driver it had before (`None`: it had none).
    pub previous_driver: Option<String>,
    /// The last operation started on it.
    pub operation: Operation,
    /// The last step of that operation that completed.
    pub step: Option<Step>,
    /// Whether the operation finished.
    pub done: bool,
    /// The process that ran the operation.
    pub pid: u32,
    /// The boot that process ran in (`/proc/sys/kernel/random/boot_id`):
    /// after a reboot the pid means nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    /// That process's start time (field 22 of `/proc/PID/stat`, in clock
    /// ticks since boot): a reused pid has another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<u64>,
    /// The device it was taken along with (`--group`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_of: Option<Bdf>,
    /// It was prepared for guests with no owner (`pci-assignable-add`)
    /// before its owner claimed it: when the owner ends, it goes back to
    /// that state (on vfio-pci, no owner) rather than to its host driver.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub was_prepared: bool,
}

/// Where an unfinished operation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Finished.
    Done,
    /// Its process still runs.
    Running,
    /// Its process is gone: a crash between steps.
    HalfDone,
}

impl Record {
    /// A record of `operation` on `bdf` started by this process, not done.
    pub fn started(
        bdf: Bdf,
        owner: Option<&str>,
        previous_driver: Option<String>,
        operation: Operation,
    ) -> Self {
        let mut r = Self {
            bdf,
            owner: owner.map(str::to_owned),
            previous_driver,
            operation,
            step: None,
            done: false,
            pid: 0,
            boot_id: None,
            start_time: None,
            group_of: None,
            was_prepared: false,
        };
        r.stamp();
        r
    }

    /// Records this process (pid, boot, start time) as the one running
    /// the operation.
    pub fn stamp(&mut self) {
        let me = ProcessId::current();
        self.pid = me.pid;
        self.boot_id = me.boot_id;
        self.start_time = me.start_time;
    }

    /// Whether the operation finished, runs, or was cut off. It runs only
    /// if its pid is alive in the same boot with the same start time: a
    /// record left by a crash before a reboot, or whose pid another
    /// process has taken since, is half-done.
    pub fn progress(&self) -> Progress {
        if self.done {
            Progress::Done
        } else if self.runner_alive(current_boot_id().as_deref(), process_start_time) {
            Progress::Running
        } else {
            Progress::HalfDone
        }
    }

    /// Whether the recorded process still runs, given this boot's id and a
    /// way to read a pid's start time. What cannot be read (an old record
    /// without them, or no `/proc`) is not held against it.
    fn runner_alive(&self, boot_id: Option<&str>, start_time: fn(u32) -> Option<u64>) -> bool {
        if !process_alive(self.pid) {
            return false;
        }
        if let (Some(recorded), Some(now)) = (self.boot_id.as_deref(), boot_id) {
            if recorded != now {
                return false;
            }
        }
        if let (Some(recorded), Some(now)) = (self.start_time, start_time(self.pid)) {
            if recorded != now {
                return false;
            }
        }
        true
    }

    /// What was being done and how far it got, for messages.
    pub fn describe(&self) -> String {
        let what = match (self.operation, &self.owner) {
            (Operation::Prepare, Some(o)) => format!("assigning {} to `{o}`", self.bdf),
            (Operation::Prepare, None) => format!("preparing {} for guests", self.bdf),
            (Operation::GiveBack, _) => format!("giving {} back to the host", self.bdf),
        };
        let step = match self.step {
            None => "before its first step".to_owned(),
            Some(s) => format!("after step `{}`", step_name(s)),
        };
        format!("{what} (pid {}) {step}", self.pid)
    }
}

/// The name of a step as the record stores it.
pub fn step_name(step: Step) -> String {
    serde_json::to_value(step)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{step:?}"))
}

/// A process as the record names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessId {
    /// Its pid.
    pub pid: u32,
    /// The boot it runs in.
    pub boot_id: Option<String>,
    /// Its start time in clock ticks since boot.
    pub start_time: Option<u64>,
}

impl ProcessId {
    /// This process.
    pub fn current() -> Self {
        let pid = std::process::id();
        Self {
            pid,
            boot_id: current_boot_id(),
            start_time: process_start_time(pid),
        }
    }
}

/// This boot's id, from `/proc/sys/kernel/random/boot_id`.
pub fn current_boot_id() -> Option<String> {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// The start time of process `pid` (field 22 of `/proc/PID/stat`).
pub fn process_start_time(pid: u32) -> Option<u64> {
    parse_stat_start_time(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Field 22 (`starttime`) of a `/proc/PID/stat` line. Field 2 is the
/// command name in parentheses, which may itself hold spaces and
/// parentheses, so the fields are counted from the last `)`.
pub fn parse_stat_start_time(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    // `rest` starts with field 3 (the state): field 22 is the 20th.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether a process exists.
fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 sends nothing; it only checks the pid.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Every device in the record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Records {
    /// By address.
    pub devices: BTreeMap<Bdf, Record>,
}

/// The state folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ownership {
    dir: PathBuf,
}

impl Ownership {
    /// The record in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// `$PVIO_STATE_DIR`, or `/var/lib/pvio`.
    pub fn from_env() -> Self {
        match std::env::var_os(STATE_DIR_ENV) {
            Some(d) if !d.is_empty() => Self::new(d),
            _ => Self::new(DEFAULT_STATE_DIR),
        }
    }

    /// The state folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn record_path(&self) -> PathBuf {
        self.dir.join(RECORD_FILE)
    }

    /// Reads the record without the lock (it is replaced atomically, so a
    /// reader sees one version or the next).
    pub fn load(&self) -> Result<Records> {
        read_records(&self.record_path())
    }

    /// Takes the lock (waiting for it); dropped, it is released.
    pub fn lock(&self) -> Result<Locked> {
        let io = |what, path: &Path| {
            let path = path.to_owned();
            move |source| OwnershipError::Io { what, path, source }
        };
        fs::create_dir_all(&self.dir).map_err(io("create", &self.dir))?;
        let lock_path = self.dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock_path)
            .map_err(io("open", &lock_path))?;
        loop {
            // SAFETY: flock on a file descriptor we own; no memory involved.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 {
                break;
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(io("lock", &lock_path)(e));
            }
        }
        Ok(Locked {
            _file: file,
            dir: self.dir.clone(),
        })
    }

    /// Applies `change` to the record under the lock and saves it.
    pub fn update<T>(&self, change: impl FnOnce(&mut Records) -> T) -> Result<T> {
        let lock = self.lock()?;
        let mut records = lock.records()?;
        let out = change(&mut records);
        lock.save(&records)?;
        Ok(out)
    }
}

/// The record, locked.
#[derive(Debug)]
pub struct Locked {
    _file: File,
    dir: PathBuf,
}

impl Locked {
    /// The record as it is now.
    pub fn records(&self) -> Result<Records> {
        read_records(&self.dir.join(RECORD_FILE))
    }

    /// Replaces the record atomically.
    pub fn save(&self, records: &Records) -> Result<()> {
        let path = self.dir.join(RECORD_FILE);
        let tmp = self.dir.join(format!("{RECORD_FILE}.tmp"));
        let io = |what, p: &Path| {
            let path = p.to_owned();
            move |source| OwnershipError::Io { what, path, source }
        };
        let text =
            serde_json::to_string_pretty(records).map_err(|source| OwnershipError::Parse {
                path: path.clone(),
                source,
            })?;
        let mut f = File::create(&tmp).map_err(io("write", &tmp))?;
        f.write_all(text.as_bytes()).map_err(io("write", &tmp))?;
        f.write_all(b"\n").map_err(io("write", &tmp))?;
        f.sync_all().map_err(io("sync", &tmp))?;
        drop(f);
        fs::rename(&tmp, &path).map_err(io("replace", &path))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io("sync", &self.dir))?;
        Ok(())
    }
}

fn read_records(path: &Path) -> Result<Records> {
    match fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).map_err(|source| OwnershipError::Parse {
            path: path.to_owned(),
            source,
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Records::default()),
        Err(source) => Err(OwnershipError::Io {
            what: "read",
            path: path.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(bdf: &str, owner: Option<&str>) -> Record {
        let mut r = Record::started(
            bdf.parse().unwrap(),
            owner,
            Some("e1000".into()),
            Operation::Prepare,
        );
        r.step = Some(Step::OverrideSet);
        r
    }

    #[test]
    fn records_round_trip_and_leave_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let own = Ownership::new(dir.path().join("state"));
        assert_eq!(own.load().unwrap(), Records::default());
        let r = record("0000:00:02.0", Some("winxp"));
        own.update(|rs| {
            rs.devices.insert(r.bdf, r.clone());
        })
        .unwrap();
        assert_eq!(own.load().unwrap().devices[&r.bdf], r);
        let names: Vec<_> = fs::read_dir(own.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
        let text = fs::read_to_string(own.dir().join(RECORD_FILE)).unwrap();
        assert!(text.contains("\"0000:00:02.0\""), "{text}");
        assert!(text.contains("\"override_set\""), "{text}");
    }

    #[test]
    fn a_damaged_record_is_reported_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(RECORD_FILE), "{not json").unwrap();
        let own = Ownership::new(dir.path());
        let e = own.load().unwrap_err();
        assert!(e.to_string().contains("is damaged"), "{e}");
        assert!(own.update(|_| ()).is_err());
        assert_eq!(
            fs::read_to_string(dir.path().join(RECORD_FILE)).unwrap(),
            "{not json"
        );
    }

    #[test]
    fn progress_tells_running_from_half_done() {
        let mut r = record("0000:00:02.0", None);
        assert_eq!(r.progress(), Progress::Running);
        r.pid = u32::MAX - 1;
        assert_eq!(r.progress(), Progress::HalfDone);
        assert!(
            r.describe().contains("after step `override_set`"),
            "{}",
            r.describe()
        );
        r.done = true;
        assert_eq!(r.progress(), Progress::Done);
    }

    #[test]
    fn a_record_from_another_boot_or_a_reused_pid_is_half_done() {
        // This process is alive: only its boot id and start time can tell
        // a record of it from one left by a crashed run with the same pid.
        let mut r = record("0000:00:02.0", None);
        let me = ProcessId::current();
        assert!(me.boot_id.is_some() && me.start_time.is_some(), "{me:?}");
        assert_eq!(
            (r.boot_id.clone(), r.start_time),
            (me.boot_id.clone(), me.start_time)
        );
        assert_eq!(r.progress(), Progress::Running);

        // Written before a reboot: same pid, another boot.
        r.boot_id = Some("00000000-0000-0000-0000-000000000000".into());
        assert_eq!(r.progress(), Progress::HalfDone);
        // The pid is reused by another process: another start time.
        r.boot_id = me.boot_id.clone();
        r.start_time = me.start_time.map(|t| t + 1);
        assert_eq!(r.progress(), Progress::HalfDone);
        // A record from before these fields existed: the pid alone.
        r.boot_id = None;
        r.start_time = None;
        assert_eq!(r.progress(), Progress::Running);

        // Old records without the fields still load.
        let old = r#"{"bdf":"0000:00:02.0","owner":null,"previous_driver":null,
            "operation":"prepare","step":null,"done":false,"pid":1}"#;
        let r: Record = serde_json::from_str(old).unwrap();
        assert_eq!(
            (r.boot_id, r.start_time, r.was_prepared),
            (None, None, false)
        );
    }

    #[test]
    fn the_start_time_is_field_22_counted_past_the_command_name() {
        let stat =
            "4242 (a) b (c) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 50";
        assert_eq!(parse_stat_start_time(stat), Some(987_654));
        assert_eq!(parse_stat_start_time("4242 (x) S 1"), None);
        assert_eq!(parse_stat_start_time("no parenthesis"), None);
        let mine = process_start_time(std::process::id()).unwrap();
        assert!(mine > 0);
    }

    #[test]
    fn the_lock_serializes_read_modify_write() {
        let dir = tempfile::tempdir().unwrap();
        let own = Ownership::new(dir.path());
        std::thread::scope(|s| {
            for t in 0..4u8 {
                let own = own.clone();
                s.spawn(move || {
                    for i in 0..10u8 {
                        own.update(|rs| {
                            let bdf = Bdf::new(0, t, i, 0).unwrap();
                            rs.devices.insert(bdf, record(&bdf.to_string(), None));
                        })
                        .unwrap();
                    }
                });
            }
        });
        assert_eq!(own.load().unwrap().devices.len(), 40);
    }

    #[test]
    fn the_state_dir_comes_from_the_environment_or_the_default() {
        // Not set in tests unless by hand: check the parts.
        assert_eq!(Ownership::new("/x").dir(), Path::new("/x"));
        assert_eq!(DEFAULT_STATE_DIR, "/var/lib/pvio");
    }
}
