//! The second and third sandbox layers: no capabilities in any set, no
//! supplementary groups, the unprivileged uid and gid; then
//! `no_new_privs`, so that nothing the process could still execute gains
//! privileges.
//!
//! As root the process becomes `--user UID:GID` (default [`DEFAULT_ID`]).
//! Not root it keeps its ids and only clears its capability sets. It must
//! not know what the backend serves.

use std::fmt;
use std::str::FromStr;

use rustix::io::Errno;
use rustix::process::{geteuid, getgid, getuid, Gid, Uid};
use rustix::thread::{
    capabilities, clear_ambient_capability_set, remove_capability_from_bounding_set,
    set_capabilities, set_no_new_privs, set_thread_groups, set_thread_res_gid, set_thread_res_uid,
    CapabilitySet, CapabilitySets,
};

use super::{Layer, Outcome, SandboxError};

/// A uid and a gid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ids {
    /// The user id.
    pub uid: u32,
    /// The group id.
    pub gid: u32,
}

/// `nobody:nogroup`: what a backend started as root runs as by default.
pub const DEFAULT_ID: Ids = Ids {
    uid: 65534,
    gid: 65534,
};

/// A `--user` value that is not `UID:GID`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--user {0:?} is not UID:GID; write two numbers like 65534:65534 (0 is refused)")]
pub struct IdsSyntax(String);

impl FromStr for Ids {
    type Err = IdsSyntax;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || IdsSyntax(s.to_owned());
        let (u, g) = s.split_once(':').ok_or_else(bad)?;
        let ids = Self {
            uid: u.parse().map_err(|_| bad())?,
            gid: g.parse().map_err(|_| bad())?,
        };
        // Root as the sandbox's user would keep every privilege.
        if ids.uid == 0 || ids.gid == 0 {
            return Err(bad());
        }
        Ok(ids)
    }
}

impl fmt::Display for Ids {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.uid, self.gid)
    }
}

fn failed(why: impl fmt::Display) -> SandboxError {
    SandboxError::Failed {
        layer: Layer::Ids,
        why: why.to_string(),
    }
}

/// Clears the ambient and bounding sets, changes ids (as root), then clears
/// the inheritable, permitted and effective sets and checks they are empty.
/// Returns the ids the process runs as.
pub(crate) fn drop_privileges(user: Option<Ids>) -> Result<(Outcome, Option<Ids>), SandboxError> {
    // Kernels before 4.3 have no ambient set: nothing to clear then.
    match clear_ambient_capability_set() {
        Ok(()) | Err(Errno::INVAL) => {}
        Err(e) => return Err(failed(format!("clearing the ambient set: {e}"))),
    }
    let bounding_kept = clear_bounding_set()?;
    if geteuid().is_root() {
        let ids = user.unwrap_or(DEFAULT_ID);
        set_thread_groups(&[]).map_err(|e| failed(format!("setgroups: {e}")))?;
        // The process has a single thread here (checked by `enter`), so
        // the calling thread's ids are the process's.
        let gid = Gid::from_raw(ids.gid);
        set_thread_res_gid(gid, gid, gid).map_err(|e| failed(format!("setresgid: {e}")))?;
        let uid = Uid::from_raw(ids.uid);
        set_thread_res_uid(uid, uid, uid).map_err(|e| failed(format!("setresuid: {e}")))?;
    }
    let none = CapabilitySets {
        effective: CapabilitySet::empty(),
        permitted: CapabilitySet::empty(),
        inheritable: CapabilitySet::empty(),
    };
    set_capabilities(None, none).map_err(|e| failed(format!("capset: {e}")))?;
    let now = capabilities(None).map_err(|e| failed(format!("capget: {e}")))?;
    if !(now.effective.is_empty() && now.permitted.is_empty() && now.inheritable.is_empty()) {
        return Err(failed("capabilities remain after capset"));
    }
    let ids = Some(Ids {
        uid: getuid().as_raw(),
        gid: getgid().as_raw(),
    });
    // Without CAP_SETPCAP the bounding set stays, which is harmless once the
    // permitted set is empty and no_new_privs is set; say so all the same.
    let outcome = match bounding_kept {
        Some(e) => Outcome::Unavailable(format!("bounding set kept: {e}")),
        None => Outcome::Applied,
    };
    Ok((outcome, ids))
}

/// Drops every capability from the bounding set. `Some(errno)` when it may
/// not (no CAP_SETPCAP).
fn clear_bounding_set() -> Result<Option<Errno>, SandboxError> {
    for bit in 0..64 {
        let cap = CapabilitySet::from_bits_retain(1 << bit);
        match remove_capability_from_bounding_set(cap) {
            Ok(()) => {}
            // Past the kernel's last capability.
            Err(Errno::INVAL) => break,
            Err(Errno::PERM) => return Ok(Some(Errno::PERM)),
            Err(e) => return Err(failed(format!("dropping capability {bit}: {e}"))),
        }
    }
    Ok(None)
}

/// `PR_SET_NO_NEW_PRIVS`.
pub(crate) fn no_new_privs() -> Result<Outcome, SandboxError> {
    set_no_new_privs(true).map_err(|e| SandboxError::Failed {
        layer: Layer::NoNewPrivs,
        why: e.to_string(),
    })?;
    Ok(Outcome::Applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_is_uid_colon_gid_and_never_root() {
        assert_eq!(
            "1000:100".parse(),
            Ok(Ids {
                uid: 1000,
                gid: 100
            })
        );
        for bad in ["1000", "a:b", "0:100", "100:0", "1:2:3", ""] {
            assert!(bad.parse::<Ids>().is_err(), "{bad}");
        }
    }
}
