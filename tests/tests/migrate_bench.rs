//! The migration benchmark (not a test: `#[ignore]`, run by hand or by
//! `scripts/bench.sh migrate`):
//!
//! ```text
//! cargo build --release --workspace --bins
//! cargo test --release -p pvio-tests --test migrate_bench -- --ignored --nocapture
//! ```
//!
//! In one run, on this host, through an `sshd` of the benchmark's own on
//! 127.0.0.1 (both rows pay the same encryption), guests of 256 and 512
//! MiB, idle and under disk and network load (a `dd` loop writing random
//! data to the disk, a ping flood to a peer on the bridge), moved:
//!
//! - **pvio**: `pvio migrate` of a domain with a PV disk and a PV NIC
//!   (pvio's vhost-user backends, which log the pages they write);
//! - **QEMU's own** virtio-blk and virtio-net (no vhost-user), the same
//!   guest on the same image and bridge, moved by QEMU alone (`migrate
//!   exec:ssh ... cat > FIFO` to a QEMU started with `-incoming exec:cat
//!   FIFO`).
//!
//! Each row: total time and downtime (QEMU's figures), MiB sent and whole
//! pages sent, and pvio / QEMU for the times. Under TCG (this machine) a
//! guest's memory writes are the emulator's and the guest runs several
//! times slower than under KVM, so the load dirties fewer pages than it
//! would there: the figures compare the two rows, not hosts. The table
//! and `migrate.json` go to stdout and `PVIO_BENCH_OUT`.

#![allow(clippy::cast_precision_loss)] // figures for a table

mod runtime_support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use runtime_support::peer::BridgePeer;
use runtime_support::ssh::Sshd;
use runtime_support::{Env, TestBridge};

const T: Duration = Duration::from_secs(300);

const IDLE: &str = r#"
ip link set lo up
ip link set eth0 up
ip addr add 10.95.0.2/24 dev eth0
echo GUEST-READY
while true; do sleep 1; done
"#;

const LOAD: &str = r#"
ip link set lo up
ip link set eth0 up
ip addr add 10.95.0.2/24 dev eth0
(while true; do dd if=/dev/urandom of=/dev/vda bs=64k count=32 seek=$((RANDOM % 64)) conv=fsync 2>/dev/null; done) &
(while true; do ping -q -c 50 -i 0.01 -W 1 10.95.0.1 >/dev/null 2>&1 || sleep 0.1; done) &
sleep 2
echo GUEST-READY
while true; do sleep 1; done
"#;

#[derive(Debug, Clone)]
struct Row {
    memory_mib: u64,
    load: &'static str,
    devices: &'static str,
    total_ms: u64,
    downtime_ms: u64,
    mib_sent: f64,
    pages: u64,
}

#[test]
#[ignore = "a benchmark: run with --ignored --nocapture"]
fn migration_pvio_against_qemu_virtio() {
    let env = Env::new();
    let sshd = Sshd::start(&env);
    let br = TestBridge::new("mb");
    let _peer = BridgePeer::new(&br, "10.95.0.1");
    let decision = pvio_tests::accel::detect();
    let accel = format!("{:?} ({})", decision.accel, decision.reason);
    let mut rows = Vec::new();
    for memory in [256u64, 512] {
        for (load, script) in [("idle", IDLE), ("disk+net", LOAD)] {
            let initramfs = env.initramfs(script);
            let initramfs = copy(&initramfs, &env.path(&format!("init-{load}.cpio")));
            rows.push(pvio_row(&env, &sshd, &br, memory, load, &initramfs));
            rows.push(qemu_row(&env, &sshd, &br, memory, load, &initramfs));
        }
    }
    println!("\nMigration through ssh on 127.0.0.1; accelerator: {accel}\n");
    println!("| memory | load | devices | total ms | downtime ms | MiB sent | pages sent | pvio / QEMU total | pvio / QEMU downtime |");
    println!("| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for pair in rows.chunks(2) {
        let (p, q) = (&pair[0], &pair[1]);
        for r in pair {
            let ratios = if r.devices == "pvio" {
                format!(
                    "{:.2} | {:.2}",
                    ratio(p.total_ms, q.total_ms),
                    ratio(p.downtime_ms, q.downtime_ms)
                )
            } else {
                " | ".to_owned()
            };
            println!(
                "| {} | {} | {} | {} | {} | {:.1} | {} | {ratios} |",
                r.memory_mib, r.load, r.devices, r.total_ms, r.downtime_ms, r.mib_sent, r.pages
            );
        }
    }
    if let Ok(dir) = std::env::var("PVIO_BENCH_OUT") {
        let rows: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "memory_mib": r.memory_mib, "load": r.load, "devices": r.devices,
                    "total_ms": r.total_ms, "downtime_ms": r.downtime_ms,
                    "mib_sent": r.mib_sent, "pages": r.pages,
                })
            })
            .collect();
        let json = serde_json::json!({ "accelerator": accel, "rows": rows });
        std::fs::write(
            Path::new(&dir).join("migrate.json"),
            serde_json::to_vec_pretty(&json).unwrap(),
        )
        .unwrap();
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

