//! Plan tests: the winxp config of issue 5, PV and emulated devices,
//! machine and CPU options, and the host checks against a described host.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::config::{load_str, Origin};
use crate::host::accel::Accel;

const WINXP: &str = include_str!("../../tests/fixtures/winxp.cfg");

fn options(entropy: &mut FixedEntropy, accel: Accel) -> PlanOptions<'_> {
    PlanOptions {
        run_root: PathBuf::from("/run/pvio"),
        accel: AccelDecision {
            accel,
            reason: "test".to_owned(),
        },
        ovmf: PathBuf::from("/usr/share/ovmf/OVMF.fd"),
        now: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        entropy,
        qemu_release: None,
    }
}

fn spec(text: &str) -> DomainSpec {
    load_str(text, &Origin::File("/etc/xen/t".into()), &[])
        .unwrap_or_else(|e| panic!("{e}"))
        .spec
}

pub(super) fn plan_of(text: &str, accel: Accel) -> DomainPlan {
    let mut e = FixedEntropy(0x10);
    plan(&spec(text), &mut options(&mut e, accel)).unwrap_or_else(|e| panic!("{e}"))
}

/// The value after each occurrence of `flag`.
pub(super) fn values<'a>(p: &'a DomainPlan, flag: &str) -> Vec<&'a str> {
    let a = &p.qemu.args;
    a.iter()
        .zip(a.iter().skip(1))
        .filter(|(f, _)| *f == flag)
        .map(|(_, v)| v.as_str())
        .collect()
}

fn has(p: &DomainPlan, flag: &str) -> bool {
    p.qemu.args.iter().any(|a| a == flag)
}

#[test]
fn winxp_plan() {
    let p = plan_of(WINXP, Accel::Tcg);
    assert_eq!(p.qemu.binary, PathBuf::from("qemu-system-x86_64"));
    assert_eq!(values(&p, "-machine"), ["pc,acpi=off,memory-backend=mem"]);
    assert_eq!(values(&p, "-accel"), ["tcg"]);
    assert_eq!(values(&p, "-cpu"), ["qemu64,-apic,-pae,-lm"]);
    assert_eq!(values(&p, "-m"), ["512"]);
    assert_eq!(values(&p, "-smp"), ["1,maxcpus=1"]);
    assert_eq!(values(&p, "-boot"), ["order=d"]);
    assert_eq!(values(&p, "-vnc"), ["127.0.0.1:0,to=99"]);
    assert_eq!(values(&p, "-serial"), ["pty"]);
    assert_eq!(values(&p, "-rtc"), ["base=utc"]);
    assert_eq!(values(&p, "-display"), ["none"]);
    assert_eq!(
        values(&p, "-qmp"),
        [
            "unix:/run/pvio/winxp/qmp.sock,server=on,wait=off",
            "unix:/run/pvio/winxp/qmp-events.sock,server=on,wait=off"
        ]
    );
    assert_eq!(
        values(&p, "-action"),
        ["reboot=shutdown,shutdown=pause,panic=pause"]
    );
    assert!(has(&p, "-S"), "QEMU starts paused");
    assert!(
        p.notes
            .iter()
            .any(|n| n.starts_with("acpi=0: the guest has no ACPI, so it ignores `pvio shutdown`")),
        "{:?}",
        p.notes
    );
    let devices = values(&p, "-device");
    assert!(
        devices.contains(&"ide-hd,drive=hda,bus=ide.0,unit=0,id=hda"),
        "{devices:?}"
    );
    assert!(
        devices.contains(&"ide-cd,drive=hdc,bus=ide.1,unit=0,id=hdc"),
        "{devices:?}"
    );
    assert!(
        devices.contains(&"rtl8139,netdev=net0,id=nic0,mac=00:16:3e:20:21:22"),
        "{devices:?}"
    );
    assert!(devices.contains(&"cirrus-vga"), "{devices:?}");
    assert_eq!(
        values(&p, "-drive"),
        [
            "file=/root/xenimages/winXP128.img,format=raw,if=none,id=hda,auto-read-only=off",
            "file=/root/xenimages/en_winxp_pro_with_sp2.iso,format=raw,if=none,id=hdc,media=cdrom,readonly=on"
        ]
    );
    let tap = ids::tap_name("winxp", 0).unwrap();
    assert_eq!(
        values(&p, "-netdev"),
        [format!("tap,id=net0,ifname={tap},script=no,downscript=no").as_str()]
    );
    assert_eq!(p.taps.len(), 1);
    assert_eq!(p.taps[0].bridge, "xenbr0");
    assert!(p.blk_backends.is_empty() && p.net_backends.is_empty());
    // Shareable RAM even without a PV device: one may be hot-plugged.
    assert_eq!(
        values(&p, "-object"),
        ["memory-backend-memfd,id=mem,size=512M,share=on"]
    );
    assert!(p.notes.iter().any(|n| n.starts_with("accelerator: TCG")));
    assert_eq!(p.uuid.len(), 36);
}

