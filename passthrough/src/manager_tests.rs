//! Tests of `manager.rs` over fixture hosts with a fake kernel: the whole
//! prepare / give back / release cycle, refusals, ownership races between
//! threads and between processes, and recovery of half-done operations.

use std::sync::Barrier;
use std::time::Duration;

use super::*;
use crate::fixture::Fixture;
use crate::listing::State;

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

/// A host with an IOMMU: a virtio-rng (group 4), a mounted virtio-blk
/// (group 5), a PCIe root port (group 6), vfio-pci loaded; fake kernel on.
fn host() -> Fixture {
    let mut fx = Fixture::new();
    fx.device(RNG, 0x1af4, 0x1005, 0x00ff00)
        .driver("virtio-pci")
        .group(4);
    fx.device("0000:00:04.0", 0x1af4, 0x1001, 0x010000)
        .driver("virtio-pci")
        .group(5);
    fx.block_device("254:0", "vda", "0000:00:04.0");
    fx.mount("254:0", "/mnt", "ext2", "/dev/vda");
    fx.device("0000:00:1c.0", 0x8086, 0x2948, 0x060400)
        .driver("pcieport")
        .group(6);
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
    .waits(quick())
}

fn driver(fx: &Fixture, b: &str) -> Option<String> {
    fx.sysfs().driver(bdf(b)).unwrap()
}

#[test]
fn prepare_list_and_give_back_with_rebind() {
    let fx = host();
    let m = manager(&fx);
    let before = m.status(bdf(RNG)).unwrap();
    assert!(before.assignable, "{before:?}");
    assert_eq!(before.state, State::Host);

    let out = m.prepare(bdf(RNG), Options::default()).unwrap();
    assert!(!out.already);
    assert_eq!(driver(&fx, RNG).as_deref(), Some("vfio-pci"));
    let rec = &m.prepared().unwrap()[0];
    assert_eq!(rec.previous_driver.as_deref(), Some("virtio-pci"));
    assert_eq!(rec.step, Some(Step::BoundToVfio));
    assert_eq!(rec.owner, None);
    assert_eq!(m.status(bdf(RNG)).unwrap().state, State::Prepared);
    assert!(m.prepare(bdf(RNG), Options::default()).unwrap().already);

    m.give_back(bdf(RNG), true).unwrap();
    assert_eq!(driver(&fx, RNG).as_deref(), Some("virtio-pci"));
    assert!(m.prepared().unwrap().is_empty());
    assert_eq!(m.status(bdf(RNG)).unwrap().state, State::Host);
}

#[test]
fn list_hides_bridges_unless_all_and_says_why_not() {
    let fx = host();
    let m = manager(&fx);
    let endpoints = m.list(false).unwrap();
    assert_eq!(endpoints.len(), 2);
    let all = m.list(true).unwrap();
    assert_eq!(all.len(), 3);
    let disk = all.iter().find(|d| d.device.bdf == bdf("00:04.0")).unwrap();
    assert!(!disk.assignable);
    assert!(
        disk.refusals[0].to_string().contains("mounted on /mnt"),
        "{disk:?}"
    );
    let json = serde_json::to_value(&all).unwrap();
    assert_eq!(json[0]["bdf"], "0000:00:03.0");
    assert_eq!(json[0]["state"], "host");
    assert_eq!(json[1]["refusals"][0]["reason"], "host_needs");
}

#[test]
fn refused_devices_are_not_touched() {
    let fx = host();
    let m = manager(&fx);
    let e = m.prepare(bdf("00:04.0"), Options::default()).unwrap_err();
    assert!(e.to_string().contains("the host needs 0000:00:04.0"), "{e}");
    let e = m.prepare(bdf("00:1c.0"), Options::default()).unwrap_err();
    assert!(e.to_string().contains("not an endpoint"), "{e}");
    let e = m.prepare(bdf("00:09.0"), Options::default()).unwrap_err();
    assert!(e.to_string().contains("no PCI device 0000:00:09.0"), "{e}");
    assert!(m.writer().log().is_empty());
    assert!(m.ownership().load().unwrap().devices.is_empty());
    let forced = Options {
        force: true,
        ..Options::default()
    };
    let out = m.prepare(bdf("00:04.0"), forced).unwrap();
    assert_eq!(out.warnings.len(), 1);
}

#[test]
fn dry_run_prints_and_changes_nothing() {
    let fx = host();
    let m = Manager::new(
        fx.host(),
        Ownership::new(fx.path("state")),
        SysfsWriter::with_sink(true, Box::new(|_| {})),
    );
    m.prepare_for(bdf(RNG), "winxp", Options::default())
        .unwrap();
    let log = m.writer().log();
    assert_eq!(log.len(), 3, "{log:?}");
    assert!(log[0].starts_with("write 'vfio-pci' > "), "{log:?}");
    assert_eq!(driver(&fx, RNG).as_deref(), Some("virtio-pci"));
    assert!(!fx.path("state").exists());
}

