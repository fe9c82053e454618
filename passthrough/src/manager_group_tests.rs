//! Tests of `manager.rs` about IOMMU groups and the record's truth, over a
//! fixture GPU with its audio function (one group) and a fake kernel: a
//! member prepared earlier keeps its driver when taken along, a group
//! belongs to one domain, devices of a group named together are prepared
//! together, and records that no longer hold (stale, or left by a process
//! of another boot) are shown and released.

use std::time::Duration;

use super::*;
use crate::fixture::Fixture;
use crate::listing::State;

const GPU: &str = "0000:01:00.0";
const AUDIO: &str = "0000:01:00.1";

fn bdf(s: &str) -> Bdf {
    s.parse().unwrap()
}

/// A GPU on nouveau and its audio function on snd_hda_intel, both in IOMMU
/// group 7; vfio-pci loaded; fake kernel on.
fn gpu_host() -> Fixture {
    let mut fx = Fixture::new();
    fx.device(GPU, 0x10de, 0x1b80, 0x030000)
        .driver("nouveau")
        .group(7);
    fx.device(AUDIO, 0x10de, 0x10f0, 0x040300)
        .driver("snd_hda_intel")
        .group(7);
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

fn record(m: &Manager, b: &str) -> Record {
    m.ownership().load().unwrap().devices[&bdf(b)].clone()
}

/// The audio function prepared alone with `pci-assignable-add` while the
/// GPU had no driver; then the GPU is back on nouveau.
fn audio_prepared_first(fx: &Fixture, m: &Manager) {
    fx.unbind(bdf(GPU));
    m.prepare(bdf(AUDIO), Options::default()).unwrap();
    assert_eq!(driver(fx, AUDIO).as_deref(), Some("vfio-pci"));
    fx.bind(bdf(GPU), "nouveau");
}

#[test]
fn a_member_prepared_earlier_keeps_its_driver_when_taken_along() {
    let fx = gpu_host();
    let m = manager(&fx);
    audio_prepared_first(&fx, &m);
    let group = Options {
        group: true,
        ..Options::default()
    };
    let out = m.prepare_for(bdf(GPU), "win", group).unwrap();
    assert_eq!(out.taken_along, [bdf(AUDIO)]);
    let audio = record(&m, AUDIO);
    assert_eq!(audio.previous_driver.as_deref(), Some("snd_hda_intel"));
    assert_eq!(audio.owner.as_deref(), Some("win"));
    assert_eq!(audio.group_of, Some(bdf(GPU)));
    assert!(audio.was_prepared);
    assert_eq!(record(&m, GPU).previous_driver.as_deref(), Some("nouveau"));

    m.release(bdf(GPU), &mut |_| Ok(())).unwrap();
    assert_eq!(driver(&fx, GPU).as_deref(), Some("nouveau"));
    assert_eq!(driver(&fx, AUDIO).as_deref(), Some("snd_hda_intel"));
    assert!(m.ownership().load().unwrap().devices.is_empty());
}

#[test]
fn a_group_belongs_to_one_domain() {
    let fx = gpu_host();
    let m = manager(&fx);
    audio_prepared_first(&fx, &m);
    // The GPU alone is fine: its audio function is on vfio-pci.
    m.prepare_for(bdf(GPU), "domA", Options::default()).unwrap();
    assert_eq!(driver(&fx, GPU).as_deref(), Some("vfio-pci"));

    // The audio function is on vfio-pci with no owner, but its group is
    // domA's: domB cannot have it, nor can it be prepared for others.
    let e = m
        .prepare_for(bdf(AUDIO), "domB", Options::default())
        .unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("IOMMU group 7 belongs to `domA` (0000:01:00.0 is assigned to it)"),
        "{text}"
    );
    assert_eq!(record(&m, AUDIO).owner, None);
    let st = m.status(bdf(AUDIO)).unwrap();
    assert_eq!(st.state, State::Prepared);
    assert!(!st.assignable);
    assert!(
        matches!(st.refusals.as_slice(), [Refusal::GroupOwned { owner, .. }] if owner == "domA"),
        "{st:?}"
    );
    // The GPU's own listing shows its owner, not its own group.
    let st = m.status(bdf(GPU)).unwrap();
    assert!(
        matches!(st.refusals.as_slice(), [Refusal::Owned { .. }]),
        "{st:?}"
    );

    // domA may have the rest of its group.
    m.prepare_for(bdf(AUDIO), "domA", Options::default())
        .unwrap();
    assert_eq!(record(&m, AUDIO).owner.as_deref(), Some("domA"));
    // And a device of a group whose member is on a host driver cannot go
    // to another domain either, whatever `--group` says.
    m.release(bdf(AUDIO), &mut |_| Ok(())).unwrap();
    let group = Options {
        group: true,
        ..Options::default()
    };
    let e = m.prepare_for(bdf(AUDIO), "domB", group).unwrap_err();
    assert!(e.to_string().contains("belongs to `domA`"), "{e}");
    assert_eq!(driver(&fx, AUDIO).as_deref(), Some("snd_hda_intel"));
}

