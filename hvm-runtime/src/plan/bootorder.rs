//! The boot order when the first hard disk is a PV disk. QEMU's legacy
//! `-boot order=cd` speaks of emulated drives; a `vhost-user-blk-pci`
//! disk is booted by the BIOS only through its `bootindex`. SeaBIOS tries
//! the devices with a `bootindex` first, in its order, then the others,
//! so once one device has one, every device of the boot order gets one:
//! `boot = 'dc'` with an emulated CD-ROM and a PV `xvda` still tries the
//! CD first.

use super::{DiskPlan, NicPlan};
use crate::config::disk::DiskBus;
use crate::config::options::BootDevice;

/// Where each device of the boot order goes.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct BootIndexes {
    /// QEMU device ids and their `bootindex`.
    pub devices: Vec<(String, u32)>,
    /// The floppy's `bootindex` (`-global isa-fdc.bootindexA=N`).
    pub floppy: Option<u32>,
}

/// The disk `c` boots: the first hard disk, counted as Xen counts them
/// (`hda` and `xvda` are both disk 0; an emulated one first when both are
/// there, SCSI disks after all others).
fn first_hard_disk(disks: &[DiskPlan]) -> Option<&DiskPlan> {
    disks
        .iter()
        .filter(|d| !d.cdrom)
        .min_by_key(|d| match d.bus {
            DiskBus::Ide { channel, unit } => (u32::from(channel) * 2 + u32::from(unit), 0),
            DiskBus::Pv { index } => (index, 1),
            DiskBus::Scsi { target } => (u32::from(target).saturating_add(1000), 0),
        })
}

/// The `bootindex` of each device of `order`, or nothing when the first
/// hard disk is not a PV disk (the legacy order then does it all).
pub(super) fn boot_indexes(
    order: &[BootDevice],
    disks: &[DiskPlan],
    nics: &[NicPlan],
    floppy: bool,
) -> BootIndexes {
    let disk = first_hard_disk(disks);
    let pv_disk = disk.filter(|d| matches!(d.bus, DiskBus::Pv { .. }));
    if !order.contains(&BootDevice::Disk) || pv_disk.is_none() {
        return BootIndexes::default();
    }
    let mut out = BootIndexes::default();
    let mut next = 1u32;
    for b in order {
        let id = match b {
            BootDevice::Disk => disk.map(|d| d.vdev.clone()),
            BootDevice::Cdrom => disks.iter().find(|d| d.cdrom).map(|d| d.vdev.clone()),
            BootDevice::Network => nics.first().map(|n| super::qdev::nic_id(n.devid)),
            BootDevice::Floppy => {
                if floppy && out.floppy.is_none() {
                    out.floppy = Some(next);
                    next += 1;
                }
                None
            }
        };
        if let Some(id) = id.filter(|id| !out.devices.iter().any(|(d, _)| d == id)) {
            out.devices.push((id, next));
            next += 1;
        }
    }
    out
}

/// Appends `,bootindex=N` to the `-device` argument whose id is each of
/// `indexes`' devices.
pub(super) fn apply(args: &mut [String], indexes: &BootIndexes) {
    for (id, n) in &indexes.devices {
        let want = format!("id={id}");
        let mut is_device = false;
        for a in args.iter_mut() {
            if is_device && a.split(',').any(|part| part == want) {
                a.push_str(&format!(",bootindex={n}"));
                break;
            }
            is_device = a == "-device";
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(s: &str) -> Vec<BootDevice> {
        BootDevice::parse_order(s).unwrap()
    }

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn bootindex_goes_only_to_the_named_device() {
        let mut a = args(&[
            "-device",
            "ide-cd,drive=hdc,bus=ide.1,unit=0,id=hdc",
            "-device",
            "vhost-user-blk-pci,chardev=chr-xvda,id=xvda",
            "-chardev",
            "socket,id=xvda",
        ]);
        let ix = BootIndexes {
            devices: vec![("hdc".into(), 1), ("xvda".into(), 2)],
            floppy: None,
        };
        apply(&mut a, &ix);
        assert_eq!(a[1], "ide-cd,drive=hdc,bus=ide.1,unit=0,id=hdc,bootindex=1");
        assert_eq!(
            a[3],
            "vhost-user-blk-pci,chardev=chr-xvda,id=xvda,bootindex=2"
        );
        assert_eq!(a[5], "socket,id=xvda");
    }

    #[test]
    fn order_with_no_disk_letter_gets_nothing() {
        assert_eq!(
            boot_indexes(&order("d"), &[], &[], false),
            BootIndexes::default()
        );
    }
}
