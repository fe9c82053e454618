//! `pvio host-check` run as a user runs it, on this machine.

use std::path::Path;
use std::process::Command;

fn host_check_json() -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_pvio"))
        .args(["host-check", "--json"])
        .env_remove("PVIO_ACCEL")
        .output()
        .expect("run pvio");
    assert!(
        out.status.success(),
        "host-check failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("host-check --json prints JSON")
}

fn row<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["checks"]
        .as_array()
        .expect("checks array")
        .iter()
        .find(|r| r["check"] == name)
        .unwrap_or_else(|| panic!("no row {name} in {report}"))
}

#[test]
fn reports_kvm_usability_and_the_accelerator_it_will_use() {
    let report = host_check_json();
    let kvm = row(&report, "KVM usable for stock guests");
    if Path::new("/sys/module/kvm_pvm").exists() {
        // These machines: /dev/kvm exists but cannot boot stock kernels.
        assert!(Path::new("/dev/kvm").exists());
        assert_eq!(kvm["status"], "warn", "{kvm}");
        assert!(kvm["detail"].as_str().unwrap().contains("kvm_pvm"), "{kvm}");
        assert_eq!(report["accelerator"], "tcg");
        let accel = row(&report, "accelerator for guests");
        assert!(accel["detail"].as_str().unwrap().starts_with("TCG"));
    } else if Path::new("/sys/module/kvm_intel").exists()
        || Path::new("/sys/module/kvm_amd").exists()
    {
        assert_eq!(kvm["status"], "pass", "{kvm}");
        assert_eq!(report["accelerator"], "kvm");
    } else {
        assert_eq!(report["accelerator"], "tcg");
    }
    // Every row that is not a pass says what to do.
    for r in report["checks"].as_array().unwrap() {
        if r["status"] != "pass" {
            assert!(!r["fix"].as_str().unwrap().is_empty(), "{r}");
        }
    }
    assert_eq!(row(&report, "QEMU (device model)")["status"], "pass");
}

#[test]
fn table_names_the_fallback() {
    let out = Command::new(env!("CARGO_BIN_EXE_pvio"))
        .arg("host-check")
        .env_remove("PVIO_ACCEL")
        .output()
        .expect("run pvio");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("guests will run under"), "{text}");
}

#[test]
fn pvio_accel_overrides_the_accelerator_row_but_not_the_probe() {
    let out = Command::new(env!("CARGO_BIN_EXE_pvio"))
        .args(["host-check", "--json"])
        .env("PVIO_ACCEL", "tcg")
        .output()
        .expect("run pvio");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(report["accelerator"], "tcg");
    let accel = row(&report, "accelerator for guests");
    assert!(
        accel["detail"].as_str().unwrap().contains("PVIO_ACCEL=tcg"),
        "{accel}"
    );
    // The KVM row still says what the host itself offers.
    let kvm = row(&report, "KVM usable for stock guests");
    assert!(
        !kvm["detail"].as_str().unwrap().contains("PVIO_ACCEL"),
        "{kvm}"
    );
}

#[test]
fn says_which_guest_types_run_and_under_which_accelerator() {
    // Under TCG QEMU's x86-64 emulator runs every type, whatever the CPU.
    let out = Command::new(env!("CARGO_BIN_EXE_pvio"))
        .args(["host-check", "--json"])
        .env("PVIO_ACCEL", "tcg")
        .output()
        .expect("run pvio");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        report["guest_types"],
        serde_json::json!({
            "accelerator": "tcg",
            "types": ["hvm-x86_32", "hvm-x86_32p", "hvm-x86_64"]
        })
    );
    let types = row(&report, "guest types");
    assert_eq!(types["status"], "pass", "{types}");
    assert_eq!(
        types["detail"],
        "32-bit, 32-bit PAE and 64-bit HVM under TCG (emulated, slow) (hvm-x86_32 hvm-x86_32p hvm-x86_64)"
    );
    let table = Command::new(env!("CARGO_BIN_EXE_pvio"))
        .arg("host-check")
        .env("PVIO_ACCEL", "tcg")
        .output()
        .expect("run pvio");
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("guest types") && l.contains("64-bit HVM under TCG")),
        "{text}"
    );
}