#[test]
fn pv_nics_get_two_vectors_per_queue_pair_plus_two_on_qemu_10() {
    for (accel, vectors) in [(Accel::Tcg, "vectors=4"), (Accel::Kvm, "vectors=4")] {
        for vif in ["type=vif,bridge=br0", "model=virtio,bridge=br0"] {
            let p = plan_of(&format!("name='n'\nvif=['{vif}']"), accel);
            let devices = values(&p, "-device");
            let nic = devices
                .iter()
                .find(|d| d.starts_with("virtio-net-pci,"))
                .unwrap_or_else(|| panic!("no virtio-net-pci in {devices:?}"));
            assert!(nic.split(',').any(|o| o == vectors), "{accel}: {nic}");
        }
    }
    // Emulated NICs keep QEMU's defaults.
    let p = plan_of("name='n'\nvif=['model=e1000,bridge=br0']", Accel::Tcg);
    assert!(!values(&p, "-device").iter().any(|d| d.contains("vectors=")));
}

#[test]
fn pv_devices_get_backends_and_shared_memory() {
    let p = plan_of(
        "name='pv'\nmemory=256\ndisk=['file:/img/root.raw,xvda,w', 'phy:/dev/vg/data,xvdb,r']\nvif=['type=vif,bridge=br0,mac=00:16:3e:00:00:01,mtu=1400']",
        Accel::Tcg,
    );
    assert_eq!(values(&p, "-machine"), ["pc,memory-backend=mem"]);
    assert_eq!(
        values(&p, "-object"),
        ["memory-backend-memfd,id=mem,size=256M,share=on"]
    );
    assert_eq!(p.blk_backends.len(), 2);
    assert_eq!(
        p.blk_backends[0].args,
        [
            "backend",
            "blk",
            "--listen-fd",
            "3",
            "--image-fd",
            "4",
            "--serial",
            "xvda",
            "--user",
            "BACKEND_UID:BACKEND_GID"
        ]
    );
    assert_eq!(
        p.blk_backends[1].args.last().map(String::as_str),
        Some("--read-only")
    );
    assert_eq!(
        values(&p, "-chardev"),
        [
            "socket,id=chr-xvda,path=/run/pvio/.dm/pv/blk-xvda.sock,reconnect-ms=1000",
            "socket,id=chr-xvdb,path=/run/pvio/.dm/pv/blk-xvdb.sock,reconnect-ms=1000",
            "socket,id=chr-net0,path=/run/pvio/.dm/pv/net-0.sock,reconnect-ms=1000"
        ]
    );
    let devices = values(&p, "-device");
    assert!(devices.contains(&"vhost-user-blk-pci,chardev=chr-xvda,id=xvda,bootindex=1"));
    assert!(
        devices.contains(
            &"virtio-net-pci,netdev=net0,id=nic0,mac=00:16:3e:00:00:01,vectors=4,host_mtu=1400"
        ),
        "{devices:?}"
    );
    assert_eq!(
        values(&p, "-netdev"),
        ["vhost-user,id=net0,chardev=chr-net0"]
    );
    assert_eq!(
        p.net_backends[0].args,
        [
            "backend",
            "net",
            "--listen-fd",
            "3",
            "--tap-fd",
            "4",
            "--mac",
            "00:16:3e:00:00:01",
            "--user",
            "BACKEND_UID:BACKEND_GID",
            "--mtu",
            "1400"
        ]
    );
    assert_eq!(
        p.disks[0].socket.as_deref(),
        Some(Path::new("/run/pvio/.dm/pv/blk-xvda.sock"))
    );
}