fn copy(from: &Path, to: &Path) -> PathBuf {
    std::fs::copy(from, to).unwrap();
    to.to_owned()
}

fn pvio_row(
    env: &Env,
    sshd: &Sshd,
    br: &TestBridge,
    memory: u64,
    load: &'static str,
    initramfs: &Path,
) -> Row {
    let name = format!("mb{memory}");
    let img = env.image(&format!("{name}.img"), 8);
    let cfg = env.config(
        &name,
        initramfs,
        &format!(
            "disk = [ 'file:{},xvda,w' ]\nvif = [ 'type=vif,bridge={}' ]",
            img.display(),
            br.name
        ),
    );
    env.ok(&["create", cfg.to_str().unwrap(), &format!("memory={memory}")]);
    env.wait_console(&name, "GUEST-READY", T);
    let out = env.ok(&[
        "migrate",
        "--json",
        "--ssh",
        &sshd.command(),
        &name,
        "127.0.0.1",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    env.ok(&["destroy", &name]);
    let _ = std::fs::remove_file(env.console_path(&name));
    let sent = &v["sent"];
    Row {
        memory_mib: memory,
        load,
        devices: "pvio",
        total_ms: sent["total_ms"].as_u64().unwrap_or(0),
        downtime_ms: sent["downtime_ms"].as_u64().unwrap_or(0),
        mib_sent: sent["transferred"].as_u64().unwrap_or(0) as f64 / f64::from(1 << 20),
        pages: sent["pages"].as_u64().unwrap_or(0),
    }
}

/// A tap on `br`, removed on drop.
struct Tap(String);

impl Tap {
    fn new(name: &str, br: &TestBridge) -> Tap {
        let _ = Command::new("ip").args(["link", "del", name]).output();
        for args in [
            vec!["tuntap", "add", name, "mode", "tap"],
            vec!["link", "set", name, "master", &br.name, "up"],
        ] {
            assert!(Command::new("ip").args(&args).status().unwrap().success());
        }
        Tap(name.to_owned())
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.0]).output();
    }
}

/// QEMU with its own virtio-blk and virtio-net, for the same guest.
fn qemu(
    env: &Env,
    memory: u64,
    initramfs: &Path,
    img: &Path,
    tap: &str,
    qmp: &Path,
    incoming: Option<&Path>,
) -> Child {
    let kernel = pvio_tests::GuestKernel::get().expect("guest kernel");
    let vmlinux = kernel.vmlinux().unwrap_or(kernel.vmlinuz()).to_owned();
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args([
        "-machine", "pc", "-accel", "tcg", "-smp", "1", "-display", "none",
    ])
    .args(["-nodefaults", "-no-user-config", "-m", &memory.to_string()])
    .arg("-kernel")
    .arg(&vmlinux)
    .arg("-initrd")
    .arg(initramfs)
    .args(["-append", "console=ttyS0 panic=-1 loglevel=4"])
    .arg("-chardev")
    .arg(format!(
        "file,id=s0,path={},append=on",
        env.console_path("peer").display()
    ))
    .args(["-serial", "chardev:s0"])
    .arg("-drive")
    .arg(format!(
        "file={},format=raw,if=none,id=d0,auto-read-only=off",
        img.display()
    ))
    .args(["-device", "virtio-blk-pci,drive=d0"])
    .arg("-netdev")
    .arg(format!(
        "tap,id=n0,ifname={tap},script=no,downscript=no,vhost=off"
    ))
    .args(["-device", "virtio-net-pci,netdev=n0,mac=52:54:00:95:00:02"])
    .arg("-qmp")
    .arg(format!("unix:{},server=on,wait=off", qmp.display()))
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    if let Some(fifo) = incoming {
        cmd.arg("-incoming")
            .arg(format!("exec:cat {}", fifo.display()));
    }
    cmd.spawn().expect("qemu-system-x86_64")
}

