//! `pvio save` and `pvio restore` on a real guest: it counts in RAM and
//! writes numbered, checksummed records to its PV disk (served by pvio's
//! backend) and its emulated IDE disk; saved and restored, it goes on
//! counting from where it was with no reboot, and every record it
//! flushed reads back. `save -c` keeps it running, `save -p` leaves it
//! paused; a truncated file and a changed header are refused with one
//! line and leave nothing behind.

mod runtime_support;

use std::time::Duration;

use pvio_hvm_runtime::domain::record::{DomainState, Origin};
use runtime_support::{verify_records, Env};

const T: Duration = Duration::from_secs(180);

/// Each round writes record `i` (with its checksum) into block `i` of
/// both disks, flushed, then prints `COUNT i`; the count lives only in
/// the guest's RAM. `GUEST-BOOTED` is printed once per boot.
const SCRIPT: &str = r#"
echo GUEST-BOOTED
i=0
while true; do
  i=$((i+1))
  sum=$(( (i * 2654435761) % 4294967296 ))
  rec=$(printf "REC %d %d END" $i $sum)
  printf "%s" "$rec" | dd of=/dev/vda bs=512 seek=$i conv=sync,fsync 2>/dev/null || echo "IO-ERROR vda $i"
  printf "%s" "$rec" | dd of=/dev/sda bs=512 seek=$i conv=sync,fsync 2>/dev/null || echo "IO-ERROR sda $i"
  echo "COUNT $i"
  sleep 0.1
done
"#;