#[test]
fn scsi_q35_and_empty_cdrom() {
    let p = plan_of(
        "name='q'\nmachine='q35'\ndisk=['/a.qcow2,qcow2,sda,w', '/b.raw,sdb,r', ',hdc:cdrom,r', '/c.raw,hdb,w']",
        Accel::Tcg,
    );
    assert_eq!(values(&p, "-machine"), ["q35,memory-backend=mem"]);
    let devices = values(&p, "-device");
    assert_eq!(
        devices
            .iter()
            .filter(|d| d.starts_with("lsi53c895a"))
            .count(),
        1
    );
    assert!(devices.contains(&"scsi-hd,drive=sda,bus=scsi0.0,scsi-id=0,id=sda"));
    assert!(devices.contains(&"scsi-hd,drive=sdb,bus=scsi0.0,scsi-id=1,id=sdb"));
    assert!(devices.contains(&"ide-cd,drive=hdc,bus=ide.2,id=hdc"));
    assert!(devices.contains(&"ide-hd,drive=hdb,bus=ide.1,id=hdb"));
    let drives = values(&p, "-drive");
    assert!(drives.contains(&"file=/a.qcow2,format=qcow2,if=none,id=sda,auto-read-only=off"));
    assert!(drives.contains(&"if=none,id=hdc,media=cdrom"));
    assert!(drives.contains(&"file=/b.raw,format=raw,if=none,id=sdb,readonly=on"));
}

#[test]
fn q35_gets_spare_root_ports_for_hotplug_and_pc_none() {
    let q35 = plan_of("name='q'\nmachine='q35'", Accel::Tcg);
    let ports: Vec<&str> = values(&q35, "-device")
        .into_iter()
        .filter(|d| d.starts_with("pcie-root-port,"))
        .collect();
    assert_eq!(
        ports,
        [
            "pcie-root-port,id=pvio-rp0,bus=pcie.0,chassis=1,port=0x10",
            "pcie-root-port,id=pvio-rp1,bus=pcie.0,chassis=2,port=0x11",
            "pcie-root-port,id=pvio-rp2,bus=pcie.0,chassis=3,port=0x12",
            "pcie-root-port,id=pvio-rp3,bus=pcie.0,chassis=4,port=0x13",
        ]
    );
    let pc = plan_of("name='p'", Accel::Tcg);
    assert!(!pc.qemu.args.iter().any(|a| a.contains("pcie-root-port")));
}

#[test]
fn commas_in_paths_are_escaped() {
    let p = plan_of(
        "name='c'\ndisk=['vdev=hda,target=/img/a,b.raw']",
        Accel::Tcg,
    );
    assert_eq!(
        values(&p, "-drive"),
        ["file=/img/a,,b.raw,format=raw,if=none,id=hda,auto-read-only=off"]
    );
}

#[test]
fn kvm_cpu_viridian_and_passthrough() {
    let p = plan_of(
        "name='w'\nviridian=1\npci=['0000:03:00.0@5', '04:00.1,seize=1']\nvcpus=2\nmaxvcpus=4",
        Accel::Kvm,
    );
    assert_eq!(
        values(&p, "-cpu"),
        ["host,hv-relaxed,hv-vpindex,hv-spinlocks=0x1fff,hv-frequencies,hv-time,hv-vapic,hv-crash"]
    );
    assert_eq!(values(&p, "-smp"), ["2,maxcpus=4"]);
    let devices = values(&p, "-device");
    assert!(devices.contains(&"vfio-pci,host=0000:03:00.0,id=pt-0000-03-00.0,addr=0x5"));
    assert!(devices.contains(&"vfio-pci,host=0000:04:00.1,id=pt-0000-04-00.1"));
    assert!(p.passthrough[1].seize);
    assert!(p.notes.is_empty(), "{:?}", p.notes);
    let t = plan_of("name='w'\nviridian=1", Accel::Tcg);
    assert_eq!(values(&t, "-cpu"), ["qemu64"]);
    assert!(t
        .notes
        .iter()
        .any(|n| n.starts_with("viridian has no effect under TCG")));
}

