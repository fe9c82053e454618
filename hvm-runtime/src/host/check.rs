//! `pvio host-check`: what this host offers for HVM guests, and what to do
//! about what is missing (in the spirit of `virt-host-validate`).

use std::path::Path;
use std::process::Command;

use pvio_passthrough::Sysfs;
use serde::Serialize;

use super::accel::{self, Accel, KvmState};
use super::guests::GuestTypes;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Present and usable.
    Pass,
    /// Missing or limited; pvio still works, with less (TCG, no passthrough).
    Warn,
    /// pvio cannot run guests until this is fixed.
    Fail,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        }
    }
}

/// One row of the report.
#[derive(Debug, Clone, Serialize)]
pub struct CheckRow {
    /// What was checked.
    pub check: &'static str,
    /// How it came out.
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What to do when it is not `pass`; empty otherwise.
    pub fix: String,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct HostReport {
    /// The rows, in display order.
    pub checks: Vec<CheckRow>,
    /// The accelerator pvio will use for guests.
    pub accelerator: Accel,
    /// The guest types that run, and under which accelerator (like
    /// `xen_caps` in `xm info`).
    pub guest_types: GuestTypes,
}

impl HostReport {
    /// True when no row failed.
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.status != Status::Fail)
    }

    /// The report as an aligned text table.
    pub fn to_table(&self) -> String {
        let w = self.checks.iter().map(|c| c.check.len()).max().unwrap_or(0);
        let mut out = String::new();
        for c in &self.checks {
            out.push_str(&format!(
                "{:<w$}  {}  {}\n",
                c.check,
                c.status.label(),
                c.detail
            ));
            if !c.fix.is_empty() {
                out.push_str(&format!("{:<w$}        fix: {}\n", "", c.fix));
            }
        }
        out.push_str(&format!("\nguests will run under {}\n", self.accelerator));
        out
    }
}

fn row(check: &'static str, status: Status, detail: String, fix: &str) -> CheckRow {
    let fix = if status == Status::Pass {
        String::new()
    } else {
        fix.to_owned()
    };
    CheckRow {
        check,
        status,
        detail,
        fix,
    }
}

/// Runs every check against the host filesystem under `root` (normally `/`).
/// `qemu_version` is asked for the device model's version, so that tests can
/// supply one.
pub fn run_checks(root: &Path, qemu_version: &dyn Fn() -> Option<String>) -> HostReport {
    let mut checks = Vec::new();
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap_or_default();

    let cpuinfo = read("proc/cpuinfo");
    let flags: Vec<&str> = cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default();
    let hw = if flags.contains(&"vmx") {
        Some("Intel VT-x (vmx)")
    } else if flags.contains(&"svm") {
        Some("AMD-V (svm)")
    } else {
        None
    };
    checks.push(row(
        "hardware virtualization",
        if hw.is_some() {
            Status::Pass
        } else {
            Status::Warn
        },
        hw.map(str::to_owned)
            .unwrap_or_else(|| "the CPU shows neither vmx nor svm".to_owned()),
        "enable VT-x/AMD-V in the firmware; inside a VM, enable nested virtualization",
    ));

    let probed = KvmState::probe(root).decide();
    checks.push(row(
        "KVM usable for stock guests",
        if probed.accel == Accel::Kvm {
            Status::Pass
        } else {
            Status::Warn
        },
        probed.reason.clone(),
        "load kvm_intel or kvm_amd on a host with VT-x/AMD-V; until then guests run under TCG \
         (correct, but slow)",
    ));

    // What guests really get: the probe, unless PVIO_ACCEL overrides it.
    let decision = accel::detect_under(root);
    checks.push(row(
        "accelerator for guests",
        if decision.accel == Accel::Kvm {
            Status::Pass
        } else {
            Status::Warn
        },
        {
            let name = match decision.accel {
                Accel::Kvm => "KVM",
                Accel::Tcg => "TCG (the fallback: QEMU's binary translator)",
            };
            if decision.reason.starts_with("PVIO_ACCEL") {
                format!("{name}, chosen by {}", decision.reason)
            } else {
                name.to_owned()
            }
        },
        "see the KVM row; PVIO_ACCEL=tcg|kvm overrides the choice",
    ));

    let qemu = qemu_version();
    let guest_types = GuestTypes::of(&flags, decision.accel, qemu.is_some());
    checks.push(row(
        "guest types",
        if guest_types.types.is_empty() {
            Status::Fail
        } else {
            Status::Pass
        },
        guest_types.detail(),
        "apt-get install qemu-system-x86",
    ));

    checks.push(iommu_row(root, &read("proc/cmdline")));
    checks.push(vfio_row(root));

    match qemu {
        Some(v) => checks.push(row("QEMU (device model)", Status::Pass, v, "")),
        None => checks.push(row(
            "QEMU (device model)",
            Status::Fail,
            "qemu-system-x86_64 not found".to_owned(),
            "apt-get install qemu-system-x86",
        )),
    }

    let tun = root.join("dev/net/tun").exists();
    checks.push(row(
        "/dev/net/tun",
        if tun { Status::Pass } else { Status::Warn },
        if tun { "present" } else { "missing" }.to_owned(),
        "modprobe tun (PV and emulated NICs need tap devices)",
    ));

    checks.push(hugepages_row(&read("proc/meminfo")));

    HostReport {
        checks,
        accelerator: decision.accel,
        guest_types,
    }
}

