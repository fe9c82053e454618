//! Tests of `bind.rs` over fixture trees, with a fake kernel that honours
//! `unbind`, `bind` and `drivers_probe` writes.

use super::*;
use crate::fixture::Fixture;

const RNG: &str = "0000:00:03.0";

fn bdf(s: &str) -> Bdf {
    s.parse().unwrap()
}

fn quick() -> Waits {
    Waits {
        settle: Duration::from_millis(1500),
        poll: Duration::from_millis(5),
    }
}

/// A virtio-rng on virtio-pci in group 4, vfio-pci loaded, fake kernel on.
fn rng_host() -> Fixture {
    let mut fx = Fixture::new();
    fx.device(RNG, 0x1af4, 0x1005, 0x00ff00)
        .driver("virtio-pci")
        .group(4);
    fx.driver_dir(Sysfs::VFIO_PCI);
    fx.start_fake_kernel();
    fx
}

#[test]
fn dry_run_prints_override_then_unbind_then_probe_and_changes_nothing() {
    let fx = Fixture::new();
    fx.device(RNG, 0x1af4, 0x1005, 0x00ff00)
        .driver("virtio-pci")
        .group(4);
    let host = fx.host();
    let w = SysfsWriter::with_sink(true, Box::new(|_| {}));
    let p = Binder::new(&host, &w)
        .prepare(bdf(RNG), &mut |_| {})
        .unwrap();
    assert_eq!(p.previous_driver.as_deref(), Some("virtio-pci"));
    let sys = fx.path("sys");
    let s = sys.display();
    assert_eq!(
        w.log(),
        [
            "run modprobe vfio-pci".to_owned(),
            format!("write 'vfio-pci' > {s}/bus/pci/devices/{RNG}/driver_override"),
            format!("write '{RNG}' > {s}/bus/pci/drivers/virtio-pci/unbind"),
            format!("write '{RNG}' > {s}/bus/pci/drivers_probe"),
        ]
    );
    assert_eq!(
        fx.read(&format!("sys/bus/pci/devices/{RNG}/driver_override")),
        "(null)\n"
    );
    assert_eq!(
        host.sys.driver(bdf(RNG)).unwrap().as_deref(),
        Some("virtio-pci")
    );
}

#[test]
fn prepare_moves_the_device_to_vfio_and_reports_each_step() {
    let fx = rng_host();
    let host = fx.host();
    let w = SysfsWriter::apply();
    let mut steps = Vec::new();
    let p = Binder::new(&host, &w)
        .waits(quick())
        .prepare(bdf(RNG), &mut |s| steps.push(s))
        .unwrap();
    assert_eq!(p.previous_driver.as_deref(), Some("virtio-pci"));
    assert_eq!(p.group, Some(4));
    assert_eq!(steps, [Step::OverrideSet, Step::Unbound, Step::BoundToVfio]);
    assert_eq!(
        host.sys.driver(bdf(RNG)).unwrap().as_deref(),
        Some("vfio-pci")
    );
    assert_eq!(
        host.sys.driver_override(bdf(RNG)).unwrap().as_deref(),
        Some("vfio-pci")
    );
    assert!(host.vfio_group_dev(4).exists());

    // Preparing again is a no-op that still verifies.
    let again = Binder::new(&host, &w)
        .waits(quick())
        .prepare(bdf(RNG), &mut |_| {})
        .unwrap();
    assert_eq!(again.previous_driver, None);
}

#[test]
fn give_back_with_rebind_returns_the_old_driver() {
    let fx = rng_host();
    let host = fx.host();
    let w = SysfsWriter::apply();
    let b = Binder::new(&host, &w).waits(quick());
    b.prepare(bdf(RNG), &mut |_| {}).unwrap();
    let mut steps = Vec::new();
    b.give_back(bdf(RNG), Some("virtio-pci"), true, &mut |s| steps.push(s))
        .unwrap();
    assert_eq!(
        steps,
        [Step::UnboundFromVfio, Step::OverrideCleared, Step::Returned]
    );
    assert_eq!(
        host.sys.driver(bdf(RNG)).unwrap().as_deref(),
        Some("virtio-pci")
    );
    assert_eq!(
        fx.read(&format!("sys/bus/pci/devices/{RNG}/driver_override")),
        "\n"
    );
    let tail: Vec<String> = w.log().into_iter().rev().take(3).collect();
    assert!(
        tail[0].ends_with("/bus/pci/drivers/virtio-pci/bind"),
        "{tail:?}"
    );
    assert!(tail[1].starts_with("write '\\n' >"), "{tail:?}");
    assert!(
        tail[2].ends_with("/bus/pci/drivers/vfio-pci/unbind"),
        "{tail:?}"
    );
}

#[test]
fn give_back_without_rebind_leaves_it_unbound() {
    let fx = rng_host();
    let host = fx.host();
    let w = SysfsWriter::apply();
    let b = Binder::new(&host, &w).waits(quick());
    b.prepare(bdf(RNG), &mut |_| {}).unwrap();
    b.give_back(bdf(RNG), Some("virtio-pci"), false, &mut |_| {})
        .unwrap();
    assert_eq!(host.sys.driver(bdf(RNG)).unwrap(), None);
}

