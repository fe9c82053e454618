//! Host taps for a domain's NICs: made persistent before QEMU or a net
//! backend opens them, joined to their bridge and brought up, and deleted
//! at the end when pvio made them. The work is done by the host-network
//! module of `pvio-backends` (`net::host` over rtnetlink, the tun ioctls
//! of `net::tap`), as Xen's vif scripts did with `ip`; no program is run.
//! A tap that already existed (a `vifname=` the user made) is joined but
//! never deleted. Taps are deleted in the network namespace they were made
//! in (the record keeps it), whoever cleans up.

use pvio_backends::net::host::{self, Route};
use pvio_backends::net::tap::{self, TapOwner};

use super::DomainError;

pub use host::Deleted;

/// Makes tap `name` (unless it exists), sets its MTU, joins it to
/// `bridge` and brings it up. Returns whether pvio created it.
pub fn create(name: &str, bridge: &str, mtu: Option<u16>) -> Result<bool, DomainError> {
    let mut route = Route::open()?;
    route.bridge(bridge)?;
    let created = route.link(name)?.is_none();
    if created {
        tap::create_persistent(name, TapOwner::default())?;
    }
    let joined = (|| {
        if let Some(mtu) = mtu {
            route.set_mtu(name, u32::from(mtu))?;
        }
        route.join_bridge(name, bridge)?;
        route.set_up(name, true)
    })();
    if let Err(e) = joined {
        if created {
            let _ = route.delete(name);
        }
        return Err(e.into());
    }
    Ok(created)
}

/// Deletes tap `name` in this network namespace; a tap already gone is not
/// an error.
pub fn delete(name: &str) -> Result<(), DomainError> {
    Route::open()?.delete(name)?;
    Ok(())
}

/// The network namespace this thread is in (`net:[4026531840]`).
pub fn current_netns() -> Option<String> {
    host::current_netns()
}

/// Deletes tap `name` in the network namespace `netns` it was made in
/// (this thread's when `None` or the same), entering it if need be, so
/// that a clean-up run from another namespace deletes the right tap and
/// says what really happened.
pub fn delete_in(name: &str, netns: Option<&str>) -> Result<Deleted, DomainError> {
    Ok(host::delete_in(name, netns)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_bridge_says_how_to_make_it() {
        let err = create("pvtapx0", "pvio-no-such-br", None).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("ip link add pvio-no-such-br type bridge"),
            "{msg}"
        );
        assert!(Route::open().unwrap().link("pvtapx0").unwrap().is_none());
    }

    #[test]
    fn deleting_a_missing_tap_is_fine() {
        delete("pvio-gone0").unwrap();
        assert_eq!(delete_in("pvio-gone0", None).unwrap(), Deleted::Gone);
        let here = current_netns().unwrap();
        assert_eq!(delete_in("pvio-gone0", Some(&here)).unwrap(), Deleted::Gone);
    }

    #[test]
    fn a_namespace_that_is_gone_took_its_taps() {
        assert_eq!(
            delete_in("pvio-gone0", Some("net:[1]")).unwrap(),
            Deleted::NamespaceGone
        );
    }
}