fn qemu_row(
    env: &Env,
    sshd: &Sshd,
    br: &TestBridge,
    memory: u64,
    load: &'static str,
    initramfs: &Path,
) -> Row {
    let img = env.image("peer.img", 8);
    let tap_a = Tap::new("pvtmba", br);
    let tap_b = Tap::new("pvtmbb", br);
    let (qmp_a, qmp_b) = (env.path("peer-a.qmp"), env.path("peer-b.qmp"));
    let fifo = env.path("peer.fifo");
    let _ = std::fs::remove_file(&fifo);
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let _ = std::fs::remove_file(env.console_path("peer"));
    let mut a = qemu(env, memory, initramfs, &img, &tap_a.0, &qmp_a, None);
    env.wait_console("peer", "GUEST-READY", T);
    let mut b = qemu(env, memory, initramfs, &img, &tap_b.0, &qmp_b, Some(&fifo));
    let mut q = Qmp::connect(&qmp_a);
    let _ = Qmp::connect(&qmp_b);
    let uri = format!(
        "exec:{} 127.0.0.1 'cat > {}'",
        sshd.command(),
        fifo.display()
    );
    q.call("migrate", serde_json::json!({ "uri": uri }));
    let start = Instant::now();
    let info = loop {
        let info = q.call("query-migrate", serde_json::Value::Null);
        match info["status"].as_str() {
            Some("completed") => break info,
            Some("failed") | Some("cancelled") => panic!("peer migration failed: {info}"),
            _ => {}
        }
        assert!(start.elapsed() < T, "peer migration did not end: {info}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = a.kill();
    let _ = b.kill();
    let _ = a.wait();
    let _ = b.wait();
    Row {
        memory_mib: memory,
        load,
        devices: "QEMU virtio",
        total_ms: info["total-time"].as_u64().unwrap_or(0),
        downtime_ms: info["downtime"].as_u64().unwrap_or(0),
        mib_sent: info["ram"]["transferred"].as_u64().unwrap_or(0) as f64 / f64::from(1 << 20),
        pages: info["ram"]["normal"].as_u64().unwrap_or(0),
    }
}

/// A minimal QMP client for the peer rows.
struct Qmp {
    reader: std::io::BufReader<std::os::unix::net::UnixStream>,
    writer: std::os::unix::net::UnixStream,
}

impl Qmp {
    fn connect(path: &Path) -> Qmp {
        let start = Instant::now();
        let s = loop {
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) => {
                    assert!(start.elapsed() < T, "QMP {}: {e}", path.display());
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        };
        let mut q = Qmp {
            reader: std::io::BufReader::new(s.try_clone().unwrap()),
            writer: s,
        };
        q.line();
        q.call("qmp_capabilities", serde_json::Value::Null);
        q
    }

    fn line(&mut self) -> serde_json::Value {
        use std::io::BufRead;
        let mut l = String::new();
        self.reader.read_line(&mut l).unwrap();
        serde_json::from_str(&l).unwrap_or(serde_json::Value::Null)
    }

    fn call(&mut self, cmd: &str, args: serde_json::Value) -> serde_json::Value {
        use std::io::Write;
        let mut m = serde_json::json!({ "execute": cmd });
        if !args.is_null() {
            m["arguments"] = args;
        }
        writeln!(self.writer, "{m}").unwrap();
        loop {
            let v = self.line();
            if v.get("event").is_some() {
                continue;
            }
            assert!(v.get("error").is_none(), "{cmd}: {v}");
            return v["return"].clone();
        }
    }
}
