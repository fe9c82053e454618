//! Host taps for a domain's NICs: made persistent before QEMU or a net
//! backend opens them, joined to their bridge and brought up, and deleted
//! at the end when pvio made them. The work is done by `ip` (iproute2), as
//! Xen's vif scripts did; a tap that already existed (a `vifname=` the
//! user made) is joined but never deleted.

use std::path::Path;
use std::process::Command;

use super::DomainError;

/// Whether a network interface `name` exists.
pub fn exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// Whether `name` is a bridge.
pub fn is_bridge(name: &str) -> bool {
    Path::new("/sys/class/net")
        .join(name)
        .join("bridge")
        .exists()
}

/// Makes tap `name` (unless it exists), sets its MTU, joins it to
/// `bridge` and brings it up. Returns whether pvio created it.
pub fn create(name: &str, bridge: &str, mtu: Option<u16>) -> Result<bool, DomainError> {
    if !is_bridge(bridge) {
        return Err(DomainError::Network(format!(
            "bridge {bridge} does not exist; create it with `ip link add {bridge} type bridge && ip link set {bridge} up`"
        )));
    }
    let created = !exists(name);
    if created {
        ip(&["tuntap", "add", "dev", name, "mode", "tap"])?;
    }
    let joined = (|| {
        if let Some(mtu) = mtu {
            ip(&["link", "set", "dev", name, "mtu", &mtu.to_string()])?;
        }
        ip(&["link", "set", "dev", name, "master", bridge])?;
        ip(&["link", "set", "dev", name, "up"])
    })();
    if let Err(e) = joined {
        if created {
            let _ = delete(name);
        }
        return Err(e);
    }
    Ok(created)
}

/// Deletes tap `name`; a tap already gone is not an error.
pub fn delete(name: &str) -> Result<(), DomainError> {
    if !exists(name) {
        return Ok(());
    }
    ip(&["link", "del", "dev", name])
}

fn ip(args: &[&str]) -> Result<(), DomainError> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| DomainError::Network(format!("cannot run `ip` ({e}); install iproute2")))?;
    if out.status.success() {
        return Ok(());
    }
    Err(DomainError::Network(format!(
        "`ip {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    )))
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
        assert!(!exists("pvtapx0"));
    }

    #[test]
    fn deleting_a_missing_tap_is_fine() {
        delete("pvio-gone0").unwrap();
    }
}