#[test]
fn direct_boot_firmware_clock_and_display() {
    let p = plan_of(
        "name='k'\nkernel='/boot/vmlinuz'\nramdisk='/boot/initrd'\nextra='console=ttyS0'\nfirmware='uefi'\nrtc_timeoffset=-3600\nvnclisten='::1'\nvncdisplay=5\nvncunused=0\nvncpasswd='pw'\nkeymap='de'\nvga='stdvga'\nvideoram=32",
        Accel::Tcg,
    );
    assert_eq!(values(&p, "-kernel"), ["/boot/vmlinuz"]);
    assert_eq!(values(&p, "-initrd"), ["/boot/initrd"]);
    assert_eq!(values(&p, "-append"), ["console=ttyS0"]);
    assert!(!has(&p, "-boot"));
    assert_eq!(values(&p, "-bios"), ["/usr/share/ovmf/OVMF.fd"]);
    assert_eq!(values(&p, "-rtc"), ["base=2023-11-14T21:13:20"]);
    assert_eq!(values(&p, "-vnc"), ["[::1]:5,password=on"]);
    assert_eq!(p.vnc_password.as_deref(), Some("pw"));
    assert!(!serde_json::to_string(&p).unwrap().contains("\"pw\""));
    assert_eq!(values(&p, "-k"), ["de"]);
    assert!(values(&p, "-device").contains(&"VGA,vgamem_mb=32"));
    let l = plan_of("name='l'\nlocaltime=1", Accel::Tcg);
    assert_eq!(values(&l, "-rtc"), ["base=localtime"]);
    let n = plan_of("name='n'\nnographic=1", Accel::Tcg);
    assert!(!has(&n, "-vnc"));
    assert!(!values(&n, "-device")
        .iter()
        .any(|d| d.contains("vga") || d.starts_with("VGA")));
}

#[test]
fn serial_usb_sound_monitor_actions_and_extra_args() {
    let p = plan_of(
        "name='s'\nserial=['pty', 'file:/tmp/com2', 'unix:/tmp/com3.sock,server,nowait', 'unix:/tmp/com4']\nusbdevice=['tablet','mouse']\nsoundhw='ac97,hda,pcspk'\nmonitor=1\nfda='/f.img'\non_reboot='restart'\non_poweroff='preserve'\non_crash='preserve'\ndevice_model_args=['-no-shutdown']\ndevice_model_override='/opt/qemu/bin/qemu'\nsdl=1\nfull-screen=1",
        Accel::Tcg,
    );
    assert_eq!(
        values(&p, "-serial"),
        [
            "pty",
            "file:/tmp/com2",
            "unix:/tmp/com3.sock,server=on,wait=off",
            "unix:/tmp/com4,server=on,wait=off"
        ]
    );
    assert!(has(&p, "-usb"));
    let devices = values(&p, "-device");
    assert!(devices.contains(&"usb-tablet") && devices.contains(&"usb-mouse"));
    assert!(
        devices.contains(&"AC97,audiodev=snd0")
            && devices.contains(&"hda-duplex,bus=hda0.0,audiodev=snd0")
    );
    assert_eq!(
        values(&p, "-machine"),
        ["pc,memory-backend=mem,pcspk-audiodev=snd0"]
    );
    assert_eq!(values(&p, "-audiodev"), ["none,id=snd0"]);
    assert_eq!(
        values(&p, "-monitor"),
        ["unix:/run/pvio/s/monitor.sock,server=on,wait=off"]
    );
    assert!(
        p.notes
            .iter()
            .any(|n| n.starts_with("warning: monitor=1 opens QEMU's human monitor")),
        "{:?}",
        p.notes
    );
    assert_eq!(
        values(&p, "-drive"),
        ["file=/f.img,format=raw,if=floppy,index=0"]
    );
    assert_eq!(
        values(&p, "-action"),
        ["reboot=reset,shutdown=pause,panic=pause"]
    );
    assert_eq!(values(&p, "-display"), ["sdl"]);
    assert!(has(&p, "-full-screen"));
    assert_eq!(p.qemu.args.last().map(String::as_str), Some("-no-shutdown"));
    assert_eq!(p.qemu.binary, PathBuf::from("/opt/qemu/bin/qemu"));
}