#[test]
fn a_saved_guest_is_restored_where_it_was_and_its_records_verify() {
    let env = Env::new();
    let pv = env.image("pv.img", 8);
    let ide = env.image("ide.img", 8);
    let initramfs = env.initramfs(SCRIPT);
    let cfg = env.config(
        "sr",
        &initramfs,
        &format!(
            "disk = [ 'file:{},xvda,w', 'file:{},hda,w' ]",
            pv.display(),
            ide.display()
        ),
    );
    env.ok(&["create", cfg.to_str().unwrap()]);
    env.wait_number_past("sr", "COUNT ", 5, T);

    // -c: saved, and it runs on.
    let keep = env.path("sr-c.save");
    env.ok(&["save", "-c", "sr", keep.to_str().unwrap()]);
    assert_eq!(env.record("sr").state, DomainState::Running);
    let c = env.last_number("sr", "COUNT ");
    env.wait_number_past("sr", "COUNT ", c + 2, T);
    // Its images are in use: restoring the copy now is refused.
    let err = env.fails(&["restore", keep.to_str().unwrap()]);
    assert!(
        err.contains("already exists") || err.contains("in use"),
        "{err}"
    );

    // -p: saved, and left paused; unpause resumes it.
    let paused = env.path("sr-p.save");
    env.ok(&["save", "-p", "sr", paused.to_str().unwrap()]);
    assert_eq!(env.record("sr").state, DomainState::Paused);
    let p = env.last_number("sr", "COUNT ");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        env.last_number("sr", "COUNT "),
        p,
        "a paused guest counts on"
    );
    env.ok(&["unpause", "sr"]);
    env.wait_number_past("sr", "COUNT ", p + 2, T);

    // Saved: the domain ends.
    let file = env.path("sr.save");
    let out = env.ok(&["save", "sr", file.to_str().unwrap()]);
    assert!(out.contains("saved to"), "{out}");
    let r = env.record("sr");
    assert_eq!(r.state, DomainState::Ended);
    assert_eq!(r.ended.as_ref().unwrap().cause, "saved");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "a save file holds the guest's memory");
    let at_save = env.last_number("sr", "COUNT ");
    // Every record the guest flushed before the save is on both disks.
    verify_records(&pv, at_save);
    verify_records(&ide, at_save);

    // Refused: a truncated file, a changed header; nothing is left.
    let bytes = std::fs::read(&file).unwrap();
    let short = env.path("short.save");
    std::fs::write(&short, &bytes[..bytes.len() / 2]).unwrap();
    let err = env.fails(&["restore", short.to_str().unwrap()]);
    assert!(err.contains("is truncated"), "{err}");
    let mut changed = bytes.clone();
    let at = changed.windows(4).position(|w| w == b"\"sr\"").unwrap();
    changed[at + 1] = b'x';
    let bad = env.path("changed.save");
    std::fs::write(&bad, &changed).unwrap();
    let err = env.fails(&["restore", bad.to_str().unwrap()]);
    assert!(err.contains("damaged header"), "{err}");
    let mut v2 = bytes.clone();
    v2[8] = 9;
    std::fs::write(&bad, &v2).unwrap();
    let err = env.fails(&["restore", bad.to_str().unwrap()]);
    assert!(err.contains("format version 9"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    // An image changed in size since the save is refused, naming it.
    let len = std::fs::metadata(&ide).unwrap().len();
    let resize = |n: u64| {
        std::fs::OpenOptions::new()
            .write(true)
            .open(&ide)
            .unwrap()
            .set_len(n)
            .unwrap();
    };
    resize(len + 4096);
    let err = env.fails(&["restore", file.to_str().unwrap()]);
    assert!(err.contains(&format!("image {}", ide.display())), "{err}");
    assert!(err.contains("was saved with"), "{err}");
    resize(len);
    let list = env.ok(&["list", "--json"]);
    assert!(
        !list.contains("\"sr\""),
        "a refused restore left a domain: {list}"
    );

    // Restored: it counts on from where it was, with no reboot.
    let out = env.ok(&["restore", file.to_str().unwrap()]);
    assert!(out.contains("restored"), "{out}");
    let r = env.record("sr");
    assert_eq!(r.origin, Origin::Restored);
    assert_eq!(r.state, DomainState::Running);
    let list = env.ok(&["list", "--json"]);
    assert!(list.contains("\"restored\""), "{list}");
    let now = env.wait_number_past("sr", "COUNT ", at_save + 5, T);
    assert_eq!(
        env.count_console("sr", "GUEST-BOOTED"),
        1,
        "the guest rebooted"
    );
    assert_eq!(
        env.count_console("sr", "IO-ERROR"),
        0,
        "the guest saw an I/O error"
    );
    let first_after = std::fs::read_to_string(env.console_path("sr"))
        .unwrap()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("COUNT "))
        .filter_map(|n| n.trim().parse::<u64>().ok())
        .find(|n| *n > at_save)
        .unwrap();
    assert_eq!(first_after, at_save + 1, "the count went on from the save");
    env.ok(&["destroy", "sr"]);
    verify_records(&pv, now);
    verify_records(&ide, now);

    // -p on restore: it comes back paused; -e returns before it is in.
    let out = env.ok(&["restore", "-e", "-p", paused.to_str().unwrap()]);
    assert!(out.contains("is being restored"), "{out}");
    env.wait_record("sr", "paused", T, |r| r.state == DomainState::Paused);
    env.ok(&["unpause", "sr"]);
    env.wait_record("sr", "running", T, |r| r.state == DomainState::Running);
    env.ok(&["destroy", "sr"]);

    // A config given to restore replaces the saved one (as xl restore
    // FILE CONFIG); its name is the domain's.
    let renamed = env.path("sr2.cfg");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&renamed, text.replace("name = \"sr\"", "name = \"sr2\"")).unwrap();
    env.ok(&["restore", file.to_str().unwrap(), renamed.to_str().unwrap()]);
    let r = env.record("sr2");
    assert_eq!(
        (r.state, r.origin),
        (DomainState::Running, Origin::Restored)
    );
    env.ok(&["destroy", "sr2"]);
}

