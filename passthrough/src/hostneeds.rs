//! Which PCI devices the host itself needs, and for what: the controller
//! behind any mounted filesystem or active swap area, the NIC carrying the
//! default route, and the boot VGA device while a framebuffer console is on
//! it. Taking one of them away hangs or cuts off the host, so passthrough
//! refuses them unless forced.
//!
//! Everything is read under the [`Host`] roots: `proc/self/mountinfo`,
//! `proc/swaps`, `proc/net/route` (IPv4), `proc/net/ipv6_route`,
//! `sys/dev/block`, `sys/class/{block,net,graphics,vtconsole}`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::bdf::Bdf;
use crate::host::Host;
use crate::sysfs::{list_names, read_optional, Sysfs, SysfsError};

/// Reading what the host needs failed.
#[derive(Debug, thiserror::Error)]
pub enum HostNeedsError {
    /// A proc or sys file could not be read.
    #[error("cannot tell which devices the host needs")]
    Read(#[from] SysfsError),
}

type Result<T> = std::result::Result<T, HostNeedsError>;

/// How deep stacked block devices (dm on md on a partition) and stacked
/// network interfaces (a VLAN on a bond on a bridge) are followed.
const MAX_DEPTH: usize = 8;

/// A route flag: the route rejects packets (`unreachable`, `prohibit`).
const RTF_REJECT: u32 = 0x0200;

/// For each PCI device the host needs, what depends on it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostNeeds {
    needs: BTreeMap<Bdf, Vec<String>>,
}

impl HostNeeds {
    /// Reads mounts, swaps, routes and consoles under `host`.
    pub fn scan(host: &Host) -> Result<Self> {
        let mut needs = Self::default();
        needs.scan_mounts(host)?;
        needs.scan_swaps(host)?;
        needs.scan_default_route(host)?;
        needs.scan_default_route6(host)?;
        needs.scan_framebuffer_console(host)?;
        Ok(needs)
    }

    /// What on the host depends on `bdf` (empty if nothing).
    pub fn reasons(&self, bdf: Bdf) -> &[String] {
        self.needs.get(&bdf).map(Vec::as_slice).unwrap_or_default()
    }

    /// Every device the host needs.
    pub fn devices(&self) -> impl Iterator<Item = Bdf> + '_ {
        self.needs.keys().copied()
    }

    /// Records that `bdf` is needed for `why`.
    pub fn add(&mut self, bdf: Bdf, why: String) {
        let list = self.needs.entry(bdf).or_default();
        if !list.contains(&why) {
            list.push(why);
        }
    }

    fn scan_mounts(&mut self, host: &Host) -> Result<()> {
        let path = host.proc_root.join("self/mountinfo");
        let Some(text) = read_optional(&path)? else {
            return Ok(());
        };
        for line in text.lines() {
            let Some(m) = parse_mountinfo_line(line) else {
                continue;
            };
            let mut block = host.sys.root.join("dev/block").join(&m.major_minor);
            if !block.exists() {
                match m.source.strip_prefix("/dev/") {
                    Some(name) if !name.is_empty() => {
                        block = class_block(&host.sys, name);
                    }
                    _ => continue,
                }
            }
            for bdf in block_controllers(&host.sys, &block) {
                self.add(
                    bdf,
                    format!(
                        "the filesystem mounted on {} ({} on {})",
                        m.mountpoint, m.fstype, m.source
                    ),
                );
            }
        }
        Ok(())
    }

    fn scan_swaps(&mut self, host: &Host) -> Result<()> {
        let path = host.proc_root.join("swaps");
        let Some(text) = read_optional(&path)? else {
            return Ok(());
        };
        for line in text.lines().skip(1) {
            let Some(file) = line.split_whitespace().next() else {
                continue;
            };
            let file = unescape_octal(file);
            // A swap file lives on a mounted filesystem, counted above.
            let Some(name) = file.strip_prefix("/dev/") else {
                continue;
            };
            let block = class_block(&host.sys, name);
            for bdf in block_controllers(&host.sys, &block) {
                self.add(bdf, format!("active swap on {file}"));
            }
        }
        Ok(())
    }

    fn scan_default_route(&mut self, host: &Host) -> Result<()> {
        let path = host.proc_root.join("net/route");
        let Some(text) = read_optional(&path)? else {
            return Ok(());
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(iface), Some(dest), Some(mask)) =
                (fields.first(), fields.get(1), fields.get(7))
            else {
                continue;
            };
            if *dest != "00000000" || *mask != "00000000" {
                continue;
            }
            for bdf in net_devices(&host.sys, iface, 0) {
                self.add(bdf, format!("the NIC carrying the default route ({iface})"));
            }
        }
        Ok(())
    }

    /// The IPv6 default route: destination `::` with prefix length 0 in
    /// `/proc/net/ipv6_route` (`dest plen src splen nexthop metric refcnt
    /// use flags iface`, in hex), leaving out reject routes (the kernel's
    /// "unreachable" default on `lo`).
    fn scan_default_route6(&mut self, host: &Host) -> Result<()> {
        let path = host.proc_root.join("net/ipv6_route");
        let Some(text) = read_optional(&path)? else {
            return Ok(());
        };
        for line in text.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(dest), Some(plen), Some(flags), Some(iface)) =
                (fields.first(), fields.get(1), fields.get(8), fields.get(9))
            else {
                continue;
            };
            let default = dest.bytes().all(|b| b == b'0') && dest.len() == 32;
            let reject = u32::from_str_radix(flags, 16).is_ok_and(|f| f & RTF_REJECT != 0);
            if !default || *plen != "00" || reject {
                continue;
            }
            for bdf in net_devices(&host.sys, iface, 0) {
                self.add(
                    bdf,
                    format!("the NIC carrying the IPv6 default route ({iface})"),
                );
            }
        }
        Ok(())
    }

    fn scan_framebuffer_console(&mut self, host: &Host) -> Result<()> {
        let consoles = host.sys.root.join("class/vtconsole");
        let mut active = false;
        for name in list_names(&consoles)? {
            let dir = consoles.join(&name);
            let bound = read_optional(&dir.join("bind"))?.as_deref() == Some("1");
            let kind = read_optional(&dir.join("name"))?.unwrap_or_default();
            if bound && kind.contains("frame buffer") {
                active = true;
            }
        }
        if !active {
            return Ok(());
        }
        let fb0 = host.sys.root.join("class/graphics/fb0/device");
        if let Some(bdf) = host.sys.pci_device_of(&fb0) {
            self.add(bdf, "the framebuffer console (fb0)".to_owned());
        }
        for bdf in host.sys.devices()? {
            if host.sys.boot_vga(bdf)? {
                self.add(
                    bdf,
                    "the boot VGA device, showing the framebuffer console".to_owned(),
                );
            }
        }
        Ok(())
    }
}

