//! Bad input to the runtime commands: each is one clear error, and none
//! leaves anything in the run dir. (A duplicate name and a vdev in use
//! need a running domain: `runtime_lifecycle.rs` and `runtime_domain.rs`.)

mod runtime_support;

use runtime_support::Env;

#[test]
fn an_unknown_domain_is_a_clear_error() {
    let env = Env::new();
    // cd-insert checks its ISO before it asks the domain: give it one.
    let iso = env.image("x.iso", 1);
    let iso = iso.to_str().unwrap();
    // Every command that names a domain.
    for args in [
        &["shutdown", "nosuch"][..],
        &["shutdown", "-w", "nosuch"],
        &["reboot", "nosuch"],
        &["destroy", "nosuch"],
        &["pause", "nosuch"],
        &["unpause", "nosuch"],
        &["console", "nosuch"],
        &["vncviewer", "nosuch"],
        &["block-list", "nosuch"],
        &["block-attach", "nosuch", "file:/tmp/x.img,xvdb,w"],
        &["block-detach", "nosuch", "xvdb"],
        &["cd-insert", "nosuch", "hdc", iso],
        &["cd-eject", "nosuch", "hdc"],
        &["network-list", "nosuch"],
        &["network-attach", "nosuch", "bridge=xenbr0", "model=e1000"],
        &["network-detach", "nosuch", "1"],
        &["network-detach", "nosuch", "00:16:3e:00:00:01"],
    ] {
        let err = env.fails(args);
        assert_eq!(
            err.trim(),
            "pvio: no domain named 'nosuch' is running; `pvio list` shows the running ones",
            "{args:?}"
        );
    }
    assert_eq!(env.ok(&["list"]).lines().count(), 1, "only the header");
    assert_eq!(env.ok(&["list", "--json"]).trim(), "[]");
}

#[test]
fn a_missing_image_names_the_file_and_the_line() {
    let env = Env::new();
    let initramfs = env.path("no-initramfs.cpio");
    std::fs::write(&initramfs, b"").unwrap();
    let cfg = env.config(
        "bad1",
        &initramfs,
        "disk = [ 'file:/nonexistent/pvio-missing.img,xvda,w' ]",
    );
    let err = env.fails(&["create", cfg.to_str().unwrap()]);
    assert!(
        err.contains("/nonexistent/pvio-missing.img does not exist"),
        "{err}"
    );
    assert!(err.contains("bad1.cfg:8"), "the config line: {err}");
    assert!(!env.run_dir.join("bad1").exists());
}

#[test]
fn three_errors_are_reported_at_once_with_their_lines() {
    let env = Env::new();
    let cfg = env.path("three.cfg");
    std::fs::write(
        &cfg,
        "name = \"three\"\nmemory = \"lots\"\nvcpus = 1\nserial = 'stdio'\n\nvif = [ 'model=rtl9999' ]\n",
    )
    .unwrap();
    let err = env.fails(&["create", cfg.to_str().unwrap()]);
    assert!(err.contains("3 errors"), "{err}");
    for line in ["three.cfg:2", "three.cfg:4", "three.cfg:6"] {
        assert!(err.contains(line), "{line} missing in: {err}");
    }
    assert!(!env.run_dir.join("three").exists());
}

#[test]
fn a_bad_disk_spec_is_refused_before_any_domain_is_asked() {
    let env = Env::new();
    let err = env.fails(&["block-attach", "nosuch", "file:/tmp/x.img,zzz9,w"]);
    assert!(err.contains("'file:/tmp/x.img,zzz9,w'"), "{err}");
}

#[test]
fn qemu_refusing_to_start_is_reported_with_its_words() {
    let env = Env::new();
    let initramfs = env.path("no-initramfs.cpio");
    std::fs::write(&initramfs, b"").unwrap();
    let disk = env.image("d.img", 1);
    let cfg = env.config(
        "bad2",
        &initramfs,
        &format!(
            "disk = [ 'file:{},xvda,w' ]\ndevice_model_args = [ '-no-such-option' ]",
            disk.display()
        ),
    );
    let err = env.fails(&["create", cfg.to_str().unwrap()]);
    assert!(
        err.contains("domain 'bad2' did not start: QEMU exited at once"),
        "{err}"
    );
    assert!(err.contains("-no-such-option"), "{err}");
    assert!(env.sockets("bad2").is_empty(), "{:?}", env.sockets("bad2"));
    assert_eq!(env.record("bad2").ended.unwrap().cause, "start-failed");
    assert!(!env.ok(&["list"]).contains("bad2"));
}
