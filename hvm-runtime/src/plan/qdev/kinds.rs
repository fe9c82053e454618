//! The constructors of each kind of device pvio adds, and the ids that
//! tie a device to its companions: the plan's command line and hot-plug's
//! `device_add` both start from these.
//!
//! Ids: a disk's device id is its vdev (`xvdb`); NIC `N` is device `nicN`
//! on netdev `netN`; a PV device's chardev is `chr-` and the id of what it
//! serves (`chr-xvdb`, `chr-net0`).

use std::fmt::Display;

use super::{QemuDevice, Value};
use crate::config::options::Machine;
use crate::config::vif::{Mac, NicModel};

/// The chardev a PV device connects to its backend through.
pub fn chardev_id(of: &str) -> String {
    format!("chr-{of}")
}

/// The netdev of NIC `devid`.
pub fn netdev_id(devid: u32) -> String {
    format!("net{devid}")
}

/// The device id of NIC `devid`.
pub fn nic_id(devid: u32) -> String {
    format!("nic{devid}")
}

/// The id of the emulated SCSI controller (one per domain).
pub const SCSI_CONTROLLER: &str = "scsi0";

/// A PV disk: `vhost-user-blk-pci` on chardev `chr-<vdev>`, id `vdev`.
pub fn vhost_user_blk(vdev: &str) -> QemuDevice {
    QemuDevice::new("vhost-user-blk-pci")
        .with("chardev", chardev_id(vdev))
        .with("id", vdev)
}

/// A PV NIC: `virtio-net-pci` on the vhost-user netdev of NIC `devid`,
/// with `vectors` MSI-X vectors (`plan::msix`) and the MTU it offers the
/// guest, if set.
pub fn virtio_net(devid: u32, mac: Mac, mtu: Option<u16>, vectors: u32) -> QemuDevice {
    let d = QemuDevice::new("virtio-net-pci")
        .with("netdev", netdev_id(devid))
        .with("id", nic_id(devid))
        .with("mac", mac.to_string())
        .with("vectors", vectors);
    match mtu {
        Some(m) => d.with("host_mtu", m),
        None => d,
    }
}

/// An emulated NIC of `model` (rtl8139, e1000, ...) on the tap netdev of
/// NIC `devid`.
pub fn emulated_nic(model: NicModel, devid: u32, mac: Mac) -> QemuDevice {
    QemuDevice::new(model.qemu_device())
        .with("netdev", netdev_id(devid))
        .with("id", nic_id(devid))
        .with("mac", mac.to_string())
}

/// An emulated IDE disk or CD-ROM on `drive`, at `channel` / `unit`:
/// PIIX3 (`pc`) has two channels of a master and a slave; ICH9 AHCI
/// (`q35`) six ports of one drive each, `hda`-`hdd` on ports 0-3.
pub fn ide(
    cdrom: bool,
    vdev: &str,
    drive: &str,
    machine: Machine,
    (channel, unit): (u8, u8),
) -> QemuDevice {
    let d = QemuDevice::new(if cdrom { "ide-cd" } else { "ide-hd" }).with("drive", drive);
    let d = match machine {
        Machine::Pc => d.with("bus", format!("ide.{channel}")).with("unit", unit),
        Machine::Q35 => d.with(
            "bus",
            format!("ide.{}", u16::from(channel) * 2 + u16::from(unit)),
        ),
    };
    d.with("id", vdev)
}

/// The emulated SCSI controller (an LSI 53C895A).
pub fn scsi_controller() -> QemuDevice {
    QemuDevice::new("lsi53c895a").with("id", SCSI_CONTROLLER)
}

/// An emulated SCSI disk on `drive`, SCSI target `target` of the
/// controller.
pub fn scsi_hd(vdev: &str, drive: &str, target: u8) -> QemuDevice {
    QemuDevice::new("scsi-hd")
        .with("drive", drive)
        .with("bus", format!("{SCSI_CONTROLLER}.0"))
        .with("scsi-id", target)
        .with("id", vdev)
}

/// A passed-through host PCI device `host` (bound to vfio-pci), with
/// device id `id`, at guest slot `slot` if fixed.
pub fn vfio_pci(host: impl Display, id: &str, slot: Option<u8>) -> QemuDevice {
    let d = QemuDevice::new("vfio-pci")
        .with("host", host.to_string())
        .with("id", id);
    match slot {
        Some(s) => d.with("addr", Value::Slot(s)),
        None => d,
    }
}

