//! What the runtime tests share: a private run dir (`PVIO_RUN_DIR`), the
//! real `pvio` binary run with it, disk images, an initramfs from the kit
//! with the test's script, configs with direct kernel boot and the serial
//! console in a file, waits on that file, a test bridge, and a clean-up
//! that destroys whatever a failed test left running.

#![allow(dead_code)] // each test binary uses a part of it

pub mod peer;
pub mod ssh;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use pvio_hvm_runtime::domain::lock::FileLock;
use pvio_hvm_runtime::domain::DomainRecord;
use pvio_tests::{pvio_bin, GuestKernel, Initramfs};

/// Modules every runtime guest loads: PV disk and NIC, IDE disk and
/// CD-ROM, ISO 9660, and the ACPI power button (for `pvio shutdown`).
pub const MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_blk",
    "virtio_net",
    "ata_piix",
    "sd_mod",
    "sr_mod",
    "cdrom",
    "isofs",
    "button",
    "evdev",
];

/// Script lines that make the guest power off when the ACPI power button
/// is pressed (busybox acpid runs the PWRF handler), then wait until acpid
/// holds every power button's input device open (from then on a press is
/// queued for it, however busy the guest) and print [`POWER_BUTTON_READY`].
/// acpid started in the background returns before it has opened them: a
/// press before that is lost. The test's script runs after the marker.
pub const POWER_BUTTON: &str = r#"
mkdir -p /etc/acpi/PWRF
printf '#!/bin/sh\necho GUEST-POWER-BUTTON >/dev/console\nsync\npoweroff -f\n' > /etc/acpi/PWRF/00000080
chmod +x /etc/acpi/PWRF/00000080
acpid -f -c /etc/acpi -l /dev/null &
acpid_pid=$!
buttons=$(for e in /sys/class/input/event*; do [ "$(cat $e/device/name 2>/dev/null)" = "Power Button" ] && echo /dev/input/${e##*/}; done)
[ -n "$buttons" ] || echo GUEST-NO-POWER-BUTTON
for b in $buttons; do
  i=0
  until for f in /proc/$acpid_pid/fd/*; do readlink $f; done 2>/dev/null | grep -qx "$b"; do
    i=$((i+1)); [ $i -gt 1200 ] && { echo "GUEST-ACPID-DID-NOT-OPEN $b"; break; }; sleep 0.1
  done
done
echo GUEST-ACPID-READY
"#;

/// Printed once the guest's power-button handler is ready: a test presses
/// the button (`pvio shutdown`, `pvio reboot`) only after it.
pub const POWER_BUTTON_READY: &str = "GUEST-ACPID-READY";

/// Shell helpers for scripts: `wait_for PATH` and `wait_gone PATH` poll
/// for up to 120 s.
pub const WAIT_HELPERS: &str = r#"
wait_for() { i=0; while [ ! -e "$1" ]; do i=$((i+1)); [ $i -gt 1200 ] && return 1; sleep 0.1; done; }
wait_gone() { i=0; while [ -e "$1" ]; do i=$((i+1)); [ $i -gt 1200 ] && return 1; sleep 0.1; done; }
"#;

/// The machine-wide "one guest at a time" lock the guest-booting test
/// binaries share.
pub const ONE_GUEST_LOCK: &str = "/tmp/pvio-one-guest.lock";

/// A private run dir and scratch space, with the one-guest lock held;
/// destroys what is left on drop.
pub struct Env {
    pub tmp: tempfile::TempDir,
    pub run_dir: PathBuf,
    _one_guest: FileLock,
}

impl Env {
    pub fn new() -> Env {
        let one_guest = FileLock::exclusive(Path::new(ONE_GUEST_LOCK)).expect("the one-guest lock");
        // Short paths: vhost-user socket paths must fit 107 bytes.
        let tmp = tempfile::Builder::new()
            .prefix("pvrt")
            .tempdir_in("/tmp")
            .unwrap();
        // The domain's QEMU drops to an unprivileged uid: it must pass
        // through to its sockets under the run dir (nothing is listable).
        std::fs::set_permissions(
            tmp.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o711),
        )
        .unwrap();
        let run_dir = tmp.path().join("run");
        Env {
            tmp,
            run_dir,
            _one_guest: one_guest,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// Runs `pvio ARGS` with this run dir.
    pub fn pvio(&self, args: &[&str]) -> Output {
        let out = Command::new(pvio_bin())
            .args(args)
            .env("PVIO_RUN_DIR", &self.run_dir)
            .output()
            .expect("run pvio");
        eprintln!(
            "$ pvio {}\n{}{}[exit {}]",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            out.status
        );
        out
    }

    /// Runs `pvio ARGS`, which must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.pvio(args);
        assert!(
            out.status.success(),
            "pvio {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `pvio ARGS`, which must fail; returns its stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.pvio(args);
        assert!(
            !out.status.success(),
            "pvio {} should have failed",
            args.join(" ")
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// A zero-filled image of `mib` MiB.
    pub fn image(&self, name: &str, mib: u64) -> PathBuf {
        let p = self.path(name);
        let f = std::fs::File::create(&p).unwrap();
        f.set_len(mib << 20).unwrap();
        p
    }

    /// An ISO image `name` holding one file, `hello.txt`, with `text`.
    pub fn iso(&self, name: &str, text: &str) -> PathBuf {
        let dir = self.path(&format!("{name}.d"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("hello.txt"), text).unwrap();
        let iso = self.path(name);
        let made = Command::new("xorriso")
            .args(["-as", "mkisofs", "-quiet", "-o"])
            .arg(&iso)
            .arg(&dir)
            .status()
            .expect("xorriso must be installed (scripts/setup.sh)");
        assert!(made.success(), "xorriso failed");
        iso
    }

    /// The highest number after `tag` on a console line of `name` (0 if
    /// none): a guest's counter.
    pub fn last_number(&self, name: &str, tag: &str) -> u64 {
        std::fs::read_to_string(self.console_path(name))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().strip_prefix(tag))
            .filter_map(|n| n.trim().parse().ok())
            .max()
            .unwrap_or(0)
    }

    /// Waits until the console of `name` has a number after `tag` above
    /// `n`; returns it.
    pub fn wait_number_past(&self, name: &str, tag: &str, n: u64, timeout: Duration) -> u64 {
        let start = Instant::now();
        loop {
            let c = self.last_number(name, tag);
            if c > n {
                return c;
            }
            assert!(
                start.elapsed() < timeout,
                "{name}: no '{tag}' past {n} within {timeout:?}; console:\n{}\nlogs:\n{}",
                std::fs::read_to_string(self.console_path(name)).unwrap_or_default(),
                self.log(name)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// An initramfs running `script` (after the power-button handler and
    /// the wait helpers).
    pub fn initramfs(&self, script: &str) -> PathBuf {
        self.initramfs_with(script, &[])
    }

    /// An initramfs like [`Env::initramfs`] that also loads `modules`.
    pub fn initramfs_with(&self, script: &str, modules: &[&str]) -> PathBuf {
        let kernel = GuestKernel::get().expect("guest kernel");
        let body = format!("{POWER_BUTTON}{WAIT_HELPERS}{script}");
        let all: Vec<&str> = MODULES.iter().chain(modules).copied().collect();
        Initramfs::builder()
            .kernel(kernel)
            .modules(&all)
            .script(&body)
            .build(&self.path("initramfs.cpio"))
            .expect("initramfs")
    }

    /// A config for domain `name`: direct boot of the kit's kernel with
    /// `initramfs`, 256 MiB, the console in `console-<name>.log`, and
    /// `extra` lines.
    pub fn config(&self, name: &str, initramfs: &Path, extra: &str) -> PathBuf {
        let kernel = GuestKernel::get().expect("guest kernel");
        let vmlinux = kernel.vmlinux().unwrap_or(kernel.vmlinuz()).to_owned();
        let text = format!(
            "name = \"{name}\"\n\
             memory = 256\n\
             vcpus = 1\n\
             kernel = \"{}\"\n\
             ramdisk = \"{}\"\n\
             cmdline = \"console=ttyS0 panic=-1 loglevel=4\"\n\
             serial = 'file:{}'\n\
             {extra}\n",
            vmlinux.display(),
            initramfs.display(),
            self.console_path(name).display(),
        );
        let p = self.path(&format!("{name}.cfg"));
        std::fs::write(&p, text).unwrap();
        p
    }

    pub fn console_path(&self, name: &str) -> PathBuf {
        self.path(&format!("console-{name}.log"))
    }

    /// Waits until the console of `name` has a line containing `pattern`
    /// (after the `after`-th such line); returns the line.
    pub fn wait_console(&self, name: &str, pattern: &str, timeout: Duration) -> String {
        let start = Instant::now();
        loop {
            let text = std::fs::read_to_string(self.console_path(name)).unwrap_or_default();
            if let Some(l) = text.lines().find(|l| l.contains(pattern)) {
                return l.to_owned();
            }
            if start.elapsed() > timeout {
                panic!(
                    "no '{pattern}' on the console of {name} within {timeout:?}; console:\n{text}\nsupervisor log:\n{}",
                    self.log(name)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// How many console lines of `name` contain `pattern`.
    pub fn count_console(&self, name: &str, pattern: &str) -> usize {
        std::fs::read_to_string(self.console_path(name))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(pattern))
            .count()
    }

    /// Waits until the record of `name` satisfies `done`; returns it.
    pub fn wait_record(
        &self,
        name: &str,
        what: &str,
        timeout: Duration,
        done: impl Fn(&DomainRecord) -> bool,
    ) -> DomainRecord {
        let start = Instant::now();
        loop {
            if let Ok(r) = DomainRecord::load(&self.run_dir.join(name).join("domain.json")) {
                if done(&r) {
                    return r;
                }
            }
            if start.elapsed() > timeout {
                panic!(
                    "{name}: {what} not seen within {timeout:?}; console:\n{}\nlogs:\n{}",
                    std::fs::read_to_string(self.console_path(name)).unwrap_or_default(),
                    self.log(name)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The supervisor and QEMU logs of `name`.
    pub fn log(&self, name: &str) -> String {
        let d = self.run_dir.join(name);
        format!(
            "{}{}",
            std::fs::read_to_string(d.join("supervisor.log")).unwrap_or_default(),
            std::fs::read_to_string(d.join("qemu.log")).unwrap_or_default()
        )
    }

    /// The domain record of `name`.
    pub fn record(&self, name: &str) -> DomainRecord {
        DomainRecord::load(&self.run_dir.join(name).join("domain.json")).expect("record")
    }

    /// The sockets left in the run dir of `name`.
    pub fn sockets(&self, name: &str) -> Vec<PathBuf> {
        std::fs::read_dir(self.run_dir.join(name))
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "sock"))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let Ok(dirs) = std::fs::read_dir(&self.run_dir) else {
            return;
        };
        for d in dirs.filter_map(Result::ok) {
            let name = d.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let _ = Command::new(pvio_bin())
                .args(["destroy", &name])
                .env("PVIO_RUN_DIR", &self.run_dir)
                .output();
        }
    }
}

/// Whether process `pid` runs (a zombie does not).
pub fn alive(pid: u64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rfind(')')
            .and_then(|i| s[i + 1..].split_whitespace().next())
            .is_some_and(|st| st != "Z" && st != "X"),
        Err(_) => false,
    }
}

/// Whether network interface `name` exists.
pub fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// A bridge with a name unique to this test process, removed on drop.
pub struct TestBridge {
    pub name: String,
}

impl TestBridge {
    pub fn new(tag: &str) -> TestBridge {
        let name = format!("pvt{tag}{}", std::process::id() % 100_000);
        let _ = Command::new("ip").args(["link", "del", &name]).output();
        let ok = Command::new("ip")
            .args(["link", "add", &name, "type", "bridge"])
            .status()
            .expect("ip (iproute2) must be installed");
        assert!(ok.success(), "cannot create bridge {name}");
        let up = Command::new("ip")
            .args(["link", "set", &name, "up"])
            .status()
            .unwrap();
        assert!(up.success());
        TestBridge { name }
    }
}

impl Drop for TestBridge {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.name])
            .output();
    }
}

/// The first `n` bytes of `path`.
pub fn head(path: &Path, n: usize) -> Vec<u8> {
    let mut b = std::fs::read(path).unwrap();
    b.truncate(n);
    b
}

/// The pid of a domain's `kind` (`blk`, `net`) backend: a `pvio backend`
/// process whose parent is the domain's supervisor.
pub fn backend_pid(supervisor: u32, kind: &str) -> Option<u32> {
    for e in std::fs::read_dir("/proc").ok()?.filter_map(Result::ok) {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
        let ours = args
            .windows(2)
            .any(|w| w[0] == b"backend" && w[1] == kind.as_bytes());
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let child = status
            .lines()
            .any(|l| l.strip_prefix("PPid:").map(str::trim) == Some(&supervisor.to_string()));
        if ours && child {
            return Some(pid);
        }
    }
    None
}

/// The record a guest's script writes into block `i` of a disk:
/// `REC i sum END`, the sum a checksum of `i` the shell can compute.
pub fn record_text(i: u64) -> String {
    format!("REC {i} {} END", (i * 2_654_435_761) % 4_294_967_296)
}

/// Checks blocks 1..=n of `image`: each holds its own [`record_text`].
pub fn verify_records(image: &Path, n: u64) {
    let data = std::fs::read(image).unwrap();
    for i in 1..=n {
        let at = usize::try_from(i).unwrap() * 512;
        let text = String::from_utf8_lossy(&data[at..at + 512]);
        assert_eq!(
            text.trim_end_matches('\0'),
            record_text(i),
            "record {i} of {}",
            image.display()
        );
    }
}
