//! Host taps for a domain's NICs: made persistent before QEMU or a net
//! backend opens them, joined to their bridge and brought up, and deleted
//! at the end when pvio made them. The work is done by `ip` (iproute2), as
//! Xen's vif scripts did; a tap that already existed (a `vifname=` the
//! user made) is joined but never deleted. Taps are deleted in the network
//! namespace they were made in (the record keeps it), whoever cleans up.

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

/// The network namespace this process is in (`net:[4026531840]`).
pub fn current_netns() -> Option<String> {
    std::fs::read_link("/proc/self/ns/net")
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// What became of a tap that clean-up deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deleted {
    /// It was there and is gone now.
    Deleted,
    /// It was already gone.
    Gone,
    /// Its namespace no longer exists: the tap went with it.
    NamespaceGone,
}

/// Deletes tap `name` in the network namespace `netns` it was made in
/// (this process's when `None` or the same): through a name under
/// `/run/netns` or a process in that namespace (`ip -n`, `nsenter`), so
/// that a clean-up run from another namespace deletes the right tap and
/// says what really happened.
pub fn delete_in(name: &str, netns: Option<&str>) -> Result<Deleted, DomainError> {
    let here = current_netns();
    let Some(ns) = netns.filter(|ns| Some(*ns) != here.as_deref()) else {
        if !exists(name) {
            return Ok(Deleted::Gone);
        }
        return ip(&["link", "del", "dev", name]).map(|()| Deleted::Deleted);
    };
    let args = ["link", "del", "dev", name];
    if let Some(named) = named_netns(ns) {
        let mut a = vec!["-n", named.as_str()];
        a.extend(args);
        return match ip(&a) {
            Ok(()) => Ok(Deleted::Deleted),
            Err(_) if !link_in(&named, name) => Ok(Deleted::Gone),
            Err(e) => Err(e),
        };
    }
    let Some(pid) = pid_in_netns(ns) else {
        return Ok(Deleted::NamespaceGone);
    };
    let out = Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-n", "ip"])
        .args(args)
        .output()
        .map_err(|e| {
            DomainError::Network(format!("cannot run `nsenter` ({e}); install util-linux"))
        })?;
    if out.status.success() {
        Ok(Deleted::Deleted)
    } else if String::from_utf8_lossy(&out.stderr).contains("Cannot find device") {
        Ok(Deleted::Gone)
    } else {
        Err(DomainError::Network(format!(
            "deleting tap {name} in {ns}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// The name under `/run/netns` of namespace `ns`, if it has one.
fn named_netns(ns: &str) -> Option<String> {
    let ino = ns_inode(ns)?;
    std::fs::read_dir("/run/netns")
        .ok()?
        .filter_map(Result::ok)
        .find_map(|e| {
            use std::os::unix::fs::MetadataExt;
            (std::fs::metadata(e.path()).ok()?.ino() == ino)
                .then(|| e.file_name().to_string_lossy().into_owned())
        })
}

/// Whether `name` exists in the named namespace `netns`.
fn link_in(netns: &str, name: &str) -> bool {
    Command::new("ip")
        .args(["-n", netns, "link", "show", "dev", name])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A process in namespace `ns`.
fn pid_in_netns(ns: &str) -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(Result::ok)
        .find_map(|e| {
            let pid = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let link = std::fs::read_link(format!("/proc/{pid}/ns/net")).ok()?;
            (link.to_string_lossy() == ns).then_some(pid)
        })
}

/// The inode in `net:[4026531840]`.
fn ns_inode(ns: &str) -> Option<u64> {
    ns.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
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
        assert_eq!(ns_inode("net:[4026531840]"), Some(4_026_531_840));
        assert_eq!(ns_inode("mnt:[1]"), None);
    }
}
