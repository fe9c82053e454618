//! The soak: a domain with a PV disk and a PV NIC under load while a
//! random one of its pvio processes (a backend or the supervisor) is
//! killed with SIGKILL every `PVIO_SOAK_KILL_EVERY` seconds (default 20)
//! for `PVIO_SOAK_SECS` seconds (default 60 in CI; run it by hand with
//! `PVIO_SOAK_SECS=3600` for an hour). At the end no flushed write is
//! lost (every block holds the last record the guest reported flushed, or
//! a later one), the guest never saw an I/O error, the pings went on, and
//! the resident memory of the supervisor and QEMU grew less than
//! [`SUPERVISOR_GROWTH_KIB`] and [`QEMU_GROWTH_KIB`].

mod runtime_support;

use std::time::{Duration, Instant};

use runtime_support::peer::BridgePeer;
use runtime_support::{Env, TestBridge};

const T: Duration = Duration::from_secs(120);
/// Blocks the guest cycles through.
const BLOCKS: u64 = 2000;
/// The bound on the supervisor's resident growth over the soak.
const SUPERVISOR_GROWTH_KIB: u64 = 16 * 1024;
/// The bound on QEMU's resident growth over the soak.
const QEMU_GROWTH_KIB: u64 = 64 * 1024;

const SCRIPT: &str = r#"
ip link set lo up
ip link set eth0 up
ip addr add 10.96.0.2/24 dev eth0
echo GUEST-UP
i=0
while true; do
  i=$((i+1))
  if printf "REC-%08d" $i | dd of=/dev/vda bs=512 seek=$((i % 2000)) conv=sync,fsync 2>/dev/null; then
    echo "IO-OK $i"
  else
    echo "IO-ERROR $i"
  fi
  if ping -c 1 -W 1 10.96.0.1 >/dev/null 2>&1; then echo "PING-OK $i"; fi
done
"#;

fn env_secs(name: &str, default: u64) -> Duration {
    Duration::from_secs(
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
    )
}

/// VmRSS of `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A small xorshift, seeded from the clock: which process dies next.
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

fn kill(pid: u32) {
    // SAFETY: a signal to a pid read from the domain's record.
    unsafe { libc::kill(i32::try_from(pid).unwrap(), libc::SIGKILL) };
}

#[test]
fn a_domain_under_load_survives_its_processes_being_killed() {
    let secs = env_secs("PVIO_SOAK_SECS", 60);
    let every = env_secs("PVIO_SOAK_KILL_EVERY", 20);
    let env = Env::new();
    let br = TestBridge::new("sk");
    let _peer = BridgePeer::new(&br, "10.96.0.1");
    let pv = env.image("pv.img", 4);
    let initramfs = env.initramfs(SCRIPT);
    let cfg = env.config(
        "soak",
        &initramfs,
        &format!(
            "disk = [ 'file:{},xvda,w' ]\nvif = [ 'type=vif,bridge={}' ]\non_poweroff = 'destroy'",
            pv.display(),
            br.name
        ),
    );
    env.ok(&["create", cfg.to_str().unwrap()]);
    env.wait_console("soak", "PING-OK", T);
    let first = env.record("soak");
    let qemu = first.qemu_pid.unwrap();
    let qemu_rss = rss_kib(qemu);
    let sup_rss = rss_kib(first.supervisor_pid.unwrap());
    let mut seed = u64::from(std::process::id()) | 1;
    let start = Instant::now();
    let mut kills = Vec::new();
    while start.elapsed() < secs {
        std::thread::sleep(every.min(secs.saturating_sub(start.elapsed())));
        if start.elapsed() >= secs {
            break;
        }
        let r = env.record("soak");
        let mut victims: Vec<(String, u32)> = r
            .backend_pids
            .iter()
            .map(|(d, p)| (d.clone(), *p))
            .collect();
        victims.push(("supervisor".to_owned(), r.supervisor_pid.unwrap()));
        let idx = usize::try_from(next(&mut seed) % victims.len() as u64).unwrap();
        let (what, pid) = victims[idx].clone();
        let ok_before = env.count_console("soak", "IO-OK");
        let ping_before = env.count_console("soak", "PING-OK");
        kill(pid);
        if what == "supervisor" {
            // The next command adopts the domain.
            assert!(pvio_hvm_runtime::domain::lock::FileLock::wait_free(
                &env.run_dir.join("soak/lock"),
                T
            )
            .unwrap());
            env.ok(&["list"]);
        }
        kills.push(what);
        // The guest carries on: more flushed writes and pings.
        let wait = Instant::now();
        while env.count_console("soak", "IO-OK") < ok_before + 3
            || env.count_console("soak", "PING-OK") < ping_before + 1
        {
            assert!(
                wait.elapsed() < T,
                "the guest stopped after {kills:?}:\n{}",
                env.log("soak")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let last = env.record("soak");
    assert_eq!(last.qemu_pid, Some(qemu), "QEMU was replaced");
    assert!(last.backends_down.is_empty(), "{:?}", last.backends_down);
    let sup_growth = rss_kib(last.supervisor_pid.unwrap()).saturating_sub(sup_rss);
    let qemu_growth = rss_kib(qemu).saturating_sub(qemu_rss);
    eprintln!(
        "soak: {:?}, kills {kills:?}, supervisor RSS +{sup_growth} KiB, QEMU RSS +{qemu_growth} KiB",
        start.elapsed()
    );
    assert!(
        sup_growth < SUPERVISOR_GROWTH_KIB,
        "supervisor +{sup_growth} KiB"
    );
    assert!(qemu_growth < QEMU_GROWTH_KIB, "QEMU +{qemu_growth} KiB");
    assert_eq!(env.count_console("soak", "IO-ERROR"), 0);
    env.ok(&["destroy", "soak"]);

    // Every block holds the last record reported flushed, or a later one.
    let console = std::fs::read_to_string(env.console_path("soak")).unwrap();
    let mut last_ok = vec![0u64; usize::try_from(BLOCKS).unwrap()];
    for n in console
        .lines()
        .filter_map(|l| l.trim().strip_prefix("IO-OK "))
        .filter_map(|n| n.trim().parse::<u64>().ok())
    {
        let b = usize::try_from(n % BLOCKS).unwrap();
        last_ok[b] = last_ok[b].max(n);
    }
    let image = std::fs::read(&pv).unwrap();
    for (b, want) in last_ok.iter().enumerate().filter(|(_, w)| **w > 0) {
        let at = b * 512;
        let text = String::from_utf8_lossy(&image[at..at + 12]);
        let got: u64 = text
            .strip_prefix("REC-")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("block {b}: {text:?}, want REC-{want:08}"));
        assert!(
            got >= *want && got % BLOCKS == b as u64,
            "block {b} holds REC-{got:08}, the guest flushed REC-{want:08}"
        );
    }
}
