//! The `device_add` of a hot-plugged device (described by the
//! constructor the plan uses, `plan::qdev`), and where it goes: on q35,
//! behind the first of the plan's spare PCIe root ports (`plan::pcie`)
//! that has nothing behind it (QEMU's `query-pci` says which); on i440fx,
//! on the root bus, where QEMU picks a free slot.

use super::{HotplugError, Result};
use crate::domain::live::LiveDomain;
use crate::plan::pcie;
use crate::plan::qdev::QemuDevice;
use crate::qmp::{qmp, Qmp, QmpError};

/// Where a device goes: its bus (`None`: the root bus) and, when it must
/// sit in one place, its slot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Place {
    /// A PCIe root port's id, or `None` for the root bus.
    pub bus: Option<String>,
    /// The slot (`addr`), when fixed.
    pub slot: Option<u8>,
}

/// Where device `dev` about to be hot-plugged goes: where it sat before a
/// save when the domain is being restored ([`LiveDomain::pinned_place`]);
/// otherwise behind a free spare root port on a domain that has them, or
/// on the root bus (i440fx), where QEMU picks the slot. All ports taken
/// is an error that says how many there are.
pub(super) fn free_bus(live: &LiveDomain, dev: &str) -> Result<Place> {
    if let Some(p) = live.pinned_place(dev) {
        return Ok(Place {
            bus: p.bus,
            slot: Some(p.slot),
        });
    }
    Ok(Place {
        bus: free_buses(live, &[dev])?.into_iter().next().flatten(),
        slot: None,
    })
}

/// The buses for `devs` hot-plugged one after the other, each where
/// [`free_bus`] would put it once the ones before it are in: what a dry
/// run shows.
pub(super) fn free_buses(live: &LiveDomain, devs: &[&str]) -> Result<Vec<Option<String>>> {
    let ports = pcie::root_ports_in(&live.spec.qemu_args);
    if ports.is_empty() {
        return Ok(vec![None; devs.len()]);
    }
    let buses = live.qmp(|q| q.execute(&qmp::query_pci {}))?;
    let picked = pick(&ports, &buses, devs.len());
    devs.iter()
        .zip(picked)
        .map(|(dev, port)| match port {
            Some(p) => Ok(Some(p)),
            None => Err(HotplugError::NotHotpluggable {
                vdev: (*dev).to_owned(),
                why: format!(
                    "all {} spare PCIe root ports of this q35 domain are taken; detach a hot-plugged device first",
                    ports.len()
                ),
            }),
        })
        .collect()
}

/// The free ports for `n` devices plugged in turn (`None` once they run
/// out).
fn pick(ports: &[String], buses: &[qmp::PciInfo], n: usize) -> Vec<Option<String>> {
    let mut free: Vec<String> = ports.to_vec();
    (0..n)
        .map(|_| {
            let port = first_free(&free, buses)?;
            free.retain(|p| *p != port);
            Some(port)
        })
        .collect()
}

/// The first of `ports` that QEMU lists as a bridge with no device behind
/// it.
fn first_free(ports: &[String], buses: &[qmp::PciInfo]) -> Option<String> {
    let devices: Vec<&qmp::PciDeviceInfo> = buses.iter().flat_map(|b| &b.devices).collect();
    ports
        .iter()
        .find(|port| {
            devices.iter().any(|d| {
                d.qdev_id == **port
                    && d.pci_bridge
                        .as_ref()
                        .is_some_and(|b| b.devices.as_ref().is_none_or(Vec::is_empty))
            })
        })
        .cloned()
}

/// `device_add` of `dev` at `place`.
pub(super) fn add(
    q: &mut Qmp,
    dev: QemuDevice,
    place: &Place,
) -> std::result::Result<(), QmpError> {
    q.execute(&add_at(dev, place)).map(drop)
}

/// The `device_add` of `dev` at `place`, as [`add`] sends it.
fn add_at(dev: QemuDevice, place: &Place) -> qmp::device_add {
    add_command(&dev.placed(place.bus.as_deref(), place.slot))
}

/// The `device_add` command [`add`] sends: the device's QMP arguments,
/// its driver, id and bus as the command's own members.
pub(super) fn add_command(dev: &QemuDevice) -> qmp::device_add {
    let mut arguments = dev.to_qmp();
    for own in ["driver", "id", "bus"] {
        arguments.remove(own);
    }
    qmp::device_add {
        bus: dev.bus().map(str::to_owned),
        id: dev.id().map(str::to_owned),
        driver: dev.driver().to_owned(),
        arguments,
    }
}