/// A dry run on a host without an IOMMU shows every write the real run
/// would make, then every reason it would refuse; nothing changes.
#[test]
fn a_dry_run_without_an_iommu_shows_the_plan_and_every_blocker() {
    let fx = Fixture::new();
    fx.device("0000:00:04.0", 0x1af4, 0x1001, 0x010000)
        .driver("virtio-pci");
    fx.block_device("254:0", "vda", "0000:00:04.0");
    fx.mount("254:0", "/", "ext4", "/dev/vda");
    let m = Manager::new(
        fx.host(),
        Ownership::new(fx.path("state")),
        SysfsWriter::with_sink(true, Box::new(|_| {})),
    );
    let out = m
        .prepare_for(bdf("00:04.0"), "web", Options::default())
        .unwrap();
    let log = m.writer().log();
    assert_eq!(log.len(), 4, "{log:?}");
    assert_eq!(log[0], "run modprobe vfio-pci");
    assert!(log[1].starts_with("write 'vfio-pci' > ") && log[1].ends_with("driver_override"));
    assert!(log[2].starts_with("write '0000:00:04.0' > ") && log[2].ends_with("unbind"));
    assert!(log[3].ends_with("drivers_probe"), "{log:?}");
    assert_eq!(out.blockers.len(), 2, "{:?}", out.blockers);
    assert_eq!(out.blockers[0], Refusal::NoIommu);
    assert!(matches!(out.blockers[1], Refusal::HostNeeds { .. }));
    assert_eq!(driver(&fx, "00:04.0").as_deref(), Some("virtio-pci"));
    assert!(!fx.path("state").exists());
    // The real run stops at the same reasons, before any write.
    let e = manager(&fx)
        .prepare_for(bdf("00:04.0"), "web", Options::default())
        .unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("the IOMMU is off") && text.contains("the host needs 0000:00:04.0"),
        "{text}"
    );
}

#[test]
fn an_owned_device_is_refused_to_another_owner_and_to_assignable_remove() {
    let fx = host();
    let m = manager(&fx);
    m.prepare_for(bdf(RNG), "winxp", Options::default())
        .unwrap();
    assert!(
        m.prepare_for(bdf(RNG), "winxp", Options::default())
            .unwrap()
            .already
    );
    let e = m
        .prepare_for(bdf(RNG), "debian", Options::default())
        .unwrap_err();
    assert!(e.to_string().contains("already owned by `winxp`"), "{e}");
    let e = m.give_back(bdf(RNG), true).unwrap_err();
    assert!(e.to_string().contains("owned by `winxp`"), "{e}");
    let st = m.status(bdf(RNG)).unwrap();
    assert_eq!(st.state, State::Assigned);
    assert_eq!(st.owner.as_deref(), Some("winxp"));

    let owned = m.owned_by("winxp").unwrap();
    assert_eq!(owned.len(), 1);
    assert_eq!(owned[0].bdf, bdf(RNG));
    assert!(m.owned_by("debian").unwrap().is_empty());

    // A prepared device gets its owner on assign.
    m.release(bdf(RNG), &mut |_| Ok(())).unwrap();
    m.prepare(bdf(RNG), Options::default()).unwrap();
    m.prepare_for(bdf(RNG), "debian", Options::default())
        .unwrap();
    assert_eq!(m.prepared().unwrap()[0].owner.as_deref(), Some("debian"));
}

