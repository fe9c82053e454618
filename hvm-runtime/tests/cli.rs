//! The `pvio` command's own behaviour: version, usage errors and failures
//! are what a user and a script expect (one line on stderr, non-zero exit).

use std::process::{Command, Output};

fn pvio(args: &[&str]) -> Output {
    let run = tempfile::tempdir().expect("temp run dir");
    Command::new(env!("CARGO_BIN_EXE_pvio"))
        .args(args)
        .env("PVIO_RUN_DIR", run.path())
        .output()
        .expect("run pvio")
}

fn one_error_line(out: &Output) -> String {
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("pvio: "), "{err}");
    err
}

#[test]
fn version_prints_the_package_version() {
    let out = pvio(&["--version"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.trim(), format!("pvio {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn a_failing_command_is_one_line_and_exit_1() {
    let out = pvio(&["network-list", "nosuchdomain"]);
    let err = one_error_line(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("nosuchdomain"), "{err}");
}

#[test]
fn usage_errors_are_one_line_with_the_usage_and_exit_2() {
    let out = pvio(&["frobnicate"]);
    let err = one_error_line(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        err.contains("unrecognized subcommand 'frobnicate'"),
        "{err}"
    );
    assert!(err.contains("usage: pvio"), "{err}");

    let out = pvio(&["creat", "x.cfg"]);
    let err = one_error_line(&out);
    assert!(err.contains("'create'"), "the tip is kept: {err}");

    let out = pvio(&["create"]);
    let err = one_error_line(&out);
    assert!(err.contains("<FILE>"), "{err}");
    assert!(err.contains("usage: pvio create"), "{err}");
}

#[test]
fn help_goes_to_stdout_and_exits_0() {
    let out = pvio(&["--help"]);
    assert!(out.status.success());
    assert!(out.stderr.is_empty());
    assert!(String::from_utf8_lossy(&out.stdout).contains("host-check"));
}
