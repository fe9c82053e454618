//! The plan's QEMU command lines are ones QEMU 7.2 accepts: each test
//! makes a plan, starts the real device model on it paused (`-S`), with a
//! real vhost-user-blk peer (qemu-storage-daemon) for PV disks and taps in
//! a network namespace of its own, and quits it over QMP.
//!
//! Needs root (taps), `unshare`, `ip`, `qemu-system-x86_64` and
//! `qemu-storage-daemon`; `.ci/run` installs them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pvio_hvm_runtime::config::{load_str, Origin};
use pvio_hvm_runtime::host::accel::{Accel, AccelDecision};
use pvio_hvm_runtime::plan::{plan, DomainPlan, FixedEntropy, PlanOptions};

const WINXP: &str = include_str!("fixtures/winxp.cfg");

fn make_plan(text: &str, overrides: &[String], run_root: &Path) -> DomainPlan {
    let loaded = load_str(text, &Origin::File("test.cfg".into()), overrides)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut entropy = FixedEntropy(1);
    let mut opts = PlanOptions {
        run_root: run_root.to_owned(),
        // -S: no guest code runs, so KVM or TCG only changes the CPU model;
        // TCG keeps the test the same on every host.
        accel: AccelDecision {
            accel: Accel::Tcg,
            reason: "test".to_owned(),
        },
        ovmf: PathBuf::from("/usr/share/ovmf/OVMF.fd"),
        now: std::time::SystemTime::now(),
        entropy: &mut entropy,
        qemu_release: None,
    };
    let p = plan(&loaded.spec, &mut opts).unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir_all(&p.run_dir).unwrap();
    p
}

fn wait(child: &mut Child, what: &str) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("{what} did not exit within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts QEMU on the plan's command line (paused: the plan has `-S`),
/// with one more QMP monitor on stdio, in a fresh network namespace, and quits it.
fn start_and_quit(p: &DomainPlan) {
    let mut child = Command::new("unshare")
        .args([
            "--net",
            "sh",
            "-c",
            "ip link set lo up && exec \"$@\"",
            "sh",
        ])
        .arg(&p.qemu.binary)
        // The device model's identity is the domain's at start; nobody's here.
        .args(
            p.qemu
                .args
                .iter()
                .map(|a| a.replace(pvio_hvm_runtime::plan::DM_USER_PLACEHOLDER, "65534:65534")),
        )
        .args(["-qmp", "stdio"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("unshare and qemu-system-x86_64 are installed");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"{\"execute\":\"qmp_capabilities\"}\n{\"execute\":\"quit\"}\n")
        .unwrap();
    let status = wait(&mut child, "qemu");
    let mut out = String::new();
    let mut err = String::new();
    use std::io::Read;
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(
        status.success() && out.contains("\"SHUTDOWN\""),
        "QEMU refused the plan's command line ({status}):\n{err}\n{out}\nargs: {:?}",
        p.qemu.args
    );
}

fn file(dir: &Path, name: &str, size: u64) -> PathBuf {
    let p = dir.join(name);
    let f = std::fs::File::create(&p).unwrap();
    f.set_len(size).unwrap();
    p
}

#[test]
fn the_winxp_plan_starts() {
    let dir = tempfile::tempdir().unwrap();
    let img = file(dir.path(), "winXP128.img", 64 << 20);
    let iso = file(dir.path(), "winxp.iso", 4 << 20);
    let overrides = vec![format!(
        "disk = [ 'file:{},hda,w', 'file:{},hdc:cdrom,r' ]",
        img.display(),
        iso.display()
    )];
    let p = make_plan(WINXP, &overrides, &dir.path().join("run"));
    start_and_quit(&p);
}

#[test]
fn every_emulated_device_and_a_pv_disk_start() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let hda = file(d, "hda.raw", 16 << 20);
    let sda = file(d, "sda.raw", 16 << 20);
    let xvda = file(d, "xvda.raw", 16 << 20);
    let iso = file(d, "cd.iso", 1 << 20);
    let fda = file(d, "floppy.img", 1_474_560);
    let config = format!(
        "name = 'all'\nmemory = 128\nvcpus = 1\nacpi = 0\napic = 0\npae = 0\nviridian = 1\n\
         rtc_timeoffset = -3600\nboot = 'dcn'\n\
         disk = [ 'file:{hda},hda,w', 'file:{iso},hdc:cdrom,r', ',hdd:cdrom,r', 'file:{sda},sda,w', 'file:{xvda},xvda,w' ]\n\
         vif = [ 'bridge=br0,model=rtl8139', 'bridge=br0,model=e1000', 'bridge=br0,model=ne2k_pci', 'bridge=br0,model=e1000e' ]\n\
         serial = [ 'pty', 'file:{d}/com2.log', 'unix:{d}/com3.sock,server,nowait' ]\n\
         vnc = 1\nvncpasswd = 'x'\nkeymap = 'de'\nvga = 'stdvga'\nvideoram = 16\n\
         usbdevice = [ 'tablet', 'mouse' ]\nsoundhw = 'all'\nfda = '{fda}'\nmonitor = 1\n\
         on_reboot = 'destroy'\non_crash = 'preserve'\ndevice_model_args = [ '-msg', 'timestamp=on' ]\n",
        hda = hda.display(),
        iso = iso.display(),
        sda = sda.display(),
        xvda = xvda.display(),
        fda = fda.display(),
        d = d.display(),
    );
    let p = make_plan(&config, &[], &d.join("run"));
    assert_eq!(p.blk_backends.len(), 1);
    // The PV disk's backend: qemu-storage-daemon stands in for pvio's
    // block backend as the vhost-user-blk peer.
    let sock = &p.blk_backends[0].socket;
    // The supervisor makes the device model's dir; here the test does.
    std::fs::create_dir_all(sock.parent().unwrap()).unwrap();
    let mut daemon = Command::new("qemu-storage-daemon")
        .arg("--blockdev")
        .arg(format!(
            "driver=file,node-name=file0,filename={}",
            xvda.display()
        ))
        .args(["--blockdev", "driver=raw,node-name=disk0,file=file0"])
        .arg("--export")
        .arg(format!(
            "type=vhost-user-blk,id=exp0,node-name=disk0,addr.type=unix,addr.path={},writable=on",
            sock.display()
        ))
        .stderr(Stdio::piped())
        .spawn()
        .expect("qemu-storage-daemon is installed");
    let start = Instant::now();
    while !sock.exists() && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let started = std::panic::catch_unwind(|| start_and_quit(&p));
    let _ = daemon.kill();
    let _ = daemon.wait();
    if let Err(e) = started {
        std::panic::resume_unwind(e);
    }
}

#[test]
fn a_q35_machine_with_ahci_scsi_and_uefi_style_options_starts() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let a = file(d, "a.raw", 8 << 20);
    let b = file(d, "b,with,commas.raw", 8 << 20);
    let config = format!(
        "name = 'q'\nmachine = 'q35'\nmemory = 64\nvcpus = 2\nmaxvcpus = 4\n\
         disk = [ 'file:{a},hda,w', ',hdc:cdrom,r', 'vdev=sdb,access=r,target={b}' ]\n\
         vnc = 0\nnographic = 1\nlocaltime = 1\nserial = 'null'\nusb = 1\n",
        a = a.display(),
        b = b.display(),
    );
    let p = make_plan(&config, &[], &d.join("run"));
    start_and_quit(&p);
}

