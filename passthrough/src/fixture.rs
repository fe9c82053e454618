//! Fixture host trees for unit tests: a temporary folder with `sys/`, `proc/`
//! and `dev/` laid out as the kernel lays them out (devices under
//! `sys/devices/pci0000:00`, `bus/pci/devices` links, driver links, IOMMU
//! groups, block devices, network interfaces, mounts, routes), and a fake
//! kernel thread that reacts to `unbind`, `bind` and `drivers_probe` writes.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::bdf::Bdf;
use crate::host::Host;
use crate::sysfs::Sysfs;

/// A fixture host under a temporary folder.
pub struct Fixture {
    dir: tempfile::TempDir,
    kernel: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
}

/// A device being set up in a fixture.
pub struct DeviceFixture<'a> {
    fx: &'a Fixture,
    bdf: Bdf,
}

impl Fixture {
    /// An empty host: no devices, no IOMMU groups.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let fx = Self { dir, kernel: None };
        for d in [
            "sys/bus/pci/devices",
            "sys/bus/pci/drivers",
            "sys/devices/pci0000:00",
            "sys/kernel",
            "sys/dev/block",
            "sys/class/block",
            "sys/class/net",
            "proc/self",
            "proc/net",
            "dev",
        ] {
            fx.mkdir(d);
        }
        fx.write("sys/bus/pci/drivers_probe", "");
        fx.write("proc/self/mountinfo", "");
        fx.write("proc/swaps", "Filename\tType\tSize\tUsed\tPriority\n");
        fx.write(
            "proc/net/route",
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n",
        );
        fx
    }

    /// The fixture's root folder.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// `root/rel`.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }

    /// The fixture as a host.
    pub fn host(&self) -> Host {
        Host::under(self.root())
    }

    /// The fixture's sysfs.
    pub fn sysfs(&self) -> Sysfs {
        self.host().sys
    }

    /// Creates a folder and its parents.
    pub fn mkdir(&self, rel: &str) {
        fs::create_dir_all(self.path(rel)).expect("mkdir");
    }

    /// Writes a file, creating its folder.
    pub fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).expect("mkdir");
        }
        fs::write(p, text).expect("write");
    }

    /// Appends to a file.
    pub fn append(&self, rel: &str, text: &str) {
        let mut old = fs::read_to_string(self.path(rel)).unwrap_or_default();
        old.push_str(text);
        self.write(rel, &old);
    }

    /// Reads a file of the fixture.
    pub fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.path(rel)).unwrap_or_default()
    }

    /// Makes `rel` a symlink to the absolute `target`, replacing what was there.
    pub fn link(&self, rel: &str, target: &Path) {
        let p = self.path(rel);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).expect("mkdir");
        }
        let _ = fs::remove_file(&p);
        symlink(target, p).expect("symlink");
    }

    /// A device directly under the root bridge.
    pub fn device(&self, bdf: &str, vendor: u16, device: u16, class: u32) -> DeviceFixture<'_> {
        self.device_at("sys/devices/pci0000:00", bdf, vendor, device, class)
    }

    /// A device behind the bridge `parent`.
    pub fn device_behind(
        &self,
        parent: &str,
        bdf: &str,
        vendor: u16,
        device: u16,
        class: u32,
    ) -> DeviceFixture<'_> {
        let parent: Bdf = parent.parse().expect("bdf");
        let parent_rel = self.device_rel(parent);
        self.device_at(&parent_rel, bdf, vendor, device, class)
    }

    fn device_rel(&self, bdf: Bdf) -> String {
        let link = self.path(&format!("sys/bus/pci/devices/{bdf}"));
        let target = fs::read_link(link).expect("device exists");
        target
            .strip_prefix(self.root())
            .expect("inside fixture")
            .to_string_lossy()
            .into_owned()
    }

    fn device_at(
        &self,
        parent_rel: &str,
        bdf: &str,
        vendor: u16,
        device: u16,
        class: u32,
    ) -> DeviceFixture<'_> {
        let bdf: Bdf = bdf.parse().expect("bdf");
        let rel = format!("{parent_rel}/{bdf}");
        self.write(&format!("{rel}/vendor"), &format!("{vendor:#06x}\n"));
        self.write(&format!("{rel}/device"), &format!("{device:#06x}\n"));
        self.write(&format!("{rel}/class"), &format!("{class:#08x}\n"));
        self.write(&format!("{rel}/subsystem_vendor"), "0x0000\n");
        self.write(&format!("{rel}/subsystem_device"), "0x0000\n");
        self.write(&format!("{rel}/driver_override"), "(null)\n");
        self.link(&format!("sys/bus/pci/devices/{bdf}"), &self.path(&rel));
        DeviceFixture { fx: self, bdf }
    }

    /// A PCI driver folder with its `bind` and `unbind` files.
    pub fn driver_dir(&self, name: &str) -> PathBuf {
        let rel = format!("sys/bus/pci/drivers/{name}");
        if !self.path(&rel).exists() {
            self.write(&format!("{rel}/bind"), "");
            self.write(&format!("{rel}/unbind"), "");
        }
        self.path(&rel)
    }

    /// Binds `bdf` to `driver` (the links the kernel makes).
    pub fn bind(&self, bdf: Bdf, driver: &str) {
        let dir = self.driver_dir(driver);
        let dev = self.path(&self.device_rel(bdf));
        self.link(&format!("{}/driver", self.device_rel(bdf)), &dir);
        let _ = fs::remove_file(dir.join(bdf.to_string()));
        symlink(dev, dir.join(bdf.to_string())).expect("symlink");
    }

    /// Unbinds `bdf` from whatever driver it has.
    pub fn unbind(&self, bdf: Bdf) {
        let rel = self.device_rel(bdf);
        if let Ok(target) = fs::read_link(self.path(&format!("{rel}/driver"))) {
            let _ = fs::remove_file(target.join(bdf.to_string()));
        }
        let _ = fs::remove_file(self.path(&format!("{rel}/driver")));
    }

    /// A block device `name` (`major:minor`) whose controller is `bdf`.
    pub fn block_device(&self, major_minor: &str, name: &str, bdf: &str) {
        let bdf: Bdf = bdf.parse().expect("bdf");
        let rel = format!("{}/virtio0/block/{name}", self.device_rel(bdf));
        self.write(&format!("{rel}/dev"), &format!("{major_minor}\n"));
        self.link(&format!("sys/dev/block/{major_minor}"), &self.path(&rel));
        self.link(&format!("sys/class/block/{name}"), &self.path(&rel));
    }

    /// A mount of `source` (device `major:minor`) on `mountpoint`.
    pub fn mount(&self, major_minor: &str, mountpoint: &str, fstype: &str, source: &str) {
        self.append(
            "proc/self/mountinfo",
            &format!(
                "22 1 {major_minor} / {mountpoint} rw,relatime shared:1 - {fstype} {source} rw\n"
            ),
        );
    }

    /// An active swap area.
    pub fn swap(&self, filename: &str) {
        self.append(
            "proc/swaps",
            &format!("{filename}\tpartition\t1048572\t0\t-2\n"),
        );
    }

    /// A network interface on the PCI device `bdf`.
    pub fn net_interface(&self, ifname: &str, bdf: &str) {
        let bdf: Bdf = bdf.parse().expect("bdf");
        let dev = self.path(&self.device_rel(bdf));
        let rel = format!("{}/net/{ifname}", self.device_rel(bdf));
        self.mkdir(&rel);
        self.link(&format!("{rel}/device"), &dev);
        self.link(&format!("sys/class/net/{ifname}"), &self.path(&rel));
    }

    /// A route in `/proc/net/route`; destination and mask in the kernel's
    /// hex form (`00000000` for the default route).
    pub fn route(&self, ifname: &str, destination: &str, mask: &str) {
        self.append(
            "proc/net/route",
            &format!("{ifname}\t{destination}\t0102A8C0\t0003\t0\t0\t0\t{mask}\t0\t0\t0\n"),
        );
    }

    /// A route in `/proc/net/ipv6_route`: destination (32 hex digits),
    /// prefix length and flags in the kernel's hex form (`::/0` is the
    /// default route).
    pub fn route6(&self, ifname: &str, destination: &str, prefix: &str, flags: &str) {
        let zero = "00000000000000000000000000000000";
        self.append(
            "proc/net/ipv6_route",
            &format!(
                "{destination} {prefix} {zero} 00 fe800000000000000000000000000001 00000400 00000001 00000000 {flags} {ifname:>8}\n"
            ),
        );
    }

    /// Starts a fake kernel that honours `unbind`, `bind` and `drivers_probe`
    /// writes (with `driver_override`) and makes `/dev/vfio/<group>` when a
    /// device binds to vfio-pci.
    pub fn start_fake_kernel(&mut self) {
        let stop = Arc::new(AtomicBool::new(false));
        let root = self.root().to_owned();
        let flag = Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            let fx = FakeKernel { root };
            while !flag.load(Ordering::Relaxed) {
                fx.step();
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        self.kernel = Some((stop, handle));
    }
}

