//! `block-attach` and `block-detach`: a PV disk hot-plugged into a running
//! guest (its backend started in the supervisor, a socket chardev, a
//! `vhost-user-blk-pci` device with the vdev as id, both built as the
//! plan builds a PV disk at start, `plan::qdev`) and unplugged (the
//! guest's `DEVICE_DELETED` awaited, then the chardev and the backend
//! removed).

use std::path::Path;

use super::{chardev, device, HotplugError, Result, UNPLUG_TIMEOUT};
use crate::config::disk::{self, DiskBus, DiskFormat};
use crate::domain::live::{lock, LiveDomain};
use crate::domain::record::DiskEntry;
use crate::host::media::{unusable, Wanted};
use crate::plan::{qdev, MAX_SOCKET_PATH};
use crate::qmp::{is_device_deleted, qmp};

/// Hot-plugs the PV disk `spec` (a disk spec as in a config's `disk`);
/// a relative image path is taken from `cwd`.
pub fn attach(live: &LiveDomain, spec: &str, cwd: &Path) -> Result<DiskEntry> {
    let _one_at_a_time = lock(&live.hotplug);
    let parsed = disk::parse(spec).map_err(|message| HotplugError::BadSpec {
        spec: spec.to_owned(),
        message,
    })?;
    for note in &parsed.notes {
        tracing::info!("block-attach '{spec}': {note}");
    }
    let d = parsed.disk;
    // xl's block-attach of a CD-ROM drive the domain has changes its
    // medium, as cd-insert does.
    if let Some(cd) = live
        .record()
        .disks
        .iter()
        .find(|x| x.vdev == d.vdev && x.cdrom)
    {
        let target = d.target.as_ref().ok_or_else(|| HotplugError::BadSpec {
            spec: spec.to_owned(),
            message: format!(
                "{} is a CD-ROM drive: name the ISO to insert (or use `pvio cd-eject`)",
                cd.vdev
            ),
        })?;
        let iso = cwd.join(target);
        drop(_one_at_a_time);
        super::cdrom::insert(live, &cd.vdev, &iso)?;
        tracing::info!("block-attach of CD-ROM {}: medium changed", cd.vdev);
        let mut entry = cd.clone();
        entry.image = Some(iso);
        return Ok(entry);
    }
    if let Some(used) = live.record().disks.iter().find(|x| x.vdev == d.vdev) {
        return Err(HotplugError::InUse {
            vdev: d.vdev.clone(),
            by: used.image.as_ref().map_or_else(
                || "an empty drive".to_owned(),
                |p| format!("image {}", p.display()),
            ),
        });
    }
    let not = |why: &str| HotplugError::NotHotpluggable {
        vdev: d.vdev.clone(),
        why: why.to_owned(),
    };
    if d.cdrom {
        return Err(not("CD-ROM drives are emulated IDE drives fixed at start; change their medium with `pvio cd-insert`"));
    }
    if !matches!(d.bus, DiskBus::Pv { .. }) {
        return Err(not("only PV disks (xvd*, vd*) can be hot-plugged; emulated IDE and SCSI disks are fixed at start"));
    }
    if d.format != DiskFormat::Raw {
        return Err(not("the PV block backend serves raw images and block devices; convert with `qemu-img convert -O raw`"));
    }
    let target = d.target.as_ref().ok_or_else(|| HotplugError::BadSpec {
        spec: spec.to_owned(),
        message: "a hot-plugged disk needs an image (target=)".to_owned(),
    })?;
    let image = cwd.join(target);
    if let Some(what) = unusable(&image, Wanted::ImageOrBlockDevice) {
        return Err(HotplugError::Unusable {
            path: image,
            what: format!("{what}; a PV disk is a raw image file or a block device"),
        });
    }
    let socket = live.spec.dm_dir.join(format!("blk-{}.sock", d.vdev));
    if socket.as_os_str().len() > MAX_SOCKET_PATH {
        return Err(not(
            "the socket path in the run dir is too long; set PVIO_RUN_DIR to a shorter directory",
        ));
    }
    let bus = device::free_bus(live, &d.vdev)?;
    live.backends()
        .start_blk(&d.vdev, &socket, &image, d.read_only)?;
    let chr = qdev::SocketChardev {
        id: qdev::chardev_id(&d.vdev),
        path: socket.to_string_lossy().into_owned(),
        release: live.qemu_release(),
    };
    let plugged = live.qmp(|q| {
        chardev::add_socket(q, &chr)?;
        let added = device::add(q, qdev::vhost_user_blk(&d.vdev), &bus);
        if added.is_err() {
            chardev::remove(q, &chr.id);
        }
        added
    });
    if let Err(e) = plugged {
        live.backends().stop(&d.vdev);
        return Err(e.into());
    }
    let entry = DiskEntry {
        vdev: d.vdev.clone(),
        bus: "pv".to_owned(),
        cdrom: false,
        image: Some(image),
        read_only: d.read_only,
        socket: Some(socket),
        hotplugged: true,
    };
    live.update(|r| r.disks.push(entry.clone()));
    live.refresh_backend_pids();
    tracing::info!("{} hot-plugged", d.vdev);
    Ok(entry)
}

/// Hot-unplugs the PV disk `vdev`.
pub fn detach(live: &LiveDomain, vdev: &str) -> Result<()> {
    let _one_at_a_time = lock(&live.hotplug);
    let disk = live
        .record()
        .disks
        .into_iter()
        .find(|d| d.vdev == vdev)
        .ok_or_else(|| HotplugError::NoSuchDisk(vdev.to_owned()))?;
    if disk.cdrom {
        return Err(HotplugError::NotHotpluggable {
            vdev: vdev.to_owned(),
            why: "a CD-ROM drive stays; remove its medium with `pvio cd-eject`".to_owned(),
        });
    }
    if disk.bus != "pv" {
        return Err(HotplugError::NotHotpluggable {
            vdev: vdev.to_owned(),
            why: format!(
                "an emulated {} disk cannot be hot-unplugged; only PV disks can",
                disk.bus.to_uppercase()
            ),
        });
    }
    let mark = live.events.mark();
    live.qmp(|q| {
        q.execute(&qmp::device_del {
            id: vdev.to_owned(),
        })
    })?;
    if live
        .events
        .wait_after(mark, UNPLUG_TIMEOUT, |e| is_device_deleted(e, vdev))
        .is_none()
    {
        return Err(HotplugError::UnplugTimeout {
            vdev: vdev.to_owned(),
            after: UNPLUG_TIMEOUT,
        });
    }
    let chr = qdev::chardev_id(vdev);
    if let Err(e) = live.qmp(|q| {
        chardev::remove(q, &chr);
        Ok(())
    }) {
        tracing::warn!("chardev-remove {chr}: {}", crate::report::error_line(&e));
    }
    live.backends().stop(vdev);
    live.refresh_backend_pids();
    live.update(|r| r.disks.retain(|d| d.vdev != vdev));
    tracing::info!("{vdev} hot-unplugged");
    Ok(())
}
