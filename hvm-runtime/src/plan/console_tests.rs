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
