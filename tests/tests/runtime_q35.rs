//! Hot-plug on a q35 domain: the root complex takes no hot-plugged device,
//! so the plan gives a q35 domain spare `pcie-root-port`s (`pvio-rp0`...)
//! and `block-attach` puts each new PV disk behind a free one. Two PV
//! disks are hot-plugged into a running q35 guest started with `pvio
//! create`; the guest sees each behind its own root port, writes to it
//! (the data reaches the image), and both are unplugged; the second port
//! is free again for a third disk. A PV NIC on a test bridge is
//! hot-plugged behind a root port too, and unplugged; `shutdown -w` ends
//! the domain.

mod runtime_support;

use std::time::Duration;

use runtime_support::{alive, head, link_exists, Env, TestBridge};

const T: Duration = Duration::from_secs(120);

/// Prints the PCI path of `$1` (a block device) and its serial, writes
/// `$2` to it.
const SCRIPT: &str = r#"
echo GUEST-UP
show() { echo "HOTPLUGGED $1 serial=$(cat /sys/block/$1/serial) path=$(readlink -f /sys/block/$1/device)"; }
echo WAIT-XVDB
wait_for /sys/block/vda
show vda
printf 'Q35-DATA-xvdb' | dd of=/dev/vda bs=512 conv=sync,fsync 2>/dev/null
echo WAIT-XVDC
wait_for /sys/block/vdb
show vdb
printf 'Q35-DATA-xvdc' | dd of=/dev/vdb bs=512 conv=sync,fsync 2>/dev/null
sync
echo BOTH-WRITTEN
wait_gone /sys/block/vda
wait_gone /sys/block/vdb
echo BOTH-GONE
echo WAIT-XVDD
wait_for /sys/block/vda
show vda
echo WAIT-NIC
wait_for /sys/class/net/eth0
echo "NIC eth0 driver=$(basename $(readlink /sys/class/net/eth0/device/driver)) path=$(readlink -f /sys/class/net/eth0/device)"
wait_gone /sys/class/net/eth0
echo NIC-GONE
echo WAITING-FOR-POWER-BUTTON
sleep 600
"#;

/// The PCI bus of the device of a `HOTPLUGGED` line: the bus of its last
/// PCI address in the sysfs path (`0000:01:00.0` -> `0000:01`).
fn pci_bus(line: &str) -> String {
    let path = line.split("path=").nth(1).unwrap_or_default();
    let last = path
        .split('/')
        .rfind(|c| c.len() == 12 && c.as_bytes().get(4) == Some(&b':'))
        .unwrap_or_else(|| panic!("no PCI address in {line}"));
    last[..7].to_owned()
}

#[test]
fn pv_disks_hot_plug_into_a_q35_domain_behind_spare_root_ports() {
    let env = Env::new();
    let br = TestBridge::new("q");
    let xvdb = env.image("xvdb.img", 8);
    let xvdc = env.image("xvdc.img", 8);
    let xvdd = env.image("xvdd.img", 8);
    let initramfs = env.initramfs(&pvio_tests::strict(SCRIPT));
    let cfg = env.config(
        "q35hp",
        &initramfs,
        "machine = 'q35'\non_poweroff = 'destroy'",
    );

    let dry = env.ok(&["create", "--dry-run", cfg.to_str().unwrap()]);
    assert!(dry.contains("pcie-root-port,id=pvio-rp3"), "{dry}");
    let out = env.ok(&["create", cfg.to_str().unwrap()]);
    assert!(out.contains("q35hp (id 1) is running"), "{out}");
    let rec = env.record("q35hp");
    let qemu = u64::from(rec.qemu_pid.expect("qemu pid"));

    env.wait_console("q35hp", "WAIT-XVDB", T);
    env.ok(&[
        "block-attach",
        "q35hp",
        &format!("file:{},xvdb,w", xvdb.display()),
    ]);
    let first = env.wait_console("q35hp", "HOTPLUGGED vda", T);
    assert!(first.contains("serial=xvdb"), "{first}");
    env.wait_console("q35hp", "WAIT-XVDC", T);
    env.ok(&[
        "block-attach",
        "q35hp",
        &format!("file:{},xvdc,w", xvdc.display()),
    ]);
    let second = env.wait_console("q35hp", "HOTPLUGGED vdb", T);
    assert!(second.contains("serial=xvdc"), "{second}");
    // Each sits behind a root port (not on bus 0), each behind its own.
    let (b1, b2) = (pci_bus(&first), pci_bus(&second));
    assert!(b1 != "0000:00" && b2 != "0000:00", "{first}\n{second}");
    assert_ne!(b1, b2, "{first}\n{second}");

    env.wait_console("q35hp", "BOTH-WRITTEN", T);
    env.ok(&["block-detach", "q35hp", "xvdb"]);
    env.ok(&["block-detach", "q35hp", "xvdc"]);
    env.wait_console("q35hp", "BOTH-GONE", T);
    assert_eq!(head(&xvdb, 13), b"Q35-DATA-xvdb");
    assert_eq!(head(&xvdc, 13), b"Q35-DATA-xvdc");

    // The freed port takes the next disk.
    env.wait_console("q35hp", "WAIT-XVDD", T);
    env.ok(&[
        "block-attach",
        "q35hp",
        &format!("file:{},xvdd,w", xvdd.display()),
    ]);
    let third = env.wait_console("q35hp", "HOTPLUGGED vda serial=xvdd", T);
    assert_eq!(pci_bus(&third), b1, "{first}\n{third}");
    eprintln!("{first}\n{second}\n{third}");

    // A PV NIC goes behind a free root port as well (xvdd holds the first).
    env.wait_console("q35hp", "WAIT-NIC", T);
    let bridge = format!("bridge={}", br.name);
    env.ok(&["network-attach", "q35hp", "model=virtio", &bridge]);
    let tap = env.record("q35hp").nics[0].tap.clone();
    let nic = env.wait_console("q35hp", "NIC eth0", T);
    eprintln!("{nic}");
    assert!(nic.contains("driver=virtio_net"), "{nic}");
    let nic_bus = pci_bus(&nic);
    assert!(nic_bus != "0000:00" && nic_bus != b1, "{third}\n{nic}");
    env.ok(&["network-detach", "q35hp", "0"]);
    env.wait_console("q35hp", "NIC-GONE", T);
    assert!(!link_exists(&tap), "tap {tap} left after network-detach");

    env.wait_console("q35hp", "WAITING-FOR-POWER-BUTTON", T);
    let out = env.ok(&["shutdown", "-w", "q35hp"]);
    assert!(out.contains("q35hp ended: poweroff"), "{out}");
    assert!(!alive(qemu), "QEMU still runs");
    assert!(
        env.sockets("q35hp").is_empty(),
        "{:?}",
        env.sockets("q35hp")
    );
}
