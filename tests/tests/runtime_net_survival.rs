//! A domain's PV NIC outlives its backend: a real guest pings a host in a
//! network namespace on the domain's bridge every 0.2 s and sends it 4 MiB
//! over TCP (busybox `nc`) while the test SIGKILLs the net backend five
//! times; the domain's supervisor starts a new one each time on the same
//! socket and tap, QEMU's chardev reconnects.
//!
//! - The kills are 16 s apart, so that the first and the fifth are more than
//!   a minute apart: five deaths within `DEATH_WINDOW` (60 s,
//!   `hvm-runtime/src/domain/backends.rs`) would leave the backend down.
//!   The test takes about two minutes.
//! - Pings resume within 10 s of each restart (0.3-1.2 s on a quiet
//!   machine; the figures are printed): from the new backend process's
//!   start (its start time in `/proc`) to the moment the test reads the
//!   guest's first ping reply after it. The bound is far above what a
//!   reconnect takes (QEMU retries every second) so that a busy machine
//!   does not fail the test, and far below TCP's own recovery scale. The guest prints each
//!   reply with its uptime and `seq`; a reply counts only if it is printed
//!   after the test saw the new process and its `seq` is above every reply
//!   printed when the old one was dead, so the old backend did not carry it.
//! - The TCP transfer starts before the first kill and is under way at each
//!   kill: the test's receiver reads a share of the data before each one
//!   (the rest waits in the guest's socket, the receive window closed) and
//!   kills once more of it moves. The MD5 of what it received must be the
//!   MD5 the guest printed of what it sent, and `nc` must exit 0.

mod runtime_support;

use std::io::Read;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use runtime_support::peer::BridgePeer;
use runtime_support::{backend_pid, Env, TestBridge};

const T: Duration = Duration::from_secs(120);
const KILLS: usize = 5;
/// Between two kills: five deaths take more than `DEATH_WINDOW`.
const SPACING: Duration = Duration::from_secs(16);
/// The longest a restarted backend may leave the guest without a reply:
/// a bound for a busy machine, not a measurement (the test prints those).
const RESUME: Duration = Duration::from_secs(10);
const LEN: usize = 4 << 20;
const PORT: u16 = 5001;
const PEER_IP: &str = "10.97.0.1";

const SCRIPT: &str = r#"
ip link set lo up
ip link set eth0 up
ip addr add 10.97.0.2/24 dev eth0
dd if=/dev/urandom of=/tmp/blob bs=65536 count=64 2>/dev/null
echo "BLOB-MD5 $(md5sum /tmp/blob | cut -d' ' -f1)"
until ping -c 1 -W 1 10.97.0.1 >/dev/null 2>&1; do sleep 0.2; done
ping -i 0.2 10.97.0.1 | while read l; do read up idle < /proc/uptime; echo "PING-AT $up $l"; done &
(nc 10.97.0.1 5001 < /tmp/blob; echo "SEND-EXIT=$?") &
echo GUEST-UP
sleep 3600
"#;

/// Time since the host booted (`/proc/uptime`, 10 ms steps), the clock of
/// the processes' start times.
fn boottime() -> Duration {
    let s = std::fs::read_to_string("/proc/uptime").unwrap();
    let secs: f64 = s.split_whitespace().next().unwrap().parse().unwrap();
    Duration::from_secs_f64(secs)
}

/// When process `pid` started, on the [`boottime`] clock.
fn start_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_comm = &stat[stat.rfind(')').unwrap() + 1..];
    // Field 22 of stat; the first after the command's name is field 3.
    let ticks: u64 = after_comm
        .split_whitespace()
        .nth(19)
        .unwrap()
        .parse()
        .unwrap();
    // SAFETY: sysconf reads a constant of the system.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap();
    Duration::from_millis(ticks * 1000 / hz)
}

/// A ping reply the guest printed: `PING-AT <uptime> 64 bytes from ...:
/// seq=N ...`.
struct Reply {
    uptime: f64,
    seq: u64,
}

fn reply(line: &str) -> Option<Reply> {
    let rest = line.split("PING-AT ").nth(1)?;
    if !rest.contains("bytes from") {
        return None;
    }
    let uptime = rest.split_whitespace().next()?.parse().ok()?;
    let seq = rest.split("seq=").nth(1)?.split_whitespace().next()?;
    Some(Reply {
        uptime,
        seq: seq.parse().ok()?,
    })
}

/// The complete lines of the console of `name` (not a line being written).
fn console_lines(env: &Env, name: &str) -> Vec<String> {
    let text = std::fs::read_to_string(env.console_path(name)).unwrap_or_default();
    let done = text.rfind('\n').map_or("", |i| &text[..i]);
    done.lines().map(str::to_owned).collect()
}

