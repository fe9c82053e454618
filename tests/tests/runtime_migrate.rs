//! Live migration over ssh, on this machine: the test runs its own `sshd`
//! on 127.0.0.1 (a free port, a host key and a client key it makes, the
//! test's `pvio` and run dir in the session's environment; nothing else
//! is contacted) and moves a real guest through it while the guest
//! writes to its PV disk and pings a peer over its PV NIC. The guest
//! never reboots, its writes go on with no I/O error and verify, the
//! pings resume, and the domain ends up under its own name (the incoming
//! copy took it once the source had gone). A migration whose receiving
//! side dies midway leaves the guest running on the source.

mod runtime_support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pvio_hvm_runtime::domain::record::{DomainState, Origin};
use runtime_support::peer::BridgePeer;
use runtime_support::ssh::Sshd;
use runtime_support::{verify_records, Env, TestBridge};

const T: Duration = Duration::from_secs(180);

const SCRIPT: &str = r#"
ip link set lo up
ip link set eth0 up
ip addr add 10.96.0.2/24 dev eth0
echo GUEST-BOOTED
i=0
while true; do
  i=$((i+1))
  sum=$(( (i * 2654435761) % 4294967296 ))
  printf "REC %d %d END" $i $sum | dd of=/dev/vda bs=512 seek=$i conv=sync,fsync 2>/dev/null || echo "IO-ERROR $i"
  echo "COUNT $i"
  if ping -c 1 -W 1 10.96.0.1 >/dev/null 2>&1; then echo "PING-OK $i"; fi
  sleep 0.1
done
"#;

/// Waits until the source's QEMU reports the stream moving (bytes sent),
/// so that the receiver dies midway, not before the stream began.
fn wait_streaming(env: &Env) {
    let start = Instant::now();
    loop {
        let out = env.ok(&["qmp", "mig", r#"{"execute":"query-migrate"}"#]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        if v["ram"]["transferred"].as_u64().unwrap_or(0) > 0 {
            return;
        }
        assert!(start.elapsed() < T, "the stream never moved: {out}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The record of the domain migrating in (`mig--incoming*`) once its
/// QEMU runs.
fn wait_incoming(env: &Env) -> pvio_hvm_runtime::domain::DomainRecord {
    let start = Instant::now();
    loop {
        for e in std::fs::read_dir(&env.run_dir)
            .unwrap()
            .filter_map(Result::ok)
        {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with("mig--incoming") {
                continue;
            }
            if let Ok(r) =
                pvio_hvm_runtime::domain::DomainRecord::load(&e.path().join("domain.json"))
            {
                if r.qemu_pid.is_some() && r.state == DomainState::Starting {
                    return r;
                }
            }
        }
        assert!(
            start.elapsed() < T,
            "no incoming domain:\n{}",
            env.log("mig")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_guest_moves_over_ssh_while_it_writes_and_pings() {
    let env = Env::new();
    let sshd = Sshd::start(&env);
    let br = TestBridge::new("mg");
    let _peer = BridgePeer::new(&br, "10.96.0.1");
    let pv = env.image("pv.img", 8);
    let initramfs = env.initramfs(SCRIPT);
    let cfg = env.config(
        "mig",
        &initramfs,
        &format!(
            "disk = [ 'file:{},xvda,w' ]\nvif = [ 'type=vif,bridge={}' ]",
            pv.display(),
            br.name
        ),
    );
    env.ok(&["create", cfg.to_str().unwrap()]);
    env.wait_number_past("mig", "PING-OK ", 2, T);
    let source = env.record("mig");

    let out = env.ok(&["migrate", "--ssh", &sshd.command(), "mig", "127.0.0.1"]);
    assert!(out.contains("migrated to 127.0.0.1"), "{out}");
    let r = env.record("mig");
    assert_eq!(r.origin, Origin::MigratedIn);
    assert_eq!(r.state, DomainState::Running);
    assert_ne!(
        r.identity.id, source.identity.id,
        "the incoming domain is a new one"
    );
    assert_ne!(r.qemu_pid, source.qemu_pid);
    assert!(
        !runtime_support::alive(u64::from(source.qemu_pid.unwrap())),
        "the source's QEMU still runs"
    );
    let at = env.last_number("mig", "COUNT ");
    let pings = env.last_number("mig", "PING-OK ");
    env.wait_number_past("mig", "COUNT ", at + 5, T);
    env.wait_number_past("mig", "PING-OK ", pings.max(at) + 1, T);
    assert_eq!(
        env.count_console("mig", "GUEST-BOOTED"),
        1,
        "the guest rebooted"
    );
    assert_eq!(
        env.count_console("mig", "IO-ERROR"),
        0,
        "the guest saw an I/O error"
    );
    let list = env.ok(&["list", "--json"]);
    assert!(list.contains("\"migrated-in\""), "{list}");

    // The receiving side dies midway: the guest runs on here.
    env.ok(&[
        "qmp",
        "mig",
        r#"{"execute":"migrate-set-parameters","arguments":{"max-bandwidth":1048576}}"#,
    ]);
    let here = env.record("mig");
    let migrating = Command::new(pvio_tests::pvio_bin())
        .args(["migrate", "--ssh", &sshd.command(), "mig", "127.0.0.1"])
        .env("PVIO_RUN_DIR", &env.run_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let incoming = wait_incoming(&env);
    wait_streaming(&env);
    // SAFETY: a signal to the incoming domain's QEMU, read from its record.
    unsafe {
        libc::kill(
            i32::try_from(incoming.qemu_pid.unwrap()).unwrap(),
            libc::SIGKILL,
        )
    };
    let out = migrating.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "the migration should have failed: {err}"
    );
    assert!(err.contains("runs on here"), "{err}");
    let r = env.record("mig");
    assert_eq!(r.state, DomainState::Running, "{err}");
    assert_eq!(r.qemu_pid, here.qemu_pid, "the source's QEMU was replaced");
    let at = env.last_number("mig", "COUNT ");
    env.wait_number_past("mig", "COUNT ", at + 3, T);
    let pings = env.last_number("mig", "PING-OK ");
    env.wait_number_past("mig", "PING-OK ", pings, T);
    assert_eq!(env.count_console("mig", "GUEST-BOOTED"), 1);
    assert_eq!(env.count_console("mig", "IO-ERROR"), 0);
    let n = env.last_number("mig", "COUNT ");
    env.ok(&["destroy", "mig"]);
    // Every record the guest wrote, before, during and after, verifies.
    verify_records(&pv, n);
}
