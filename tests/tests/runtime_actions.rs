//! on_crash, on_poweroff and on_reboot with real guests: a kernel panic
//! reported through the pvpanic device ends the domain (`destroy`) or
//! keeps it paused as it died (`preserve`, until `pvio destroy`); a
//! power-off with `on_poweroff = 'restart'` boots the guest again in the
//! same QEMU; a guest reboot with `on_reboot = 'destroy'` ends the domain;
//! `pvio reboot` asks the guest (its clean power-off becomes a reboot) and
//! `pvio reboot -F` resets it at once.

mod runtime_support;

use std::time::Duration;

use pvio_hvm_runtime::domain::DomainState;
use runtime_support::{alive, Env, POWER_BUTTON_READY};

const T: Duration = Duration::from_secs(120);

/// The guest's panic reaches QEMU through the ISA pvpanic device, which
/// Linux finds through ACPI (`pvpanic-mmio`).
const PANIC_MODULES: &[&str] = &["pvpanic", "pvpanic-mmio"];

/// A guest that panics once it runs.
const PANIC: &str = "echo GUEST-READY\n\
    [ -d /sys/bus/platform/drivers/pvpanic-mmio ] && echo PVPANIC-DRIVER\n\
    echo c > /proc/sysrq-trigger\n\
    sleep 600\n";

fn qemu_pid(env: &Env, name: &str) -> u64 {
    u64::from(env.record(name).qemu_pid.expect("qemu pid"))
}

#[test]
fn on_crash_destroy_ends_the_domain_as_a_crash() {
    let env = Env::new();
    let initramfs = env.initramfs_with(PANIC, PANIC_MODULES);
    let cfg = env.config("crd", &initramfs, "on_crash = 'destroy'");
    env.ok(&["create", cfg.to_str().unwrap()]);
    let qemu = qemu_pid(&env, "crd");
    let rec = env.wait_record("crd", "the end", T, |r| r.ended.is_some());
    let end = rec.ended.unwrap();
    assert_eq!(end.cause, "crash", "{}", end.detail);
    assert_eq!(end.detail, "the guest crashed");
    let console = std::fs::read_to_string(env.console_path("crd")).unwrap();
    assert!(console.contains("PVPANIC-DRIVER"), "{console}");
    assert!(console.contains("sysrq triggered crash"), "{console}");
    assert!(!alive(qemu), "QEMU still runs");
    assert!(env.sockets("crd").is_empty(), "{:?}", env.sockets("crd"));
    assert!(!env.ok(&["list"]).contains("crd"));
}

#[test]
fn on_crash_preserve_keeps_the_dead_guest_until_destroy() {
    let env = Env::new();
    let initramfs = env.initramfs_with(PANIC, PANIC_MODULES);
    let cfg = env.config("crp", &initramfs, "on_crash = 'preserve'");
    env.ok(&["create", cfg.to_str().unwrap()]);
    let qemu = qemu_pid(&env, "crp");
    env.wait_record("crp", "the preserved state", T, |r| {
        r.state == DomainState::Preserved
    });
    env.wait_console("crp", "sysrq triggered crash", T);
    // It stays: listed as preserved, QEMU alive, nothing ended.
    std::thread::sleep(Duration::from_secs(2));
    let rec = env.record("crp");
    assert_eq!(rec.state, DomainState::Preserved);
    assert!(rec.ended.is_none());
    assert!(alive(qemu));
    let list = env.ok(&["list"]);
    assert!(
        list.lines()
            .any(|l| l.starts_with("crp") && l.contains("preserved")),
        "{list}"
    );
    let json: serde_json::Value = serde_json::from_str(&env.ok(&["list", "--json"])).unwrap();
    assert_eq!(json[0]["name"], "crp");
    assert_eq!(json[0]["state"], "preserved");
    // A dead guest takes no power button.
    let err = env.fails(&["shutdown", "crp"]);
    assert!(
        err.contains("the guest has stopped and is preserved; `pvio destroy` ends it"),
        "{err}"
    );
    let out = env.ok(&["destroy", "crp"]);
    assert!(out.contains("crp destroyed"), "{out}");
    assert_eq!(env.record("crp").ended.unwrap().cause, "destroy");
    assert!(!alive(qemu), "QEMU still runs");
    assert!(!env.ok(&["list"]).contains("crp"));
}