/// Receives `LEN` bytes from the first client on `PEER_IP:PORT` in the
/// peer's namespace, reading no further than `allowed`; counts them in
/// `got` and closes the connection after the last.
fn receiver(netns: &str, allowed: Arc<AtomicUsize>, got: Arc<AtomicUsize>) -> JoinHandle<Vec<u8>> {
    let path = format!("/var/run/netns/{netns}");
    let (tx, rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || {
        let ns = std::fs::File::open(path).expect("netns file");
        // SAFETY: setns with a descriptor this thread owns; it moves only
        // this thread into the namespace.
        let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns");
        let listener = TcpListener::bind((PEER_IP, PORT)).expect("bind");
        tx.send(()).unwrap();
        let (mut s, _) = listener.accept().expect("accept");
        s.set_read_timeout(Some(T)).unwrap();
        let mut data = vec![0u8; LEN];
        let mut n = 0;
        while n < LEN {
            let upto = allowed.load(Ordering::SeqCst).min(LEN);
            if n >= upto {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            let r = s.read(&mut data[n..upto]).expect("receive from the guest");
            assert!(r > 0, "the guest closed the connection after {n} bytes");
            n += r;
            got.store(n, Ordering::SeqCst);
        }
        data
    });
    rx.recv_timeout(T).expect("the receiver listens");
    h
}

/// Waits until `what` holds, for at most `T`.
fn wait_until(env: &Env, what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < T,
            "{what} not within {T:?}; console:\n{}\nlogs:\n{}",
            std::fs::read_to_string(env.console_path("ns")).unwrap_or_default(),
            env.log("ns")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn md5(data: &[u8]) -> String {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("md5sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("md5sum (coreutils)");
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn pings_resume_and_a_transfer_completes_through_five_net_backend_kills() {
    let env = Env::new();
    let br = TestBridge::new("ns");
    let peer = BridgePeer::new(&br, PEER_IP);
    let allowed = Arc::new(AtomicUsize::new(0));
    let got = Arc::new(AtomicUsize::new(0));
    let rx = receiver(&peer.netns, Arc::clone(&allowed), Arc::clone(&got));
    let chunk = LEN / (KILLS + 2);

    let initramfs = env.initramfs(SCRIPT);
    let cfg = env.config(
        "ns",
        &initramfs,
        &format!(
            "vif = [ 'type=vif,bridge={}' ]\non_poweroff = 'destroy'",
            br.name
        ),
    );
    env.ok(&["create", cfg.to_str().unwrap()]);
    env.wait_console("ns", "GUEST-UP", T);
    let supervisor = env.record("ns").supervisor_pid.unwrap();
    let sent_md5 = env
        .wait_console("ns", "BLOB-MD5 ", T)
        .split("BLOB-MD5 ")
        .nth(1)
        .unwrap()
        .trim()
        .to_owned();

    // The transfer starts before the kills.
    allowed.store(chunk, Ordering::SeqCst);
    wait_until(&env, "the first share of the transfer", || {
        got.load(Ordering::SeqCst) >= chunk
    });

    let mut report = Vec::new();
    let mut last_kill: Option<Instant> = None;
    for k in 0..KILLS {
        if let Some(t) = last_kill {
            // The supervisor's death window, not the guest, sets this pace.
            std::thread::sleep(SPACING.saturating_sub(t.elapsed()));
        }
        // Let more of the transfer through and kill while it moves.
        allowed.store((k + 2) * chunk, Ordering::SeqCst);
        wait_until(&env, "the transfer moving", || {
            got.load(Ordering::SeqCst) > (k + 1) * chunk
        });
        let moved = got.load(Ordering::SeqCst);
        assert!(moved < LEN, "the transfer ended before kill {k}");

        let old = backend_pid(supervisor, "net").expect("a net backend");
        let last_before = console_lines(&env, "ns")
            .iter()
            .rev()
            .find_map(|l| reply(l))
            .expect("a ping reply before the kill");
        // SAFETY: a signal to a pid the test just read.
        unsafe { libc::kill(i32::try_from(old).unwrap(), libc::SIGKILL) };
        last_kill = Some(Instant::now());
        wait_until(&env, "the old backend gone", || {
            !runtime_support::alive(u64::from(old))
        });
        // Replies printed by now were carried by the old backend.
        let seq_dead = console_lines(&env, "ns")
            .iter()
            .filter_map(|l| reply(l))
            .map(|r| r.seq)
            .max()
            .unwrap_or(0);
        let mut new = None;
        wait_until(&env, "a new net backend", || {
            new = backend_pid(supervisor, "net").filter(|p| *p != old);
            new.is_some()
        });
        let new = new.unwrap();
        let started = start_time(new);
        let seen = console_lines(&env, "ns").len();
        let mut first: Option<(Reply, Duration)> = None;
        wait_until(&env, "a ping reply after the restart", || {
            let at = boottime();
            first = console_lines(&env, "ns")
                .iter()
                .skip(seen)
                .filter_map(|l| reply(l))
                .find(|r| r.seq > seq_dead)
                .map(|r| (r, at));
            first.is_some()
        });
        let (r, at) = first.unwrap();
        let resumed = at.saturating_sub(started);
        let gap = r.uptime - last_before.uptime;
        eprintln!(
            "[test] kill {k}: backend {old} -> {new}; {moved} bytes received; first reply seq={} {resumed:?} after the new backend started; guest saw no reply for {gap:.2} s",
            r.seq
        );
        report.push((k, resumed, gap));
    }

    allowed.store(LEN, Ordering::SeqCst);
    let data = rx.join().expect("the receiver");
    env.wait_console("ns", "SEND-EXIT=", T);
    assert_eq!(
        env.count_console("ns", "SEND-EXIT=0"),
        1,
        "nc failed:\n{}",
        std::fs::read_to_string(env.console_path("ns")).unwrap_or_default()
    );
    assert_eq!(md5(&data), sent_md5, "the data arrived changed");

    for (k, resumed, gap) in &report {
        assert!(
            *resumed <= RESUME,
            "pings resumed {resumed:?} after restart {k} (the guest saw no reply for {gap:.2} s); all: {report:?}"
        );
    }
    let r = env.wait_record("ns", "five restarts", T, |r| {
        usize::try_from(r.backend_restarts).unwrap() >= KILLS
    });
    assert!(
        r.backends_down.is_empty(),
        "a backend left down: {:?}",
        r.backends_down
    );
    env.ok(&["destroy", "ns"]);
}
