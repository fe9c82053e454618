//! PCI passthrough against a real kernel: a q35 guest with an emulated
//! Intel IOMMU (`intel-iommu`, `intel_iommu=on`) runs the real `pvio` on its
//! own PCI devices: a virtio-rng, an e1000, a mounted virtio-blk disk and
//! QEMU's `edu` DMA test device.
//!
//! One guest boot runs every step (a boot costs seconds under TCG); the
//! script prints a `== name` header before each step and the host checks
//! each section. Nothing is skipped: a missing QEMU, kernel or binary fails
//! with what to install or build.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use pvio_tests::{pvio_bin, Guest};

const RNG: &str = "0000:00:03.0";
const NIC: &str = "0000:00:04.0";
const DISK: &str = "0000:00:05.0";
const EDU: &str = "0000:00:06.0";

/// The self-test binary `cargo build --workspace --bins` puts beside `pvio`.
fn selftest_bin() -> PathBuf {
    let path = pvio_bin().with_file_name("pvio-dma-selftest");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first",
        path.display()
    );
    path
}

/// A small ext4 image for the guest to mount.
fn disk_image(dir: &std::path::Path) -> PathBuf {
    let img = dir.join("disk.img");
    let file = std::fs::File::create(&img).expect("create disk image");
    file.set_len(16 << 20).expect("size disk image");
    let out = Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .arg(&img)
        .output()
        .expect("mkfs.ext4 (package e2fsprogs, see scripts/setup.sh)");
    assert!(
        out.status.success(),
        "mkfs.ext4: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    img
}

const SCRIPT: &str = r#"
export PVIO_STATE_DIR=/run/pvio
drv() { l=$(readlink /sys/bus/pci/devices/$1/driver) && basename "$l" || echo none; }
grp() { basename "$(readlink /sys/bus/pci/devices/$1/iommu_group)"; }
mkdir -p /mnt
i=0; while [ ! -b /dev/vda ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done
mount -t ext4 /dev/vda /mnt || { echo "mount failed"; ls /sys/block /dev; }

echo "== list"
pvio pci-list --all 2>&1; echo "rc=$?"

echo "== json"
pvio pci-list --json > /tmp/list.json 2>/tmp/list.err; echo "rc=$?"
cat /tmp/list.err
G=$(grp RNG)
echo "group=$G"
echo "members=$(ls /sys/kernel/iommu_groups/$G/devices | tr '\n' ' ')"
echo "== json-body"
cat /tmp/list.json

echo "== add-rng"
pvio pci-assignable-add RNG 2>&1; echo "rc=$?"
echo "driver=$(drv RNG)"
G=$(grp RNG)
ls /dev/vfio/$G >/dev/null && echo "devnode=/dev/vfio/$G"

echo "== assignable-list"
pvio pci-assignable-list 2>&1; echo "rc=$?"

echo "== remove-rng"
pvio pci-assignable-remove -r RNG 2>&1; echo "rc=$?"
echo "driver=$(drv RNG)"
echo "hwrng=$(head -c 16 /dev/hwrng | wc -c)"

echo "== disk"
pvio pci-assignable-add DISK 2>&1; echo "rc=$?"
echo "driver=$(drv DISK)"

echo "== race"
pvio assign NIC dom-a > /tmp/a 2>&1 &
A=$!
pvio assign NIC dom-b > /tmp/b 2>&1 &
B=$!
wait $A; echo "rc=$?" >> /tmp/a
wait $B; echo "rc=$?" >> /tmp/b
cat /tmp/a /tmp/b
echo "driver=$(drv NIC)"

echo "== list-owned"
pvio pci-list 2>&1 | grep -A1 "^NIC"

echo "== release"
pvio release NIC 2>&1; echo "rc=$?"
echo "driver=$(drv NIC)"

echo "== bad"
pvio pci-assignable-add 0000:00:3g.0 2>&1; echo "rc=$?"

echo "== missing"
pvio pci-assignable-add 0000:00:1e.0 2>&1; echo "rc=$?"

echo "== dry"
pvio assign --dry-run RNG winxp 2>&1; echo "rc=$?"
echo "driver=$(drv RNG)"

echo "== dma"
pvio pci-assignable-add EDU 2>&1; echo "rc=$?"
pvio-dma-selftest EDU 2>&1; echo "rc=$?"
pvio pci-assignable-remove EDU 2>&1; echo "rc=$?"
echo "driver=$(drv EDU)"
echo "== end"
"#;

/// Splits the output into `== name` sections.
fn sections(output: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut name = String::new();
    for line in output.lines() {
        if let Some(n) = line.strip_prefix("== ") {
            name = n.trim().to_owned();
            out.insert(name.clone(), String::new());
        } else if let Some(body) = out.get_mut(&name) {
            body.push_str(line);
            body.push('\n');
        }
    }
    out
}

/// `pci-list --json` as a script reads it: the virtio-rng with its address,
/// names, driver, IOMMU group and the group's other members (as the
/// guest's sysfs lists them), and its verdict.
fn check_json(head: &str, body: &str, ctx: &str) {
    assert!(head.contains("rc=0"), "{ctx}");
    let field = |name: &str| -> String {
        head.lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} line{ctx}"))
            .trim()
            .to_owned()
    };
    let group: u64 = field("group=")
        .parse()
        .unwrap_or_else(|e| panic!("group: {e}{ctx}"));
    let mut members: Vec<String> = field("members=")
        .split_whitespace()
        .filter(|m| *m != RNG)
        .map(str::to_owned)
        .collect();
    members.sort();
    let list: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("pci-list --json: {e}{ctx}"));
    assert_eq!(list["iommu"], true, "{ctx}");
    let devices = list["devices"].as_array().expect("a device list");
    assert!(
        devices.iter().all(|d| d["is_bridge"] == false),
        "without --all, no bridges{ctx}"
    );
    let rng = devices
        .iter()
        .find(|d| d["bdf"] == RNG)
        .unwrap_or_else(|| panic!("no {RNG} in the JSON{ctx}"));
    assert_eq!(rng["vendor_id"], 0x1af4, "{ctx}");
    assert_eq!(rng["vendor_name"], "Red Hat, Inc.", "{ctx}");
    let name = rng["device_name"].as_str().unwrap_or_default();
    assert!(name.contains("Virtio RNG"), "{name}{ctx}");
    assert!(rng["class_name"].is_string(), "{ctx}");
    assert_eq!(rng["driver"], "virtio-pci", "{ctx}");
    assert_eq!(rng["iommu_group"], group, "{ctx}");
    let mut listed: Vec<String> = rng["group_members"]
        .as_array()
        .expect("group_members")
        .iter()
        .map(|m| m.as_str().unwrap_or_default().to_owned())
        .collect();
    listed.sort();
    assert_eq!(listed, members, "{ctx}");
    assert_eq!(rng["assignable"], true, "{ctx}");
    assert_eq!(rng["state"], "host", "{ctx}");
    assert_eq!(rng["refusals"], serde_json::json!([]), "{ctx}");
    assert_eq!(rng["owner"], serde_json::Value::Null, "{ctx}");
    // The mounted disk's verdict says why, as data.
    let disk = devices
        .iter()
        .find(|d| d["bdf"] == DISK)
        .unwrap_or_else(|| panic!("no {DISK} in the JSON{ctx}"));
    assert_eq!(disk["assignable"], false, "{ctx}");
    assert_eq!(disk["refusals"][0]["reason"], "host_needs", "{ctx}");
}