#[test]
fn two_threads_assigning_one_device_give_one_winner() {
    let fx = host();
    let m = manager(&fx);
    let barrier = Barrier::new(2);
    let results: Vec<Result<Outcome>> = std::thread::scope(|s| {
        let handles: Vec<_> = ["winxp", "debian"]
            .into_iter()
            .map(|owner| {
                let (m, barrier) = (&m, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    m.prepare_for(bdf(RNG), owner, Options::default())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let wins = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(wins, 1, "{results:?}");
    let err = results.iter().find_map(|r| r.as_ref().err()).unwrap();
    let text = err.to_string();
    assert!(
        text.contains("already owned by") || text.contains("busy:"),
        "{text}"
    );
    assert_eq!(driver(&fx, RNG).as_deref(), Some("vfio-pci"));
}

/// One side of `two_processes_assigning_one_device_give_one_winner`, run
/// in a child process by the test binary (`--ignored --exact`). It is not a
/// test on its own: run without the parent's fixture, it fails.
#[test]
#[ignore = "a child process of two_processes_assigning_one_device_give_one_winner"]
fn child_assign() {
    let (Ok(root), Ok(owner)) = (
        std::env::var("PVIO_TEST_CHILD_ROOT"),
        std::env::var("PVIO_TEST_CHILD_OWNER"),
    ) else {
        panic!(
            "child_assign runs only as a child of \
             two_processes_assigning_one_device_give_one_winner, which sets \
             PVIO_TEST_CHILD_ROOT and PVIO_TEST_CHILD_OWNER"
        );
    };
    let root = std::path::PathBuf::from(root);
    let m = Manager::new(
        Host::under(&root),
        Ownership::new(root.join("state")),
        SysfsWriter::apply(),
    )
    .waits(quick());
    match m.prepare_for(bdf(RNG), &owner, Options::default()) {
        Ok(_) => println!("CHILD-RESULT ok"),
        Err(e) => println!("CHILD-RESULT err {e}"),
    }
}

#[test]
fn two_processes_assigning_one_device_give_one_winner() {
    let fx = host();
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = ["winxp", "debian"]
        .into_iter()
        .map(|owner| {
            std::process::Command::new(&exe)
                .args([
                    "--ignored",
                    "--exact",
                    "manager::tests::child_assign",
                    "--nocapture",
                ])
                .env("PVIO_TEST_CHILD_ROOT", fx.root())
                .env("PVIO_TEST_CHILD_OWNER", owner)
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<String> = children
        .into_iter()
        .map(|c| String::from_utf8(c.wait_with_output().unwrap().stdout).unwrap())
        .collect();
    let oks = outputs
        .iter()
        .filter(|o| o.contains("CHILD-RESULT ok"))
        .count();
    let errs = outputs
        .iter()
        .filter(|o| o.contains("CHILD-RESULT err"))
        .count();
    assert_eq!((oks, errs), (1, 1), "{outputs:?}");
    assert!(
        outputs
            .iter()
            .any(|o| o.contains("already owned by") || o.contains("busy:")),
        "{outputs:?}"
    );
}

/// Writes a record as a crashed process would have left it.
fn crashed(fx: &Fixture, op: Operation, step: Option<Step>) {
    let own = Ownership::new(fx.path("state"));
    let mut r = Record::started(bdf(RNG), Some("winxp"), Some("virtio-pci".into()), op);
    r.step = step;
    r.pid = u32::MAX - 1;
    own.update(|rs| rs.devices.insert(bdf(RNG), r)).unwrap();
}

#[test]
fn a_crash_between_unbind_and_probe_shows_half_done_and_release_finishes() {
    let fx = host();
    // The crash left: override set, old driver gone, vfio-pci not bound.
    fx.unbind(bdf(RNG));
    fx.write(
        &format!("sys/bus/pci/devices/{RNG}/driver_override"),
        "vfio-pci\n",
    );
    crashed(&fx, Operation::Prepare, Some(Step::Unbound));
    let m = manager(&fx);
    let st = m.status(bdf(RNG)).unwrap();
    assert_eq!(st.state, State::HalfDone);
    assert!(!st.assignable);
    let why = st.refusals[0].to_string();
    assert!(
        why.contains("after step `unbound`") && why.contains("`pvio release`"),
        "{why}"
    );
    let e = m
        .prepare_for(bdf(RNG), "winxp", Options::default())
        .unwrap_err();
    assert!(e.to_string().contains("stopped half-way"), "{e}");

    m.release(bdf(RNG), &mut |_| Ok(())).unwrap();
    assert_eq!(driver(&fx, RNG).as_deref(), Some("virtio-pci"));
    assert_eq!(fx.sysfs().driver_override(bdf(RNG)).unwrap(), None);
    assert!(m.ownership().load().unwrap().devices.is_empty());
}

#[test]
fn a_crash_during_give_back_is_finished_by_release() {
    let fx = host();
    let m = manager(&fx);
    m.prepare_for(bdf(RNG), "winxp", Options::default())
        .unwrap();
    crashed(&fx, Operation::GiveBack, None);
    assert_eq!(m.status(bdf(RNG)).unwrap().state, State::HalfDone);
    m.release(bdf(RNG), &mut |_| Ok(())).unwrap();
    assert_eq!(driver(&fx, RNG).as_deref(), Some("virtio-pci"));
    assert_eq!(m.status(bdf(RNG)).unwrap().state, State::Host);
}

#[test]
fn a_running_operation_is_busy_not_half_done() {
    let fx = host();
    crashed(&fx, Operation::Prepare, Some(Step::OverrideSet));
    let own = Ownership::new(fx.path("state"));
    own.update(|rs| {
        if let Some(r) = rs.devices.get_mut(&bdf(RNG)) {
            r.pid = std::process::id();
        }
    })
    .unwrap();
    let m = manager(&fx);
    assert_eq!(m.status(bdf(RNG)).unwrap().state, State::Busy);
    let e = m.release(bdf(RNG), &mut |_| Ok(())).unwrap_err();
    assert!(e.to_string().contains("busy:"), "{e}");
}

#[test]
fn release_runs_the_hook_first_and_a_failing_hook_changes_nothing() {
    let fx = host();
    let m = manager(&fx);
    m.prepare_for(bdf(RNG), "winxp", Options::default())
        .unwrap();
    let e = m
        .release(bdf(RNG), &mut |r| {
            assert_eq!(r.owner.as_deref(), Some("winxp"));
            Err("the guest did not let go".into())
        })
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("cannot take 0000:00:03.0 from `winxp`"),
        "{e}"
    );
    assert_eq!(driver(&fx, RNG).as_deref(), Some("vfio-pci"));
    assert_eq!(m.status(bdf(RNG)).unwrap().state, State::Assigned);
    let mut called = 0;
    m.release(bdf(RNG), &mut |_| {
        called += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!(called, 1);
    assert_eq!(driver(&fx, RNG).as_deref(), Some("virtio-pci"));
}

#[test]
fn release_and_remove_of_unmanaged_or_missing_devices_say_so() {
    let fx = host();
    let m = manager(&fx);
    let e = m.release(bdf(RNG), &mut |_| Ok(())).unwrap_err();
    assert!(
        e.to_string()
            .contains("pvio has no record of 0000:00:03.0 (driver: virtio-pci)"),
        "{e}"
    );
    let e = m.release(bdf("00:09.0"), &mut |_| Ok(())).unwrap_err();
    assert!(e.to_string().contains("no PCI device"), "{e}");
    let e = m.give_back(bdf(RNG), true).unwrap_err();
    assert!(matches!(e, ManagerError::NotManaged { .. }), "{e}");
}

#[test]
fn a_device_bound_to_vfio_by_hand_can_be_given_back() {
    let fx = host();
    fx.unbind(bdf(RNG));
    fx.bind(bdf(RNG), "vfio-pci");
    let m = manager(&fx);
    m.give_back(bdf(RNG), false).unwrap();
    assert_eq!(driver(&fx, RNG), None);
}

#[test]
fn group_takes_members_along_and_release_returns_them() {
    let mut fx = Fixture::new();
    fx.device("0000:01:00.0", 0x10de, 0x1b80, 0x030000)
        .driver("nouveau")
        .group(7);
    fx.device("0000:01:00.1", 0x10de, 0x10f0, 0x040300)
        .driver("snd_hda_intel")
        .group(7);
    fx.driver_dir(Sysfs::VFIO_PCI);
    fx.start_fake_kernel();
    let m = manager(&fx);
    let e = m
        .prepare_for(bdf("01:00.0"), "win", Options::default())
        .unwrap_err();
    assert!(
        e.to_string().contains("0000:01:00.1 (snd_hda_intel)"),
        "{e}"
    );
    let group = Options {
        group: true,
        ..Options::default()
    };
    let out = m.prepare_for(bdf("01:00.0"), "win", group).unwrap();
    assert_eq!(out.taken_along, [bdf("01:00.1")]);
    assert_eq!(driver(&fx, "01:00.1").as_deref(), Some("vfio-pci"));
    assert_eq!(m.prepared().unwrap().len(), 2);
    m.release(bdf("01:00.0"), &mut |_| Ok(())).unwrap();
    assert_eq!(driver(&fx, "01:00.0").as_deref(), Some("nouveau"));
    assert_eq!(driver(&fx, "01:00.1").as_deref(), Some("snd_hda_intel"));
    assert!(m.prepared().unwrap().is_empty());
}

#[test]
fn a_failed_prepare_is_rolled_back() {
    // No fake kernel: vfio-pci never takes the device.
    let fx = Fixture::new();
    fx.device(RNG, 0x1af4, 0x1005, 0x00ff00)
        .driver("virtio-pci")
        .group(4);
    fx.driver_dir(Sysfs::VFIO_PCI);
    let m = Manager::new(
        fx.host(),
        Ownership::new(fx.path("state")),
        SysfsWriter::apply(),
    )
    .waits(Waits {
        settle: Duration::from_millis(50),
        poll: Duration::from_millis(5),
    });
    let e = m.prepare(bdf(RNG), Options::default()).unwrap_err();
    assert!(
        matches!(
            e,
            ManagerError::Failed {
                rolled_back: true,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("given back to its driver"), "{e}");
    assert!(m.ownership().load().unwrap().devices.is_empty());
    assert_eq!(
        fx.read(&format!("sys/bus/pci/devices/{RNG}/driver_override")),
        "\n"
    );
}
