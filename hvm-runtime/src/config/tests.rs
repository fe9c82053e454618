//! Whole-config tests: from text to a `DomainSpec`, the winxp config of
//! issue 5, defaults, overrides and the errors a config can have.

use super::cpus::CpuAffinity;
use super::disk::DiskBus;
use super::options::{
    Action, BootDevice, Firmware, Machine, Serial, SoundHw, UsbDevice, Vga, ViridianGroup,
};
use super::vif::NicModel;
use super::*;

const WINXP: &str = include_str!("../../tests/fixtures/winxp.cfg");

fn origin() -> Origin {
    Origin::File("/etc/xen/winxp".into())
}

fn load(text: &str) -> Loaded {
    load_str(text, &origin(), &[]).unwrap_or_else(|e| panic!("{e}"))
}

fn errors(text: &str) -> Vec<String> {
    errors_with(text, &[])
}

fn errors_with(text: &str, overrides: &[&str]) -> Vec<String> {
    let overrides: Vec<String> = overrides.iter().map(|s| (*s).to_owned()).collect();
    match load_str(text, &origin(), &overrides) {
        Ok(_) => panic!("{text}: no error"),
        Err(ConfigError::Invalid { errors, .. }) => {
            errors.0.iter().map(ToString::to_string).collect()
        }
        Err(e) => panic!("{e}"),
    }
}

fn warnings(l: &Loaded) -> Vec<String> {
    l.warnings.iter().map(ToString::to_string).collect()
}

#[test]
fn winxp_from_an_old_xen_setup() {
    let l = load(WINXP);
    let s = &l.spec;
    assert_eq!(s.name, "winxp");
    assert_eq!(s.memory_mib, 512);
    assert_eq!((s.vcpus, s.maxvcpus), (1, 1));
    assert!(!s.pae && !s.acpi && !s.apic);
    assert_eq!(s.cpus, CpuAffinity::Any);
    assert_eq!(s.kernel, None);
    assert_eq!(s.firmware, Firmware::Bios);
    assert_eq!(s.machine, Machine::Pc);
    assert_eq!(s.boot, [BootDevice::Cdrom]);
    assert_eq!(s.disks.len(), 2);
    assert_eq!(
        s.disks[0].value.bus,
        DiskBus::Ide {
            channel: 0,
            unit: 0
        }
    );
    assert_eq!(s.disks[0].at.line, 12);
    assert!(s.disks[1].value.cdrom && s.disks[1].value.read_only);
    assert_eq!(
        s.disks[1].value.bus,
        DiskBus::Ide {
            channel: 1,
            unit: 0
        }
    );
    assert_eq!(s.disks[1].at.line, 13);
    assert_eq!(s.vifs.len(), 1);
    assert_eq!(s.vifs[0].value.model, NicModel::Rtl8139);
    assert_eq!(s.vifs[0].value.bridge, "xenbr0");
    let vnc = s.vnc.as_ref().unwrap();
    assert_eq!(
        (vnc.listen.as_str(), vnc.display, vnc.unused),
        ("127.0.0.1", None, true)
    );
    assert!(!s.sdl);
    assert_eq!(s.vga, Vga::Cirrus);
    assert_eq!(s.serials, [Serial::Pty]);
    assert_eq!(
        (s.on_poweroff, s.on_reboot, s.on_crash),
        (Action::Destroy, Action::Destroy, Action::Destroy)
    );
    assert!(l.warnings.is_empty(), "{:?}", warnings(&l));
    assert_eq!(
        l.no_effect_line().unwrap(),
        "/etc/xen/winxp: keys with no effect under pvio (see docs/config.md): kernel=\"hvmloader\" (line 1), cpus=\"\" (line 9), device_model (line 18), vncconsole (line 22)"
    );
}

#[test]
fn defaults_are_xls() {
    let s = load("name = 'min'").spec;
    assert_eq!(s.memory_mib, 32);
    assert_eq!((s.vcpus, s.maxvcpus), (1, 1));
    assert!(s.acpi && s.apic && s.pae && !s.localtime);
    assert_eq!(s.boot, [BootDevice::Disk, BootDevice::Cdrom]);
    assert_eq!(
        (s.on_poweroff, s.on_reboot, s.on_crash),
        (Action::Destroy, Action::Restart, Action::Destroy)
    );
    assert!(s.vnc.is_some());
    assert_eq!(s.vga, Vga::Cirrus);
    assert!(s.serials.is_empty() && s.disks.is_empty() && s.vifs.is_empty() && s.pci.is_empty());
    assert!(!s.usb && !s.monitor && s.viridian.is_empty());
    assert_eq!(s.source, Some("/etc/xen/winxp".into()));
}