impl Default for Fixture {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some((stop, handle)) = self.kernel.take() {
            stop.store(true, Ordering::Relaxed);
            let _ = handle.join();
        }
    }
}

impl DeviceFixture<'_> {
    /// Binds the device to `name`.
    pub fn driver(self, name: &str) -> Self {
        self.fx.bind(self.bdf, name);
        self
    }

    /// Puts the device in IOMMU group `n`.
    pub fn group(self, n: u32) -> Self {
        let rel = self.fx.device_rel(self.bdf);
        let group = self.fx.path(&format!("sys/kernel/iommu_groups/{n}"));
        self.fx
            .mkdir(&format!("sys/kernel/iommu_groups/{n}/devices"));
        self.fx.link(&format!("{rel}/iommu_group"), &group);
        self.fx.link(
            &format!("sys/kernel/iommu_groups/{n}/devices/{}", self.bdf),
            &self.fx.path(&rel),
        );
        self
    }

    /// Sets the subsystem ids.
    pub fn subsystem(self, vendor: u16, device: u16) -> Self {
        let rel = self.fx.device_rel(self.bdf);
        self.fx.write(
            &format!("{rel}/subsystem_vendor"),
            &format!("{vendor:#06x}\n"),
        );
        self.fx.write(
            &format!("{rel}/subsystem_device"),
            &format!("{device:#06x}\n"),
        );
        self
    }

    /// Marks the device as the boot VGA device.
    pub fn boot_vga(self) -> Self {
        let rel = self.fx.device_rel(self.bdf);
        self.fx.write(&format!("{rel}/boot_vga"), "1\n");
        self
    }
}

