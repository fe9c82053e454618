//! `network-attach` and `network-detach`: a NIC hot-plugged into a running
//! guest (its tap made and joined to the bridge; PV through a net backend
//! in the supervisor and a `vhost-user` netdev, emulated through a `tap`
//! netdev) and unplugged after the guest's `DEVICE_DELETED`.

use std::path::{Path, PathBuf};

use serde_json::json;

use super::{chardev, device, HotplugError, Result, UNPLUG_TIMEOUT};
use crate::config::vif;
use crate::domain::live::{lock, LiveDomain};
use crate::domain::record::NicEntry;
use crate::domain::taps;
use crate::plan::ids::{self, OsEntropy};
use crate::plan::{msix, MAX_SOCKET_PATH};
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
    let id = format!("net{}", v.devid);
    let dev = format!("nic{}", v.devid);
    if nics.iter().any(|n| n.devid == v.devid) {
        return Err(HotplugError::InUse {
            vdev: dev,
            by: format!("NIC devid {}", v.devid),
        });
    }
    let mac = v
        .mac
        .unwrap_or_else(|| ids::random_mac(&mut OsEntropy))
        .to_string();
    if let Some(n) = nics.iter().find(|n| n.mac.eq_ignore_ascii_case(&mac)) {
        return Err(HotplugError::InUse {
            vdev: mac,
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
        plug_pv(live, &id, &dev, &socket, &tap, &mac, v.mtu)
    } else {
        plug_emulated(live, &id, &dev, &tap, &mac, v.model.qemu_device())
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
        mac,
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

fn plug_pv(
    live: &LiveDomain,
    id: &str,
    dev: &str,
    socket: &Path,
    tap: &str,
    mac: &str,
    mtu: Option<u16>,
) -> Result<Option<PathBuf>> {
    if socket.as_os_str().len() > MAX_SOCKET_PATH {
        return Err(HotplugError::NotHotpluggable {
            vdev: dev.to_owned(),
            why: "the socket path in the run dir is too long; set PVIO_RUN_DIR to a shorter directory".to_owned(),
        });
    }
    let bus = device::free_bus(live, dev)?;
    live.backends().start_net(id, socket, tap, mac, mtu)?;
    let chr = format!("chr-{id}");
    let plugged = live.qmp(|q| {
        chardev::add_socket(q, &chr, socket, live.qemu_release())?;
        let netdev = qmp::Netdev::vhost_user {
            id: id.to_owned(),
            vhost_user: qmp::NetdevVhostUserOptions {
                queues: None,
                vhostforce: None,
                chardev: chr.clone(),
            },
        };
        if let Err(e) = q.execute(&qmp::netdev_add(netdev)) {
            chardev::remove(q, &chr);
            return Err(e);
        }
        let mut props = vec![("netdev", json!(id)), ("mac", json!(mac))];
        if let Some(m) = mtu {
            props.push(("host_mtu", json!(m)));
        }
        // One queue pair, as the net backend serves; no MSI-X under TCG
        // (see `plan::msix`).
        let vectors = msix::pv_nic_vectors(live.spec.identity.accel, 1, live.qemu_release());
        props.push(("vectors", json!(vectors)));
        let added = device::add(q, "virtio-net-pci", dev, &bus, &props);
        if added.is_err() {
            let _ = q.execute(&qmp::netdev_del { id: id.to_owned() });
            chardev::remove(q, &chr);
        }
        added
    });
    if let Err(e) = plugged {
        live.backends().stop(id);
        return Err(e.into());
    }
    Ok(Some(socket.to_owned()))
}

fn plug_emulated(
    live: &LiveDomain,
    id: &str,
    dev: &str,
    tap: &str,
    mac: &str,
    model: &str,
) -> Result<Option<PathBuf>> {
    let bus = device::free_bus(live, dev)?;
    // QEMU runs unprivileged: the supervisor opens the tap's queue and
    // hands it over (`getfd`), as it does for the PV backends.
    let queue = pvio_backends::net::tap::open_queues(tap, 1)?
        .pop()
        .ok_or_else(|| HotplugError::NoQueue(tap.to_owned()))?;
    let fdname = format!("fd-{id}");
    live.qmp(|q| {
        q.getfd(&fdname, std::os::fd::AsFd::as_fd(&queue))?;
        let netdev = qmp::Netdev::tap {
            id: id.to_owned(),
            tap: qmp::NetdevTapOptions {
                fd: Some(fdname.clone()),
                ..Default::default()
            },
        };
        q.execute(&qmp::netdev_add(netdev))?;
        let added = device::add(
            q,
            model,
            dev,
            &bus,
            &[("netdev", json!(id)), ("mac", json!(mac))],
        );
        if added.is_err() {
            let _ = q.execute(&qmp::netdev_del { id: id.to_owned() });
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
        .find(|n| n.mac.eq_ignore_ascii_case(nic) || nic.parse::<u32>().ok() == Some(n.devid))
        .cloned()
        .ok_or_else(|| HotplugError::NoSuchNic(nic.to_owned()))?;
    let id = format!("net{}", n.devid);
    let dev = format!("nic{}", n.devid);
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
            chardev::remove(q, &format!("chr-{id}"));
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