#[test]
fn the_issue_s_three_errors_are_all_reported() {
    let text = "name = 'bad'\nmemory = '512M'\nvcpus = 0\ndisk = [ 'file:/x,hde,w' ]\n";
    assert_eq!(
        errors(text),
        [
            "/etc/xen/winxp:2: key 'memory': expected a number, found string \"512M\"",
            "/etc/xen/winxp:3: key 'vcpus': expected a number from 1 to 255, found 0",
            "/etc/xen/winxp:4: key 'disk': 'file:/x,hde,w': hde: emulated IDE has four drives, hda to hdd; use xvd* for more (PV) disks",
        ]
    );
}

#[test]
fn grammar_and_type_errors_come_together_in_line_order() {
    let text = "name = 'x'\nvcpus = 2\napic = 0\nmemory = 256 512\nvnc = 'yes'\n";
    assert_eq!(
        errors(text),
        [
            "/etc/xen/winxp:3: key 'apic': apic=0 leaves no APIC to start 2 vCPUs; use one vCPU or apic=1",
            "/etc/xen/winxp:4: key 'memory': expected the end of the statement (a newline or ';') after the value, found number 512",
            "/etc/xen/winxp:5: key 'vnc': expected 0 or 1, found string \"yes\"",
        ]
    );
}

#[test]
fn permissive_is_warned_about_per_device_and_as_the_default() {
    let l = load("name='x'\npci=['03:00.0,permissive=1', '04:00.0']\npci_permissive=1");
    assert!(l.spec.pci.iter().all(|p| p.value.permissive));
    assert_eq!(
        warnings(&l),
        [
            "/etc/xen/winxp:2: key 'pci': 0000:03:00.0: permissive=1 has no effect: QEMU's \
             vfio-pci decides which config space writes reach the device",
            "/etc/xen/winxp:3: key 'pci_permissive': pci_permissive=1 has no effect: QEMU's \
             vfio-pci decides which config space writes reach the device",
        ]
    );
    assert!(warnings(&load("name='x'\npci=['03:00.0']\npci_permissive=0")).is_empty());
}

#[test]
fn unknown_keys_warn_with_the_nearest_known_key() {
    let l = load("name = 'x'\nmemroy = 512\nfrobnicate = 1\nvncpassword = 'x'");
    assert_eq!(
        warnings(&l),
        [
            "/etc/xen/winxp:2: key 'memroy': unknown key, ignored (did you mean 'memory'?)",
            "/etc/xen/winxp:3: key 'frobnicate': unknown key, ignored",
            "/etc/xen/winxp:4: key 'vncpassword': unknown key, ignored (did you mean 'vncpasswd'?)",
        ]
    );
}

#[test]
fn command_line_overrides_replace_the_file() {
    let overrides = vec![
        "memory=1024".to_owned(),
        "disk=['file:/a.img,hda,w']".to_owned(),
        "vif+=['model=virtio,bridge=br1']".to_owned(),
    ];
    let l = load_str(WINXP, &origin(), &overrides).unwrap();
    assert_eq!(l.spec.memory_mib, 1024);
    assert_eq!(l.spec.disks.len(), 1);
    assert_eq!(l.spec.disks[0].at.to_string(), "command line argument 2");
    assert_eq!(l.spec.vifs.len(), 2);
    assert_eq!(l.spec.vifs[1].value.model, NicModel::Virtio);
    assert_eq!(
        errors_with(WINXP, &["memory='1G'"]),
        ["command line argument 1: key 'memory': expected a number, found string \"1G\""]
    );
}

#[test]
fn required_and_refused() {
    assert_eq!(
        errors("memory = 64"),
        ["/etc/xen/winxp:1: key 'name': missing: every domain needs a name (name = \"...\")"]
    );
    assert!(errors("name = 'a/b'")[0].contains("not a usable name"));
    assert!(errors("name = 'x'\ntype = 'pv'")[0].contains("pvio runs HVM guests only"));
    assert!(errors("name = 'x'\nbuilder = 'linux'")[0].contains("HVM guests only"));
    assert!(errors("name = 'x'\nuuid = 'nope'")[0].contains("not a UUID"));
    assert!(errors("name = 'x'\nvcpus = 4\nmaxvcpus = 2")[0].contains("below vcpus"));
}