/// A command as it goes over the QMP socket (`{"execute":...,
/// "arguments":...}`), for dry runs.
pub(super) fn wire_line<C: qapi::Command>(command: &C) -> String {
    serde_json::to_string(&qapi::Execute::<&C, qapi::Never>::with_command(command))
        .unwrap_or_else(|e| format!("(cannot show {}: {e})", C::NAME))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn device(qdev_id: &str, behind: Option<Vec<serde_json::Value>>) -> serde_json::Value {
        let mut d = json!({
            "bus": 0, "slot": 2, "function": 0, "irq_pin": 0,
            "class_info": {"class": 1540},
            "id": {"device": 12, "vendor": 6966},
            "qdev_id": qdev_id, "regions": []
        });
        if let Some(devices) = behind {
            d["pci_bridge"] = json!({
                "bus": {"number": 1, "secondary": 1, "subordinate": 1,
                        "io_range": {"base": 0, "limit": 0},
                        "memory_range": {"base": 0, "limit": 0},
                        "prefetchable_range": {"base": 0, "limit": 0}},
                "devices": devices
            });
        }
        d
    }

    fn buses(devices: Vec<serde_json::Value>) -> Vec<qmp::PciInfo> {
        serde_json::from_value(json!([{ "bus": 0, "devices": devices }])).unwrap()
    }

    #[test]
    fn the_first_empty_spare_port_is_chosen() {
        let ports: Vec<String> = (0..3).map(pcie::root_port_id).collect();
        let b = buses(vec![
            device("", None),
            device("pvio-rp0", Some(vec![device("xvdb", None)])),
            device("pvio-rp1", Some(vec![])),
            device("pvio-rp2", Some(vec![])),
        ]);
        assert_eq!(first_free(&ports, &b).as_deref(), Some("pvio-rp1"));
        let full = buses(vec![
            device("pvio-rp0", Some(vec![device("xvdb", None)])),
            device("pvio-rp1", Some(vec![device("nic1", None)])),
            device("pvio-rp2", Some(vec![device("xvdc", None)])),
        ]);
        assert_eq!(first_free(&ports, &full), None);
        // A port QEMU does not list is not used.
        assert_eq!(first_free(&ports, &buses(vec![])), None);
    }

    #[test]
    fn devices_go_on_the_wire_as_hot_plug_always_sent_them() {
        use crate::config::vif::{Mac, NicModel};
        use crate::plan::qdev;
        let mac = Mac([0x00, 0x16, 0x3e, 0x00, 0x00, 0x01]);
        let behind = Place {
            bus: Some("pvio-rp0".to_owned()),
            slot: None,
        };
        assert_eq!(
            wire_line(&add_at(qdev::vhost_user_blk("xvdb"), &behind)),
            r#"{"execute":"device_add","arguments":{"bus":"pvio-rp0","id":"xvdb","driver":"vhost-user-blk-pci","chardev":"chr-xvdb"}}"#
        );
        let pinned = Place {
            bus: None,
            slot: Some(5),
        };
        assert_eq!(
            wire_line(&add_at(qdev::virtio_net(1, mac, Some(1400), 4), &pinned)),
            r#"{"execute":"device_add","arguments":{"id":"nic1","driver":"virtio-net-pci","addr":"0x05","host_mtu":1400,"mac":"00:16:3e:00:00:01","netdev":"net1","vectors":4}}"#
        );
        assert_eq!(
            wire_line(&add_at(
                qdev::emulated_nic(NicModel::E1000, 0, mac),
                &Place::default()
            )),
            r#"{"execute":"device_add","arguments":{"id":"nic0","driver":"e1000","mac":"00:16:3e:00:00:01","netdev":"net0"}}"#
        );
    }

    #[test]
    fn devices_plugged_in_turn_take_the_free_ports_in_order() {
        let ports: Vec<String> = (0..3).map(pcie::root_port_id).collect();
        let b = buses(vec![
            device("pvio-rp0", Some(vec![])),
            device("pvio-rp1", Some(vec![device("xvdb", None)])),
            device("pvio-rp2", Some(vec![])),
        ]);
        assert_eq!(
            pick(&ports, &b, 3),
            [
                Some("pvio-rp0".to_owned()),
                Some("pvio-rp2".to_owned()),
                None
            ]
        );
        assert_eq!(pick(&ports, &b, 1), [Some("pvio-rp0".to_owned())]);
    }
}
