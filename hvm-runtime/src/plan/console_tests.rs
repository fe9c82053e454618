//! What the plan gives the guest's consoles and boot: the human monitor
//! as a text console on the display, and the boot disk's `bootindex`.

use super::tests::{plan_of, values};
use crate::host::accel::Accel;

/// monitor=1 with a display puts the monitor there too, as a text
/// console (the guide's Ctrl-Alt-2); the warning says who gets it.
#[test]
fn the_monitor_is_a_text_console_on_the_display() {
    let p = plan_of("name='m'\nvnc=1\nmonitor=1", Accel::Tcg);
    assert_eq!(values(&p, "-chardev"), ["vc,id=pvio-monitor-vc"]);
    assert_eq!(
        values(&p, "-mon"),
        ["chardev=pvio-monitor-vc,mode=readline"]
    );
    let warning = p
        .notes
        .iter()
        .find(|n| n.starts_with("warning: monitor=1"))
        .unwrap();
    assert!(
        warning.contains("and on the display (Ctrl-Alt-2; Ctrl-Alt-1 back to the guest)")
            && warning.contains("whoever sees the display"),
        "{warning}"
    );
    let p = plan_of("name='m'\nvnc=0\nmonitor=1", Accel::Tcg);
    assert!(values(&p, "-mon").is_empty());
    assert!(!values(&p, "-chardev").iter().any(|c| c.starts_with("vc")));
    assert_eq!(values(&p, "-monitor").len(), 1);
}

fn device<'a>(p: &'a crate::plan::DomainPlan, id: &str) -> &'a str {
    let want = format!("id={id}");
    values(p, "-device")
        .into_iter()
        .find(|d| d.split(',').any(|part| part == want))
        .unwrap_or_else(|| panic!("no device {id}"))
}

/// A PV first hard disk boots through `bootindex`, and so does every other
/// device of the boot order, in its order; an emulated first disk leaves
/// it all to `-boot order=`.
#[test]
fn a_pv_boot_disk_gets_a_bootindex_in_boot_order() {
    let p = plan_of(
        "name='b'\nboot='dc'\ndisk=['file:/img/d.raw,xvda,w', 'file:/iso/i.iso,hdc:cdrom,r']\nvif=['bridge=br0']\nfda='/f.img'",
        Accel::Tcg,
    );
    assert_eq!(values(&p, "-boot"), ["order=dc"]);
    assert!(
        device(&p, "hdc").ends_with(",bootindex=1"),
        "{}",
        device(&p, "hdc")
    );
    assert!(device(&p, "xvda").starts_with("vhost-user-blk-pci"));
    assert!(device(&p, "xvda").ends_with(",bootindex=2"));
    assert!(!device(&p, "nic0").contains("bootindex"));
    assert!(values(&p, "-global").is_empty());
    assert!(p.notes.iter().any(|n| n.starts_with("xvda is a PV disk")));

    let p = plan_of(
        "name='b'\nboot='nac'\ndisk=['file:/img/d.raw,xvda,w']\nvif=['bridge=br0']\nfda='/f.img'",
        Accel::Tcg,
    );
    assert!(device(&p, "nic0").ends_with(",bootindex=1"));
    assert_eq!(values(&p, "-global"), ["isa-fdc.bootindexA=2"]);
    assert!(device(&p, "xvda").ends_with(",bootindex=3"));

    // hda is the first hard disk: the legacy order does it.
    let p = plan_of(
        "name='b'\nboot='c'\ndisk=['file:/img/d.raw,hda,w', 'file:/img/e.raw,xvdb,w']",
        Accel::Tcg,
    );
    assert!(!values(&p, "-device")
        .iter()
        .any(|d| d.contains("bootindex")));
    // A direct kernel boot needs none.
    let p = plan_of(
        "name='b'\nkernel='/k'\ndisk=['file:/img/d.raw,xvda,w']",
        Accel::Tcg,
    );
    assert!(!device(&p, "xvda").contains("bootindex"));
}
