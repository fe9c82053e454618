//! Who may reach a domain, whatever the caller's umask: the run dir's
//! modes and owners, the `pvio` group of operators, the unprivileged
//! identities the device model and the backends run under, and the check
//! of a control-socket peer.
//!
//! ```text
//! <run root>             0751 root:pvio   operators list it; others only pass through
//! <run root>/<name>/     0750 root:pvio   records, logs, control.sock (0660), monitor (0660)
//! <run root>/.dm/        0711 root:root   passed through, never listed
//! <run root>/.dm/<name>/ 0750 root:<dm>   the vhost-user sockets QEMU connects to (0660)
//! ```
//!
//! The device model's identity of domain `id` is `base + 2*id` (uid and
//! gid alike), its backends' `base + 2*id + 1`, with `base` from
//! `PVIO_UID_BASE` (default [`DEFAULT_UID_BASE`]): no two domains share an
//! identity, and none has a passwd entry, a home or a login.
//!
//! It must not know what runs in a domain: it only names, creates and
//! protects places, and judges peers.

use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{Gid, Uid};

/// The group of operators: root and its members may use `pvio` on
/// running domains.
pub const OPERATORS: &str = "pvio";
/// The first uid of the range pvio's sandboxed processes run under.
pub const DEFAULT_UID_BASE: u32 = 1_900_000_000;
/// How many ids the range holds (two per domain).
pub const UID_RANGE: u32 = 100_000_000;
pub use crate::plan::{dm_dir, DM_DIR};

/// Mode of the run root.
pub const ROOT_MODE: u32 = 0o751;
/// Mode of a domain's dir.
pub const DOMAIN_DIR_MODE: u32 = 0o750;
/// Mode of records and logs operators read.
pub const RECORD_MODE: u32 = 0o640;
/// Mode of files only root reads (secrets: the VNC password).
pub const PRIVATE_MODE: u32 = 0o600;
/// Mode of a socket a group may connect to.
pub const SOCKET_MODE: u32 = 0o660;
/// Mode of `.dm`.
pub const DM_ROOT_MODE: u32 = 0o711;

/// A uid and gid a sandboxed process runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    /// The uid.
    pub uid: u32,
    /// The gid (its own group, of the same number).
    pub gid: u32,
}

impl Identity {
    /// `UID:GID`, as QEMU's `-run-with user=` and `pvio backend --user`
    /// take it.
    pub fn arg(&self) -> String {
        format!("{}:{}", self.uid, self.gid)
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "uid {} gid {}", self.uid, self.gid)
    }
}

/// The start of the sandbox range: `PVIO_UID_BASE` or the default.
pub fn uid_base() -> u32 {
    std::env::var("PVIO_UID_BASE")
        .ok()
        .and_then(|v| v.trim().parse::<u32>().ok())
        .filter(|b| *b >= 1000 && b.checked_add(UID_RANGE).is_some())
        .unwrap_or(DEFAULT_UID_BASE)
}

fn nth(id: u32, which: u32) -> Identity {
    let off = (id % (UID_RANGE / 2)) * 2 + which;
    let n = uid_base() + off;
    Identity { uid: n, gid: n }
}

/// The identity the device model (QEMU) of domain `id` runs as.
pub fn device_model(id: u32) -> Identity {
    nth(id, 0)
}

/// The identity the PV backends of domain `id` run as.
pub fn backends(id: u32) -> Identity {
    nth(id, 1)
}

/// Whether `uid` belongs to pvio's sandbox range: a device model or a
/// backend, never an operator.
pub fn is_sandboxed(uid: u32) -> bool {
    let base = uid_base();
    uid >= base && uid - base < UID_RANGE
}

/// The gid of the operators' group, if the host has one (`scripts/setup.sh`
/// makes it).
pub fn operators_gid() -> Option<u32> {
    group_gid(&fs::read_to_string("/etc/group").ok()?, OPERATORS)
}

