//! Isolation, tried as an attacker would on this host: a real domain with
//! a PV disk and a PV NIC created under `umask 000` by a caller with extra
//! descriptors open. Every path of its run dir has the documented mode;
//! each backend is its own process with a non-zero uid, no capabilities,
//! `no_new_privs` and a seccomp filter; QEMU runs under its own uid with
//! its filter; nothing the caller had open reached them; an unprivileged
//! user cannot reach the control, QMP, monitor or backend sockets, and a
//! sandboxed uid in the operators' group is refused by the control socket
//! itself; an image is never served to two writers.

// The forked child below speaks to the kernel in its own types.
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]

mod runtime_support;

use std::ffi::CString;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use runtime_support::Env;

const T: Duration = Duration::from_secs(120);

const SCRIPT: &str = r#"
echo GUEST-UP
printf 'SECURE-DATA' | dd of=/dev/vda bs=512 conv=sync,fsync 2>/dev/null
echo DISK-WRITTEN
sleep 600
"#;

/// What a forked child running as `uid:gid` (with `groups`) got from
/// connecting to `path` and sending `request`: the reply, or the errno.
fn as_user(uid: u32, gid: u32, groups: &[u32], path: &Path, request: &[u8]) -> Result<String, i32> {
    let cpath = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: sockaddr_un is plain data; all zeroes is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, s) in addr.sun_path.iter_mut().zip(cpath.as_bytes()) {
        *d = *s as libc::c_char;
    }
    let mut pipe = [0i32; 2];
    // SAFETY: a pipe of two out-descriptors.
    assert_eq!(unsafe { libc::pipe(pipe.as_mut_ptr()) }, 0);
    let groups: Vec<libc::gid_t> = groups.to_vec();
    // SAFETY: the child calls only async-signal-safe system calls on
    // memory prepared before the fork, then _exit.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: as above; the child never returns.
        unsafe {
            libc::close(pipe[0]);
            if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                || libc::setresgid(gid, gid, gid) != 0
                || libc::setresuid(uid, uid, uid) != 0
            {
                libc::_exit(100);
            }
            let s = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
            let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
            if libc::connect(s, std::ptr::addr_of!(addr).cast(), len) != 0 {
                libc::_exit(*libc::__errno_location());
            }
            libc::write(s, request.as_ptr().cast(), request.len());
            let mut buf = [0u8; 4096];
            let n = libc::read(s, buf.as_mut_ptr().cast(), buf.len());
            if n > 0 {
                libc::write(pipe[1], buf.as_ptr().cast(), n as usize);
            }
            libc::_exit(0);
        }
    }
    // SAFETY: closing our copy of the write end.
    unsafe { libc::close(pipe[1]) };
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    let mut out = Vec::new();
    // SAFETY: pipe[0] is our open read end, owned from here on.
    let mut f = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(pipe[0]) };
    std::io::Read::read_to_end(&mut f, &mut out).unwrap();
    let code = libc::WEXITSTATUS(status);
    assert_ne!(code, 100, "the child could not change its ids");
    if code == 0 {
        Ok(String::from_utf8_lossy(&out).into_owned())
    } else {
        Err(code)
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn gid(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().gid()
}

/// The `Key:` line of /proc/PID/status, its value trimmed.
fn status_field(pid: u32, key: &str) -> String {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
        .trim()
        .to_owned()
}

/// The pids whose command line contains every one of `words`.
fn pids_with(words: &[&str]) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().filter_map(Result::ok) {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmd
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if words.iter().all(|w| args.iter().any(|a| a == w)) {
            out.push(pid);
        }
    }
    out
}

/// Where each descriptor of `pid` points.
fn fd_targets(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|p| p.to_string_lossy().into_owned())
        .collect()
}

fn operators_gid() -> u32 {
    let text = std::fs::read_to_string("/etc/group").unwrap();
    text.lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&"pvio")).then(|| f[2].parse().unwrap())
        })
        .expect("group 'pvio' (scripts/setup.sh makes it)")
}