/// An empty PCIe root port on the q35 root complex, a place to hot-plug
/// a device into (`plan::pcie`).
pub fn pcie_root_port(id: &str, chassis: u16, port: u16) -> QemuDevice {
    QemuDevice::new("pcie-root-port")
        .with("id", id)
        .with("bus", "pcie.0")
        .with("chassis", chassis)
        .with("port", Value::Hex(port.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value as Json};

    const MAC: Mac = Mac([0x00, 0x16, 0x3e, 0x00, 0x00, 0x01]);

    fn qmp(d: &QemuDevice) -> Json {
        Json::Object(d.to_qmp())
    }

    #[test]
    fn pv_disk() {
        let d = vhost_user_blk("xvdb");
        assert_eq!(
            d.to_cmdline(),
            "vhost-user-blk-pci,chardev=chr-xvdb,id=xvdb"
        );
        assert_eq!(
            qmp(&d.placed(Some("pvio-rp0"), None)),
            json!({"driver": "vhost-user-blk-pci", "id": "xvdb", "bus": "pvio-rp0",
                   "chardev": "chr-xvdb"})
        );
    }

    #[test]
    fn pv_nic() {
        let d = virtio_net(0, MAC, Some(1400), 4);
        assert_eq!(
            d.to_cmdline(),
            "virtio-net-pci,netdev=net0,id=nic0,mac=00:16:3e:00:00:01,vectors=4,host_mtu=1400"
        );
        // Numbers go as JSON numbers, as hot-plug has always sent them.
        assert_eq!(
            qmp(&d),
            json!({"driver": "virtio-net-pci", "id": "nic0", "netdev": "net0",
                   "mac": "00:16:3e:00:00:01", "host_mtu": 1400, "vectors": 4})
        );
        let d = virtio_net(2, MAC, None, 0);
        assert_eq!(
            d.to_cmdline(),
            "virtio-net-pci,netdev=net2,id=nic2,mac=00:16:3e:00:00:01,vectors=0"
        );
        assert_eq!(qmp(&d)["vectors"], json!(0));
        assert!(d.get("host_mtu").is_none());
    }

    #[test]
    fn emulated_nic_models() {
        let d = emulated_nic(NicModel::Rtl8139, 0, MAC);
        assert_eq!(
            d.to_cmdline(),
            "rtl8139,netdev=net0,id=nic0,mac=00:16:3e:00:00:01"
        );
        assert_eq!(
            qmp(&d.placed(None, Some(6))),
            json!({"driver": "rtl8139", "id": "nic0", "netdev": "net0",
                   "mac": "00:16:3e:00:00:01", "addr": "0x06"})
        );
        assert_eq!(
            emulated_nic(NicModel::E1000, 1, MAC).to_cmdline(),
            "e1000,netdev=net1,id=nic1,mac=00:16:3e:00:00:01"
        );
    }

    #[test]
    fn ide_disks_and_cdroms_on_both_machines() {
        assert_eq!(
            ide(false, "hda", "hda", Machine::Pc, (0, 0)).to_cmdline(),
            "ide-hd,drive=hda,bus=ide.0,unit=0,id=hda"
        );
        assert_eq!(
            ide(true, "hdc", "hdc", Machine::Pc, (1, 0)).to_cmdline(),
            "ide-cd,drive=hdc,bus=ide.1,unit=0,id=hdc"
        );
        assert_eq!(
            ide(true, "hdc", "hdc", Machine::Q35, (1, 0)).to_cmdline(),
            "ide-cd,drive=hdc,bus=ide.2,id=hdc"
        );
        assert_eq!(
            ide(false, "hdb", "hdb", Machine::Q35, (0, 1)).to_cmdline(),
            "ide-hd,drive=hdb,bus=ide.1,id=hdb"
        );
        assert_eq!(
            qmp(&ide(false, "hda", "hda", Machine::Pc, (0, 1))),
            json!({"driver": "ide-hd", "drive": "hda", "bus": "ide.0", "unit": 1, "id": "hda"})
        );
    }

    #[test]
    fn scsi_disks_and_their_controller() {
        assert_eq!(scsi_controller().to_cmdline(), "lsi53c895a,id=scsi0");
        assert_eq!(
            scsi_hd("sdb", "sdb", 1).to_cmdline(),
            "scsi-hd,drive=sdb,bus=scsi0.0,scsi-id=1,id=sdb"
        );
        assert_eq!(qmp(&scsi_hd("sdb", "sdb", 1))["scsi-id"], json!(1));
    }

    #[test]
    fn passed_through_devices() {
        let d = vfio_pci("0000:03:00.0", "pt-0000-03-00.0", Some(5));
        assert_eq!(
            d.to_cmdline(),
            "vfio-pci,host=0000:03:00.0,id=pt-0000-03-00.0,addr=0x5"
        );
        assert_eq!(
            qmp(&d),
            json!({"driver": "vfio-pci", "host": "0000:03:00.0",
                   "id": "pt-0000-03-00.0", "addr": "0x05"})
        );
        let d = vfio_pci("0000:04:00.1", "pt-0000-04-00.1", None).placed(Some("pvio-rp1"), None);
        assert_eq!(
            qmp(&d),
            json!({"driver": "vfio-pci", "host": "0000:04:00.1",
                   "id": "pt-0000-04-00.1", "bus": "pvio-rp1"})
        );
    }

    #[test]
    fn root_ports() {
        let d = pcie_root_port("pvio-rp3", 4, 0x13);
        assert_eq!(
            d.to_cmdline(),
            "pcie-root-port,id=pvio-rp3,bus=pcie.0,chassis=4,port=0x13"
        );
        assert_eq!(qmp(&d)["port"], json!(0x13));
    }
}
