//! `pvio create -c` and `pvio console`: the serial pty of a running domain
//! on the caller's terminal (here a pipe), Ctrl-] to detach; and
//! `pvio vncviewer` naming the VNC address.

mod runtime_support;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use pvio_tests::pvio_bin;
use runtime_support::Env;

/// Runs `pvio ARGS`, sends Ctrl-] on its stdin after `after`, returns
/// what it printed.
fn attached(env: &Env, args: &[&str], after: Duration) -> (bool, String, String) {
    let mut child = Command::new(pvio_bin())
        .args(args)
        .env("PVIO_RUN_DIR", &env.run_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    std::thread::sleep(after);
    stdin.write_all(b"\x1d").unwrap();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let ok = child.wait().unwrap().success();
    (ok, out, err)
}

#[test]
fn the_console_shows_the_guest_and_ctrl_bracket_detaches() {
    let env = Env::new();
    let initramfs = env.initramfs("while true; do echo CONSOLE-TICK; sleep 0.3; done\n");
    let cfg = env.config("con1", &initramfs, "serial = 'pty'\nvnc = 1");
    let cfg = cfg.to_str().unwrap();

    let (ok, out, err) = attached(&env, &["create", "-c", cfg], Duration::from_secs(8));
    assert!(ok, "{err}");
    assert!(out.contains("con1 (id 1) is running"), "{out}");
    assert!(out.contains("CONSOLE-TICK"), "{out}");
    assert!(
        err.contains("Ctrl-] detaches") && err.contains("Detached from con1"),
        "{err}"
    );

    // Detaching left the domain running; attach again.
    assert!(env.ok(&["list"]).contains("running"));
    let (ok, out, err) = attached(&env, &["console", "con1"], Duration::from_secs(2));
    assert!(ok, "{err}");
    assert!(out.contains("CONSOLE-TICK"), "{out}");

    let addr = env.ok(&["vncviewer", "con1"]);
    assert!(addr.trim().starts_with("127.0.0.1:"), "{addr}");

    env.ok(&["destroy", "con1"]);
    let err = env.fails(&["console", "con1"]);
    assert!(err.contains("no domain named 'con1'"), "{err}");
}