fn iommu_row(root: &Path, cmdline: &str) -> CheckRow {
    let groups = std::fs::read_dir(Sysfs::new(root.join("sys")).iommu_groups_dir())
        .map(|d| d.count())
        .unwrap_or(0);
    let units: Vec<String> = std::fs::read_dir(root.join("sys/class/iommu"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let param = cmdline
        .split_whitespace()
        .filter(|w| w.starts_with("intel_iommu=") || w.starts_with("amd_iommu="))
        .collect::<Vec<_>>()
        .join(" ");
    let param = if param.is_empty() {
        "no intel_iommu=/amd_iommu= on the kernel command line".to_owned()
    } else {
        param
    };
    if groups > 0 {
        row(
            "IOMMU (for passthrough)",
            Status::Pass,
            format!(
                "{groups} IOMMU groups, units: {}; {param}",
                if units.is_empty() {
                    "none listed".to_owned()
                } else {
                    units.join(",")
                }
            ),
            "",
        )
    } else {
        row(
            "IOMMU (for passthrough)",
            Status::Warn,
            format!("/sys/kernel/iommu_groups is empty; {param}"),
            "enable VT-d/AMD-Vi in the firmware and boot with intel_iommu=on (Intel) or \
             amd_iommu=on (AMD); PCI passthrough is off until then",
        )
    }
}

fn vfio_row(root: &Path) -> CheckRow {
    if root.join("sys/module/vfio_pci").exists() {
        return row("vfio-pci", Status::Pass, "loaded".to_owned(), "");
    }
    let release = std::fs::read_to_string(root.join("proc/sys/kernel/osrelease"))
        .unwrap_or_default()
        .trim()
        .to_owned();
    let moddir = root.join("lib/modules").join(&release);
    let listed = |f: &str| {
        std::fs::read_to_string(moddir.join(f))
            .map(|s| s.lines().any(|l| l.contains("/vfio-pci.ko")))
            .unwrap_or(false)
    };
    if listed("modules.builtin") {
        row(
            "vfio-pci",
            Status::Pass,
            "built into the kernel".to_owned(),
            "",
        )
    } else if listed("modules.dep") {
        row(
            "vfio-pci",
            Status::Pass,
            format!("loadable (in /lib/modules/{release})"),
            "",
        )
    } else {
        row(
            "vfio-pci",
            Status::Warn,
            format!("not loaded and not found in /lib/modules/{release}"),
            "install the kernel's modules (vfio-pci) for PCI passthrough",
        )
    }
}

fn hugepages_row(meminfo: &str) -> CheckRow {
    let field = |name: &str| {
        meminfo
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    match (field("HugePages_Total:"), field("Hugepagesize:")) {
        (Some(total), Some(size_kb)) if total > 0 => row(
            "hugepages",
            Status::Pass,
            format!("{total} x {} MiB reserved", size_kb / 1024),
            "",
        ),
        (Some(_), size) => row(
            "hugepages",
            Status::Warn,
            format!(
                "none reserved (page size {} MiB); guests use ordinary pages",
                size.unwrap_or(2048) / 1024
            ),
            "optional: echo N > /proc/sys/vm/nr_hugepages for less TLB pressure on large guests",
        ),
        _ => row(
            "hugepages",
            Status::Warn,
            "not reported by /proc/meminfo".to_owned(),
            "optional: a kernel with CONFIG_HUGETLBFS",
        ),
    }
}

/// The first line of `qemu-system-x86_64 --version`, or `None` when QEMU is
/// not installed.
pub fn qemu_version() -> Option<String> {
    let out = Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn fixture() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        fs::create_dir_all(p.join("proc/sys/kernel")).unwrap();
        fs::write(
            p.join("proc/cpuinfo"),
            "processor: 0\nflags\t: fpu hypervisor\n",
        )
        .unwrap();
        fs::write(p.join("proc/cmdline"), "root=/dev/vda ro\n").unwrap();
        fs::write(p.join("proc/sys/kernel/osrelease"), "6.1.0-test\n").unwrap();
        fs::write(
            p.join("proc/meminfo"),
            "HugePages_Total:       0\nHugepagesize:       2048 kB\n",
        )
        .unwrap();
        fs::create_dir_all(p.join("dev/net")).unwrap();
        fs::write(p.join("dev/kvm"), "").unwrap();
        fs::write(p.join("dev/net/tun"), "").unwrap();
        fs::create_dir_all(p.join("sys/module/kvm_pvm")).unwrap();
        fs::create_dir_all(p.join("sys/kernel/iommu_groups")).unwrap();
        d
    }

    fn find<'a>(r: &'a HostReport, name: &str) -> &'a CheckRow {
        r.checks.iter().find(|c| c.check == name).unwrap()
    }

    #[test]
    fn nested_pvm_host_reports_kvm_unusable_and_tcg() {
        let d = fixture();
        let r = run_checks(d.path(), &|| Some("QEMU emulator version 7.2.0".into()));
        let kvm = find(&r, "KVM usable for stock guests");
        assert_eq!(kvm.status, Status::Warn);
        assert!(kvm.detail.contains("kvm_pvm"));
        assert!(!kvm.fix.is_empty());
        assert_eq!(r.accelerator, Accel::Tcg);
        assert!(find(&r, "accelerator for guests").detail.starts_with("TCG"));
        assert!(r.ok(), "warnings alone do not fail the host");
        assert!(r.to_table().contains("guests will run under TCG"));
        let types = find(&r, "guest types");
        assert_eq!(types.status, Status::Pass);
        assert_eq!(
            types.detail,
            "32-bit, 32-bit PAE and 64-bit HVM under TCG (emulated, slow) (hvm-x86_32 hvm-x86_32p hvm-x86_64)"
        );
        assert!(r.to_table().contains("guest types"));
    }

    #[test]
    fn guest_types_under_kvm_follow_the_cpu() {
        let d = fixture();
        fs::write(
            d.path().join("proc/cpuinfo"),
            "processor: 0\nflags\t: fpu pae vmx\n",
        )
        .unwrap();
        fs::remove_dir(d.path().join("sys/module/kvm_pvm")).unwrap();
        fs::create_dir_all(d.path().join("sys/module/kvm_intel")).unwrap();
        let kvm = KvmState::probe(d.path()).decide();
        let r = run_checks(d.path(), &|| Some("QEMU emulator version 10.0.2".into()));
        if kvm.accel == Accel::Kvm && std::env::var_os("PVIO_ACCEL").is_none() {
            assert_eq!(
                find(&r, "guest types").detail,
                "32-bit and 32-bit PAE HVM under KVM (hvm-x86_32 hvm-x86_32p)"
            );
        }
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["guest_types"]["accelerator"], r.accelerator.qemu_arg());
        assert!(v["guest_types"]["types"].as_array().is_some());
    }

    #[test]
    fn no_qemu_no_guest_types() {
        let d = fixture();
        let r = run_checks(d.path(), &|| None);
        let row = find(&r, "guest types");
        assert_eq!(row.status, Status::Fail);
        assert!(row.detail.starts_with("none:"), "{}", row.detail);
        assert!(r.guest_types.types.is_empty());
    }

    #[test]
    fn iommu_groups_and_cmdline_are_reported() {
        let d = fixture();
        fs::create_dir_all(d.path().join("sys/kernel/iommu_groups/0")).unwrap();
        fs::create_dir_all(d.path().join("sys/class/iommu/dmar0")).unwrap();
        fs::write(d.path().join("proc/cmdline"), "intel_iommu=on quiet").unwrap();
        let r = run_checks(d.path(), &|| None);
        let row = find(&r, "IOMMU (for passthrough)");
        assert_eq!(row.status, Status::Pass);
        assert!(row.detail.contains("dmar0") && row.detail.contains("intel_iommu=on"));
    }

    #[test]
    fn empty_iommu_says_how_to_turn_it_on() {
        let d = fixture();
        let r = run_checks(d.path(), &|| None);
        let row = find(&r, "IOMMU (for passthrough)");
        assert_eq!(row.status, Status::Warn);
        assert!(row.fix.contains("intel_iommu=on"));
    }

    #[test]
    fn missing_qemu_fails_the_host() {
        let d = fixture();
        let r = run_checks(d.path(), &|| None);
        assert_eq!(find(&r, "QEMU (device model)").status, Status::Fail);
        assert!(!r.ok());
    }

    #[test]
    fn vfio_found_through_modules_dep() {
        let d = fixture();
        let m = d.path().join("lib/modules/6.1.0-test");
        fs::create_dir_all(&m).unwrap();
        fs::write(
            m.join("modules.dep"),
            "kernel/drivers/vfio/pci/vfio-pci.ko: kernel/drivers/vfio/vfio.ko\n",
        )
        .unwrap();
        let r = run_checks(d.path(), &|| None);
        assert_eq!(find(&r, "vfio-pci").status, Status::Pass);
    }

    #[test]
    fn hugepages_reserved_pass() {
        let r = hugepages_row("HugePages_Total:      64\nHugepagesize:       2048 kB\n");
        assert_eq!(r.status, Status::Pass);
        assert!(r.detail.contains("64 x 2 MiB"));
    }
}
