//! Tests of `owner_lifecycle.rs` over fixture hosts with a fake kernel: the checks a
//! domain's start makes on devices reserved for it, and giving back every
//! device of a domain that ended (all of them, or only those a failed
//! start took).

use std::time::Duration;

use crate::bind::Waits;
use crate::fixture::Fixture;
use crate::manager::Manager;
use crate::owner_lifecycle::Returned;
use crate::ownership::Ownership;
use crate::sysfs::Sysfs;
use crate::viability::Options;
use crate::write::SysfsWriter;
use crate::Bdf;

const RNG: &str = "0000:00:03.0";
const NIC: &str = "0000:00:05.0";
const GPU: &str = "0000:00:06.0";
const AUDIO: &str = "0000:00:06.1";

fn bdf(s: &str) -> Bdf {
    s.parse().unwrap()
}

/// A host with an IOMMU: a virtio-rng (group 4), an e1000 (group 7), a GPU
/// with its audio function (group 8); fake kernel on.
fn host() -> Fixture {
    let mut fx = Fixture::new();
    fx.device(RNG, 0x1af4, 0x1005, 0x00ff00)
        .driver("virtio-pci")
        .group(4);
    fx.device(NIC, 0x8086, 0x100e, 0x020000)
        .driver("e1000")
        .group(7);
    fx.device(GPU, 0x10de, 0x1b80, 0x030000)
        .driver("nouveau")
        .group(8);
    fx.device(AUDIO, 0x10de, 0x10f0, 0x040300)
        .driver("snd_hda_intel")
        .group(8);
    fx.driver_dir(Sysfs::VFIO_PCI);
    fx.start_fake_kernel();
    fx
}

fn manager(fx: &Fixture) -> Manager {
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

fn driver(fx: &Fixture, b: &str) -> Option<String> {
    fx.sysfs().driver(bdf(b)).unwrap()
}

#[test]
fn a_domain_end_gives_back_every_device_it_owned() {
    let fx = host();
    let m = manager(&fx);
    m.prepare_for(bdf(RNG), "web", Options::default()).unwrap();
    m.prepare_for(bdf(NIC), "web", Options::default()).unwrap();
    let group = Options {
        group: true,
        ..Options::default()
    };
    m.prepare_for(bdf(GPU), "web", group).unwrap();
    assert_eq!(driver(&fx, AUDIO).as_deref(), Some("vfio-pci"));
    assert_eq!(m.owned_by("web").unwrap().len(), 4);

    let mut done = m.release_owner("web", None);
    done.sort_by_key(|g| g.bdf);
    // The audio function goes back with the GPU it was taken along with.
    let back: Vec<(Bdf, Returned)> = done
        .into_iter()
        .map(|g| (g.bdf, g.result.unwrap()))
        .collect();
    let on = |d: &str| Returned::Driver(Some(d.to_owned()));
    assert_eq!(
        back,
        [
            (bdf(RNG), on("virtio-pci")),
            (bdf(NIC), on("e1000")),
            (bdf(GPU), on("nouveau")),
        ]
    );
    assert_eq!(driver(&fx, AUDIO).as_deref(), Some("snd_hda_intel"));
    assert!(m.owned_by("web").unwrap().is_empty());
    assert!(m.ownership().load().unwrap().devices.is_empty());
}

#[test]
fn a_failed_start_gives_back_only_what_it_took_and_others_stay() {
    let fx = host();
    let m = manager(&fx);
    m.prepare_for(bdf(RNG), "web", Options::default()).unwrap();
    m.prepare_for(bdf(NIC), "web", Options::default()).unwrap();
    m.prepare_for(
        bdf(GPU),
        "db",
        Options {
            group: true,
            ..Options::default()
        },
    )
    .unwrap();

    let done = m.release_owner("web", Some(&[bdf(NIC)]));
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].bdf, bdf(NIC));
    assert_eq!(driver(&fx, NIC).as_deref(), Some("e1000"));
    // The reservation of the other device stays, and so does another
    // domain's device.
    assert_eq!(driver(&fx, RNG).as_deref(), Some("vfio-pci"));
    assert_eq!(m.owned_by("web").unwrap().len(), 1);
    assert_eq!(m.owned_by("db").unwrap().len(), 2);
    assert!(m.release_owner("nobody", None).is_empty());
}

#[test]
fn a_domain_end_finishes_a_half_done_device_and_drops_a_vanished_one() {
    let fx = host();
    let m = manager(&fx);
    m.prepare_for(bdf(RNG), "web", Options::default()).unwrap();
    m.prepare_for(bdf(NIC), "web", Options::default()).unwrap();
    // A crash half-way through giving the e1000 back: its process is gone.
    m.ownership()
        .update(|rs| {
            let r = rs.devices.get_mut(&bdf(NIC)).unwrap();
            r.operation = crate::ownership::Operation::GiveBack;
            r.done = false;
            r.pid = u32::MAX;
        })
        .unwrap();
    // The virtio-rng was hot-removed from the host.
    fx.unbind(bdf(RNG));
    std::fs::remove_file(fx.path(&format!("sys/bus/pci/devices/{RNG}"))).unwrap();

    let done = m.release_owner("web", None);
    assert_eq!(done.len(), 2);
    assert!(done.iter().all(|g| g.result.is_ok()), "{done:?}");
    assert_eq!(driver(&fx, NIC).as_deref(), Some("e1000"));
    assert!(m.ownership().load().unwrap().devices.is_empty());
}