#[test]
fn plan_errors() {
    let s = spec("name='f'\nmachine='q35'\nfda='/f.img'");
    let mut e = FixedEntropy(0);
    let err = plan(&s, &mut options(&mut e, Accel::Tcg)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "/etc/xen/t:3: key 'fda': q35 has no floppy controller; use machine = \"pc\""
    );
    let s = spec("name='f'\ndisk=['/x,xvda,w']");
    let mut e = FixedEntropy(0);
    let mut o = options(&mut e, Accel::Tcg);
    o.run_root = PathBuf::from(format!("/{}", "r".repeat(100)));
    assert!(matches!(
        plan(&s, &mut o),
        Err(PlanError::SocketPathTooLong(_))
    ));
}

/// A host described by the files, bridges and devices it has.
#[derive(Default)]
struct FakeHost {
    files: BTreeSet<PathBuf>,
    bridges: BTreeSet<String>,
    pci: BTreeSet<String>,
}

impl HostView for FakeHost {
    fn exists(&self, path: &Path) -> bool {
        self.files.contains(path)
    }
    fn is_bridge(&self, name: &str) -> bool {
        self.bridges.contains(name)
    }
    fn has_pci_device(&self, bdf: &crate::config::pci::Bdf) -> bool {
        self.pci.contains(&bdf.to_string())
    }
    fn find_program(&self, name: &Path) -> Option<PathBuf> {
        self.files.contains(name).then(|| name.to_owned())
    }
}

#[test]
fn host_checks_name_the_config_line() {
    let s = spec(WINXP);
    let mut e = FixedEntropy(0);
    let p = plan(&s, &mut options(&mut e, Accel::Tcg)).unwrap();
    let problems: Vec<String> = check_host(&s, &p, &FakeHost::default())
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        problems,
        [
            "/etc/xen/t:10: key 'vif': bridge xenbr0 does not exist; create it: ip link add xenbr0 type bridge && ip link set xenbr0 up",
            "/etc/xen/t:12: key 'disk': hda: the image /root/xenimages/winXP128.img does not exist",
            "/etc/xen/t:13: key 'disk': hdc: the CD-ROM image /root/xenimages/en_winxp_pro_with_sp2.iso does not exist",
            "the device model qemu-system-x86_64 is not found; install it: apt-get install qemu-system-x86",
        ]
    );
    let mut host = FakeHost::default();
    host.files.extend(
        [
            "/root/xenimages/winXP128.img",
            "/root/xenimages/en_winxp_pro_with_sp2.iso",
            "qemu-system-x86_64",
        ]
        .map(PathBuf::from),
    );
    host.bridges.insert("xenbr0".to_owned());
    assert!(check_host(&s, &p, &host).is_empty());
}

#[test]
fn host_checks_for_firmware_kernel_pci_keymap() {
    let s = spec("name='x'\nfirmware='uefi'\nkernel='/k'\nramdisk='/r'\npci=['03:00.0']\nkeymap='xx'\ndevice_model_override='/q'");
    let mut e = FixedEntropy(0);
    let p = plan(&s, &mut options(&mut e, Accel::Tcg)).unwrap();
    let problems: Vec<String> = check_host(&s, &p, &FakeHost::default())
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        problems,
        [
            "/etc/xen/t:2: key 'firmware': UEFI needs OVMF, and /usr/share/ovmf/OVMF.fd does not exist; install it: apt-get install ovmf",
            "/etc/xen/t:3: key 'kernel': the kernel /k does not exist",
            "/etc/xen/t:4: key 'ramdisk': the ramdisk /r does not exist",
            "/etc/xen/t:5: key 'pci': the host has no PCI device 0000:03:00.0; `pvio pci-list` shows what it has",
            "/etc/xen/t:7: key 'device_model_override': the device model /q is not found; check device_model_override",
            "key 'keymap': QEMU has no keymap 'xx' (no /usr/share/qemu/keymaps/xx)",
        ]
    );
}

