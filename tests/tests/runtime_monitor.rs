//! Hands on the device model, as `virsh qemu-monitor-command` gives them:
//! `pvio qmp NAME JSON` and `pvio monitor NAME 'HMP'` go through the
//! supervisor (with the control socket's access checks), the config's
//! vdev names work in monitor commands (`eject hdc`, `change hdc FILE`,
//! also on `monitor=1`'s socket), and pvio's view of CD media follows
//! what QEMU reports, whoever changed it; xm's and xl's `block-attach` of a
//! CD-ROM drive change its medium.

mod runtime_support;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use runtime_support::Env;

const T: Duration = Duration::from_secs(120);

/// Waits until `pvio block-list` shows `want` on the hdc line.
fn wait_hdc(env: &Env, want: &str) {
    let start = Instant::now();
    loop {
        let list = env.ok(&["block-list", "mon"]);
        if list
            .lines()
            .any(|l| l.starts_with("hdc") && l.contains(want))
        {
            return;
        }
        assert!(start.elapsed() < T, "hdc never showed {want}:\n{list}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn qmp_and_monitor_commands_reach_qemu_and_media_follow_them() {
    let env = Env::new();
    let iso = env.iso("cd.iso", "hello\n");
    let initramfs = env.initramfs("echo GUEST-UP\nsleep 600\n");
    let cfg = env.config(
        "mon",
        &initramfs,
        "disk = [ ',hdc:cdrom,r' ]\nmonitor = 1\non_poweroff = 'destroy'",
    );
    let out = env.pvio(&["create", cfg.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("monitor=1 opens QEMU's human monitor"),
        "the monitor's warning"
    );
    env.wait_console("mon", "GUEST-UP", T);

    let status = env.ok(&["monitor", "mon", "info status"]);
    assert!(status.contains("VM status: running"), "{status}");
    let q = env.ok(&["qmp", "mon", r#"{"execute":"query-status"}"#]);
    let v: serde_json::Value = serde_json::from_str(&q).unwrap();
    assert_eq!(v["running"], true, "{q}");
    let e = env.fails(&["qmp", "mon", "query-status"]);
    assert!(e.contains("not JSON"), "{e}");
    let e = env.fails(&["qmp", "mon", r#"{"execute":"no-such-command"}"#]);
    assert!(e.contains("QEMU refused no-such-command"), "{e}");

    // The guide's route: the monitor socket, the config's vdev name.
    let mut m = UnixStream::connect(env.run_dir.join("mon/monitor.sock")).unwrap();
    m.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut greeting = [0u8; 256];
    let _ = m.read(&mut greeting).unwrap();
    writeln!(m, "change hdc {} raw", iso.display()).unwrap();
    wait_hdc(&env, iso.to_str().unwrap());
    // The same through pvio monitor.
    let out = env.ok(&["monitor", "mon", "eject hdc"]);
    assert!(!out.contains("not found"), "{out}");
    wait_hdc(&env, "(empty)");
    // xm's four-argument block-attach of the CD-ROM drive changes its medium.
    let iso_arg = format!("file:{}", iso.display());
    env.ok(&["block-attach", "mon", &iso_arg, "hdc:cdrom", "r"]);
    wait_hdc(&env, iso.to_str().unwrap());
    env.ok(&["cd-eject", "mon", "hdc"]);
    wait_hdc(&env, "(empty)");
    // xl's comma form does the same.
    env.ok(&["block-attach", "mon", &format!("{iso_arg},hdc:cdrom,r")]);
    wait_hdc(&env, iso.to_str().unwrap());
    env.ok(&["destroy", "mon"]);
}
