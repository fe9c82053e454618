//! `cd-insert` and `cd-eject`: the medium of an emulated IDE CD-ROM
//! changed while the guest runs (`blockdev-change-medium`, `eject`), the
//! drive addressed by its device id (the vdev, `hdc`).

use std::path::Path;

use super::{HotplugError, Result};
use crate::domain::live::{lock, LiveDomain};
use crate::domain::record::DiskEntry;
use crate::host::media::{unusable, Wanted};
use crate::qmp::qmp;

fn cdrom(live: &LiveDomain, vdev: &str) -> Result<DiskEntry> {
    let d = live
        .record()
        .disks
        .into_iter()
        .find(|d| d.vdev == vdev)
        .ok_or_else(|| HotplugError::NoSuchDisk(vdev.to_owned()))?;
    if !d.cdrom {
        return Err(HotplugError::NotHotpluggable {
            vdev: vdev.to_owned(),
            why: "not a CD-ROM drive (give it as 'hdc:cdrom' or devtype=cdrom in the config)"
                .to_owned(),
        });
    }
    Ok(d)
}

/// Puts the ISO at `path` (absolute) into CD-ROM `vdev`.
pub fn insert(live: &LiveDomain, vdev: &str, path: &Path) -> Result<()> {
    let _one_at_a_time = lock(&live.hotplug);
    cdrom(live, vdev)?;
    if let Some(what) = unusable(path, Wanted::ImageFile) {
        return Err(HotplugError::Unusable {
            path: path.to_owned(),
            what: format!("{what}; cd-insert takes an ISO image file"),
        });
    }
    // The supervisor opens the ISO and hands QEMU the descriptor: QEMU
    // runs unprivileged and may not be able to open the path itself.
    let iso = std::fs::File::open(path).map_err(|e| HotplugError::Unusable {
        path: path.to_owned(),
        what: format!("cannot be opened: {e}"),
    })?;
    live.qmp(|q| {
        let set = q.add_fd(std::os::fd::AsFd::as_fd(&iso))?;
        #[allow(deprecated)] // `device` is the deprecated way; `id` is used.
        let cmd = qmp::blockdev_change_medium {
            device: None,
            force: None,
            format: Some("raw".to_owned()),
            id: Some(vdev.to_owned()),
            read_only_mode: None,
            filename: format!("/dev/fdset/{set}"),
        };
        let changed = q.execute(&cmd);
        // QEMU holds its own copy now; the set itself is not needed.
        let _ = q.remove_fdset(set);
        changed
    })?;
    live.update(|r| {
        for d in r.disks.iter_mut().filter(|d| d.vdev == vdev) {
            d.image = Some(path.to_owned());
        }
    });
    tracing::info!("{vdev}: inserted {}", path.display());
    Ok(())
}

/// Ejects the medium of CD-ROM `vdev` (even if the guest locked the tray).
pub fn eject(live: &LiveDomain, vdev: &str) -> Result<()> {
    let _one_at_a_time = lock(&live.hotplug);
    cdrom(live, vdev)?;
    #[allow(deprecated)] // `device` is the deprecated way; `id` is used.
    let cmd = qmp::eject {
        device: None,
        force: Some(true),
        id: Some(vdev.to_owned()),
    };
    live.qmp(|q| q.execute(&cmd))?;
    live.update(|r| {
        for d in r.disks.iter_mut().filter(|d| d.vdev == vdev) {
            d.image = None;
        }
    });
    tracing::info!("{vdev}: ejected");
    Ok(())
}