#[test]
fn a_domain_is_closed_to_others_and_each_process_is_sandboxed() {
    let env = Env::new();
    let br = runtime_support::TestBridge::new("s");
    let pv = env.image("pv.img", 16);
    let spare = env.image("spare.img", 8);
    let ide = env.image("ide.img", 8);
    let initramfs = env.initramfs(&pvio_tests::strict(SCRIPT));
    let cfg = env.config(
        "sec",
        &initramfs,
        &format!(
            "disk = [ 'file:{},xvda,w', 'file:{},hda,w' ]\nvif = [ 'type=vif,bridge={}' ]\nmonitor = 1\non_poweroff = 'destroy'",
            pv.display(),
            ide.display(),
            br.name
        ),
    );
    // A careless caller: umask 000, a file and a pipe left open.
    let secret = env.path("caller-secret.txt");
    std::fs::write(&secret, "the caller's own file\n").unwrap();
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "umask 000; exec 7<'{}'; exec 8< <(sleep 30); exec '{}' create '{}'",
            secret.display(),
            pvio_tests::pvio_bin().display(),
            cfg.display()
        ))
        .env("PVIO_RUN_DIR", &env.run_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    env.wait_console("sec", "DISK-WRITTEN", T);

    // Modes, whatever the umask.
    let ops = operators_gid();
    let root = &env.run_dir;
    let dir = root.join("sec");
    let dm = root.join(".dm").join("sec");
    assert_eq!(mode(root), 0o751);
    assert_eq!(gid(root), ops);
    assert_eq!(mode(&dir), 0o750);
    assert_eq!(gid(&dir), ops);
    assert_eq!(mode(&dir.join("control.sock")), 0o660);
    assert_eq!(gid(&dir.join("control.sock")), ops);
    assert_eq!(mode(&dir.join("monitor.sock")), 0o660);
    assert_eq!(mode(&dir.join("domain.json")), 0o640);
    assert_eq!(mode(&dir.join("launch.json")), 0o600);
    assert_eq!(mode(&dir.join("supervisor.log")), 0o640);
    assert_eq!(
        mode(&dir.join("qmp.sock")) & 0o077,
        0,
        "QMP is root's alone"
    );
    assert_eq!(mode(&root.join(".dm")), 0o711);
    assert_eq!(mode(&dm), 0o750);
    for s in ["blk-xvda.sock", "net-0.sock"] {
        assert_eq!(mode(&dm.join(s)), 0o660, "{s}");
    }

    // Each backend its own sandboxed process; QEMU unprivileged.
    let rec = env.record("sec");
    let qemu = rec.qemu_pid.unwrap();
    let supervisor = rec.supervisor_pid.unwrap();
    for kind in ["blk", "net"] {
        let pids = pids_with(&["backend", kind, "--listen-fd"]);
        let pid = *pids
            .iter()
            .find(|p| status_field(**p, "PPid") == supervisor.to_string())
            .unwrap_or_else(|| panic!("no {kind} backend child of the supervisor: {pids:?}"));
        let uid = status_field(pid, "Uid");
        assert!(
            !uid.starts_with("0\t") && !uid.starts_with("0 "),
            "{kind}: Uid {uid}"
        );
        assert_eq!(status_field(pid, "CapEff"), "0000000000000000", "{kind}");
        assert_eq!(status_field(pid, "CapPrm"), "0000000000000000", "{kind}");
        assert_eq!(status_field(pid, "NoNewPrivs"), "1", "{kind}");
        assert_eq!(status_field(pid, "Seccomp"), "2", "{kind}");
        let fds = fd_targets(pid);
        assert!(
            !fds.iter().any(|f| f.contains("caller-secret")),
            "{kind}: {fds:?}"
        );
    }
    let quid = status_field(qemu, "Uid");
    assert!(!quid.starts_with('0'), "QEMU Uid {quid}");
    assert_eq!(status_field(qemu, "Seccomp"), "2");
    assert_eq!(status_field(qemu, "CapEff"), "0000000000000000");
    for pid in [qemu, supervisor] {
        let fds = fd_targets(pid);
        assert!(
            !fds.iter().any(|f| f.contains("caller-secret")),
            "pid {pid} holds the caller's file: {fds:?}"
        );
    }

    // Nobody may reach the domain's sockets; the kernel says no.
    let status = b"{\"op\":\"status\"}\n";
    for s in [
        dir.join("control.sock"),
        dir.join("qmp.sock"),
        dir.join("monitor.sock"),
        dm.join("blk-xvda.sock"),
    ] {
        let r = as_user(65534, 65534, &[], &s, status);
        assert_eq!(r, Err(libc::EACCES), "{}", s.display());
    }
    // An operator (group pvio) may; a sandboxed uid in that group is
    // refused by the supervisor itself.
    let ok = as_user(65534, 65534, &[ops], &dir.join("control.sock"), status).unwrap();
    assert!(ok.contains("\"ok\""), "{ok}");
    let sandboxed = 1_900_000_000 + 99;
    let refused = as_user(
        sandboxed,
        sandboxed,
        &[ops],
        &dir.join("control.sock"),
        status,
    )
    .unwrap();
    assert!(refused.contains("\"forbidden\""), "{refused}");
    // `pvio list` by a user who cannot read the run dir says so.
    let list = Command::new(pvio_tests::pvio_bin())
        .arg("list")
        .env("PVIO_RUN_DIR", &env.run_dir)
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert!(!list.status.success());
    let err = String::from_utf8_lossy(&list.stderr);
    assert!(err.contains("cannot read") && err.contains("pvio"), "{err}");

    // One writer per image, named.
    let e = env.fails(&[
        "block-attach",
        "sec",
        &format!("file:{},xvdc,w", pv.display()),
    ]);
    assert!(e.contains("disk xvda of domain 'sec' (writable)"), "{e}");
    env.ok(&[
        "block-attach",
        "sec",
        &format!("file:{},xvdd,r", spare.display()),
    ]);
    env.ok(&[
        "block-attach",
        "sec",
        &format!("file:{},xvde,r", spare.display()),
    ]);
    let e = env.fails(&[
        "block-attach",
        "sec",
        &format!("file:{},xvdf,w", spare.display()),
    ]);
    assert!(e.contains("in use by disk xvd"), "{e}");
    // An emulated disk's image is locked as well.
    let e = env.fails(&[
        "block-attach",
        "sec",
        &format!("file:{},xvdg,w", ide.display()),
    ]);
    assert!(e.contains("disk hda of domain 'sec' (writable)"), "{e}");
    // A second domain on the same writable image does not start.
    let cfg2 = env.config(
        "sec2",
        &initramfs,
        &format!("disk = [ 'file:{},xvda,w' ]", pv.display()),
    );
    let e = env.fails(&["create", cfg2.to_str().unwrap()]);
    assert!(e.contains("disk xvda of domain 'sec' (writable)"), "{e}");

    env.ok(&["destroy", "sec"]);
    assert!(!dm.exists(), "the device-model dir is removed");
}