#[test]
fn direct_kernel_boot() {
    let s = load("name='k'\nkernel='/boot/vmlinuz'\nramdisk='/boot/initrd'\nroot='/dev/vda'\nextra='console=ttyS0'").spec;
    assert_eq!(
        s.kernel.unwrap().value,
        std::path::PathBuf::from("/boot/vmlinuz")
    );
    assert_eq!(s.ramdisk.unwrap().at.line, 3);
    assert_eq!(s.cmdline.as_deref(), Some("root=/dev/vda console=ttyS0"));
    let l = load("name='k'\ntype='hvm'\nkernel='/k'\ncmdline='quiet'\nextra='x'");
    assert_eq!(l.spec.cmdline.as_deref(), Some("quiet"));
    assert_eq!(warnings(&l), ["/etc/xen/winxp:5: key 'extra': ignored: cmdline is set and replaces root and extra (as in xl)"]);
    let l = load("name='k'\nramdisk='/i'");
    assert_eq!(
        warnings(&l),
        ["/etc/xen/winxp:2: key 'ramdisk': has no effect without kernel = \"/path/to/vmlinuz\" (direct kernel boot)"]
    );
}

#[test]
fn cpu_pinning_forms() {
    assert_eq!(
        load("name='x'\ncpus='0-3,^1'").spec.cpus,
        CpuAffinity::All(vec![0, 2, 3])
    );
    assert_eq!(
        load("name='x'\ncpus=2").spec.cpus,
        CpuAffinity::All(vec![2])
    );
    assert_eq!(
        load("name='x'\ncpus=['2', '3-4']").spec.cpus,
        CpuAffinity::PerVcpu(vec![vec![2], vec![3, 4]])
    );
    assert_eq!(load("name='x'\ncpus='all'").spec.cpus, CpuAffinity::Any);
    assert_eq!(
        errors("name='x'\ncpus=['1', 2]"),
        ["/etc/xen/winxp:2: key 'cpus': expected a string in the list, found number 2"]
    );
    assert_eq!(
        errors("name='x'\ncpus='3-1'"),
        ["/etc/xen/winxp:2: key 'cpus': CPU range '3-1' runs backwards"]
    );
}

#[test]
fn device_lists_and_their_errors() {
    let s = load("name='x'\ndisk=['phy:/dev/vg/a,xvda,w', ',hdc:cdrom,r', 'file:/b.img,sda,r']\nvif=['model=e1000', 'type=vif']\npci=['03:00.0@5', '04:00.1']\npci_seize=1").spec;
    assert_eq!(s.disks[0].value.bus, DiskBus::Pv { index: 0 });
    assert_eq!(s.disks[2].value.bus, DiskBus::Scsi { target: 0 });
    assert_eq!(s.vifs[1].value.model, NicModel::Virtio);
    assert_eq!(s.vifs[1].value.devid, 1);
    assert!(s.pci.iter().all(|p| p.value.seize));
    let e = errors("name='x'\ndisk=[\n 'file:/a,hda,w',\n 'file:/b,hda,w']\nvif=['devid=1', 'devid=1']\npci=['03:00.0', '0000:03:00.0']");
    assert_eq!(
        e,
        [
            "/etc/xen/winxp:4: key 'disk': 'file:/b,hda,w': hda is already used on line 3",
            "/etc/xen/winxp:5: key 'vif': 'devid=1': devid 1 is already used",
            "/etc/xen/winxp:6: key 'pci': '0000:03:00.0': 0000:03:00.0 is already passed through",
        ]
    );
    let l = load("name='x'\nvif=['ip=10.0.0.1']");
    assert!(warnings(&l)[0]
        .starts_with("/etc/xen/winxp:2: key 'vif': 'ip=10.0.0.1': ip=10.0.0.1 has no effect"));
}

#[test]
fn display_keys() {
    let s = load("name='x'\nvnclisten='0.0.0.0:3'\nvncunused=0\nvncpasswd='s3cret'\nkeymap='de'\nvga='stdvga'\nvideoram=16").spec;
    let vnc = s.vnc.unwrap();
    assert_eq!(
        (vnc.listen.as_str(), vnc.display, vnc.unused),
        ("0.0.0.0", Some(3), false)
    );
    assert_eq!(vnc.password.as_deref(), Some("s3cret"));
    assert_eq!(s.keymap.as_deref(), Some("de"));
    assert_eq!((s.vga, s.videoram_mib), (Vga::Std, Some(16)));
    assert_eq!(load("name='x'\nstdvga=1").spec.vga, Vga::Std);
    let s = load("name='x'\nnographic=1\nsdl=1").spec;
    assert!(s.vnc.is_none() && !s.sdl);
    assert_eq!(s.vga, Vga::None);
    assert!(load("name='x'\nvnc=0").spec.vnc.is_none());
    let l = load("name='x'\nfull-screen=1");
    assert!(l.no_effect_line().unwrap().contains("full-screen (line 2)"));
    assert!(load("name='x'\nsdl=1\nfull-screen=1").spec.full_screen);
}

