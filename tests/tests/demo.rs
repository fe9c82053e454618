//! The README's main-job command (`scripts/demo.sh` runs `pvio-demo`): the
//! test guest starts through `pvio create` with a PV disk and an emulated
//! one, data goes both ways through the PV disk, and both disks are measured.

use std::process::Command;

#[test]
fn the_demo_runs_the_test_guest_through_pvio_create() {
    let out = Command::new(env!("CARGO_BIN_EXE_pvio-demo"))
        .output()
        .expect("run pvio-demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "pvio-demo failed:\n{stdout}\n{stderr}"
    );
    for expected in [
        "$ pvio create",
        "pvio-demo (id ",
        "read:        hello from the host, through pvio's PV block backend",
        "hello from the guest (",
        "xvda: PV, pvio's vhost-user-blk",
        "hda:  emulated IDE (the fallback)",
        "PV / emulated",
        "data went both ways through the PV disk; the domain has ended.",
    ] {
        assert!(stdout.contains(expected), "no {expected:?} in:\n{stdout}");
    }
    // Each disk's figures are numbers the guest measured, not placeholders.
    let figures: Vec<f64> = stdout
        .lines()
        .filter(|l| l.contains("MB/s") && l.contains("IOPS"))
        .flat_map(|l| l.split_whitespace().filter_map(|w| w.parse::<f64>().ok()))
        .collect();
    assert_eq!(figures.len(), 4, "{stdout}");
    assert!(figures.iter().all(|f| *f > 0.0), "{stdout}");
}
