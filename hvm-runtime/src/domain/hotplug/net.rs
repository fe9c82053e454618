//! `network-attach` and `network-detach`: a NIC hot-plugged into a running
//! guest (its tap made and joined to the bridge; PV through a net backend
//! in the supervisor and a `vhost-user` netdev, emulated through a `tap`
//! netdev; the NIC and its netdev built as the plan builds them at start,
//! `plan::qdev`) and unplugged after the guest's `DEVICE_DELETED`.

use std::path::{Path, PathBuf};

use super::{chardev, device, HotplugError, Result, UNPLUG_TIMEOUT};
use crate::config::vif::{self, Mac, NicModel};
use crate::domain::live::{lock, LiveDomain};
use crate::domain::record::NicEntry;
use crate::domain::taps;
use crate::plan::ids::{self, OsEntropy};
use crate::plan::{msix, qdev, MAX_SOCKET_PATH};
use crate::qmp::{is_device_deleted, qmp};

/// Hot-plugs the NIC of the vif `settings` (`key=value` each).
pub fn attach(live: &LiveDomain, settings: &[String]) -> Result<NicEntry> {
    let _one_at_a_time = lock(&live.hotplug);
    let spec = settings.join(",");
    let nics = live.record().nics;
    let next = nics
        .iter()
        .map(|n| n.devid.saturating_add(1))
        .max()
        .unwrap_or(0);
    let parsed = vif::parse(&spec, next).map_err(|message| HotplugError::BadSpec {
        spec: spec.clone(),
        message,
    })?;
    for note in &parsed.notes {
        tracing::info!("network-attach '{spec}': {note}");
    }
    let v = parsed.vif;
    let dev = qdev::nic_id(v.devid);
    if nics.iter().any(|n| n.devid == v.devid) {
        return Err(HotplugError::InUse {
            vdev: dev,
            by: format!("NIC devid {}", v.devid),
        });
    }
    let typed_mac = v.mac.unwrap_or_else(|| ids::random_mac(&mut OsEntropy));
    if let Some(n) = nics.iter().find(|n| n.mac == typed_mac) {
        return Err(HotplugError::InUse {
            vdev: typed_mac.to_string(),
            by: format!("NIC {}", n.devid),
        });
    }
    let tap = match &v.vifname {
        Some(n) => n.clone(),
        None => ids::tap_name(live.name(), v.devid).ok_or_else(|| HotplugError::BadSpec {
            spec: spec.clone(),
            message: "the devid makes the tap name too long; set vifname=".to_owned(),
        })?,
    };
    let created = taps::create(&tap, &v.bridge, v.mtu)?;
    let undo_tap = || {
        if created {
            let _ = taps::delete(&tap);
        }
    };
    let plugged = if v.model.is_pv() {
        let socket = live.spec.dm_dir.join(format!("net-{}.sock", v.devid));
        plug_pv(live, v.devid, &socket, &tap, typed_mac, v.mtu)
    } else {
        plug_emulated(live, v.devid, &tap, typed_mac, v.model)
    };
    let socket = match plugged {
        Ok(s) => s,
        Err(e) => {
            undo_tap();
            return Err(e);
        }
    };
    let entry = NicEntry {
        devid: v.devid,
        mac: typed_mac,
        model: v.model.qemu_device().to_owned(),
        tap: tap.clone(),
        bridge: v.bridge.clone(),
        socket,
        hotplugged: true,
    };
    live.update(|r| {
        r.nics.push(entry.clone());
        if created {
            r.taps_created.push(tap.clone());
        }
    });
    live.refresh_backend_pids();
    tracing::info!("{dev} hot-plugged on {} (tap {tap})", v.bridge);
    Ok(entry)
}

/// `netdev_add` with the arguments of a [`qdev::Netdev`], described as
/// the plan's `-netdev` is.
#[derive(serde::Serialize)]
#[serde(transparent)]
struct NetdevAdd(serde_json::Map<String, serde_json::Value>);

impl qapi::Command for NetdevAdd {
    type Ok = qapi::Empty;
    const NAME: &'static str = "netdev_add";
    const ALLOW_OOB: bool = false;
}

fn plug_pv(
    live: &LiveDomain,
    devid: u32,
    socket: &Path,
    tap: &str,
    mac: Mac,
    mtu: Option<u16>,
) -> Result<Option<PathBuf>> {
    let id = qdev::netdev_id(devid);
    let dev = qdev::nic_id(devid);
    if socket.as_os_str().len() > MAX_SOCKET_PATH {
        return Err(HotplugError::NotHotpluggable {
            vdev: dev,
            why: "the socket path in the run dir is too long; set PVIO_RUN_DIR to a shorter directory".to_owned(),
        });
    }
    let bus = device::free_bus(live, &dev)?;
    live.backends().start_net(&id, socket, tap, mac, mtu)?;
    let chr = qdev::SocketChardev {
        id: qdev::chardev_id(&id),
        path: socket.to_string_lossy().into_owned(),
        release: live.qemu_release(),
    };
    let netdev = qdev::Netdev::VhostUser {
        id: id.clone(),
        chardev: chr.id.clone(),
    };
    // One queue pair, as the net backend serves; no MSI-X under TCG
    // (see `plan::msix`).
    let vectors = msix::pv_nic_vectors(live.spec.identity.accel, 1, live.qemu_release());
    let nic = qdev::virtio_net(devid, mac, mtu, vectors);
    let plugged = live.qmp(|q| {
        chardev::add_socket(q, &chr)?;
        if let Err(e) = q.execute(&NetdevAdd(netdev.to_qmp())) {
            chardev::remove(q, &chr.id);
            return Err(e);
        }
        let added = device::add(q, nic, &bus);
        if added.is_err() {
            let _ = q.execute(&qmp::netdev_del { id: id.clone() });
            chardev::remove(q, &chr.id);
        }
        added
    });
    if let Err(e) = plugged {
        live.backends().stop(&id);
        return Err(e.into());
    }
    Ok(Some(socket.to_owned()))
}

