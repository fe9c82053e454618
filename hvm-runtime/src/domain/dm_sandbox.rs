//! How the device model is confined: QEMU's own seccomp filter
//! (`-sandbox`) and its drop to the domain's unprivileged identity once it
//! has opened what it needs (`-run-with user=UID:GID`, QEMU 9.1 and
//! later).
//!
//! `elevateprivileges=deny` (and `children`) kill QEMU 10.0 in its own
//! `-run-with user=` drop (checked: SIGSYS before the guest starts), so
//! set*id stays allowed by the filter; once QEMU has dropped, all its uids
//! and gids are the domain's, its capabilities are empty and
//! `no_new_privs` is set, so set*id cannot raise it again. libvirt drops
//! before exec instead; QEMU then could not open root-owned images and
//! taps at start.
//!
//! It must not know what the domain runs: it only renders arguments.

use std::path::Path;

use super::access::Identity;

/// QEMU's seccomp filter: everything but set*id denied that libvirt denies.
pub const SANDBOX_ARG: &str =
    "on,obsolete=deny,elevateprivileges=allow,spawn=deny,resourcecontrol=deny";

/// The first QEMU whose `-run-with` takes `user=`.
const RUN_WITH_USER: (u32, u32) = (9, 1);

/// The arguments that confine the device model, and a warning when the
/// installed QEMU cannot drop its privileges.
pub fn args(qemu: &Path, dm: Identity) -> (Vec<String>, Option<String>) {
    let mut a = vec!["-sandbox".to_owned(), SANDBOX_ARG.to_owned()];
    match crate::host::qemu_release(qemu) {
        Some(v) if v >= RUN_WITH_USER => {
            a.push("-run-with".to_owned());
            a.push(format!("user={}", dm.arg()));
            (a, None)
        }
        Some((major, minor)) => (
            a,
            Some(format!(
                "QEMU {major}.{minor} cannot drop to the domain's identity (-run-with user= needs 9.1); the device model runs as root under its seccomp filter; install QEMU 10 (scripts/setup.sh)"
            )),
        ),
        None => (
            a,
            Some(format!(
                "cannot read the version of {}; the device model runs as root under its seccomp filter",
                qemu.display()
            )),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_old_qemu_gets_the_filter_and_a_warning() {
        let (a, w) = args(Path::new("/surely/not/qemu"), Identity { uid: 7, gid: 7 });
        assert_eq!(a, vec!["-sandbox".to_owned(), SANDBOX_ARG.to_owned()]);
        assert!(w.unwrap().contains("runs as root"));
    }
}
