//! What the `pvio` commands show of a running domain: the supervisor
//! survives the terminal that ran `pvio create` being hung up; the dry
//! run's command line is the one QEMU runs; `list --json` and
//! `create --json` in full; an emulated NIC hot-plugged and unplugged by
//! its devid; the disks `block-attach` refuses.

mod runtime_support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pvio_hvm_runtime::domain::DomainState;
use pvio_tests::pvio_bin;
use runtime_support::{alive, link_exists, Env, TestBridge};

const T: Duration = Duration::from_secs(120);
const UUID: &str = "5c1e0000-0000-4000-8000-00000000c0de";

/// Fields of `/proc/PID/stat` after the command name: (state, session,
/// controlling tty).
fn stat(pid: u64) -> (String, u64, u64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest: Vec<&str> = s[s.rfind(')').unwrap() + 2..].split(' ').collect();
    // state ppid pgrp session tty_nr ...
    (
        rest[0].to_owned(),
        rest[3].parse().unwrap(),
        rest[4].parse().unwrap(),
    )
}

/// What a process is doing with signals and where it waits, for a
/// failure message: its state, masks and kernel wait channel, and who
/// still holds a terminal.
fn signal_state(pid: u64) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let wanted = [
        "Name", "State", "PPid", "SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt",
    ];
    let mut out: Vec<String> = status
        .lines()
        .filter(|l| wanted.iter().any(|w| l.starts_with(&format!("{w}:"))))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
    out.push(format!("wchan: {wchan}"));
    let kids =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    out.push(format!("children: {}", kids.trim()));
    out.join("; ")
}

fn children(pid: u32) -> Vec<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

#[test]
fn the_domain_survives_its_terminal_and_runs_the_dry_run_command_line() {
    let env = Env::new();
    let br = TestBridge::new("c");
    let disk = env.image("pv.img", 4);
    let initramfs = env.initramfs("echo GUEST-READY\nsleep 600\n");
    let cfg = env.config(
        "tty1",
        &initramfs,
        &format!(
            "uuid = '{UUID}'\ndisk = [ 'file:{},xvda,w', ',hdc:cdrom,r' ]\n\
             vif = [ 'model=e1000,bridge={},mac=00:16:3e:c0:de:01' ]",
            disk.display(),
            br.name
        ),
    );
    let cfg = cfg.to_str().unwrap();

    // `pvio create` in a terminal of its own (a pty that `script` holds),
    // then the terminal goes away: SIGHUP to its session.
    // The terminal's hang-up must be able to end the shell: a test run
    // under `nohup` (or any parent that ignores SIGHUP) would hand the
    // shell an ignored SIGHUP, which no shell may reset, so `env` gives
    // `script` and what it runs the default action back.
    let mut term = Command::new("env")
        .args([
            "--default-signal=HUP",
            "script",
            "-qec",
            &format!("{} create {cfg} && sleep 600", pvio_bin().display()),
            "/dev/null",
        ])
        .env("PVIO_RUN_DIR", &env.run_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("script (util-linux) must be installed");
    let rec = env.wait_record("tty1", "running", T, |r| r.state == DomainState::Running);
    let (sup, qemu) = (
        u64::from(rec.supervisor_pid.unwrap()),
        u64::from(rec.qemu_pid.unwrap()),
    );
    let shells = children(term.id());
    assert_eq!(shells.len(), 1, "the shell `script` runs: {shells:?}");
    let shell = shells[0];
    let (_, shell_session, shell_tty) = stat(shell);
    assert_ne!(shell_tty, 0, "the shell has the pty as its terminal");
    let (_, sup_session, sup_tty) = stat(sup);
    assert_ne!(
        sup_session, shell_session,
        "the supervisor has its own session"
    );
    assert_eq!(sup_tty, 0, "the supervisor has no controlling terminal");
    term.kill().unwrap();
    term.wait().unwrap();
    let start = Instant::now();
    while alive(shell) {
        assert!(
            start.elapsed() < T,
            "the hung-up shell lives on: {}",
            signal_state(shell)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(1));
    assert!(alive(sup), "the supervisor died with the terminal");
    assert!(alive(qemu), "QEMU died with the terminal");
    let list = env.ok(&["list"]);
    assert!(
        list.lines()
            .any(|l| l.starts_with("tty1") && l.contains("running")),
        "{list}"
    );
    env.wait_console("tty1", "GUEST-READY", T);

    // The dry run's command line is QEMU's, argument for argument.
    let dry: serde_json::Value =
        serde_json::from_str(&env.ok(&["create", "--dry-run", "--json", cfg])).unwrap();
    // The device model's identity is fixed when the domain starts (from its
    // id); the dry run names it DM_UID:DM_GID.
    let id = env.record("tty1").identity.id;
    let dm = 1_900_000_000 + 2 * id;
    let mut planned = vec![dry["plan"]["qemu"]["binary"].as_str().unwrap().to_owned()];
    planned.extend(
        dry["plan"]["qemu"]["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                a.as_str()
                    .unwrap()
                    .replace("DM_UID:DM_GID", &format!("{dm}:{dm}"))
            }),
    );
    let cmdline = std::fs::read(format!("/proc/{qemu}/cmdline")).unwrap();
    let running: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    assert_eq!(running, planned);
    let text = env.ok(&["create", "--dry-run", cfg]);
    assert!(text.contains("-qmp unix:"), "{text}");
    assert!(
        text.contains("/tty1/qmp-events.sock,server=on,wait=off"),
        "{text}"
    );
    assert!(
        text.contains("-action reboot=reset,shutdown=pause,panic=pause"),
        "{text}"
    );
    assert!(text.contains("    -S"), "{text}");

    // `list --json`: every field of the running domain.
    let list: serde_json::Value = serde_json::from_str(&env.ok(&["list", "--json"])).unwrap();
    let rows = list.as_array().unwrap();
    assert_eq!(rows.len(), 1);
    let row = rows[0].as_object().unwrap();
    let mut keys: Vec<&str> = row.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "accelerator",
            "adopted",
            "backend_restarts",
            "backends_down",
            "id",
            "memory",
            "name",
            "origin",
            "state",
            "uptime",
            "uuid",
            "vcpus"
        ]
    );
    let rec = env.record("tty1");
    assert_eq!(row["name"], "tty1");
    assert_eq!(row["id"], u64::from(rec.identity.id));
    assert_eq!(row["uuid"], UUID);
    assert_eq!(row["memory"], 256);
    assert_eq!(row["vcpus"], 1);
    assert_eq!(row["state"], "running");
    let uptime = row["uptime"].as_u64().unwrap();
    assert!(uptime <= start.elapsed().as_secs() + 130, "{uptime}");
    assert_eq!(row["accelerator"], rec.identity.accel.qemu_arg());
    assert!(["kvm", "tcg"].contains(&rec.identity.accel.qemu_arg()));

    env.ok(&["destroy", "tty1"]);
    assert!(!alive(sup) && !alive(qemu));
}

