//! Taps are deleted in the network namespace they were made in: a domain
//! started inside a namespace of the test's own, whose supervisor and QEMU
//! are then killed, is cleaned up by a `pvio list` run from the host's
//! namespace, and its tap is gone from the namespace it was made in (the
//! record keeps the namespace; clean-up opens a netlink socket inside it).

mod runtime_support;

use std::process::Command;
use std::time::Duration;

use pvio_hvm_runtime::domain::lock::FileLock;
use runtime_support::Env;

const T: Duration = Duration::from_secs(120);

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .status()
        .expect("ip (iproute2)")
        .success()
}

/// A named network namespace, removed on drop.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        ip(&["netns", "del", &self.0]);
    }
}

#[test]
fn a_tap_made_in_another_namespace_is_deleted_there() {
    let env = Env::new();
    let ns = Netns(format!("pvio-tapns-{}", std::process::id() % 100_000));
    ip(&["netns", "del", &ns.0]);
    assert!(ip(&["netns", "add", &ns.0]));
    assert!(ip(&[
        "-n", &ns.0, "link", "add", "pvtnsbr", "type", "bridge"
    ]));
    assert!(ip(&["-n", &ns.0, "link", "set", "pvtnsbr", "up"]));
    let initramfs = env.initramfs("echo GUEST-UP\nsleep 600\n");
    let cfg = env.config(
        "ns1",
        &initramfs,
        "vif = [ 'model=e1000,bridge=pvtnsbr' ]\non_poweroff = 'destroy'",
    );
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.0])
        .arg(pvio_tests::pvio_bin())
        .args(["create", cfg.to_str().unwrap()])
        .env("PVIO_RUN_DIR", &env.run_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    env.wait_console("ns1", "GUEST-UP", T);
    let rec = env.record("ns1");
    let tap = rec.taps_created[0].clone();
    assert!(ip(&["-n", &ns.0, "link", "show", "dev", &tap]));
    assert!(rec.netns.is_some());
    let (sup, qemu) = (rec.supervisor_pid.unwrap(), rec.qemu_pid.unwrap());
    assert!(Command::new("kill")
        .args(["-KILL", &sup.to_string(), &qemu.to_string()])
        .status()
        .unwrap()
        .success());
    assert!(FileLock::wait_free(&env.run_dir.join("ns1/lock"), T).unwrap());
    // Clean-up from the host's namespace.
    let out = env.pvio(&["list"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("deleted tap {tap}")), "{err}");
    assert!(
        !ip(&["-n", &ns.0, "link", "show", "dev", &tap]),
        "tap {tap} is still in {}",
        ns.0
    );
}