#[test]
fn hot_plugged_devices_and_cd_media_come_back_where_they_were() {
    let env = Env::new();
    let br = runtime_support::TestBridge::new("sv");
    let pv = env.image("pv.img", 8);
    let hot = env.image("hot.img", 8);
    let iso = env.iso("cd.iso", "hello\n");
    // The guest waits for the hot-plugged disk, then writes to it.
    let script = r#"
echo GUEST-BOOTED
wait_for /dev/vdb || echo NO-VDB
i=0
while true; do
  i=$((i+1))
  printf "HOT %d END" $i | dd of=/dev/vdb bs=512 seek=$i conv=sync,fsync 2>/dev/null || echo "IO-ERROR vdb $i"
  echo "COUNT $i"
  sleep 0.1
done
"#;
    let initramfs = env.initramfs(script);
    let cfg = env.config(
        "hp",
        &initramfs,
        &format!(
            "disk = [ 'file:{},xvda,w', ',hdc:cdrom,r' ]\nvif = [ 'type=vif,bridge={}' ]",
            pv.display(),
            br.name
        ),
    );
    env.ok(&["create", cfg.to_str().unwrap()]);
    env.wait_console("hp", "GUEST-BOOTED", T);
    env.ok(&[
        "block-attach",
        "hp",
        &format!("file:{},xvdb,w", hot.display()),
    ]);
    env.ok(&[
        "network-attach",
        "hp",
        &format!("bridge={}", br.name),
        "model=e1000",
    ]);
    env.ok(&["cd-insert", "hp", "hdc", iso.to_str().unwrap()]);
    let before = env.record("hp");
    env.wait_number_past("hp", "COUNT ", 3, T);

    let file = env.path("hp.save");
    env.ok(&["save", "hp", file.to_str().unwrap()]);
    let at_save = env.last_number("hp", "COUNT ");
    env.ok(&["restore", file.to_str().unwrap()]);
    env.wait_number_past("hp", "COUNT ", at_save + 3, T);
    assert_eq!(
        env.count_console("hp", "GUEST-BOOTED"),
        1,
        "the guest rebooted"
    );
    assert_eq!(env.count_console("hp", "IO-ERROR"), 0);
    let after = env.record("hp");
    let disks = |r: &pvio_hvm_runtime::domain::DomainRecord| {
        r.disks
            .iter()
            .map(|d| (d.vdev.clone(), d.image.clone(), d.hotplugged))
            .collect::<Vec<_>>()
    };
    assert_eq!(disks(&after), disks(&before), "disks and CD media as saved");
    let nics = |r: &pvio_hvm_runtime::domain::DomainRecord| {
        r.nics
            .iter()
            .map(|n| (n.devid, n.mac, n.model.clone(), n.hotplugged))
            .collect::<Vec<_>>()
    };
    assert_eq!(nics(&after), nics(&before), "NICs (MACs) as saved");
    // The hot-plugged disk still detaches like any other.
    env.ok(&["block-detach", "hp", "xvdb"]);

    // A domain with a host PCI device is neither saved nor moved. This
    // host has no IOMMU to pass one through, so the record says it has
    // one, as `pvio assign` would have written it.
    let record_path = env.run_dir.join("hp").join("domain.json");
    let mut r = env.record("hp");
    r.pci.push(pvio_hvm_runtime::domain::record::PciEntry {
        host: "0000:03:00.0".parse().unwrap(),
        id: "pt-0000-03-00.0".into(),
    });
    std::fs::write(&record_path, serde_json::to_vec(&r).unwrap()).unwrap();
    let err = env.fails(&["save", "hp", env.path("pt.save").to_str().unwrap()]);
    assert!(err.contains("host PCI device 0000:03:00.0"), "{err}");
    assert!(
        !env.path("pt.save").exists(),
        "a refused save left its file"
    );
    let err = env.fails(&["migrate", "hp", "127.0.0.1"]);
    assert!(err.contains("host PCI device 0000:03:00.0"), "{err}");
    env.ok(&["destroy", "hp"]);
}

#[test]
fn nomigrate_in_the_config_refuses_save_and_migrate() {
    let env = Env::new();
    let initramfs = env.initramfs("echo GUEST-BOOTED\nwhile true; do sleep 1; done\n");
    let cfg = env.config("nm", &initramfs, "nomigrate = 1");
    env.ok(&["create", cfg.to_str().unwrap()]);
    env.wait_console("nm", "GUEST-BOOTED", T);
    let file = env.path("nm.save");
    let err = env.fails(&["save", "nm", file.to_str().unwrap()]);
    assert!(err.contains("nomigrate = 1"), "{err}");
    assert!(!file.exists(), "a refused save left its file");
    assert_eq!(env.record("nm").state, DomainState::Running);
    env.ok(&["destroy", "nm"]);
}
