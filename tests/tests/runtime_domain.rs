//! A real domain started with `pvio create` from an xl config: direct boot
//! of the kit's kernel, a PV disk (`xvda`, pvio's block backend in the
//! supervisor), an emulated IDE disk (`hda`), an empty IDE CD-ROM (`hdc`)
//! and a PV NIC (`type=vif`, pvio's net backend in the supervisor) on a
//! test bridge, whose other side is a veth into a network namespace of the
//! test's own: the guest pings that address and nothing else. While it
//! runs: a second PV NIC is hot-plugged and unplugged; a second PV disk is
//! hot-plugged, written and unplugged; an ISO is inserted, mounted and
//! ejected; then `shutdown -w` ends it and nothing is left behind.

mod runtime_support;

use std::time::Duration;

use runtime_support::peer::BridgePeer;
use runtime_support::{alive, head, link_exists, Env, TestBridge};

const T: Duration = Duration::from_secs(120);

const SCRIPT: &str = r#"
echo GUEST-UP
for d in /sys/block/*; do echo "DISK $(basename $d) serial=$(cat $d/serial 2>/dev/null) size=$(cat $d/size)"; done
# The PV disk (serial xvda) and the IDE disk: write a marker to each.
[ "$(cat /sys/block/vda/serial)" = xvda ]
printf 'PV-DATA-xvda' | dd of=/dev/vda bs=512 conv=sync,fsync 2>/dev/null
printf 'IDE-DATA-hda' | dd of=/dev/sda bs=512 conv=sync,fsync 2>/dev/null
sync
echo DISKS-WRITTEN
# The PV NIC of the config carries traffic to the test's namespace.
wait_for /sys/class/net/eth0
echo "CONFIG-NIC eth0 mac=$(cat /sys/class/net/eth0/address) driver=$(basename $(readlink /sys/class/net/eth0/device/driver))"
ip link set lo up
ip link set eth0 up
ip addr add 10.98.0.2/24 dev eth0
ping -c 3 -W 5 10.98.0.1
echo PING-OK
# A hot-plugged PV NIC.
echo WAIT-NIC
wait_for /sys/class/net/eth1
echo "NIC eth1 mac=$(cat /sys/class/net/eth1/address) driver=$(basename $(readlink /sys/class/net/eth1/device/driver))"
wait_gone /sys/class/net/eth1
echo NIC-GONE
# A hot-plugged PV disk.
echo WAIT-XVDB
wait_for /sys/block/vdb
echo "HOTPLUGGED serial=$(cat /sys/block/vdb/serial)"
printf 'HOTPLUG-DATA-xvdb' | dd of=/dev/vdb bs=512 conv=sync,fsync 2>/dev/null
sync
echo XVDB-WRITTEN
wait_gone /sys/block/vdb
echo XVDB-GONE
# A CD inserted into the empty drive.
echo WAIT-CD
mkdir -p /mnt
i=0
until mount -t iso9660 -o ro /dev/sr0 /mnt 2>/dev/null; do i=$((i+1)); [ $i -gt 600 ] && exit 1; sleep 0.2; done
echo "CD-FILE $(cat /mnt/hello.txt)"
umount /mnt
echo CD-READ
echo WAITING-FOR-POWER-BUTTON
sleep 600
"#;

#[test]
fn a_domain_with_pv_and_emulated_devices_changes_while_it_runs() {
    let env = Env::new();
    let br = TestBridge::new("d");
    let peer = BridgePeer::new(&br, "10.98.0.1");
    let pv = env.image("pv.img", 16);
    let ide = env.image("ide.img", 16);
    let hot = env.image("hot.img", 8);
    let iso = env.iso("cd.iso", "hello from the ISO\n");

    let initramfs = env.initramfs(&pvio_tests::strict(SCRIPT));
    let cfg = env.config(
        "rt1",
        &initramfs,
        &format!(
            "disk = [ 'file:{},xvda,w', 'file:{},hda,w', ',hdc:cdrom,r' ]\n\
             vif = [ 'type=vif,bridge={},mac=00:16:3e:aa:bb:00' ]\n\
             on_poweroff = 'destroy'",
            pv.display(),
            ide.display(),
            br.name,
        ),
    );

    let out = env.ok(&["create", cfg.to_str().unwrap()]);
    assert!(out.contains("rt1 (id 1) is running"), "{out}");
    let rec = env.record("rt1");
    let qemu = u64::from(rec.qemu_pid.expect("qemu pid"));
    let supervisor = u64::from(rec.supervisor_pid.expect("supervisor pid"));

    let list = env.ok(&["list"]);
    assert!(
        list.lines()
            .any(|l| l.starts_with("rt1") && l.contains("running")),
        "{list}"
    );
    let json = env.ok(&["list", "--json"]);
    assert!(
        json.contains("\"name\": \"rt1\"") && json.contains("\"accelerator\""),
        "{json}"
    );

    // Both disks and the PV NIC are there; data reaches both images.
    env.wait_console("rt1", "DISKS-WRITTEN", T);
    let console = std::fs::read_to_string(env.console_path("rt1")).unwrap();
    assert!(console.contains("DISK vda serial=xvda"), "{console}");
    assert!(console.contains("DISK sda"), "{console}");
    assert!(console.contains("DISK sr0"), "{console}");
    assert_eq!(head(&pv, 12), b"PV-DATA-xvda");
    assert_eq!(head(&ide, 12), b"IDE-DATA-hda");

    // The config's PV NIC: its tap is on the bridge, the guest has a
    // virtio_net eth0 and pings the namespace through it.
    let config_tap = env.record("rt1").nics[0].tap.clone();
    let master = std::fs::read_link(format!("/sys/class/net/{config_tap}/master"))
        .expect("the config NIC's tap joined a bridge");
    assert!(master.ends_with(&br.name), "{master:?}");
    let line = env.wait_console("rt1", "CONFIG-NIC eth0", T);
    assert!(
        line.contains("mac=00:16:3e:aa:bb:00 driver=virtio_net"),
        "{line}"
    );
    env.wait_console("rt1", "PING-OK", T);
    let console = std::fs::read_to_string(env.console_path("rt1")).unwrap();
    let summary = console
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or_default();
    assert!(
        summary.contains("packets received") && !summary.contains(" 0 packets received"),
        "{console}"
    );
    assert!(peer.packets_to_peer() >= 3, "{}", peer.packets_to_peer());

    // A second PV NIC on the test bridge, hot-plugged: its tap is made and
    // joined, the guest sees it; unplugged, the tap goes.
    env.wait_console("rt1", "WAIT-NIC", T);
    let bridge = format!("bridge={}", br.name);
    let out = env.ok(&[
        "network-attach",
        "rt1",
        "model=virtio",
        &bridge,
        "mac=00:16:3e:aa:bb:01",
    ]);
    assert!(out.contains("NIC 1 attached"), "{out}");
    let tap = env.record("rt1").nics[1].tap.clone();
    assert!(link_exists(&tap), "tap {tap}");
    let master =
        std::fs::read_link(format!("/sys/class/net/{tap}/master")).expect("tap joined a bridge");
    assert!(master.ends_with(&br.name), "{master:?}");
    let line = env.wait_console("rt1", "NIC eth1", T);
    assert!(
        line.contains("mac=00:16:3e:aa:bb:01 driver=virtio_net"),
        "{line}"
    );
    assert!(env
        .ok(&["network-list", "rt1"])
        .contains("00:16:3e:aa:bb:01"));
    let err = env.fails(&["network-attach", "rt1", "model=virtio", &bridge, "devid=0"]);
    assert!(err.contains("already in use"), "{err}");
    env.ok(&["network-detach", "rt1", "00:16:3e:aa:bb:01"]);
    env.wait_console("rt1", "NIC-GONE", T);
    assert!(!link_exists(&tap), "tap {tap} left after network-detach");

    // Hot-plug a second PV disk; attaching a vdev in use is refused.
    env.wait_console("rt1", "WAIT-XVDB", T);
    let spec = format!("file:{},xvdb,w", hot.display());
    env.ok(&["block-attach", "rt1", &spec]);
    let err = env.fails(&["block-attach", "rt1", &spec]);
    assert!(err.contains("xvdb is already in use"), "{err}");
    let err = env.fails(&[
        "block-attach",
        "rt1",
        &format!("file:{},xvda,w", hot.display()),
    ]);
    assert!(err.contains("xvda is already in use"), "{err}");
    let listed = env.ok(&["block-list", "rt1"]);
    assert!(
        listed.contains("xvdb") && listed.contains("hot-plugged"),
        "{listed}"
    );
    assert!(env
        .wait_console("rt1", "HOTPLUGGED", T)
        .contains("serial=xvdb"));
    env.wait_console("rt1", "XVDB-WRITTEN", T);
    env.ok(&["block-detach", "rt1", "xvdb"]);
    env.wait_console("rt1", "XVDB-GONE", T);
    assert_eq!(head(&hot, 17), b"HOTPLUG-DATA-xvdb");
    assert!(!env.run_dir.join("rt1/blk-xvdb.sock").exists());
    assert!(!env.ok(&["block-list", "rt1"]).contains("xvdb"));

    // A CD in the empty drive: mounted and read in the guest, then ejected.
    env.wait_console("rt1", "WAIT-CD", T);
    env.ok(&["cd-insert", "rt1", "hdc", iso.to_str().unwrap()]);
    let line = env.wait_console("rt1", "CD-FILE", T);
    assert!(line.contains("hello from the ISO"), "{line}");
    env.wait_console("rt1", "CD-READ", T);
    env.ok(&["cd-eject", "rt1", "hdc"]);
    assert!(env.ok(&["block-list", "rt1"]).contains("(empty)"));

    // The power button ends it; nothing is left behind.
    env.wait_console("rt1", "WAITING-FOR-POWER-BUTTON", T);
    let out = env.ok(&["shutdown", "-w", "rt1"]);
    assert!(out.contains("rt1 ended: poweroff"), "{out}");
    assert!(std::fs::read_to_string(env.console_path("rt1"))
        .unwrap()
        .contains("GUEST-POWER-BUTTON"));
    assert!(!env.ok(&["list"]).contains("rt1"));
    let rec = env.record("rt1");
    assert_eq!(rec.ended.expect("ended").cause, "poweroff");
    assert!(!alive(qemu), "QEMU still runs");
    assert!(!alive(supervisor), "the supervisor still runs");
    assert!(env.sockets("rt1").is_empty(), "{:?}", env.sockets("rt1"));
    assert!(
        !link_exists(&config_tap),
        "tap {config_tap} left after shutdown"
    );
}
