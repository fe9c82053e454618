//! `pvio create -c` and `pvio console`: the serial pty of a running domain
//! on the caller's terminal (here a pipe), Ctrl-] to detach; and
//! `pvio vncviewer` naming the VNC address.

mod runtime_support;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use pvio_tests::pvio_bin;
use runtime_support::Env;

/// How long the guest gets to reach the terminal on a busy machine.
const T: Duration = Duration::from_secs(120);

/// Runs `pvio ARGS`, sends Ctrl-] on its stdin once its output shows
/// `marker` (the guest's console has reached the terminal: never after a
/// guessed time), returns whether it succeeded and what it printed.
fn attached(env: &Env, args: &[&str], marker: &str) -> (bool, String, String) {
    let mut child = Command::new(pvio_bin())
        .args(args)
        .env("PVIO_RUN_DIR", &env.run_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = stdout.read(&mut buf) {
            if tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let errors = std::thread::spawn(move || {
        let mut err = String::new();
        let _ = stderr.read_to_string(&mut err);
        err
    });
    let mut out = Vec::new();
    let deadline = Instant::now() + T;
    while !String::from_utf8_lossy(&out).contains(marker) {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(bytes) => out.extend(bytes),
            Err(_) => break,
        }
    }
    stdin.write_all(b"\x1d").unwrap();
    // The rest, up to pvio's exit.
    out.extend(rx.iter().flatten());
    reader.join().unwrap();
    let err = errors.join().unwrap();
    let ok = child.wait().unwrap().success();
    (ok, String::from_utf8_lossy(&out).into_owned(), err)
}

#[test]
fn the_console_shows_the_guest_and_ctrl_bracket_detaches() {
    let env = Env::new();
    let initramfs = env.initramfs("while true; do echo CONSOLE-TICK; sleep 0.3; done\n");
    let cfg = env.config("con1", &initramfs, "serial = 'pty'\nvnc = 1");
    let cfg = cfg.to_str().unwrap();

    let (ok, out, err) = attached(&env, &["create", "-c", cfg], "CONSOLE-TICK");
    assert!(ok, "{err}");
    assert!(out.contains("con1 (id 1) is running"), "{out}");
    assert!(out.contains("CONSOLE-TICK"), "{out}");
    assert!(
        err.contains("Ctrl-] detaches") && err.contains("Detached from con1"),
        "{err}"
    );

    // Detaching left the domain running; attach again.
    assert!(env.ok(&["list"]).contains("running"));
    let (ok, out, err) = attached(&env, &["console", "con1"], "CONSOLE-TICK");
    assert!(ok, "{err}");
    assert!(out.contains("CONSOLE-TICK"), "{out}");

    let addr = env.ok(&["vncviewer", "con1"]);
    assert!(addr.trim().starts_with("127.0.0.1:"), "{addr}");

    env.ok(&["destroy", "con1"]);
    let err = env.fails(&["console", "con1"]);
    assert!(err.contains("no domain named 'con1'"), "{err}");
}
