//! PCI passthrough into a running domain, the QMP half: `vfio-pci`
//! hot-plugged with the caller's device id, and unplugged after the
//! guest's `DEVICE_DELETED`; and the dry run of a hot-plug, the very
//! `device_add` lines it would send (the same bus choice, the same
//! command). Preparing the host device (vfio-pci binding, ownership) is
//! `pvio-passthrough`'s; `pvio assign` / `pvio release` do that part and
//! send these requests.

use super::{device, HotplugError, Result, UNPLUG_TIMEOUT};
use crate::domain::live::{lock, LiveDomain};
use crate::domain::record::PciEntry;
use crate::plan::qdev;
use crate::qmp::{is_device_deleted, qmp};
use pvio_passthrough::Bdf;

/// Hot-plugs host device `host` (`0000:03:00.0`, bound to vfio-pci) as
/// `vfio-pci` with device id `id`.
pub fn attach(live: &LiveDomain, host: Bdf, id: &str) -> Result<PciEntry> {
    let _one_at_a_time = lock(&live.hotplug);
    owned_here(live, host)?;
    not_in_use(live, host, id)?;
    let bus = device::free_bus(live, id)?;
    give_group_to_qemu(live, host);
    let add = command(host, id, bus.bus.as_deref());
    live.qmp(|q| q.execute(&add).map(drop))?;
    let entry = PciEntry {
        host,
        id: id.to_owned(),
    };
    live.update(|r| r.pci.push(entry.clone()));
    tracing::info!("{host} hot-plugged as {id}");
    Ok(entry)
}

/// The QMP lines (as sent) that hot-plug `devices` in turn, sending
/// nothing: the same checks and bus choice as [`attach`].
pub fn preview(live: &LiveDomain, devices: &[PciEntry]) -> Result<Vec<String>> {
    let _one_at_a_time = lock(&live.hotplug);
    for d in devices {
        not_in_use(live, d.host, &d.id)?;
    }
    let ids: Vec<&str> = devices.iter().map(|d| d.id.as_str()).collect();
    let buses = device::free_buses(live, &ids)?;
    Ok(devices
        .iter()
        .zip(buses)
        .map(|(d, bus)| device::wire_line(&command(d.host, &d.id, bus.as_deref())))
        .collect())
}

/// The `device_add` of host device `host` as `vfio-pci` with id `id`,
/// the device the plan puts on a command line (`plan::qdev::vfio_pci`).
fn command(host: Bdf, id: &str, bus: Option<&str>) -> qmp::device_add {
    device::add_command(&qdev::vfio_pci(host, id, None).placed(bus, None))
}

/// The supervisor's own check: the ownership record must give `host` to
/// this domain (`pvio assign` writes it first), whoever sent the request.
fn owned_here(live: &LiveDomain, host: Bdf) -> Result<()> {
    let owned = crate::domain::passthrough::manager(false)
        .owned_by(live.name())
        .unwrap_or_default();
    if owned.iter().any(|r| r.bdf == host) {
        Ok(())
    } else {
        Err(HotplugError::NotOwned(host.to_string()))
    }
}

/// The domain's QEMU runs unprivileged: the VFIO group node of `host` is
/// given to its identity (and back to root at release, by the
/// passthrough manager's unbind). A host without the node (no IOMMU)
/// leaves it to QEMU's own error.
fn give_group_to_qemu(live: &LiveDomain, host: Bdf) {
    let root = crate::host::accel::host_root();
    let link = root.join(format!("sys/bus/pci/devices/{host}/iommu_group"));
    let Some(group) = std::fs::read_link(&link)
        .ok()
        .and_then(|g| g.file_name().map(|n| n.to_string_lossy().into_owned()))
    else {
        return;
    };
    let node = root.join("dev/vfio").join(group);
    let dm = live.spec.device_model();
    if let Err(e) = rustix::fs::chown(
        &node,
        Some(rustix::fs::Uid::from_raw(dm.uid)),
        Some(rustix::fs::Gid::from_raw(dm.gid)),
    ) {
        tracing::warn!("cannot give {} to the device model: {e}", node.display());
    }
}

fn not_in_use(live: &LiveDomain, host: Bdf, id: &str) -> Result<()> {
    match live
        .record()
        .pci
        .iter()
        .find(|p| p.id == id || p.host == host)
    {
        Some(p) => Err(HotplugError::InUse {
            vdev: id.to_owned(),
            by: format!("PCI device {} as {}", p.host, p.id),
        }),
        None => Ok(()),
    }
}

/// Hot-unplugs the `vfio-pci` device with id `id`.
pub fn detach(live: &LiveDomain, id: &str) -> Result<()> {
    let _one_at_a_time = lock(&live.hotplug);
    if !live.record().pci.iter().any(|p| p.id == id) {
        return Err(HotplugError::NoSuchPci(id.to_owned()));
    }
    let mark = live.events.mark();
    live.qmp(|q| q.execute(&qmp::device_del { id: id.to_owned() }))?;
    if live
        .events
        .wait_after(mark, UNPLUG_TIMEOUT, |e| is_device_deleted(e, id))
        .is_none()
    {
        return Err(HotplugError::UnplugTimeout {
            vdev: id.to_owned(),
            after: UNPLUG_TIMEOUT,
        });
    }
    live.update(|r| r.pci.retain(|p| p.id != id));
    tracing::info!("{id} hot-unplugged");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dry_run_line_is_the_command_as_sent() {
        let add = command(
            "0000:03:00.0".parse().unwrap(),
            "pt-0000-03-00.0",
            Some("pvio-rp1"),
        );
        assert_eq!(
            device::wire_line(&add),
            r#"{"execute":"device_add","arguments":{"bus":"pvio-rp1","id":"pt-0000-03-00.0","driver":"vfio-pci","host":"0000:03:00.0"}}"#
        );
        let add = command("0000:03:00.0".parse().unwrap(), "pt-0000-03-00.0", None);
        assert!(!device::wire_line(&add).contains("bus"));
    }
}