#[test]
fn passthrough_on_a_real_kernel_with_an_emulated_iommu() {
    let dir = tempfile::tempdir().expect("tempdir");
    let img = disk_image(dir.path());
    let drive = format!("file={},if=none,id=d0,format=raw", img.display());
    let script = SCRIPT
        .replace("RNG", RNG)
        .replace("NIC", NIC)
        .replace("DISK", DISK)
        .replace("EDU", EDU);
    let out = Guest::builder()
        .machine("q35")
        .machine_option("kernel-irqchip=split")
        .memory_mib(512)
        .cmdline("intel_iommu=on")
        .timeout(Duration::from_secs(600))
        .qemu_args(&[
            "-device",
            "intel-iommu,intremap=on,caching-mode=on",
            "-device",
            "virtio-rng-pci,addr=0x3",
            "-device",
            "e1000,addr=0x4",
            "-drive",
            &drive,
            "-device",
            "virtio-blk-pci,drive=d0,addr=0x5",
            "-device",
            "edu,addr=0x6",
        ])
        .modules(&[
            "virtio_pci",
            "virtio_rng",
            "virtio_blk",
            "e1000",
            "crc32c_generic",
            "ext4",
            "vfio",
            "vfio_iommu_type1",
            "vfio-pci",
        ])
        .host_binary(pvio_bin())
        .host_binary(selftest_bin())
        .run(&script)
        .unwrap_or_else(|e| panic!("{e}"));
    let s = sections(&out.output);
    let ctx = format!("\n--- guest output ---\n{}", out.output);
    let sec = |name: &str| -> &str {
        s.get(name)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("no section {name}{ctx}"))
    };
    assert!(s.contains_key("end"), "the script did not finish{ctx}");

    // pci-list shows names, classes, drivers and groups.
    let list = sec("list");
    assert!(list.contains("rc=0"), "{ctx}");
    assert!(
        list.contains(&format!("{RNG} ")) && list.contains("Virtio RNG"),
        "{ctx}"
    );
    assert!(list.contains("82540EM"), "e1000 by name{ctx}");
    assert!(list.contains("[1234:11e8]"), "edu by id{ctx}");
    assert!(list.contains("driver virtio-pci, IOMMU group"), "{ctx}");
    assert!(list.contains("Host bridge"), "--all lists bridges{ctx}");
    assert!(
        list.contains("the filesystem mounted on /mnt (ext4 on /dev/vda)"),
        "{ctx}"
    );
    check_json(sec("json"), sec("json-body"), &ctx);

    // The virtio-rng goes to vfio-pci, its group opens VIABLE, and comes back.
    let add = sec("add-rng");
    assert!(add.contains("rc=0"), "{ctx}");
    assert!(
        add.contains("is bound to vfio-pci") && add.contains("VIABLE"),
        "{ctx}"
    );
    assert!(add.contains("driver=vfio-pci"), "{ctx}");
    assert!(add.contains("devnode=/dev/vfio/"), "{ctx}");
    assert!(
        sec("assignable-list").contains(&format!("{RNG}  owner -  (was on virtio-pci)")),
        "{ctx}"
    );
    let remove = sec("remove-rng");
    assert!(
        remove.contains("rc=0") && remove.contains("driver=virtio-pci"),
        "{ctx}"
    );
    assert!(remove.contains("hwrng=16"), "/dev/hwrng works again{ctx}");

    // The mounted disk is refused as host-needed, and left alone.
    let disk = sec("disk");
    assert!(disk.contains("rc=1"), "{ctx}");
    assert!(
        disk.contains(&format!(
            "the host needs {DISK} for the filesystem mounted on /mnt"
        )),
        "{ctx}"
    );
    assert!(disk.contains("driver=virtio-pci"), "{ctx}");

    // Two concurrent assigns of one device: one wins, one is told why.
    let race = sec("race");
    assert_eq!(race.matches("rc=0").count(), 1, "{ctx}");
    assert_eq!(race.matches("rc=1").count(), 1, "{ctx}");
    assert!(race.contains("is reserved for `dom-"), "{ctx}");
    assert!(
        race.contains("already owned by `dom-") || race.contains("busy:"),
        "{ctx}"
    );
    assert!(race.contains("driver=vfio-pci"), "{ctx}");
    assert!(sec("list-owned").contains("assigned to `dom-"), "{ctx}");
    let release = sec("release");
    assert!(
        release.contains("rc=0") && release.contains("driver=e1000"),
        "{ctx}"
    );

    // A bad and a missing address each give their own error.
    let bad = sec("bad");
    assert!(
        bad.contains("rc=1") && bad.contains("`3g` in `0000:00:3g.0` is not a valid slot"),
        "{ctx}"
    );
    let missing = sec("missing");
    assert!(
        missing.contains("rc=1") && missing.contains("there is no PCI device 0000:00:1e.0"),
        "{ctx}"
    );

    // Dry run prints the writes and what it would add, and changes nothing.
    let dry = sec("dry");
    assert!(dry.contains("rc=0"), "{ctx}");
    assert!(
        dry.contains(&format!(
            "write 'vfio-pci' > /sys/bus/pci/devices/{RNG}/driver_override"
        )),
        "{ctx}"
    );
    // winxp does not run here: what its next create would add.
    assert!(
        dry.contains(&format!(
            "qemu -device vfio-pci,host={RNG},id=pt-0000-00-03.0 (not run now: `winxp` is not running"
        )),
        "{ctx}"
    );
    assert!(dry.contains("driver=virtio-pci"), "{ctx}");

    // edu's DMA engine copies through the IOMMU into a VFIO-mapped buffer.
    let dma = sec("dma");
    assert!(dma.contains("DMA OK: 1024 bytes"), "{ctx}");
    assert!(!dma.contains("rc=1"), "{ctx}");
    assert!(dma.contains("driver=none"), "{ctx}");
}
