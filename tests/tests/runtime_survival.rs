//! A PV backend that dies is started again by the domain's supervisor on
//! the same socket and descriptors; QEMU's chardev reconnects and the guest
//! carries on: a real domain writes to its PV disk and pings over its PV
//! NIC while the test kills each backend with SIGKILL; the writes go on
//! with no I/O error, the pings resume, and a backend that dies five times
//! within a minute is left down, which the record and `pvio list` say.

mod runtime_support;

use std::time::{Duration, Instant};

use runtime_support::peer::BridgePeer;
use runtime_support::{backend_pid, Env, TestBridge};

const T: Duration = Duration::from_secs(120);

const SCRIPT: &str = r#"
ip link set lo up
ip link set eth0 up
ip addr add 10.97.0.2/24 dev eth0
echo GUEST-UP
i=0
while true; do
  i=$((i+1))
  if printf "REC-%08d" $i | dd of=/dev/vda bs=512 seek=$((i % 2000)) conv=sync,fsync 2>/dev/null; then
    echo "IO-OK $i"
  else
    echo "IO-ERROR $i"
  fi
  if ping -c 1 -W 1 10.97.0.1 >/dev/null 2>&1; then echo "PING-OK $i"; fi
  sleep 0.2
done
"#;

/// Waits until the console has `n` more lines with `pattern` than `from`.
fn wait_more(env: &Env, pattern: &str, from: usize, n: usize) {
    let start = Instant::now();
    while env.count_console("sv", pattern) < from + n {
        assert!(
            start.elapsed() < T,
            "no {n} more '{pattern}' after {from}; console:\n{}\nlogs:\n{}",
            std::fs::read_to_string(env.console_path("sv")).unwrap_or_default(),
            env.log("sv")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Kills the `kind` backend and waits for the supervisor to start a new
/// one (a different pid).
fn kill_and_wait_restart(env: &Env, supervisor: u32, kind: &str) -> u32 {
    let old = backend_pid(supervisor, kind).expect("a backend process");
    // SAFETY: a signal to a pid the test just read.
    unsafe { libc::kill(i32::try_from(old).unwrap(), libc::SIGKILL) };
    let start = Instant::now();
    loop {
        if let Some(p) = backend_pid(supervisor, kind).filter(|p| *p != old) {
            return p;
        }
        assert!(
            start.elapsed() < T,
            "{kind} backend not restarted:\n{}",
            env.log("sv")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn killed_backends_come_back_and_the_guest_carries_on() {
    let env = Env::new();
    let br = TestBridge::new("sv");
    let _peer = BridgePeer::new(&br, "10.97.0.1");
    let pv = env.image("pv.img", 16);
    let initramfs = env.initramfs(SCRIPT);
    let cfg = env.config(
        "sv",
        &initramfs,
        &format!(
            "disk = [ 'file:{},xvda,w' ]\nvif = [ 'type=vif,bridge={}' ]\non_poweroff = 'destroy'",
            pv.display(),
            br.name
        ),
    );
    env.ok(&["create", cfg.to_str().unwrap()]);
    env.wait_console("sv", "PING-OK", T);
    let supervisor = env.record("sv").supervisor_pid.unwrap();

    // Block: killed, started again, the writes go on.
    let io = env.count_console("sv", "IO-OK");
    kill_and_wait_restart(&env, supervisor, "blk");
    wait_more(&env, "IO-OK", io, 5);
    // Net: killed, started again, the pings resume.
    let pings = env.count_console("sv", "PING-OK");
    kill_and_wait_restart(&env, supervisor, "net");
    wait_more(&env, "PING-OK", pings, 3);
    env.wait_record("sv", "two restarts", T, |r| r.backend_restarts >= 2);
    assert_eq!(
        env.count_console("sv", "IO-ERROR"),
        0,
        "the guest saw an I/O error"
    );

    // Five deaths within a minute: the net backend is left down.
    for _ in 0..3 {
        kill_and_wait_restart(&env, supervisor, "net");
    }
    let last = backend_pid(supervisor, "net").unwrap();
    // SAFETY: a signal to a pid the test just read.
    unsafe { libc::kill(i32::try_from(last).unwrap(), libc::SIGKILL) };
    let r = env.wait_record("sv", "the net backend left down", T, |r| {
        !r.backends_down.is_empty()
    });
    assert_eq!(r.backends_down[0].device, "net0");
    let out = env.pvio(&["list"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the PV backend of net0 is down"), "{err}");
    // The disk is unaffected.
    let io = env.count_console("sv", "IO-OK");
    wait_more(&env, "IO-OK", io, 3);
    env.ok(&["destroy", "sv"]);
}

#[test]
fn a_hung_qemu_is_destroyed_in_bounded_time() {
    let env = Env::new();
    let pv = env.image("pv.img", 8);
    let initramfs = env.initramfs("echo GUEST-UP\nsleep 600\n");
    let cfg = env.config(
        "hung",
        &initramfs,
        &format!("disk = [ 'file:{},xvda,w' ]", pv.display()),
    );
    env.ok(&["create", cfg.to_str().unwrap()]);
    env.wait_console("hung", "GUEST-UP", T);
    let qemu = env.record("hung").qemu_pid.unwrap();
    // SAFETY: a signal to the domain's QEMU, read from its record.
    unsafe { libc::kill(i32::try_from(qemu).unwrap(), libc::SIGSTOP) };
    let start = Instant::now();
    let out = env.pvio(&["destroy", "hung"]);
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(took < Duration::from_secs(15), "destroy took {took:?}");
    let r = env.record("hung");
    assert_eq!(r.ended.unwrap().cause, "destroy");
    assert!(!runtime_support::alive(u64::from(qemu)), "QEMU left behind");
}

#[test]
fn a_killed_supervisor_is_replaced_and_the_guest_never_notices() {
    let env = Env::new();
    let pv = env.image("pv.img", 16);
    let hot = env.image("hot.img", 8);
    let iso = env.iso("cd.iso", "hello\n");
    let script = r#"
echo GUEST-UP
i=0
while true; do
  i=$((i+1))
  if printf "REC-%08d" $i | dd of=/dev/vda bs=512 seek=$((i % 2000)) conv=sync,fsync 2>/dev/null; then
    echo "IO-OK $i"
  else
    echo "IO-ERROR $i"
  fi
  sleep 0.2
done
"#;
    let initramfs = env.initramfs(script);
    let cfg = env.config(
        "ad",
        &initramfs,
        &format!(
            "disk = [ 'file:{},xvda,w', ',hdc:cdrom,r' ]\non_poweroff = 'destroy'",
            pv.display()
        ),
    );
    env.ok(&["create", cfg.to_str().unwrap()]);
    env.wait_console("ad", "IO-OK 3", T);
    let before = env.record("ad");
    let (qemu, sup) = (before.qemu_pid.unwrap(), before.supervisor_pid.unwrap());
    // SAFETY: a signal to the domain's supervisor, read from its record.
    unsafe { libc::kill(i32::try_from(sup).unwrap(), libc::SIGKILL) };
    assert!(
        pvio_hvm_runtime::domain::lock::FileLock::wait_free(&env.run_dir.join("ad/lock"), T)
            .unwrap()
    );
    // The guest runs on without a supervisor.
    let io = env.count_console("ad", "IO-OK");
    let start = Instant::now();
    while env.count_console("ad", "IO-OK") < io + 3 {
        assert!(start.elapsed() < T, "the guest stopped with its supervisor");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(runtime_support::alive(u64::from(qemu)));
    // The next command adopts it: same QEMU, same id, a new supervisor.
    let out = env.pvio(&["list"]);
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l.starts_with("ad") && l.contains("running")),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("adopted"));
    let after = env.record("ad");
    assert_eq!(after.qemu_pid, Some(qemu));
    assert_eq!(after.identity.id, before.identity.id);
    assert_eq!(after.started_at, before.started_at);
    assert_eq!(after.adopted, 1);
    assert_ne!(after.supervisor_pid, Some(sup));
    let io = env.count_console("ad", "IO-OK");
    wait_more_in(&env, "ad", "IO-OK", io, 3);
    // It answers as before: hot-plug, a new CD, destroy.
    env.ok(&[
        "block-attach",
        "ad",
        &format!("file:{},xvdb,w", hot.display()),
    ]);
    env.ok(&["cd-insert", "ad", "hdc", iso.to_str().unwrap()]);
    assert_eq!(env.count_console("ad", "IO-ERROR"), 0);
    env.ok(&["destroy", "ad"]);
    assert!(!runtime_support::alive(u64::from(qemu)));
    assert_eq!(env.record("ad").ended.unwrap().cause, "destroy");
}

fn wait_more_in(env: &Env, name: &str, pattern: &str, from: usize, n: usize) {
    let start = Instant::now();
    while env.count_console(name, pattern) < from + n {
        assert!(
            start.elapsed() < T,
            "no {n} more '{pattern}'; logs:\n{}",
            env.log(name)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
