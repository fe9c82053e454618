//! `pvio create` (a real one, not a dry run) that stops before anything
//! starts: the warnings, the no-effect line and the plan's notes come
//! first, then the error, whether a config error, a plan error or a host
//! problem stopped it; every diagnostic of a file in line order.

use std::process::Output;

use pvio_tests::fixture_host::{FixtureHost as Host, WINXP};

/// The stderr lines of `out`, which must have failed.
fn failed_lines(out: &Output) -> Vec<String> {
    assert!(!out.status.success(), "it should have failed");
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn index_of(lines: &[String], what: &str) -> usize {
    lines
        .iter()
        .position(|l| l.contains(what))
        .unwrap_or_else(|| panic!("no {what:?} in:\n{}", lines.join("\n")))
}

#[test]
fn a_host_problem_comes_after_the_warnings_and_the_no_effect_line() {
    // The winxp file: its images and its bridge do not exist here.
    let host = Host::new();
    std::fs::remove_dir_all(host.path().join("root/sys/class/net/xenbr0")).unwrap();
    let lines = failed_lines(&host.pvio(&["create", WINXP, "memroy=1"]));
    let warning = index_of(
        &lines,
        "pvio: warning: command line argument 1: key 'memroy': unknown key, ignored (did you mean 'memory'?)",
    );
    let no_effect = index_of(&lines, "pvio: note: ");
    assert!(lines[no_effect].contains(
        "keys with no effect under pvio (see docs/config.md): kernel=\"hvmloader\" (line 1)"
    ));
    let tcg = index_of(&lines, "pvio: warning: winxp runs under TCG");
    let acpi = index_of(
        &lines,
        "pvio: note: acpi=0: the guest has no ACPI, so it ignores `pvio shutdown`",
    );
    let error = index_of(&lines, "pvio: the host is not ready for this domain:");
    assert!(
        warning < no_effect && no_effect < tcg && tcg < acpi && acpi < error,
        "{lines:#?}"
    );
    // The problems, in line order.
    let vif = index_of(&lines, ":10: key 'vif': bridge");
    let hda = index_of(&lines, ":12: key 'disk': hda: the image");
    let hdc = index_of(&lines, ":13: key 'disk': hdc: the CD-ROM image");
    assert!(error < vif && vif < hda && hda < hdc, "{lines:#?}");
    assert!(!host.path().join("run/winxp").exists());
}

#[test]
fn config_errors_come_after_the_warnings_and_the_no_effect_line() {
    let host = Host::new();
    let cfg = host.cfg(
        "name = 'bad'\nfrobnicate = 1\ndevice_model = 'qemu-dm'\nmemory = '512M'\nstdvga = 1\nvga = 'stdvga'\nvcpus = 0\n",
    );
    let cfg = cfg.to_str().unwrap().to_owned();
    let lines = failed_lines(&host.pvio(&["create", &cfg]));
    assert_eq!(
        lines,
        [
            format!("pvio: warning: {cfg}:2: key 'frobnicate': unknown key, ignored"),
            format!("pvio: warning: {cfg}:5: key 'stdvga': ignored: vga is set and wins (as in xl)"),
            format!("pvio: note: {cfg}: keys with no effect under pvio (see docs/config.md): device_model (line 3)"),
            "pvio: 2 errors in the config".to_owned(),
            format!("  {cfg}:4: key 'memory': expected a number, found string \"512M\""),
            format!("  {cfg}:7: key 'vcpus': expected a number from 1 to 255, found 0"),
        ]
    );
    // The dry run says the same, in the same order.
    let dry = failed_lines(&host.pvio(&["create", "--dry-run", &cfg]));
    assert_eq!(dry, lines);
}

#[test]
fn every_plan_error_is_reported_after_the_warnings() {
    let host = Host::new();
    let cfg = host.cfg(
        "name = 'pl'\nmachine = 'q35'\nvif = [ 'bridge=xenbr0,devid=1234567' ]\nvncconsole = 1\nfda = '/f.img'\n",
    );
    let cfg = cfg.to_str().unwrap().to_owned();
    for dry in [false, true] {
        let args: Vec<&str> = if dry {
            vec!["create", "-n", &cfg]
        } else {
            vec!["create", &cfg]
        };
        let lines = failed_lines(&host.pvio(&args));
        let note = index_of(&lines, "pvio: note: ");
        assert!(lines[note].ends_with("vncconsole (line 4)"), "{lines:#?}");
        let head = index_of(&lines, "pvio: 2 settings cannot be planned:");
        assert!(note < head, "{lines:#?}");
        assert_eq!(
            lines[head + 1..],
            [
                format!(
                    "  {cfg}:3: key 'vif': devid 1234567 makes the tap name too long; set vifname="
                ),
                format!("  {cfg}:5: key 'fda': q35 has no floppy controller; use machine = \"pc\""),
            ],
            "{lines:#?}"
        );
    }
}

#[test]
fn the_dry_run_json_lists_each_plan_error() {
    let host = Host::new();
    let cfg = host.cfg(
        "name = 'pl'\nmachine = 'q35'\nvif = [ 'bridge=xenbr0,devid=1234567' ]\nfda = '/f.img'\n",
    );
    let out = host.pvio(&["create", "-n", "--json", cfg.to_str().unwrap()]);
    assert!(!out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], false);
    let errors: Vec<&str> = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0]
        .ends_with(":3: key 'vif': devid 1234567 makes the tap name too long; set vifname="));
    assert!(
        errors[1].ends_with(":4: key 'fda': q35 has no floppy controller; use machine = \"pc\"")
    );
}
