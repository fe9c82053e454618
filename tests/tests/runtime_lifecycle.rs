//! A domain's life through the `pvio` commands: a duplicate name refused,
//! pause and unpause, a reboot done in place, `destroy` leaving no
//! process, socket or tap; then a supervisor killed with SIGKILL together
//! with its QEMU, whose domain the next `pvio list` recognises as dead and
//! cleans up (a supervisor killed alone is adopted: runtime_survival.rs).

mod runtime_support;

use std::time::{Duration, Instant};

use pvio_hvm_runtime::domain::control::Request;
use pvio_hvm_runtime::domain::lock::FileLock;
use pvio_hvm_runtime::domain::DomainState;
use pvio_hvm_runtime::domain::{lifecycle, RunRoot};
use runtime_support::{alive, link_exists, Env, TestBridge};

const T: Duration = Duration::from_secs(120);

fn count_lines(env: &Env, name: &str, pattern: &str) -> usize {
    std::fs::read_to_string(env.console_path(name))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(pattern))
        .count()
}

#[test]
fn pause_reboot_destroy_and_a_killed_supervisor() {
    let env = Env::new();
    let br = TestBridge::new("l");
    let disk = env.image("disk.img", 8);
    let initramfs = env.initramfs("echo GUEST-READY\nsleep 600\n");
    let extra = format!(
        "disk = [ 'file:{},xvda,w' ]\nvif = [ 'model=e1000,bridge={}' ]\ncpus = \"0\"",
        disk.display(),
        br.name
    );
    let cfg = env.config("lc1", &initramfs, &extra);
    let cfg = cfg.to_str().unwrap();

    env.ok(&["create", cfg]);
    let err = env.fails(&["create", cfg]);
    assert!(
        err.contains("a domain named 'lc1' already exists (id 1)"),
        "{err}"
    );
    env.wait_console("lc1", "GUEST-READY", T);
    let rec = env.record("lc1");
    let (qemu, sup) = (
        u64::from(rec.qemu_pid.unwrap()),
        u64::from(rec.supervisor_pid.unwrap()),
    );
    let tap = rec.nics[0].tap.clone();
    assert!(link_exists(&tap));
    // cpus = "0": the vCPU thread (and only it) is bound to host CPU 0.
    let pinned = std::fs::read_dir(format!("/proc/{qemu}/task"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|t| {
            std::fs::read_to_string(t.path().join("status"))
                .unwrap_or_default()
                .lines()
                .any(|l| l == "Cpus_allowed_list:\t0")
        })
        .count();
    assert_eq!(pinned, 1, "threads of QEMU pinned to CPU 0");

    env.ok(&["pause", "lc1"]);
    assert_eq!(env.record("lc1").state, DomainState::Paused);
    assert!(env.ok(&["list"]).contains("paused"));
    let err = env.fails(&["pause", "lc1"]);
    assert!(err.contains("not running"), "{err}");
    let spare = env.image("spare.img", 1);
    let err = env.fails(&[
        "block-attach",
        "lc1",
        &format!("file:{},xvdb,w", spare.display()),
    ]);
    assert!(err.contains("hot-plug needs a running guest"), "{err}");
    env.ok(&["unpause", "lc1"]);
    assert_eq!(env.record("lc1").state, DomainState::Running);

    // on_reboot defaults to restart: QEMU resets the guest in place.
    env.ok(&["reboot", "lc1"]);
    let start = Instant::now();
    while count_lines(&env, "lc1", "GUEST-READY") < 2 {
        assert!(
            start.elapsed() < T,
            "the guest did not boot again:\n{}",
            env.log("lc1")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(env.record("lc1").reboots >= 1);
    assert_eq!(
        env.record("lc1").qemu_pid,
        Some(u32::try_from(qemu).unwrap())
    );

    // The runtime half of `pvio assign`: the supervisor itself refuses a
    // host device the ownership record does not give to the domain, in
    // one line; nothing is recorded.
    let root = RunRoot::new(&env.run_dir);
    let err = lifecycle::request(
        &root,
        "lc1",
        &Request::PciAttach {
            host: "0000:ff:1f.7".parse().unwrap(),
            id: "pt-0000-ff-1f.7".to_owned(),
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("0000:ff:1f.7 is not assigned to this domain"),
        "{err}"
    );
    assert!(env.record("lc1").pci.is_empty());
    let err = lifecycle::request(
        &root,
        "lc1",
        &Request::PciDetach {
            id: "pt-x".to_owned(),
        },
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("no passed-through PCI device pt-x"),
        "{err}"
    );

    let out = env.ok(&["destroy", "lc1"]);
    assert!(out.contains("lc1 destroyed"), "{out}");
    assert!(!alive(qemu), "QEMU left running");
    assert!(!alive(sup), "supervisor left running");
    assert!(env.sockets("lc1").is_empty(), "{:?}", env.sockets("lc1"));
    assert!(!link_exists(&tap), "tap {tap} left behind");
    assert_eq!(env.record("lc1").ended.unwrap().cause, "destroy");
    let err = env.fails(&["destroy", "lc1"]);
    assert!(err.contains("no domain named 'lc1' is running"), "{err}");

    // A supervisor killed with SIGKILL, and its QEMU too: the next `pvio
    // list` sees the domain dead and cleans what is left (backends, taps,
    // sockets).
    let serial = format!("serial='file:{}'", env.console_path("lc2").display());
    env.ok(&["create", cfg, "name='lc2'", &serial]);
    env.wait_console("lc2", "GUEST-READY", T);
    let rec = env.record("lc2");
    let (qemu, sup) = (rec.qemu_pid.unwrap(), rec.supervisor_pid.unwrap());
    let tap = rec.nics[0].tap.clone();
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &sup.to_string(), &qemu.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    // Its lock is free once the last of its threads has gone (the main
    // thread can be a zombie a moment before the others).
    let lock = env.run_dir.join("lc2/lock");
    assert!(
        FileLock::wait_free(&lock, T).unwrap(),
        "the killed supervisor's lock stays held"
    );
    assert!(!alive(u64::from(sup)));
    let out = env.pvio(&["list"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success());
    assert!(
        stderr.contains("domain 'lc2'") && stderr.contains("supervisor"),
        "{stderr}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("lc2"));
    assert!(
        !alive(u64::from(qemu)),
        "QEMU of the killed supervisor still runs"
    );
    assert!(env.sockets("lc2").is_empty(), "{:?}", env.sockets("lc2"));
    assert!(!link_exists(&tap), "tap {tap} left behind");
    assert_eq!(env.record("lc2").ended.unwrap().cause, "supervisor-died");
}
