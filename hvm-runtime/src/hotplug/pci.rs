//! PCI passthrough into a running domain, the QMP half: `vfio-pci`
//! hot-plugged with the caller's device id, and unplugged after the
//! guest's `DEVICE_DELETED`. Preparing the host device (vfio-pci binding,
//! ownership) is `pvio-passthrough`'s; `pvio assign` / `pvio release` do
//! that part and send these requests.

use serde_json::json;

use super::{device, HotplugError, Result, UNPLUG_TIMEOUT};
use crate::domain::live::{lock, LiveDomain};
use crate::domain::record::PciEntry;
use crate::qmp::{is_device_deleted, qmp};

/// Hot-plugs host device `host` (`0000:03:00.0`, bound to vfio-pci) as
/// `vfio-pci` with device id `id`.
pub fn attach(live: &LiveDomain, host: &str, id: &str) -> Result<PciEntry> {
    let _one_at_a_time = lock(&live.hotplug);
    if let Some(p) = live
        .record()
        .pci
        .iter()
        .find(|p| p.id == id || p.host == host)
    {
        return Err(HotplugError::InUse {
            vdev: id.to_owned(),
            by: format!("PCI device {} as {}", p.host, p.id),
        });
    }
    let bus = device::free_bus(live, id)?;
    live.qmp(|q| device::add(q, "vfio-pci", id, bus.as_deref(), &[("host", json!(host))]))?;
    let entry = PciEntry {
        host: host.to_owned(),
        id: id.to_owned(),
    };
    live.update(|r| r.pci.push(entry.clone()));
    tracing::info!("{host} hot-plugged as {id}");
    Ok(entry)
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