#[test]
fn the_report_shows_devices_backends_and_warnings() {
    let loaded = load_str(WINXP, &Origin::File("/etc/xen/winxp".into()), &[]).unwrap();
    let mut e = FixedEntropy(0x10);
    let p = plan(&loaded.spec, &mut options(&mut e, Accel::Tcg)).unwrap();
    let text = render::report(&p, &loaded, &[]);
    assert!(
        text.contains("machine pc (i440fx + PIIX3), accelerator TCG, 512 MiB, 1 vCPU"),
        "{text}"
    );
    assert!(text.contains("hda   emulated IDE disk, primary channel master (ide.0 unit 0): /root/xenimages/winXP128.img (raw, read-write)"), "{text}");
    assert!(
        text.contains("hdc   emulated IDE CD-ROM, secondary channel master (ide.1 unit 0)"),
        "{text}"
    );
    assert!(
        text.contains("nic0 emulated rtl8139, mac 00:16:3e:20:21:22 (random), tap"),
        "{text}"
    );
    assert!(text.contains("on bridge xenbr0"), "{text}");
    assert!(
        text.contains(
            "  boot order d; VNC on 127.0.0.1 display 0 (or the next free one); serial pty\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("    -machine pc,acpi=off,memory-backend=mem \\\n"),
        "{text}"
    );
    assert!(text.contains("keys with no effect under pvio (see docs/config.md): kernel=\"hvmloader\" (line 1), cpus=\"\" (line 9), device_model (line 18), vncconsole (line 22)"), "{text}");
}

#[test]
fn vnc_passwords_longer_than_vnc_takes_are_refused() {
    let mut e = FixedEntropy(0x10);
    let err = plan(
        &spec("name='v'\nvncpasswd='123456789'"),
        &mut options(&mut e, Accel::Tcg),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("key 'vncpasswd'") && err.to_string().contains("at most 8"),
        "{err}"
    );
    let ok = plan_of("name='v'\nvncpasswd='12345678'", Accel::Tcg);
    assert_eq!(ok.vnc_password.as_deref(), Some("12345678"));
}

#[test]
fn a_vnc_display_open_to_the_network_without_a_password_is_warned() {
    let open = plan_of("name='v'\nvnclisten='0.0.0.0'", Accel::Tcg);
    assert!(
        open.notes.iter().any(
            |n| n.starts_with("warning: the VNC display listens on 0.0.0.0 without a password")
        ),
        "{:?}",
        open.notes
    );
    for quiet in [
        "name='v'",
        "name='v'\nvnclisten='::1'",
        "name='v'\nvnclisten='0.0.0.0'\nvncpasswd='pw'",
    ] {
        let p = plan_of(quiet, Accel::Tcg);
        assert!(
            !p.notes.iter().any(|n| n.contains("VNC")),
            "{quiet}: {:?}",
            p.notes
        );
    }
}

/// A host whose QEMU has no SDL display and no sound cards.
struct PlainQemu(FakeHost);

impl HostView for PlainQemu {
    fn exists(&self, path: &std::path::Path) -> bool {
        self.0.exists(path)
    }
    fn is_bridge(&self, name: &str) -> bool {
        self.0.is_bridge(name)
    }
    fn has_pci_device(&self, bdf: &crate::config::pci::Bdf) -> bool {
        self.0.has_pci_device(bdf)
    }
    fn find_program(&self, name: &std::path::Path) -> Option<PathBuf> {
        self.0.find_program(name)
    }
    fn qemu_offers(
        &self,
        _qemu: &std::path::Path,
        what: crate::plan::offers::Listing,
    ) -> Option<String> {
        use crate::plan::offers::Listing;
        Some(match what {
            Listing::Displays => "Available display backend types:\nnone\ncurses\n".to_owned(),
            Listing::Audio => "Available audio drivers:\nnone\n".to_owned(),
            Listing::Devices => ["VGA", "cirrus-vga", "pvpanic", "ide-hd", "ide-cd", "e1000"]
                .iter()
                .map(|d| format!("name \"{d}\", bus PCI\n"))
                .collect(),
        })
    }
}

#[test]
fn what_passes_the_dry_run_is_what_the_installed_qemu_offers() {
    let s = spec("name='g'\nsdl=1\nsoundhw='sb16'");
    let p = plan_of("name='g'\nsdl=1\nsoundhw='sb16'", Accel::Tcg);
    let host = PlainQemu(FakeHost::default());
    let problems: Vec<String> = check_host(&s, &p, &host)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(
        problems
            .iter()
            .any(|m| m.contains("no SDL display") && m.contains("qemu-system-gui")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|m| m.contains("no device model 'sb16'")),
        "{problems:?}"
    );
    assert!(
        !problems
            .iter()
            .any(|m| m.contains("'cirrus-vga'") || m.contains("audio backend")),
        "{problems:?}"
    );
}
