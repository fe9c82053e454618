//! Tests of `passthrough.rs` over a small host tree (no kernel behind it):
//! what a domain's start refuses before it writes anything, and the QEMU
//! arguments and record entries of what it took. Giving devices back is
//! tested in `pvio-passthrough` (`owner_tests.rs`), with a fake kernel.

use std::os::unix::fs::symlink;
use std::path::Path;

use super::*;

const NIC: &str = "0000:00:05.0";

/// A host with an e1000 at [`NIC`] in IOMMU group 7 (`iommu`) or no IOMMU.
fn host(root: &Path, iommu: bool) -> Manager {
    let dev = root.join("sys/devices/pci0000:00").join(NIC);
    std::fs::create_dir_all(&dev).unwrap();
    for (f, t) in [
        ("vendor", "0x8086\n"),
        ("device", "0x100e\n"),
        ("class", "0x020000\n"),
        ("subsystem_vendor", "0x0000\n"),
        ("subsystem_device", "0x0000\n"),
        ("driver_override", "(null)\n"),
    ] {
        std::fs::write(dev.join(f), t).unwrap();
    }
    for d in [
        "sys/bus/pci/devices",
        "sys/bus/pci/drivers/e1000",
        "sys/bus/pci/drivers/vfio-pci",
        "sys/kernel/iommu_groups",
        "sys/dev/block",
        "sys/class/block",
        "sys/class/net",
        "proc/self",
        "proc/net",
        "dev",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("proc/self/mountinfo"), "").unwrap();
    std::fs::write(root.join("proc/swaps"), "Filename\tType\n").unwrap();
    std::fs::write(root.join("proc/net/route"), "Iface\tDestination\n").unwrap();
    symlink(&dev, root.join("sys/bus/pci/devices").join(NIC)).unwrap();
    symlink(root.join("sys/bus/pci/drivers/e1000"), dev.join("driver")).unwrap();
    if iommu {
        let group = root.join("sys/kernel/iommu_groups/7");
        std::fs::create_dir_all(group.join("devices")).unwrap();
        symlink(&group, dev.join("iommu_group")).unwrap();
        symlink(&dev, group.join("devices").join(NIC)).unwrap();
    }
    Manager::new(
        Host::under(root),
        Ownership::new(root.join("state")),
        SysfsWriter::apply(),
    )
    .open_vfio(false)
}

fn spec(bdf: &str, seize: bool) -> PciLaunch {
    PciLaunch {
        bdf: bdf.to_owned(),
        seize,
        at: "/etc/xen/web.cfg:8".to_owned(),
    }
}

fn untouched(root: &Path) -> bool {
    let dev = root.join("sys/devices/pci0000:00").join(NIC);
    std::fs::read_to_string(dev.join("driver_override")).unwrap() == "(null)\n"
        && !std::fs::read_to_string(root.join("state/passthrough.json"))
            .unwrap_or_default()
            .contains(NIC)
}

#[test]
fn a_device_on_a_host_driver_needs_seize() {
    let dir = tempfile::tempdir().unwrap();
    let m = host(dir.path(), true);
    let e = take(&m, "web", &[spec(NIC, false)]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "/etc/xen/web.cfg:8: key 'pci': 0000:00:05.0 is on e1000, a host driver; add seize=1 to \
         its spec (or pci_seize=1) to let pvio take it, or run `pvio pci-assignable-add \
         0000:00:05.0` first"
    );
    assert!(untouched(dir.path()));
}

#[test]
fn a_refused_config_device_names_its_line_and_is_not_touched() {
    let dir = tempfile::tempdir().unwrap();
    let m = host(dir.path(), false);
    let e = take(&m, "web", &[spec(NIC, true)]).unwrap_err();
    let line = error_line(&e);
    assert!(
        line.starts_with(
            "/etc/xen/web.cfg:8: key 'pci': cannot take 0000:00:05.0: the IOMMU is off"
        ),
        "{line}"
    );
    assert!(untouched(dir.path()));

    let e = take(&m, "web", &[spec("0000:00:09.0", true)]).unwrap_err();
    let line = error_line(&e);
    assert!(
        line.starts_with("/etc/xen/web.cfg:8: key 'pci': "),
        "{line}"
    );
    assert!(line.contains("0000:00:09.0"), "{line}");
    let e = take(&m, "web", &[spec("00:3g.0", true)]).unwrap_err();
    assert!(matches!(e, PassthroughError::BadAddress { .. }), "{e:?}");
}

#[test]
fn no_devices_take_nothing_and_what_is_taken_becomes_args_and_entries() {
    let dir = tempfile::tempdir().unwrap();
    let m = host(dir.path(), false);
    assert_eq!(take(&m, "web", &[]).unwrap(), Taken::default());
    assert!(give_back_lines(&m, "web", None).is_empty());

    let taken = Taken {
        config: vec!["0000:03:00.0".parse().unwrap()],
        reserved: vec!["0000:04:00.1".parse().unwrap()],
    };
    assert_eq!(
        taken.extra_qemu_args(),
        ["-device", "vfio-pci,host=0000:04:00.1,id=pt-0000-04-00.1"]
    );
    let ids: Vec<(String, String)> = taken
        .entries()
        .into_iter()
        .map(|e| (e.host, e.id))
        .collect();
    assert_eq!(
        ids,
        [
            ("0000:03:00.0".to_owned(), "pt-0000-03-00.0".to_owned()),
            ("0000:04:00.1".to_owned(), "pt-0000-04-00.1".to_owned()),
        ]
    );
}