const NIC_SCRIPT: &str = r#"
echo WAIT-NIC
wait_for /sys/class/net/eth0
echo "NIC eth0 mac=$(cat /sys/class/net/eth0/address) driver=$(basename $(readlink /sys/class/net/eth0/device/driver))"
wait_gone /sys/class/net/eth0
echo NIC-GONE
sleep 600
"#;

#[test]
fn an_emulated_nic_hot_plugged_and_unplugged_by_devid() {
    let env = Env::new();
    let br = TestBridge::new("e");
    let initramfs = env.initramfs_with(&pvio_tests::strict(NIC_SCRIPT), &["e1000"]);
    let cfg = env.config("hp1", &initramfs, "disk = [ ',hdc:cdrom,r' ]");

    // `create --json`: the domain record of the running domain.
    let out = env.ok(&["create", "--json", cfg.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let rec = env.record("hp1");
    assert_eq!(v["name"], "hp1");
    assert_eq!(v["id"], u64::from(rec.identity.id));
    assert_eq!(v["state"], "running");
    assert_eq!(v["memory_mib"], 256);
    assert_eq!(v["vcpus"], 1);
    assert_eq!(v["accel"], rec.identity.accel.qemu_arg());
    assert_eq!(v["uuid"], rec.identity.uuid.as_str());
    assert_eq!(v["qemu_pid"], u64::from(rec.qemu_pid.unwrap()));
    assert_eq!(v["supervisor_pid"], u64::from(rec.supervisor_pid.unwrap()));
    assert_eq!(v["disks"][0]["vdev"], "hdc");
    assert!(v["ended"].is_null());

    // An emulated e1000 on the test bridge, hot-plugged.
    env.wait_console("hp1", "WAIT-NIC", T);
    let bridge = format!("bridge={}", br.name);
    let out = env.ok(&[
        "network-attach",
        "hp1",
        "model=e1000",
        &bridge,
        "mac=00:16:3e:e1:00:00",
        "devid=3",
    ]);
    assert!(
        out.contains("NIC 3 attached (e1000 00:16:3e:e1:00:00"),
        "{out}"
    );
    let tap = env.record("hp1").nics[0].tap.clone();
    assert!(link_exists(&tap), "tap {tap}");
    let line = env.wait_console("hp1", "NIC eth0", T);
    assert!(
        line.contains("mac=00:16:3e:e1:00:00 driver=e1000"),
        "{line}"
    );
    let listed = env.ok(&["network-list", "hp1"]);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("3 ") && l.contains("e1000")),
        "{listed}"
    );
    // Unplugged by its devid.
    let out = env.ok(&["network-detach", "hp1", "3"]);
    assert!(out.contains("NIC 3 detached"), "{out}");
    env.wait_console("hp1", "NIC-GONE", T);
    assert!(!link_exists(&tap), "tap {tap} left after network-detach");
    assert!(env.record("hp1").nics.is_empty());
    let err = env.fails(&["network-detach", "hp1", "3"]);
    assert!(err.contains("domain 'hp1'"), "{err}");

    // Emulated disks and CD-ROMs cannot be hot-plugged.
    let img = env.image("x.img", 1);
    for (spec, why) in [
        (
            format!("file:{},hdb,w", img.display()),
            "only PV disks (xvd*, vd*) can be hot-plugged",
        ),
        (
            format!("file:{},sdb,w", img.display()),
            "only PV disks (xvd*, vd*) can be hot-plugged",
        ),
        (
            format!("file:{},hdd:cdrom,r", img.display()),
            "CD-ROM drives are emulated IDE drives fixed at start",
        ),
    ] {
        let err = env.fails(&["block-attach", "hp1", &spec]);
        assert!(err.contains(why), "{spec}: {err}");
    }
    assert_eq!(env.record("hp1").disks.len(), 1);

    env.ok(&["destroy", "hp1"]);
}