/// The parts that need a peer QEMU cannot be given here (a vhost-user net
/// backend, a VFIO device) use option names QEMU 7.2 has.
#[test]
fn pv_nic_and_vfio_options_are_known_to_qemu() {
    let dir = tempfile::tempdir().unwrap();
    let p = make_plan(
        "name = 'n'\nvif = [ 'type=vif,mtu=1400' ]\npci = [ '03:00.0@5' ]\nkernel = '/k'\nramdisk = '/r'\nextra = 'x'",
        &[],
        dir.path(),
    );
    let help = |args: &[&str]| {
        let out = Command::new("qemu-system-x86_64")
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    };
    let net = help(&["-device", "virtio-net-pci,help"]);
    for prop in ["netdev=", "mac=", "host_mtu="] {
        assert!(
            net.contains(prop.trim_end_matches('=')),
            "virtio-net-pci has no {prop}"
        );
    }
    assert!(help(&["-netdev", "help"]).contains("vhost-user"));
    let vfio = help(&["-device", "vfio-pci,help"]);
    assert!(vfio.contains("host=") && vfio.contains("addr="), "{vfio}");
    let usage = help(&["-help"]);
    for opt in ["-kernel", "-initrd", "-append", "-chardev", "-action"] {
        assert!(usage.contains(opt), "qemu -help lacks {opt}");
    }
    let args = p.qemu.args.join(" ");
    assert!(
        args.contains("-netdev vhost-user,id=net0,chardev=chr-net0"),
        "{args}"
    );
    assert!(
        args.contains("vfio-pci,host=0000:03:00.0,id=pt-0000-03-00.0,addr=0x5"),
        "{args}"
    );
}
