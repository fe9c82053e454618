//! The first sandbox layer: the backend leaves the host's network, IPC, UTS
//! and mount namespaces. An open tap fd keeps working in a new network
//! namespace; the backend reaches no interface, address or abstract socket of
//! the host's, no System V IPC, and its mount table is its own.
//!
//! As root this needs nothing else. Not root, a new user namespace comes
//! first (it grants the rights to make the others inside it; the capabilities
//! it gives are dropped by `ids.rs` right after). It must not know what the
//! backend serves.

use rustix::io::Errno;
use rustix::process::geteuid;
use rustix::thread::{unshare_unsafe, UnshareFlags};

use super::{Layer, Outcome, SandboxError};

/// `unshare` of the namespaces above. `EPERM`/`EINVAL`/`ENOSPC` (not allowed
/// here, not built into the kernel, a namespace limit) make the layer
/// unavailable; other errors fail.
pub(crate) fn unshare_all() -> Result<Outcome, SandboxError> {
    let mut flags =
        UnshareFlags::NEWNET | UnshareFlags::NEWIPC | UnshareFlags::NEWUTS | UnshareFlags::NEWNS;
    if !geteuid().is_root() {
        flags |= UnshareFlags::NEWUSER;
    }
    // SAFETY: the flags do not include CLONE_FILES, the one flag whose
    // unsharing could make fds seen by other threads invalid; the sandbox is
    // entered with a single thread anyway.
    match unsafe { unshare_unsafe(flags) } {
        Ok(()) => Ok(Outcome::Applied),
        Err(e @ (Errno::PERM | Errno::INVAL | Errno::NOSPC | Errno::ACCESS)) => {
            Ok(Outcome::Unavailable(format!("unshare: {e}")))
        }
        Err(e) => Err(SandboxError::Failed {
            layer: Layer::Namespaces,
            why: format!("unshare: {e}"),
        }),
    }
}