#[test]
fn a_crash_after_unbind_is_finished_by_give_back() {
    // Half-done: override set, old driver gone, vfio-pci never took it.
    let mut fx = Fixture::new();
    fx.device(RNG, 0x1af4, 0x1005, 0x00ff00).group(4);
    fx.driver_dir("virtio-pci");
    fx.write(
        &format!("sys/bus/pci/devices/{RNG}/driver_override"),
        "vfio-pci\n",
    );
    fx.start_fake_kernel();
    let host = fx.host();
    let w = SysfsWriter::apply();
    Binder::new(&host, &w)
        .waits(quick())
        .give_back(bdf(RNG), Some("virtio-pci"), true, &mut |_| {})
        .unwrap();
    assert_eq!(
        host.sys.driver(bdf(RNG)).unwrap().as_deref(),
        Some("virtio-pci")
    );
    assert_eq!(host.sys.driver_override(bdf(RNG)).unwrap(), None);
}

#[test]
fn a_stuck_unbind_names_the_driver() {
    let fx = Fixture::new();
    fx.device(RNG, 0x1af4, 0x1005, 0x00ff00)
        .driver("stubborn")
        .group(4);
    fx.driver_dir(Sysfs::VFIO_PCI);
    let unbind = fx.path("sys/bus/pci/drivers/stubborn/unbind");
    std::fs::remove_file(&unbind).unwrap();
    let ok = std::process::Command::new("mkfifo")
        .arg(&unbind)
        .status()
        .unwrap();
    assert!(ok.success());
    let host = fx.host();
    let w = SysfsWriter::apply().timeout(Duration::from_millis(200));
    let mut steps = Vec::new();
    let e = Binder::new(&host, &w)
        .waits(quick())
        .prepare(bdf(RNG), &mut |s| steps.push(s))
        .unwrap_err();
    assert!(
        matches!(&e, BindError::UnbindStuck { driver, .. } if driver == "stubborn"),
        "{e:?}"
    );
    assert!(e
        .to_string()
        .contains("driver stubborn did not let go of 0000:00:03.0"));
    assert_eq!(steps, [Step::OverrideSet]);
    // Release the blocked writer thread.
    let _ = std::fs::read_to_string(&unbind);
}

#[test]
fn a_device_that_vfio_does_not_take_is_reported() {
    // No fake kernel: nothing reacts to drivers_probe.
    let fx = Fixture::new();
    fx.device(RNG, 0x1af4, 0x1005, 0x00ff00).group(4);
    fx.driver_dir(Sysfs::VFIO_PCI);
    let host = fx.host();
    let w = SysfsWriter::apply();
    let e = Binder::new(&host, &w)
        .waits(Waits {
            settle: Duration::from_millis(50),
            poll: Duration::from_millis(5),
        })
        .prepare(bdf(RNG), &mut |_| {})
        .unwrap_err();
    assert!(
        matches!(&e, BindError::NotBound { actual: None, .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("its driver is none"), "{e}");
}

#[test]
fn missing_group_device_is_reported() {
    let fx = Fixture::new();
    fx.device(RNG, 0x1af4, 0x1005, 0x00ff00)
        .driver("vfio-pci")
        .group(4);
    let host = fx.host();
    let w = SysfsWriter::apply();
    let e = Binder::new(&host, &w)
        .waits(Waits {
            settle: Duration::from_millis(50),
            poll: Duration::from_millis(5),
        })
        .prepare(bdf(RNG), &mut |_| {})
        .unwrap_err();
    assert!(matches!(e, BindError::NoGroupDevice { .. }), "{e:?}");
}

#[test]
fn missing_devices_and_groups_are_refused_before_any_write() {
    let fx = Fixture::new();
    fx.device(RNG, 0x1af4, 0x1005, 0x00ff00)
        .driver("virtio-pci");
    let host = fx.host();
    let w = SysfsWriter::apply();
    let b = Binder::new(&host, &w);
    assert!(matches!(
        b.prepare(bdf("00:09.0"), &mut |_| {}),
        Err(BindError::NotFound(_))
    ));
    assert!(matches!(
        b.prepare(bdf(RNG), &mut |_| {}),
        Err(BindError::NoGroup(_))
    ));
    assert!(matches!(
        b.give_back(bdf("00:09.0"), None, true, &mut |_| {}),
        Err(BindError::NotFound(_))
    ));
    assert!(w.log().is_empty());
    // A dry run goes on without a group, to show every write; the
    // manager's checks name the missing IOMMU.
    let dry = SysfsWriter::with_sink(true, Box::new(|_| {}));
    let p = Binder::new(&host, &dry)
        .prepare(bdf(RNG), &mut |_| {})
        .unwrap();
    assert_eq!(p.group, None);
    assert_eq!(dry.log().len(), 4, "{:?}", dry.log());
    assert_eq!(
        fx.sysfs().driver(bdf(RNG)).unwrap().as_deref(),
        Some("virtio-pci")
    );
}