/// The fake kernel's view of the fixture.
struct FakeKernel {
    root: PathBuf,
}

impl FakeKernel {
    fn fx(&self) -> FixtureView<'_> {
        FixtureView { root: &self.root }
    }

    fn step(&self) {
        let v = self.fx();
        let drivers = v.root.join("sys/bus/pci/drivers");
        for entry in fs::read_dir(&drivers).into_iter().flatten().flatten() {
            let dir = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if let Some(bdf) = take_request(&dir.join("unbind")) {
                v.unbind(bdf);
            }
            if let Some(bdf) = take_request(&dir.join("bind")) {
                v.bind(bdf, &name);
            }
        }
        if let Some(bdf) = take_request(&v.root.join("sys/bus/pci/drivers_probe")) {
            let over = fs::read_to_string(
                v.root
                    .join(format!("sys/bus/pci/devices/{bdf}/driver_override")),
            )
            .unwrap_or_default();
            let over = over.trim();
            if !over.is_empty() && over != "(null)" && drivers.join(over).exists() {
                v.bind(bdf, over);
            }
        }
    }
}

/// Reads and clears a request file; a regular file only (a FIFO is left
/// alone so that it blocks its writer).
fn take_request(path: &Path) -> Option<Bdf> {
    let meta = fs::symlink_metadata(path).ok()?;
    if !meta.file_type().is_file() {
        return None;
    }
    let text = fs::read_to_string(path).ok()?;
    if text.trim().is_empty() {
        return None;
    }
    let _ = fs::write(path, "");
    text.trim().parse().ok()
}

struct FixtureView<'a> {
    root: &'a Path,
}

impl FixtureView<'_> {
    fn dev(&self, bdf: Bdf) -> PathBuf {
        self.root.join(format!("sys/bus/pci/devices/{bdf}"))
    }

    fn unbind(&self, bdf: Bdf) {
        let link = self.dev(bdf).join("driver");
        if let Ok(target) = fs::read_link(&link) {
            let _ = fs::remove_file(target.join(bdf.to_string()));
        }
        let _ = fs::remove_file(link);
    }

    fn bind(&self, bdf: Bdf, driver: &str) {
        let dev = self.dev(bdf);
        let link = dev.join("driver");
        if fs::symlink_metadata(&link).is_ok() {
            return;
        }
        let dir = self.root.join(format!("sys/bus/pci/drivers/{driver}"));
        let _ = symlink(&dir, &link);
        let _ = symlink(
            fs::canonicalize(&dev).unwrap_or(dev.clone()),
            dir.join(bdf.to_string()),
        );
        if driver == Sysfs::VFIO_PCI {
            if let Ok(group) = fs::read_link(dev.join("iommu_group")) {
                if let Some(n) = group.file_name() {
                    let vfio = self.root.join("dev/vfio");
                    let _ = fs::create_dir_all(&vfio);
                    let _ = fs::write(vfio.join(n), "");
                }
            }
        }
    }
}