#[test]
fn other_devices_and_actions() {
    let l = load("name='x'\nusbdevice='tablet'\nsoundhw='ac97'\nfda='/f.img'\nmonitor=1\non_crash='coredump-restart'\nviridian=1\nlocaltime=1\nrtc_timeoffset=-3600\nserial=['pty','file:/tmp/c2']\ndevice_model_args=['-no-hpet']\ndevice_model_override='/opt/qemu'\nmachine='q35'");
    let s = &l.spec;
    assert!(s.usb);
    assert_eq!(s.usbdevices, [UsbDevice::Tablet]);
    assert_eq!(s.soundhw, [SoundHw::Ac97]);
    assert!(s.fda.is_some() && s.monitor);
    assert_eq!(s.on_crash, Action::Restart);
    assert_eq!(s.viridian, ViridianGroup::DEFAULTS);
    assert!(s.localtime);
    assert_eq!(s.rtc_timeoffset, -3600);
    assert_eq!(s.serials.len(), 2);
    assert_eq!(s.device_model_args, ["-no-hpet"]);
    assert_eq!(s.machine, Machine::Q35);
    let w = warnings(&l);
    assert!(
        w[0].starts_with("/etc/xen/winxp:5: key 'monitor': unsafe"),
        "{w:?}"
    );
    assert!(
        w[1].contains("'coredump-restart' is taken as 'restart'"),
        "{w:?}"
    );
    assert_eq!(
        load("name='x'\nviridian=['base','stimer']").spec.viridian,
        [ViridianGroup::Base, ViridianGroup::Stimer]
    );
    assert!(errors("name='x'\nviridian='yes'")[0].contains("expected 0, 1 or a list"));
    assert!(errors("name='x'\non_reboot='reboot'")[0].contains("unknown action 'reboot'"));
    assert!(
        errors("name='x'\nserial=['pty','pty','pty','pty','pty']")[0].contains("four serial ports")
    );
}

#[test]
fn firmware_keys() {
    assert_eq!(
        load("name='x'\nfirmware='uefi'").spec.firmware,
        Firmware::Uefi
    );
    assert_eq!(load("name='x'\nbios='ovmf'").spec.firmware, Firmware::Uefi);
    let l = load("name='x'\nbios='rombios'");
    assert_eq!(l.spec.firmware, Firmware::Bios);
    assert!(l.no_effect_line().unwrap().contains("bios=\"rombios\""));
    assert!(errors("name='x'\nfirmware='coreboot'")[0].contains("unknown firmware"));
}

#[test]
fn a_config_file_is_read_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("winxp");
    std::fs::write(&path, WINXP).unwrap();
    let l = super::load(&path, &[]).unwrap();
    assert_eq!(l.spec.source.as_deref(), Some(path.as_path()));
    let missing = super::load(&dir.path().join("nope"), &[]).unwrap_err();
    assert!(
        missing.to_string().starts_with("cannot read the config"),
        "{missing}"
    );
}

/// Nothing in a config can panic the loader: random texts made of the
/// grammar's pieces (and some bytes that are not) only give errors.
#[test]
fn random_configs_never_panic() {
    const PIECES: &[&str] = &[
        "name",
        "=",
        "+=",
        "'x'",
        "\"y\\x4",
        "[",
        "]",
        ",",
        ";",
        "\n",
        "#c\n",
        "0x",
        "07",
        "09",
        "-1",
        "512M",
        "disk",
        "vif",
        "pci",
        "cpus",
        "'file:/a,hda,w'",
        "',hdc:cdrom,r'",
        "'03:00.0@5'",
        "'bridge=b,model=virtio'",
        "'0-3,^1'",
        "'\\777'",
        "viridian",
        "boot",
        "'dz'",
        "serial",
        "@",
        "é",
        "\\",
        "'",
        "vcpus",
        "apic",
        "0",
        "1",
        "99999999999999999999",
        "memory",
        "kernel",
        "'hvmloader'",
        "machine",
        "'q35'",
        "fda",
        "'/f'",
        "target=",
        "vdev=",
        "'sdz'",
    ];
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..3000 {
        let len = next() % 40;
        let mut text = String::new();
        for _ in 0..len {
            let n = u64::try_from(PIECES.len()).unwrap_or(1);
            let i = usize::try_from(next() % n).unwrap_or(0);
            text.push_str(PIECES[i]);
            if next() % 3 == 0 {
                text.push(' ');
            }
        }
        if let Ok(l) = load_str(&text, &origin(), &[text.clone()]) {
            let mut e = crate::plan::FixedEntropy(0);
            let mut opts = crate::plan::PlanOptions {
                run_root: "/run/pvio".into(),
                accel: crate::host::accel::AccelDecision {
                    accel: crate::host::accel::Accel::Tcg,
                    reason: String::new(),
                },
                ovmf: "/ovmf".into(),
                now: std::time::SystemTime::now(),
                entropy: &mut e,
                qemu_release: None,
            };
            let _ = crate::plan::plan(&l.spec, &mut opts);
        }
    }
}
