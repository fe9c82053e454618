//! `pvio create --dry-run`: the winxp config of issue 5 prints an i440fx
//! machine, its disk on the first IDE channel, the ISO as a CD-ROM on
//! hdc, boot from CD, VNC display 0, a serial pty, an rtl8139 on xenbr0,
//! ACPI and APIC off, and one line naming the xend keys with no effect.
//!
//! The host is described by a `PVIO_HOST_ROOT` tree (a bridge `xenbr0`
//! in its `sys/class/net`), the images are temporary files put in with
//! `key=value` overrides, as `xl create FILE key=value` would.

use std::path::Path;

use pvio_tests::fixture_host::{FixtureHost as Host, WINXP};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn winxp_overrides(host: &Host) -> String {
    let img = host.file("winXP128.img");
    let iso = host.file("en_winxp_pro_with_sp2.iso");
    format!(
        "disk=['file:{},hda,w','file:{},hdc:cdrom,r']",
        img.display(),
        iso.display()
    )
}

#[test]
fn winxp_dry_run_shows_the_devices_of_the_issue() {
    let host = Host::new();
    let disk = winxp_overrides(&host);
    let out = host.pvio(&["create", "--dry-run", WINXP, &disk]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    for want in [
        "machine pc (i440fx + PIIX3)",
        "-machine pc,acpi=off",
        "-cpu qemu64,-apic,-pae,-lm",
        "-device ide-hd,drive=hda,bus=ide.0,unit=0,id=hda",
        "hdc   emulated IDE CD-ROM, secondary channel master",
        "-device ide-cd,drive=hdc,bus=ide.1,unit=0,id=hdc",
        "media=cdrom,readonly=on",
        "-boot order=d",
        "-vnc 127.0.0.1:0,to=99",
        "-serial pty",
        "-device rtl8139,netdev=net0",
        "on bridge xenbr0",
        "-m 512",
        "keys with no effect under pvio (see docs/config.md): kernel=\"hvmloader\" (line 1), cpus=\"\" (line 9), device_model (line 18), vncconsole (line 22)",
    ] {
        assert!(stdout.contains(want), "missing {want:?} in:\n{stdout}");
    }
    assert_eq!(stdout.matches("keys with no effect").count(), 1, "{stdout}");
    assert!(!stdout.contains("the host is not ready"), "{stdout}");
}

#[test]
fn winxp_dry_run_as_json() {
    let host = Host::new();
    let disk = winxp_overrides(&host);
    let out = host.pvio(&["create", "-n", "--json", WINXP, &disk]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["plan"]["machine"], "pc");
    assert_eq!(v["plan"]["disks"][0]["bus"]["kind"], "ide");
    assert_eq!(v["plan"]["disks"][1]["cdrom"], true);
    assert_eq!(v["plan"]["nics"][0]["model"], "rtl8139");
    assert_eq!(v["plan"]["accel"]["accel"], "tcg");
    assert!(v["warnings"][0].as_str().unwrap().contains("vncconsole"));
}

#[test]
fn missing_images_and_bridge_are_listed_after_the_plan() {
    let host = Host::new();
    std::fs::remove_dir_all(host.path().join("root/sys/class/net/xenbr0")).unwrap();
    let out = host.pvio(&["create", "--dry-run", WINXP]);
    let stdout = text(&out.stdout);
    assert!(!out.status.success());
    assert!(stdout.contains("-machine pc,acpi=off"), "{stdout}");
    let file = Path::new(WINXP).display().to_string();
    for want in [
        format!("{file}:12: key 'disk': hda: the image /root/xenimages/winXP128.img does not exist"),
        format!("{file}:13: key 'disk': hdc: the CD-ROM image /root/xenimages/en_winxp_pro_with_sp2.iso does not exist"),
        format!("{file}:10: key 'vif': bridge xenbr0 does not exist; create it: ip link add xenbr0 type bridge && ip link set xenbr0 up"),
    ] {
        assert!(stdout.contains(&want), "missing {want:?} in:\n{stdout}");
    }
    assert!(text(&out.stderr).contains("the host is not ready for winxp: 3 problems"));
}

#[test]
fn a_config_with_three_errors_reports_all_three() {
    let host = Host::new();
    let cfg = host.path().join("bad.cfg");
    std::fs::write(
        &cfg,
        "name = 'bad'\nmemory = '512M'\nvcpus = 0\nvif = [ 'brige=xenbr0' ]\nmemroy = 1\n",
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap().to_owned();
    let out = host.pvio(&["create", "--dry-run", &cfg]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    for want in [
        format!("{cfg}:2: key 'memory': expected a number, found string \"512M\""),
        format!("{cfg}:3: key 'vcpus': expected a number from 1 to 255, found 0"),
        format!("{cfg}:4: key 'vif': 'brige=xenbr0': unknown vif setting 'brige' (did you mean 'bridge'?)"),
        format!("pvio: warning: {cfg}:5: key 'memroy': unknown key, ignored (did you mean 'memory'?)"),
        "3 errors in the config".to_owned(),
    ] {
        assert!(stderr.contains(&want), "missing {want:?} in:\n{stderr}");
    }
    let out = host.pvio(&["create", "--dry-run", "--json", &cfg]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["errors"].as_array().unwrap().len(), 3);
}

#[test]
fn a_missing_config_file_is_one_clear_line() {
    let host = Host::new();
    let out = host.pvio(&["create", "--dry-run", "/nonexistent/winxp"]);
    assert!(!out.status.success());
    assert_eq!(
        text(&out.stderr).trim(),
        "pvio: cannot read the config /nonexistent/winxp: No such file or directory (os error 2)"
    );
}