#[test]
fn devices_of_one_group_named_together_are_prepared_together() {
    let fx = gpu_host();
    let m = manager(&fx);
    // Alone, each is refused because the other is on its host driver.
    let e = m
        .prepare_for(bdf(GPU), "win", Options::default())
        .unwrap_err();
    assert!(
        e.to_string().contains("0000:01:00.1 (snd_hda_intel)"),
        "{e}"
    );
    let e = m
        .prepare_for(bdf(AUDIO), "win", Options::default())
        .unwrap_err();
    assert!(e.to_string().contains("0000:01:00.0 (nouveau)"), "{e}");
    assert!(m.ownership().load().unwrap().devices.is_empty());

    let out = m
        .prepare_together_for(bdf(GPU), &[bdf(AUDIO)], "win", Options::default())
        .unwrap();
    assert_eq!(out.taken_along, [bdf(AUDIO)]);
    assert!(out.claimed);
    assert_eq!(driver(&fx, GPU).as_deref(), Some("vfio-pci"));
    assert_eq!(driver(&fx, AUDIO).as_deref(), Some("vfio-pci"));
    assert_eq!(record(&m, AUDIO).group_of, Some(bdf(GPU)));
    assert_eq!(
        record(&m, AUDIO).previous_driver.as_deref(),
        Some("snd_hda_intel")
    );
}

#[test]
fn a_stale_record_is_shown_and_release_clears_it() {
    let fx = gpu_host();
    let m = manager(&fx);
    let group = Options {
        group: true,
        ..Options::default()
    };
    m.prepare_for(bdf(GPU), "win", group).unwrap();
    // vfio-pci let go (its module unloaded, say) but the override still
    // says vfio-pci: not stale, release gives it back as usual.
    fx.unbind(bdf(GPU));
    assert_eq!(m.status(bdf(GPU)).unwrap().state, State::Assigned);
    fx.bind(bdf(GPU), Sysfs::VFIO_PCI);
    // The host rebooted: vfio-pci's override is gone and the host drivers
    // took the devices again; the record in /var/lib/pvio survived.
    for (b, d) in [(GPU, "nouveau"), (AUDIO, "snd_hda_intel")] {
        fx.unbind(bdf(b));
        fx.bind(bdf(b), d);
        fx.write(
            &format!("sys/bus/pci/devices/{b}/driver_override"),
            "(null)\n",
        );
    }
    let st = m.status(bdf(GPU)).unwrap();
    assert_eq!(st.state, State::Stale);
    assert!(!st.assignable);
    let why = st.refusals.last().unwrap().to_string();
    assert!(
        why.contains("0000:01:00.0 is recorded as assigned to `win` but is on nouveau")
            && why.contains("`pvio release` clears the record"),
        "{why}"
    );
    // Nobody can claim it as if it were prepared.
    let e = m.prepare_for(bdf(GPU), "win", group).unwrap_err();
    assert!(e.to_string().contains("stale"), "{e}");

    let writes = m.writer().log().len();
    m.release(bdf(GPU), &mut |_| Ok(())).unwrap();
    assert_eq!(m.writer().log().len(), writes, "{:?}", m.writer().log());
    assert!(m.ownership().load().unwrap().devices.is_empty());
    assert_eq!(driver(&fx, GPU).as_deref(), Some("nouveau"));
    assert_eq!(driver(&fx, AUDIO).as_deref(), Some("snd_hda_intel"));
    assert_eq!(m.status(bdf(GPU)).unwrap().state, State::Host);
}

#[test]
fn a_record_left_before_a_reboot_is_half_done_even_if_its_pid_runs() {
    let fx = gpu_host();
    let m = manager(&fx);
    fx.unbind(bdf(AUDIO));
    m.prepare_for(bdf(GPU), "win", Options::default()).unwrap();
    // A give-back cut off before the reboot; after it, this very process
    // happens to have the recorded pid.
    m.ownership()
        .update(|rs| {
            let r = rs.devices.get_mut(&bdf(GPU)).unwrap();
            r.operation = Operation::GiveBack;
            r.done = false;
            r.pid = std::process::id();
            r.boot_id = Some("00000000-0000-0000-0000-000000000000".into());
        })
        .unwrap();
    assert_eq!(m.status(bdf(GPU)).unwrap().state, State::HalfDone);
    m.release(bdf(GPU), &mut |_| Ok(())).unwrap();
    assert_eq!(driver(&fx, GPU).as_deref(), Some("nouveau"));
    assert!(m.ownership().load().unwrap().devices.is_empty());
}
