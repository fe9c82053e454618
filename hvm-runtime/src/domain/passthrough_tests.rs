//! Tests of `passthrough.rs` over a small host tree (no kernel behind it):
//! what a domain's start refuses before it writes anything, and the QEMU
//! arguments and record entries of what it took; and over
//! `pvio-passthrough`'s fixture host with its fake kernel: a GPU and its
//! audio function named together in a config, and a device prepared before
//! the domain left prepared at its end. The rest of giving devices back is
//! tested in `pvio-passthrough` (`owner_lifecycle_tests.rs`).

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
        bdf: bdf.parse().expect("a test address"),
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
    // An address that does not parse never reaches `take`: the launch
    // spec holding it does not load.
    let bad = serde_json::from_str::<PciLaunch>(r#"{"bdf":"00:3g.0","seize":true,"at":"x"}"#);
    assert!(bad.is_err(), "{bad:?}");
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
        .map(|e| (e.host.to_string(), e.id))
        .collect();
    assert_eq!(
        ids,
        [
            ("0000:03:00.0".to_owned(), "pt-0000-03-00.0".to_owned()),
            ("0000:04:00.1".to_owned(), "pt-0000-04-00.1".to_owned()),
        ]
    );
}

/// A fixture host (`pvio-passthrough`'s, with its fake kernel) with a GPU on
/// nouveau and its audio function on snd_hda_intel in IOMMU group 7, and a
/// virtio-rng alone in group 4.
mod gpu {
    use std::time::Duration;

    use pvio_passthrough::bind::Waits;
    use pvio_passthrough::fixture::Fixture;

    use super::*;

    pub const GPU: &str = "0000:01:00.0";
    pub const AUDIO: &str = "0000:01:00.1";
    pub const RNG: &str = "0000:00:03.0";

    pub fn host() -> Fixture {
        let mut fx = Fixture::new();
        fx.device(GPU, 0x10de, 0x1b80, 0x030000)
            .driver("nouveau")
            .group(7);
        fx.device(AUDIO, 0x10de, 0x10f0, 0x040300)
            .driver("snd_hda_intel")
            .group(7);
        fx.device(RNG, 0x1af4, 0x1005, 0x00ff00)
            .driver("virtio-pci")
            .group(4);
        fx.driver_dir(Sysfs::VFIO_PCI);
        fx.start_fake_kernel();
        fx
    }

    pub fn manager(fx: &Fixture) -> Manager {
        Manager::new(
            fx.host(),
            Ownership::new(fx.path("state")),
            SysfsWriter::apply(),
        )
        .waits(Waits {
            settle: Duration::from_millis(1500),
            poll: Duration::from_millis(5),
        })
    }

    pub fn driver(fx: &Fixture, b: &str) -> Option<String> {
        fx.sysfs().driver(b.parse().unwrap()).unwrap()
    }
}

#[test]
fn a_gpu_and_its_audio_function_in_one_config_are_taken_together_in_either_order() {
    use gpu::{AUDIO, GPU};
    for order in [[GPU, AUDIO], [AUDIO, GPU]] {
        let fx = gpu::host();
        let m = gpu::manager(&fx);
        let config: Vec<PciLaunch> = order.iter().map(|b| spec(b, true)).collect();
        let taken =
            take(&m, "win", &config).unwrap_or_else(|e| panic!("{order:?}: {}", error_line(&e)));
        let expected: Vec<Bdf> = order.iter().map(|b| b.parse().unwrap()).collect();
        assert_eq!(taken.config, expected);
        assert!(taken.reserved.is_empty());
        for b in order {
            assert_eq!(gpu::driver(&fx, b).as_deref(), Some("vfio-pci"), "{b}");
        }
        // The domain ends: both go back to their drivers.
        let lines = give_back_lines(&m, "win", None);
        assert_eq!(
            lines,
            [format!(
                "gave {} back to {}",
                order[0],
                gpu::driver(&fx, order[0]).unwrap()
            )]
        );
        assert_eq!(gpu::driver(&fx, GPU).as_deref(), Some("nouveau"));
        assert_eq!(gpu::driver(&fx, AUDIO).as_deref(), Some("snd_hda_intel"));
        assert!(m.ownership().load().unwrap().devices.is_empty());
    }
}

#[test]
fn only_one_function_of_the_gpu_in_the_config_is_refused_naming_the_other() {
    let fx = gpu::host();
    let m = gpu::manager(&fx);
    let e = take(&m, "win", &[spec(gpu::GPU, true)]).unwrap_err();
    let line = error_line(&e);
    assert!(
        line.contains("0000:01:00.1 (snd_hda_intel)") && line.contains("--group"),
        "{line}"
    );
    assert_eq!(gpu::driver(&fx, gpu::GPU).as_deref(), Some("nouveau"));
}

#[test]
fn a_domain_end_leaves_a_device_prepared_beforehand_prepared() {
    let fx = gpu::host();
    let m = gpu::manager(&fx);
    let rng: Bdf = gpu::RNG.parse().unwrap();
    m.prepare(rng, Options::default()).unwrap();
    // Prepared already: no seize needed.
    let taken = take(&m, "web", &[spec(gpu::RNG, false)]).unwrap();
    assert_eq!(taken.config, [rng]);
    let lines = give_back_lines(&m, "web", None);
    assert_eq!(
        lines,
        ["left 0000:00:03.0 on vfio-pci, prepared for guests as it was before `web` took it"]
    );
    assert_eq!(gpu::driver(&fx, gpu::RNG).as_deref(), Some("vfio-pci"));
    let r = &m.ownership().load().unwrap().devices[&rng];
    assert_eq!(r.owner, None);
    assert_eq!(r.previous_driver.as_deref(), Some("virtio-pci"));
}
