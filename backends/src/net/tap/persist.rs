//! Persistent taps: made by a privileged caller before anyone opens them
//! (a domain's taps, made by its supervisor so that QEMU or a net backend
//! can attach to them), and left in place when that caller's file closes.
//! The same `TUNSETIFF` as [`Tap::open`](super::Tap::open), with
//! `IFF_TUN_EXCL` so that an interface of that name is never taken over,
//! then `TUNSETOWNER` / `TUNSETGROUP` and `TUNSETPERSIST`: what
//! `ip tuntap add NAME mode tap [user U] [group G]` does.
//!
//! Deleting one is a link change (`host::Route::delete`), like any other
//! interface's.

use std::ffi::CString;
use std::io;
use std::os::fd::AsFd;
use std::path::Path;

use libc::c_short;

use super::super::sys;
use super::{open_tun, validate_name, Result, TapError, TUN_PATH};

/// Who may attach to a persistent tap without `CAP_NET_ADMIN` (nobody
/// but privileged callers when both are `None`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TapOwner {
    /// The owning user (`TUNSETOWNER`).
    pub uid: Option<u32>,
    /// The owning group (`TUNSETGROUP`).
    pub gid: Option<u32>,
}

/// The `TUNSETIFF` flags of a persistent tap: a tap (Ethernet frames), no
/// packet-information prefix, and refused when the name is taken. The
/// queues opened later add the virtio-net header.
fn persistent_flags() -> io::Result<c_short> {
    let flags = libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_TUN_EXCL;
    // IFF_TUN_EXCL is the sign bit of the 16-bit `ifr_flags`: the bits are
    // kept as they are.
    let bits = u16::try_from(flags).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    Ok(c_short::from_ne_bytes(bits.to_ne_bytes()))
}

/// Makes the tap `name` and makes it persistent, owned by `owner` (call as
/// root or with `CAP_NET_ADMIN`, in the network namespace it is to live
/// in). An interface of that name that already exists is refused
/// ([`TapError::Exists`]), never taken over.
pub fn create_persistent(name: &str, owner: TapOwner) -> Result<()> {
    create_persistent_at(Path::new(TUN_PATH), name, owner)
}

/// [`create_persistent`] with another control device path (for tests of
/// the error paths).
pub fn create_persistent_at(tun_path: &Path, name: &str, owner: TapOwner) -> Result<()> {
    let cname = validate_name(name)?;
    let path =
        CString::new(tun_path.as_os_str().as_encoded_bytes()).map_err(|_| TapError::TunMissing)?;
    let fd = open_tun(&path)?;
    let attach = |source| TapError::Attach {
        name: name.to_owned(),
        source,
    };
    let flags = persistent_flags().map_err(attach)?;
    sys::tun_set_iff(fd.as_fd(), &cname, flags).map_err(|e| match e.raw_os_error() {
        Some(libc::EPERM | libc::EACCES) => TapError::Permission {
            name: name.to_owned(),
        },
        Some(libc::EBUSY) => TapError::Exists {
            name: name.to_owned(),
        },
        _ => attach(e),
    })?;
    let persist = |what, source| TapError::Persist {
        name: name.to_owned(),
        what,
        source,
    };
    if let Some(uid) = owner.uid {
        sys::tun_set_owner(fd.as_fd(), uid).map_err(|e| persist("set the owner of tap", e))?;
    }
    if let Some(gid) = owner.gid {
        sys::tun_set_group(fd.as_fd(), gid).map_err(|e| persist("set the group of tap", e))?;
    }
    sys::tun_set_persist(fd.as_fd(), true).map_err(|e| persist("make persistent the tap", e))?;
    tracing::info!("tap {name}: created (persistent)");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exclusive_flag_is_the_sign_bit() {
        let flags = persistent_flags().unwrap();
        let bits = u16::from_ne_bytes(flags.to_ne_bytes());
        assert_eq!(bits, 0x8000 | 0x0002 | 0x1000);
    }

    #[test]
    fn a_missing_control_device_says_how_to_get_it() {
        let dir = tempfile::tempdir().unwrap();
        let err = create_persistent_at(&dir.path().join("tun"), "pviotest0", TapOwner::default())
            .unwrap_err();
        assert!(matches!(err, TapError::TunMissing), "{err}");
    }

    #[test]
    fn a_bad_name_is_refused_before_touching_the_kernel() {
        let dir = tempfile::tempdir().unwrap();
        let err =
            create_persistent_at(&dir.path().join("tun"), "a b", TapOwner::default()).unwrap_err();
        assert!(matches!(err, TapError::InvalidName { .. }), "{err}");
    }
}