/// One line of `/proc/self/mountinfo`, the fields passthrough needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// `major:minor` of the device (`0:NN` for virtual filesystems).
    pub major_minor: String,
    /// Where it is mounted.
    pub mountpoint: String,
    /// The filesystem type.
    pub fstype: String,
    /// The mount source (`/dev/vda1`, `tmpfs`).
    pub source: String,
}

/// Parses a mountinfo line: `id parent M:m root mountpoint opts [tags] -
/// fstype source superopts`.
pub fn parse_mountinfo_line(line: &str) -> Option<Mount> {
    let (head, tail) = line.split_once(" - ")?;
    let head: Vec<&str> = head.split_whitespace().collect();
    let mut tail = tail.split_whitespace();
    let fstype = tail.next()?;
    let source = tail.next()?;
    Some(Mount {
        major_minor: (*head.get(2)?).to_owned(),
        mountpoint: unescape_octal(head.get(4)?),
        fstype: fstype.to_owned(),
        source: unescape_octal(source),
    })
}

/// Undoes the kernel's `\040`-style escapes in mount and swap paths.
pub fn unescape_octal(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            if let Some(digits) = bytes.get(i + 1..i + 4) {
                if let Some(v) = std::str::from_utf8(digits)
                    .ok()
                    .and_then(|d| u8::from_str_radix(d, 8).ok())
                {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn class_block(sys: &Sysfs, name: &str) -> PathBuf {
    let base = name.rsplit('/').next().unwrap_or(name);
    sys.root.join("class/block").join(base)
}

/// The PCI controllers behind a block device: its own, or, for a stacked
/// device (dm, md), those of its `slaves`.
pub fn block_controllers(sys: &Sysfs, block: &Path) -> Vec<Bdf> {
    let mut out = Vec::new();
    collect_block(sys, block, 0, &mut out);
    out.sort();
    out.dedup();
    out
}

fn collect_block(sys: &Sysfs, block: &Path, depth: usize, out: &mut Vec<Bdf>) {
    if depth > MAX_DEPTH {
        return;
    }
    if let Some(bdf) = sys.pci_device_of(block) {
        out.push(bdf);
        return;
    }
    let Ok(resolved) = std::fs::canonicalize(block) else {
        return;
    };
    for dir in [resolved.join("slaves"), resolved.join("../slaves")] {
        for name in list_names(&dir).unwrap_or_default() {
            collect_block(sys, &dir.join(name), depth + 1, out);
        }
    }
}

/// The PCI devices behind a network interface: its own, or those of its
/// lower interfaces (a VLAN's, a bond's slaves, a bridge's ports).
pub fn net_devices(sys: &Sysfs, iface: &str, depth: usize) -> Vec<Bdf> {
    let mut out = Vec::new();
    if depth > MAX_DEPTH {
        return out;
    }
    let dir = sys.root.join("class/net").join(iface);
    if let Some(bdf) = sys.pci_device_of(&dir.join("device")) {
        out.push(bdf);
        return out;
    }
    let mut lower: Vec<String> = list_names(&dir)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|n| n.strip_prefix("lower_").map(str::to_owned))
        .collect();
    lower.extend(list_names(&dir.join("brif")).unwrap_or_default());
    for name in lower {
        out.extend(net_devices(sys, &name, depth + 1));
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::Fixture;

    fn bdf(s: &str) -> Bdf {
        s.parse().unwrap()
    }

    #[test]
    fn mountinfo_lines_parse_with_escapes() {
        let m = parse_mountinfo_line(
            "36 35 98:0 /mnt1 /mnt/my\\040disk rw,noatime master:1 - ext3 /dev/root rw,errors=continue",
        )
        .unwrap();
        assert_eq!(m.major_minor, "98:0");
        assert_eq!(m.mountpoint, "/mnt/my disk");
        assert_eq!(m.fstype, "ext3");
        assert_eq!(m.source, "/dev/root");
        assert_eq!(parse_mountinfo_line("garbage"), None);
    }

    #[test]
    fn the_disk_behind_a_mount_is_needed() {
        let fx = Fixture::new();
        fx.device("0000:00:04.0", 0x1af4, 0x1001, 0x010000);
        fx.block_device("254:0", "vda", "0000:00:04.0");
        fx.block_device("254:1", "vda1", "0000:00:04.0");
        fx.mount("254:1", "/mnt/data", "ext2", "/dev/vda1");
        fx.mount("0:22", "/tmp", "tmpfs", "tmpfs");
        let needs = HostNeeds::scan(&fx.host()).unwrap();
        let why = needs.reasons(bdf("00:04.0"));
        assert_eq!(
            why,
            ["the filesystem mounted on /mnt/data (ext2 on /dev/vda1)"]
        );
        assert_eq!(needs.devices().count(), 1);
    }

    #[test]
    fn a_mount_without_a_sys_dev_block_entry_is_found_by_name() {
        // btrfs reports an anonymous 0:NN device; the source names the disk.
        let fx = Fixture::new();
        fx.device("0000:01:00.0", 0x144d, 0xa808, 0x010802);
        fx.block_device("259:1", "nvme0n1p2", "0000:01:00.0");
        std::fs::remove_file(fx.path("sys/dev/block/259:1")).unwrap();
        fx.mount("0:31", "/", "btrfs", "/dev/nvme0n1p2");
        let needs = HostNeeds::scan(&fx.host()).unwrap();
        assert_eq!(needs.reasons(bdf("01:00.0")).len(), 1);
    }

    #[test]
    fn stacked_block_devices_lead_to_their_disks() {
        let fx = Fixture::new();
        fx.device("0000:00:04.0", 0x1af4, 0x1001, 0x010000);
        fx.device("0000:00:05.0", 0x1af4, 0x1001, 0x010000);
        fx.block_device("254:1", "vda1", "0000:00:04.0");
        fx.block_device("254:17", "vdb1", "0000:00:05.0");
        fx.mkdir("sys/devices/virtual/block/dm-0/slaves");
        fx.link(
            "sys/devices/virtual/block/dm-0/slaves/vda1",
            &fx.path("sys/class/block/vda1"),
        );
        fx.link(
            "sys/devices/virtual/block/dm-0/slaves/vdb1",
            &fx.path("sys/class/block/vdb1"),
        );
        fx.link(
            "sys/dev/block/253:0",
            &fx.path("sys/devices/virtual/block/dm-0"),
        );
        fx.mount("253:0", "/", "ext4", "/dev/mapper/root");
        let needs = HostNeeds::scan(&fx.host()).unwrap();
        assert_eq!(
            needs.devices().collect::<Vec<_>>(),
            [bdf("00:04.0"), bdf("00:05.0")]
        );
    }

    #[test]
    fn active_swap_is_needed() {
        let fx = Fixture::new();
        fx.device("0000:00:06.0", 0x8086, 0x2922, 0x010601);
        fx.block_device("8:2", "sda2", "0000:00:06.0");
        fx.swap("/dev/sda2");
        fx.swap("/swapfile");
        let needs = HostNeeds::scan(&fx.host()).unwrap();
        assert_eq!(needs.reasons(bdf("00:06.0")), ["active swap on /dev/sda2"]);
    }

    #[test]
    fn the_default_route_nic_is_needed_and_others_are_not() {
        let fx = Fixture::new();
        fx.device("0000:00:02.0", 0x8086, 0x100e, 0x020000);
        fx.device("0000:00:07.0", 0x8086, 0x100e, 0x020000);
        fx.net_interface("eth0", "0000:00:02.0");
        fx.net_interface("eth1", "0000:00:07.0");
        fx.route("eth0", "00000000", "00000000");
        fx.route("eth1", "0000A8C0", "00FFFFFF");
        let needs = HostNeeds::scan(&fx.host()).unwrap();
        assert_eq!(
            needs.reasons(bdf("00:02.0")),
            ["the NIC carrying the default route (eth0)"]
        );
        assert!(needs.reasons(bdf("00:07.0")).is_empty());
    }

    #[test]
    fn the_ipv6_default_route_nic_is_needed_and_others_are_not() {
        let fx = Fixture::new();
        fx.device("0000:00:02.0", 0x8086, 0x100e, 0x020000);
        fx.device("0000:00:07.0", 0x8086, 0x100e, 0x020000);
        fx.device("0000:00:08.0", 0x8086, 0x100e, 0x020000);
        fx.net_interface("eth0", "0000:00:02.0");
        fx.net_interface("eth1", "0000:00:07.0");
        fx.net_interface("eth2", "0000:00:08.0");
        // An IPv6-only host: no IPv4 default route at all.
        let zero = "00000000000000000000000000000000";
        fx.route6("eth0", zero, "00", "00450003");
        // A /64 on eth1 is not a default route; nor is ::/0 as a source.
        fx.route6("eth1", "20010db8000000000000000000000000", "40", "00000001");
        // The kernel's unreachable default (a reject route) on eth2.
        fx.route6("eth2", zero, "00", "00200200");
        fx.route6("lo", zero, "00", "00200200");
        let needs = HostNeeds::scan(&fx.host()).unwrap();
        assert_eq!(
            needs.reasons(bdf("00:02.0")),
            ["the NIC carrying the IPv6 default route (eth0)"]
        );
        assert!(needs.reasons(bdf("00:07.0")).is_empty());
        assert!(needs.reasons(bdf("00:08.0")).is_empty());
        assert_eq!(needs.devices().count(), 1);
    }

    #[test]
    fn a_bridged_default_route_leads_to_its_ports() {
        let fx = Fixture::new();
        fx.device("0000:00:02.0", 0x8086, 0x100e, 0x020000);
        fx.net_interface("eth0", "0000:00:02.0");
        fx.mkdir("sys/devices/virtual/net/br0/brif/eth0");
        fx.link("sys/class/net/br0", &fx.path("sys/devices/virtual/net/br0"));
        fx.route("br0", "00000000", "00000000");
        let needs = HostNeeds::scan(&fx.host()).unwrap();
        assert_eq!(needs.reasons(bdf("00:02.0")).len(), 1);
    }

    #[test]
    fn boot_vga_is_needed_only_with_a_framebuffer_console() {
        let fx = Fixture::new();
        fx.device("0000:00:01.0", 0x1234, 0x1111, 0x030000)
            .boot_vga();
        fx.write("sys/class/vtconsole/vtcon0/name", "(S) dummy device\n");
        fx.write("sys/class/vtconsole/vtcon0/bind", "1\n");
        fx.write(
            "sys/class/vtconsole/vtcon1/name",
            "(M) frame buffer device\n",
        );
        fx.write("sys/class/vtconsole/vtcon1/bind", "0\n");
        assert!(HostNeeds::scan(&fx.host())
            .unwrap()
            .reasons(bdf("00:01.0"))
            .is_empty());
        fx.write("sys/class/vtconsole/vtcon1/bind", "1\n");
        fx.link(
            "sys/class/graphics/fb0/device",
            &fx.path("sys/devices/pci0000:00/0000:00:01.0"),
        );
        let needs = HostNeeds::scan(&fx.host()).unwrap();
        let why = needs.reasons(bdf("00:01.0"));
        assert_eq!(why.len(), 2, "{why:?}");
        assert!(why[0].contains("framebuffer console"), "{why:?}");
    }
}
