//! `pvio save NAME FILE` and `pvio restore FILE [CONFIG]`.
//!
//! Save: the file is made here (mode 0600 whatever the umask: it holds
//! the guest's memory), handed to the domain's supervisor, which writes
//! pvio's header and has QEMU write its stream after it; the stream's
//! length then goes into the header, so a truncated file is caught. A
//! failed save removes the file and leaves the domain as it was.
//!
//! Restore: the header is checked (magic, version, checksum, length), the
//! images are checked (here, same size), the domain is planned from the
//! config it ran with, and the supervisor gets the open file, positioned
//! at the stream, to read in. A refused restore leaves nothing behind.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{MigrateError, Result};
use crate::domain::control::{self, Request};
use crate::domain::outgoing::{AfterSave, Sent};
use crate::domain::record::{DomainRecord, Origin};
use crate::domain::saved::{self, STREAM_LEN_AT};
use crate::domain::start;
use crate::domain::RunRoot;

/// How long a save may take.
const SAVE_TIMEOUT: Duration = Duration::from_secs(3600);

/// What a save wrote.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Saved {
    /// The domain.
    pub name: String,
    /// The file.
    pub file: PathBuf,
    /// Its length.
    pub bytes: u64,
    /// The stream's figures.
    pub sent: Sent,
}

/// Saves domain `name` into `path`; `after` says what becomes of it.
/// `progress` is called about once a second with the bytes written so
/// far.
pub fn save(
    name: &str,
    path: &Path,
    after: AfterSave,
    mut progress: impl FnMut(u64) + Send,
) -> Result<Saved> {
    let found = RunRoot::from_env().live(name)?;
    refuse_passthrough(&found.record)?;
    let io = |what, source| MigrateError::Io {
        what,
        path: path.to_owned(),
        source,
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| io("create", e))?;
    if !file.metadata().map_err(|e| io("inspect", e))?.is_file() {
        return Err(MigrateError::Refused(format!(
            "{} is not a regular file; save into a file",
            path.display()
        )));
    }
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(|e| io("set the mode of", e))?;
    let req = Request::Save { after };
    let done = std::sync::atomic::AtomicBool::new(false);
    let result = std::thread::scope(|s| {
        let done = &done;
        let progress = &mut progress;
        let file = &file;
        let watcher = s.spawn(move || {
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(500));
                if let Ok(m) = file.metadata() {
                    progress(m.len());
                }
            }
        });
        let r = control::call_with_fd(
            name,
            &found.record.control_socket,
            &req,
            file.as_fd(),
            SAVE_TIMEOUT,
        );
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = watcher.join();
        r
    });
    let finish = || -> Result<Saved> {
        let v = result?;
        let sent: Sent = serde_json::from_value(v["sent"].clone()).map_err(|e| {
            MigrateError::Refused(format!("the supervisor's answer does not parse: {e}"))
        })?;
        let len = file.metadata().map_err(|e| io("inspect", e))?.len();
        let stream_len = len.saturating_sub(sent.stream_at);
        file.write_all_at(&stream_len.to_le_bytes(), STREAM_LEN_AT)
            .and_then(|()| file.sync_all())
            .map_err(|e| io("finish", e))?;
        Ok(Saved {
            name: name.to_owned(),
            file: path.to_owned(),
            bytes: len,
            sent,
        })
    };
    let out = finish();
    if out.is_err() {
        let _ = std::fs::remove_file(path);
    }
    if out.is_ok() && after == AfterSave::End {
        super::wait_gone(name)?;
    }
    out
}

/// Refuses a domain with a host PCI device, naming it.
pub(super) fn refuse_passthrough(r: &DomainRecord) -> Result<()> {
    match r.pci.first() {
        Some(p) => Err(MigrateError::Refused(format!(
            "domain '{}' has host PCI device {} passed through ({}): its state lives in the device and cannot be saved or moved; `pvio release {}` it first",
            r.identity.name, p.host, p.id, p.host
        ))),
        None => Ok(()),
    }
}

/// Options of a restore.
#[derive(Debug, Default, Clone)]
pub struct RestoreOptions {
    /// The config to use instead of the one saved.
    pub config: Option<PathBuf>,
    /// Leave the guest paused.
    pub paused: bool,
    /// Return once the supervisor started, not once the guest runs.
    pub no_wait: bool,
}

/// Restores the domain saved in `path`; returns its record.
pub fn restore(path: &Path, o: &RestoreOptions) -> Result<DomainRecord> {
    let bad = |source| MigrateError::File {
        path: path.to_owned(),
        source,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOCTTY)
        .open(path)
        .map_err(|source| MigrateError::Io {
            what: "open",
            path: path.to_owned(),
            source,
        })?;
    let header = saved::read_header(&mut file).map_err(bad)?;
    let len = file
        .metadata()
        .map_err(|e| bad(saved::SavedError::Io(e)))?
        .len();
    saved::check_complete(&header, len).map_err(bad)?;
    super::check_images(&header.domain, false)?;
    let (loaded, mut incoming) =
        super::load(&header.domain, o.config.as_deref(), None, Origin::Restored)?;
    incoming.paused = incoming.paused || o.paused;
    let plan = super::plan(&loaded)?;
    position(&mut file, header.stream_at)?;
    let record = start::start(
        &plan,
        start::Origin {
            config: loaded.spec.source.as_deref(),
            serial: loaded.spec.serials.first(),
            config_text: Some(match &o.config {
                Some(p) => std::fs::read_to_string(p).unwrap_or_default(),
                None => header.domain.config_text.clone(),
            }),
            overrides: if o.config.is_some() {
                Vec::new()
            } else {
                header.domain.overrides.clone()
            },
            nomigrate: loaded.spec.nomigrate,
            incoming: Some((incoming, file.as_fd())),
        },
        !o.no_wait,
    )?;
    Ok(record)
}

fn position(file: &mut File, at: u64) -> Result<()> {
    file.seek(SeekFrom::Start(at))
        .map(drop)
        .map_err(|source| MigrateError::Io {
            what: "read",
            path: PathBuf::from("the save file"),
            source,
        })
}