/// The gid of `name` in an `/etc/group` text.
fn group_gid(text: &str, name: &str) -> Option<u32> {
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == name).then_some(())?;
        f.next()?;
        f.next()?.trim().parse().ok()
    })
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Sets `path`'s mode, and its owner to root and `gid` (root's group when
/// `None`), through an fd of the path opened without following a final
/// symlink. Only root changes owners; others keep theirs.
pub fn protect(path: &Path, mode: u32, gid: Option<u32>) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        return Err(io::Error::other(format!(
            "{} is a symbolic link; pvio keeps no links in its run dir",
            path.display()
        )));
    }
    if meta.file_type().is_file() || meta.is_dir() {
        let f = fs::File::open(path)?;
        if is_root() {
            rustix::fs::fchown(
                f.as_fd(),
                Some(Uid::ROOT),
                Some(Gid::from_raw(gid.unwrap_or(0))),
            )?;
        }
        rustix::fs::fchmod(f.as_fd(), rustix::fs::Mode::from_raw_mode(mode))?;
    } else {
        // A socket cannot be opened; its dir is ours and not writable by
        // anyone else, so the path names what we bound.
        if is_root() {
            rustix::fs::chownat(
                rustix::fs::CWD,
                path,
                Some(Uid::ROOT),
                Some(Gid::from_raw(gid.unwrap_or(0))),
                rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
            )?;
        }
        fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// Creates the dir `path` if missing (one level) and gives it `mode` and
/// group `gid`.
pub fn make_dir(path: &Path, mode: u32, gid: Option<u32>) -> io::Result<()> {
    match fs::DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    protect(path, mode, gid)
}

/// Makes the run root (0751 root:pvio) and `.dm` (0711).
pub fn make_root(run_root: &Path) -> io::Result<()> {
    if let Some(parent) = run_root.parent() {
        fs::create_dir_all(parent)?;
    }
    make_dir(run_root, ROOT_MODE, operators_gid())?;
    make_dir(&run_root.join(DM_DIR), DM_ROOT_MODE, None)
}

/// Makes `.dm/<name>` for the device model `dm` (0750 root:dm).
pub fn make_dm_dir(run_root: &Path, name: &str, dm: Identity) -> io::Result<PathBuf> {
    make_root(run_root)?;
    let d = dm_dir(run_root, name);
    make_dir(&d, DOMAIN_DIR_MODE, Some(dm.gid))?;
    Ok(d)
}

/// The first ancestor of `path` that a process of another uid cannot
/// pass through (no `x` for others), if any: the device model would not
/// reach its sockets below it.
pub fn blocked_ancestor(path: &Path) -> Option<PathBuf> {
    path.ancestors().skip(1).find_map(|a| {
        let m = fs::metadata(a).ok()?;
        (m.permissions().mode() & 0o001 == 0).then(|| a.to_owned())
    })
}

/// Why a control-socket peer is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PeerRefused {
    /// A device model or backend of some domain.
    #[error("uid {0} is a sandboxed device model or backend; it may not control domains")]
    Sandboxed(u32),
    /// Neither root nor in the operators' group.
    #[error("uid {0} is neither root nor in group '{OPERATORS}'; ask an administrator to add you (usermod -aG {OPERATORS} USER)")]
    NotOperator(u32),
    /// The credentials could not be read.
    #[error("cannot read the caller's credentials")]
    Unknown,
}

/// Judges the peer of a control connection by its kernel credentials
/// (`SO_PEERCRED`): root, or a member of the operators' group.
pub fn check_peer(stream: &std::os::unix::net::UnixStream) -> Result<(), PeerRefused> {
    let cred = rustix::net::sockopt::socket_peercred(stream).map_err(|_| PeerRefused::Unknown)?;
    let uid = cred.uid.as_raw();
    if uid == 0 {
        return Ok(());
    }
    if is_sandboxed(uid) {
        return Err(PeerRefused::Sandboxed(uid));
    }
    let Some(ops) = operators_gid() else {
        return Err(PeerRefused::NotOperator(uid));
    };
    let status = fs::read_to_string(format!("/proc/{}/status", cred.pid.as_raw_nonzero()))
        .map_err(|_| PeerRefused::Unknown)?;
    if groups_of(&status).contains(&ops) || cred.gid.as_raw() == ops {
        Ok(())
    } else {
        Err(PeerRefused::NotOperator(uid))
    }
}

/// The gids of a `/proc/PID/status` text (`Gid:` and `Groups:`).
fn groups_of(status: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for l in status.lines() {
        if let Some(rest) = l.strip_prefix("Groups:").or_else(|| l.strip_prefix("Gid:")) {
            out.extend(
                rest.split_whitespace()
                    .filter_map(|g| g.parse::<u32>().ok()),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_are_distinct_per_domain_and_role() {
        let a = device_model(1);
        let b = backends(1);
        let c = device_model(2);
        assert_ne!(a, b);
        assert_ne!(b, c);
        assert!(is_sandboxed(a.uid) && is_sandboxed(b.uid));
        assert!(!is_sandboxed(0) && !is_sandboxed(1000));
        assert_eq!(a.arg(), format!("{}:{}", a.uid, a.uid));
    }

    #[test]
    fn group_lines_parse() {
        let text = "root:x:0:\nkvm:x:104:\npvio:x:998:alice,bob\n";
        assert_eq!(group_gid(text, "pvio"), Some(998));
        assert_eq!(group_gid(text, "kvm"), Some(104));
        assert_eq!(group_gid(text, "nope"), None);
    }

    #[test]
    fn status_groups_parse() {
        let s = "Name:\tsh\nGid:\t1000\t1000\t1000\t1000\nGroups:\t24 27 998 \n";
        let g = groups_of(s);
        assert!(g.contains(&998) && g.contains(&1000) && !g.contains(&0));
    }

    #[test]
    fn modes_do_not_follow_the_umask() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("dom");
        make_dir(&d, DOMAIN_DIR_MODE, None).unwrap();
        assert_eq!(
            fs::metadata(&d).unwrap().permissions().mode() & 0o7777,
            0o750
        );
        let f = d.join("domain.json");
        fs::write(&f, b"{}").unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o777)).unwrap();
        protect(&f, RECORD_MODE, None).unwrap();
        assert_eq!(
            fs::metadata(&f).unwrap().permissions().mode() & 0o7777,
            0o640
        );
        std::os::unix::fs::symlink(&f, d.join("link")).unwrap();
        assert!(protect(&d.join("link"), RECORD_MODE, None).is_err());
    }

    #[test]
    fn a_private_parent_is_found() {
        let tmp = tempfile::tempdir().unwrap();
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o700)).unwrap();
        let p = tmp.path().join("run").join("x.sock");
        assert_eq!(blocked_ancestor(&p), Some(tmp.path().to_owned()));
    }
}
