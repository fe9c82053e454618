//! The kit boots real guests: the kernel package's version, vCPUs, modules,
//! and a hung guest that is killed at its timeout.
//!
//! Nothing here is skipped: a missing QEMU, busybox or kernel package fails
//! the test with a message that says what to install. Console lines are
//! echoed to stderr as `[guest] ...`, so a failing test shows the console.

use std::path::Path;
use std::time::Duration;

use pvio_tests::{Guest, GuestError, GuestKernel};

fn kernel() -> GuestKernel {
    GuestKernel::get().unwrap_or_else(|e| panic!("guest kernel unavailable: {e}"))
}

fn processors(cpuinfo: &str) -> usize {
    cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor") && l.contains(':'))
        .count()
}

#[test]
fn boots_the_packaged_kernel_on_two_vcpus() {
    let kernel = kernel();
    let out = Guest::builder()
        .vcpus(2)
        .run_strict("uname -r\ncat /proc/cpuinfo")
        .unwrap_or_else(|e| panic!("{e}"));
    let mut lines = out.output.lines();
    assert_eq!(
        lines.next(),
        Some(kernel.version()),
        "uname -r in the guest; console:\n{}",
        out.console
    );
    assert_eq!(processors(&out.output), 2, "console:\n{}", out.console);
    eprintln!(
        "booted {} in {:?} (QEMU ran {:?})",
        kernel.version(),
        out.boot_time,
        out.elapsed
    );
}

#[test]
fn one_vcpu_by_default_and_exit_status_is_reported() {
    // Also covers the `pc` machine and the compressed bzImage boot path.
    let out = Guest::builder()
        .machine("pc")
        .bzimage(true)
        .run("grep -c ^processor /proc/cpuinfo; printf tail; exit 7")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.exit_code, 7, "console:\n{}", out.console);
    assert_eq!(out.output, "1\ntail", "console:\n{}", out.console);
    let err = out.success().expect_err("exit 7 is a failure");
    assert!(
        matches!(err, GuestError::ScriptFailed { exit_code: 7, .. }),
        "{err}"
    );
}

#[test]
fn loads_requested_modules_with_their_dependencies() {
    let out = Guest::builder()
        .modules(&["virtio_blk", "ata_piix", "e1000", "vfio-pci"])
        .run_strict(
            "for m in virtio virtio_ring virtio_blk ata_piix libata e1000 \
                      vfio irqbypass vfio_pci_core vfio_pci; do\n\
               test -d /sys/module/$m || { echo \"no /sys/module/$m\"; exit 1; }\n\
               echo \"loaded $m\"\n\
             done",
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(out.output.contains("loaded vfio_pci\n"), "{}", out.console);
}

#[test]
fn a_hung_guest_is_killed_at_its_timeout() {
    let guest = Guest::builder().timeout(Duration::from_secs(20));
    let mut running = guest
        .spawn("echo about-to-hang\nsleep 600")
        .unwrap_or_else(|e| panic!("{e}"));
    let pid = running.pid();
    let line = running
        .wait_for_console_line("about-to-hang", Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(line, "about-to-hang");
    assert!(
        running.qmp_socket_path().exists(),
        "QMP socket {:?} missing",
        running.qmp_socket_path()
    );
    let err = running
        .wait(Duration::from_secs(5))
        .expect_err("the guest sleeps for 600 s");
    let GuestError::Timeout { console_tail, .. } = &err else {
        panic!("expected a timeout, got: {err}");
    };
    assert!(console_tail.contains("about-to-hang"), "{err}");
    assert!(err.to_string().contains("about-to-hang"), "{err}");
    // Killed and reaped: no process, not even a zombie, has that pid.
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "QEMU pid {pid} is still there after the timeout"
    );
}

#[test]
fn run_times_out_with_the_last_console_lines() {
    let start = std::time::Instant::now();
    let err = Guest::builder()
        .timeout(Duration::from_secs(20))
        .run("echo still-alive\nsleep 600")
        .expect_err("the guest sleeps for 600 s");
    assert!(
        start.elapsed() < Duration::from_secs(40),
        "{:?}",
        start.elapsed()
    );
    let GuestError::Timeout { pid, .. } = &err else {
        panic!("expected a timeout, got: {err}");
    };
    assert!(err.to_string().contains("still-alive"), "{err}");
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "QEMU {pid} left behind"
    );
}

#[test]
fn a_bad_qemu_argument_is_an_error_with_qemu_stderr() {
    let err = Guest::builder()
        .qemu_args(&["-device", "no-such-device-xyz"])
        .run("true")
        .expect_err("QEMU refuses the device");
    let GuestError::QemuFailed { stderr, .. } = &err else {
        panic!("expected QemuFailed, got: {err}");
    };
    assert!(stderr.contains("no-such-device-xyz"), "{err}");
}

#[test]
fn a_missing_module_fails_before_boot() {
    let err = Guest::builder()
        .modules(&["no_such_module"])
        .run("true")
        .expect_err("unknown module");
    assert!(err.to_string().contains("no_such_module"), "{err}");
}

#[test]
fn files_and_shared_memory_reach_the_guest() {
    let out = Guest::builder()
        .shared_memory(true)
        .memory_mib(512)
        .file("/etc/pvio/greeting", b"hello from the host\n", 0o644)
        .host_binary("/usr/bin/env")
        .run_strict(
            "cat /etc/pvio/greeting\n/usr/bin/env true && echo env-ran\nfree -m | grep Mem:",
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.output.starts_with("hello from the host\nenv-ran\n"),
        "{}",
        out.console
    );
}

#[test]
fn a_missing_qemu_says_what_to_install() {
    let err = Guest::builder()
        .qemu_binary("/nonexistent/qemu-system-x86_64")
        .run("true")
        .expect_err("no such QEMU");
    assert!(matches!(err, GuestError::QemuMissing { .. }), "{err}");
    assert!(err.to_string().contains("qemu-system-x86"), "{err}");
}