#[test]
fn a_reserved_device_is_ready_only_with_an_iommu_and_on_vfio_pci() {
    let fx = host();
    let m = manager(&fx);
    m.prepare_for(bdf(RNG), "web", Options::default()).unwrap();
    m.check_ready(bdf(RNG), "web").unwrap();
    let e = m.check_ready(bdf(RNG), "db").unwrap_err();
    assert!(e.to_string().contains("owned by"), "{e}");
    let e = m.check_ready(bdf(NIC), "web").unwrap_err();
    assert!(e.to_string().contains("no record"), "{e}");

    // Someone gave it back to its driver behind pvio's back.
    fx.bind(bdf(RNG), "virtio-pci");
    let e = m.check_ready(bdf(RNG), "web").unwrap_err();
    assert!(e.to_string().contains("on virtio-pci"), "{e}");

    // The host was booted without its IOMMU.
    std::fs::remove_dir_all(fx.path("sys/kernel/iommu_groups")).unwrap();
    std::fs::create_dir(fx.path("sys/kernel/iommu_groups")).unwrap();
    let e = m.check_ready(bdf(RNG), "web").unwrap_err();
    assert!(e.to_string().contains("IOMMU"), "{e}");
}

#[test]
fn a_domain_end_leaves_a_device_prepared_beforehand_as_it_found_it() {
    let fx = host();
    let m = manager(&fx);
    // `pci-assignable-add` before the domain: the virtio-rng, and the
    // audio function alone (its GPU has no driver then).
    m.prepare(bdf(RNG), Options::default()).unwrap();
    fx.unbind(bdf(GPU));
    m.prepare(bdf(AUDIO), Options::default()).unwrap();
    fx.bind(bdf(GPU), "nouveau");
    // The domain's start takes them, the GPU from nouveau with its group.
    let group = Options {
        group: true,
        ..Options::default()
    };
    assert!(
        m.prepare_for(bdf(RNG), "web", Options::default())
            .unwrap()
            .claimed
    );
    m.prepare_for(bdf(GPU), "web", group).unwrap();
    m.prepare_for(bdf(NIC), "web", Options::default()).unwrap();
    assert_eq!(m.owned_by("web").unwrap().len(), 4);

    let mut done = m.release_owner("web", None);
    done.sort_by_key(|g| g.bdf);
    let back: Vec<(Bdf, Returned)> = done
        .into_iter()
        .map(|g| (g.bdf, g.result.unwrap()))
        .collect();
    let on = |d: &str| Returned::Driver(Some(d.to_owned()));
    assert_eq!(
        back,
        [
            (bdf(RNG), Returned::Prepared),
            (bdf(NIC), on("e1000")),
            (bdf(GPU), on("nouveau")),
            (bdf(AUDIO), Returned::Prepared),
        ]
    );
    // As before the domain: on vfio-pci, recorded, no owner (the audio
    // function's GPU is on nouveau again, so only the virtio-rng is
    // assignable, as before).
    assert!(m.status(bdf(RNG)).unwrap().assignable);
    for d in [RNG, AUDIO] {
        assert_eq!(driver(&fx, d).as_deref(), Some("vfio-pci"));
        let st = m.status(bdf(d)).unwrap();
        assert_eq!(st.state, crate::listing::State::Prepared, "{d}");
        let r = &m.ownership().load().unwrap().devices[&bdf(d)];
        assert_eq!(
            (r.owner.as_deref(), r.group_of, r.was_prepared),
            (None, None, false)
        );
    }
    let rng = &m.ownership().load().unwrap().devices[&bdf(RNG)];
    assert_eq!(rng.previous_driver.as_deref(), Some("virtio-pci"));
    assert!(m.owned_by("web").unwrap().is_empty());
    assert_eq!(m.prepared().unwrap().len(), 2);
    // `pci-assignable-remove -r` still gives them back to their drivers.
    m.give_back(bdf(AUDIO), true).unwrap();
    assert_eq!(driver(&fx, AUDIO).as_deref(), Some("snd_hda_intel"));
}

#[test]
fn a_failing_hook_leaves_the_device_and_its_members_with_the_owner() {
    let fx = host();
    let m = manager(&fx);
    let group = Options {
        group: true,
        ..Options::default()
    };
    m.prepare_for(bdf(GPU), "web", group).unwrap();
    let done = m.give_back_owned("web", Some(&[bdf(GPU)]), &mut |r| {
        assert_eq!(r.bdf, bdf(GPU));
        Err("the guest did not let go".into())
    });
    assert_eq!(done.len(), 2);
    assert!(done.iter().all(|g| g.result.is_err()), "{done:?}");
    assert_eq!(driver(&fx, GPU).as_deref(), Some("vfio-pci"));
    assert_eq!(m.owned_by("web").unwrap().len(), 2);
}