fn plug_emulated(
    live: &LiveDomain,
    devid: u32,
    tap: &str,
    mac: Mac,
    model: NicModel,
) -> Result<Option<PathBuf>> {
    let id = qdev::netdev_id(devid);
    let bus = device::free_bus(live, &qdev::nic_id(devid))?;
    // QEMU runs unprivileged: the supervisor opens the tap's queue and
    // hands it over (`getfd`), as it does for the PV backends.
    let queue = pvio_backends::net::tap::open_queues(tap, 1)?
        .pop()
        .ok_or_else(|| HotplugError::NoQueue(tap.to_owned()))?;
    let fdname = format!("fd-{id}");
    let netdev = qdev::Netdev::Tap {
        id: id.clone(),
        from: qdev::TapFrom::Fd(fdname.clone()),
    };
    let nic = qdev::emulated_nic(model, devid, mac);
    live.qmp(|q| {
        q.getfd(&fdname, std::os::fd::AsFd::as_fd(&queue))?;
        q.execute(&NetdevAdd(netdev.to_qmp()))?;
        let added = device::add(q, nic, &bus);
        if added.is_err() {
            let _ = q.execute(&qmp::netdev_del { id: id.clone() });
        }
        added
    })?;
    Ok(None)
}

/// Hot-unplugs the NIC with MAC or devid `nic`.
pub fn detach(live: &LiveDomain, nic: &str) -> Result<()> {
    let _one_at_a_time = lock(&live.hotplug);
    let rec = live.record();
    let n = rec
        .nics
        .iter()
        .find(|n| Mac::parse(nic).ok() == Some(n.mac) || nic.parse::<u32>().ok() == Some(n.devid))
        .cloned()
        .ok_or_else(|| HotplugError::NoSuchNic(nic.to_owned()))?;
    let id = qdev::netdev_id(n.devid);
    let dev = qdev::nic_id(n.devid);
    let mark = live.events.mark();
    live.qmp(|q| q.execute(&qmp::device_del { id: dev.clone() }))?;
    if live
        .events
        .wait_after(mark, UNPLUG_TIMEOUT, |e| is_device_deleted(e, &dev))
        .is_none()
    {
        return Err(HotplugError::UnplugTimeout {
            vdev: dev,
            after: UNPLUG_TIMEOUT,
        });
    }
    let pv = n.socket.is_some();
    let cleaned = live.qmp(|q| {
        q.execute(&qmp::netdev_del { id: id.clone() })?;
        if pv {
            chardev::remove(q, &qdev::chardev_id(&id));
        }
        Ok(())
    });
    if let Err(e) = cleaned {
        tracing::warn!("netdev_del {id}: {}", crate::report::error_line(&e));
    }
    if pv {
        live.backends().stop(&id);
        live.refresh_backend_pids();
    }
    let made = rec.taps_created.contains(&n.tap);
    if made {
        taps::delete(&n.tap)?;
    }
    live.update(|r| {
        r.nics.retain(|x| x.devid != n.devid);
        r.taps_created.retain(|t| *t != n.tap);
    });
    tracing::info!("{dev} hot-unplugged");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent<C: qapi::Command>(c: &C) -> serde_json::Value {
        serde_json::from_str(&device::wire_line(c)).unwrap()
    }

    #[test]
    fn netdev_add_carries_what_the_typed_schema_sends() {
        let pv = qdev::Netdev::VhostUser {
            id: "net1".to_owned(),
            chardev: "chr-net1".to_owned(),
        };
        let typed = qmp::netdev_add(qmp::Netdev::vhost_user {
            id: "net1".to_owned(),
            vhost_user: qmp::NetdevVhostUserOptions {
                queues: None,
                vhostforce: None,
                chardev: "chr-net1".to_owned(),
            },
        });
        assert_eq!(sent(&NetdevAdd(pv.to_qmp())), sent(&typed));
        let tap = qdev::Netdev::Tap {
            id: "net0".to_owned(),
            from: qdev::TapFrom::Fd("fd-net0".to_owned()),
        };
        let typed = qmp::netdev_add(qmp::Netdev::tap {
            id: "net0".to_owned(),
            tap: qmp::NetdevTapOptions {
                fd: Some("fd-net0".to_owned()),
                ..Default::default()
            },
        });
        assert_eq!(sent(&NetdevAdd(tap.to_qmp())), sent(&typed));
    }
}
