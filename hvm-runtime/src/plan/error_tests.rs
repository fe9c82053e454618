//! The plan reports every setting it cannot honour at once, in config
//! line order, and the host check lists its problems the same way.

use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::config::{load_str, Origin};
use crate::host::accel::Accel;

fn plan_err(text: &str) -> PlanError {
    let spec = load_str(text, &Origin::File("/etc/xen/t".into()), &[])
        .unwrap_or_else(|e| panic!("{e}"))
        .spec;
    let mut entropy = FixedEntropy(0);
    let mut opts = PlanOptions {
        run_root: PathBuf::from("/run/pvio"),
        accel: AccelDecision {
            accel: Accel::Tcg,
            reason: "test".to_owned(),
        },
        ovmf: PathBuf::from("/usr/share/ovmf/OVMF.fd"),
        now: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        entropy: &mut entropy,
        qemu_release: None,
    };
    match plan(&spec, &mut opts) {
        Ok(_) => panic!("{text}: planned"),
        Err(e) => e,
    }
}

#[test]
fn every_plan_error_is_reported_in_line_order() {
    // The floppy is refused by the command line, after the NICs were
    // planned; the user reads both, in the order of the file.
    let err = plan_err(
        "name='f'\nmachine='q35'\nfda='/f.img'\nvif=['bridge=br0,devid=1234567', 'bridge=br0,devid=7654321']",
    );
    let PlanError::Several(all) = &err else {
        panic!("{err:?}");
    };
    assert_eq!(all.len(), 3);
    assert_eq!(
        err.to_string(),
        "3 settings cannot be planned:\n  \
         /etc/xen/t:3: key 'fda': q35 has no floppy controller; use machine = \"pc\"\n  \
         /etc/xen/t:4: key 'vif': devid 1234567 makes the tap name too long; set vifname=\n  \
         /etc/xen/t:4: key 'vif': devid 7654321 makes the tap name too long; set vifname="
    );
}

#[test]
fn one_plan_error_is_reported_alone() {
    let err = plan_err("name='f'\nvif=['bridge=br0,devid=1234567']");
    assert_eq!(
        err.to_string(),
        "/etc/xen/t:2: key 'vif': devid 1234567 makes the tap name too long; set vifname="
    );
}

/// The host check says what a config's file is when it cannot be used,
/// not that an existing path "does not exist".
#[test]
fn the_host_check_says_what_an_unusable_file_is() {
    let d = tempfile::tempdir().unwrap();
    let text = format!(
        "name='u'\nkernel='/dev/zero'\ndisk=['file:{},xvda,w', 'file:{}/none.iso,hdc:cdrom,r']",
        d.path().display(),
        d.path().display()
    );
    let spec = load_str(&text, &Origin::File("/etc/xen/u".into()), &[])
        .unwrap_or_else(|e| panic!("{e}"))
        .spec;
    let mut entropy = FixedEntropy(0);
    let mut opts = PlanOptions {
        run_root: PathBuf::from("/run/pvio"),
        accel: AccelDecision {
            accel: Accel::Tcg,
            reason: "test".to_owned(),
        },
        ovmf: PathBuf::from("/usr/share/ovmf/OVMF.fd"),
        now: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        entropy: &mut entropy,
        qemu_release: None,
    };
    let p = plan(&spec, &mut opts).unwrap();
    let problems: Vec<String> = check_host(&spec, &p, &host::RealHost::new())
        .iter()
        .map(ToString::to_string)
        .collect();
    let has = |want: &str| problems.iter().any(|p| p.contains(want));
    assert!(
        has(&format!(
            "xvda: the image {} is a directory",
            d.path().display()
        )),
        "{problems:?}"
    );
    assert!(
        has(&format!(
            "hdc: the CD-ROM image {}/none.iso does not exist",
            d.path().display()
        )),
        "{problems:?}"
    );
    assert!(
        has("the kernel /dev/zero is a character device"),
        "{problems:?}"
    );
}