#[test]
fn on_poweroff_restart_boots_the_guest_again_in_the_same_qemu() {
    let env = Env::new();
    // The kit's /init powers off once the script is done.
    let initramfs = env.initramfs("echo GUEST-BOOT\n");
    let cfg = env.config("por", &initramfs, "on_poweroff = 'restart'");
    env.ok(&["create", cfg.to_str().unwrap()]);
    let qemu = qemu_pid(&env, "por");
    let start = std::time::Instant::now();
    while env.count_console("por", "GUEST-BOOT") < 2 {
        assert!(
            start.elapsed() < T,
            "no second boot after the power-off:\n{}",
            env.log("por")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let rec = env.record("por");
    assert!(rec.ended.is_none(), "{:?}", rec.ended);
    assert_eq!(rec.qemu_pid.map(u64::from), Some(qemu), "the same QEMU");
    assert!(env.ok(&["list"]).contains("por"));
    env.ok(&["destroy", "por"]);
    assert_eq!(env.record("por").ended.unwrap().cause, "destroy");
    assert!(!alive(qemu));
}

#[test]
fn on_reboot_destroy_ends_the_domain_when_the_guest_reboots() {
    let env = Env::new();
    let initramfs = env.initramfs("echo GUEST-UP\nreboot -f\nsleep 600\n");
    let cfg = env.config("rbd", &initramfs, "on_reboot = 'destroy'");
    env.ok(&["create", cfg.to_str().unwrap()]);
    let qemu = qemu_pid(&env, "rbd");
    let rec = env.wait_record("rbd", "the end", T, |r| r.ended.is_some());
    let end = rec.ended.unwrap();
    assert_eq!(end.cause, "reboot", "{}", end.detail);
    assert_eq!(end.detail, "the guest rebooted");
    assert_eq!(
        env.count_console("rbd", "GUEST-UP"),
        1,
        "it did not boot again"
    );
    assert!(!alive(qemu));
}

#[test]
fn reboot_asks_the_guest_and_restarts_it_after_its_clean_shutdown() {
    let env = Env::new();
    // The guest stays up until its power-button handler powers it off.
    let initramfs = env.initramfs("echo GUEST-BOOT\nsleep 600\n");
    let cfg = env.config(
        "rbg",
        &initramfs,
        "on_reboot = 'restart'\non_poweroff = 'destroy'",
    );
    env.ok(&["create", cfg.to_str().unwrap()]);
    let qemu = qemu_pid(&env, "rbg");
    // Boot n is there once its power-button handler is ready: the button
    // is pressed only then (GUEST-BOOT comes after that marker too).
    let boots = |n: usize| {
        let start = std::time::Instant::now();
        while env.count_console("rbg", POWER_BUTTON_READY) < n
            || env.count_console("rbg", "GUEST-BOOT") < n
        {
            assert!(
                start.elapsed() < T,
                "boot {n} did not come:\n{}",
                env.log("rbg")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    boots(1);
    // `pvio reboot`: the guest sees the power button, shuts down, and its
    // power-off becomes a reboot (on_reboot = restart), not a destroy.
    let out = env.ok(&["reboot", "rbg"]);
    assert!(out.contains("asked to reboot"), "{out}");
    boots(2);
    assert_eq!(env.count_console("rbg", "GUEST-POWER-BUTTON"), 1);
    let rec = env.record("rbg");
    assert!(rec.ended.is_none(), "{:?}", rec.ended);
    assert_eq!(rec.qemu_pid.map(u64::from), Some(qemu), "the same QEMU");
    // `reboot -F` resets at once, without asking the guest.
    let out = env.ok(&["reboot", "-F", "rbg"]);
    assert!(out.contains("reset"), "{out}");
    boots(3);
    assert_eq!(env.count_console("rbg", "GUEST-POWER-BUTTON"), 1);
    // And a plain shutdown now ends it (on_poweroff = destroy).
    env.ok(&["shutdown", "-w", "rbg"]);
    assert_eq!(env.record("rbg").ended.unwrap().cause, "poweroff");
    assert!(!alive(qemu));
}
