//! BIOS boot from a PV disk, as an HVM guest installed on `xvda` boots:
//! no `kernel=`, `boot = 'c'`, and the only disk a `vhost-user-blk-pci`
//! served by pvio's block backend (the plan gives it `bootindex=1`). The
//! test makes a bootable disk without mounting anything: a FAT file
//! system (`mformat`) with syslinux installed into it (`syslinux
//! --install`), and the kit's kernel and initramfs copied in (`mcopy`)
//! with a command line that carries a marker only this disk has. The
//! guest's script reports the marker from `/proc/cmdline` and the serial
//! of its virtio disk (`xvda`, set by the backend): SeaBIOS loaded
//! syslinux, the kernel and the initramfs from the PV disk.
//!
//! Two layouts. A FAT file system on the whole disk (syslinux's boot
//! sector at sector 0) boots everywhere and is what runs. A partitioned
//! disk (syslinux's `mbr.bin` in sector 0, the FAT partition from 1 MiB,
//! `syslinux --install --offset`) is the usual layout, and its test is
//! ignored under TCG: the MBR runs at 0x7c00 and loads the partition's
//! boot sector over itself, and TCG does not notice guest memory written
//! by another process (the backend), so it runs its old translation of
//! the MBR again instead of the new code (seen: the boot sector's bytes
//! copied to 0x600 by the MBR's first instructions, then a jump into
//! them). QEMU's own disks write guest memory through QEMU, which does
//! notice. Under KVM there is no translation to go stale; that test is
//! for a KVM host (`cargo test -- --ignored`), not run here.
//!
//! Needs the Debian packages `syslinux`, `syslinux-common` and `mtools`
//! (`scripts/setup.sh`), the kit's guest kernel, QEMU, and `cargo build
//! --workspace --bins` first.

mod runtime_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use pvio_tests::kernel::GuestKernel;
use runtime_support::Env;

const T: Duration = Duration::from_secs(180);
const MBR: &str = "/usr/lib/syslinux/mbr/mbr.bin";
const DISK_MIB: u64 = 96;
const SECTORS: u64 = DISK_MIB << 11;
/// The FAT partition of the partitioned layout starts at 1 MiB.
const PART_START: u64 = 2048;
const MARKER: &str = "pvio_boot=from-the-pv-disk-7f3a";

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e} (scripts/setup.sh installs it)"));
    assert!(
        out.status.success(),
        "{program} {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Where the FAT file system goes.
#[derive(Clone, Copy)]
enum Layout {
    /// On the whole disk: its boot sector is the disk's sector 0.
    WholeDisk,
    /// In one active partition from [`PART_START`], behind `mbr.bin`.
    Partitioned,
}

/// Writes syslinux's MBR and a partition table with one active FAT16
/// (LBA) partition from [`PART_START`] to the end of the disk.
fn write_mbr(disk: &Path) {
    let mut mbr = std::fs::read(MBR).unwrap_or_else(|e| panic!("{MBR}: {e}"));
    mbr.resize(512, 0);
    let mut entry = [0u8; 16];
    entry[0] = 0x80;
    entry[1..4].copy_from_slice(&[0xfe, 0xff, 0xff]);
    entry[4] = 0x0e;
    entry[5..8].copy_from_slice(&[0xfe, 0xff, 0xff]);
    entry[8..12].copy_from_slice(&u32::try_from(PART_START).unwrap().to_le_bytes());
    let sectors = u32::try_from(SECTORS - PART_START).unwrap();
    entry[12..16].copy_from_slice(&sectors.to_le_bytes());
    mbr[446..462].copy_from_slice(&entry);
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
    let mut image = std::fs::read(disk).unwrap();
    image[..512].copy_from_slice(&mbr);
    std::fs::write(disk, &image).unwrap();
}

/// A disk of [`DISK_MIB`] MiB in `layout` holding syslinux, `vmlinuz`,
/// `initrd` and `syslinux.cfg`.
fn bootable_disk(env: &Env, layout: Layout, kernel: &Path, initrd: &Path) -> PathBuf {
    let disk = env.image("boot.raw", DISK_MIB);
    let (start, fat) = match layout {
        Layout::WholeDisk => (0, disk.display().to_string()),
        Layout::Partitioned => {
            write_mbr(&disk);
            let offset = PART_START * 512;
            (PART_START, format!("{}@@{offset}", disk.display()))
        }
    };
    run(
        "mformat",
        &[
            "-i",
            &fat,
            "-T",
            &(SECTORS - start).to_string(),
            "-h",
            "16",
            "-s",
            "63",
            "-H",
            &start.to_string(),
            "-v",
            "PVIOBOOT",
            "::",
        ],
    );
    let cfg = env.path("syslinux.cfg");
    std::fs::write(
        &cfg,
        format!(
            "DEFAULT pvio\nPROMPT 0\nTIMEOUT 0\nLABEL pvio\n  KERNEL vmlinuz\n  INITRD initrd\n  \
             APPEND console=ttyS0 panic=-1 loglevel=4 {MARKER}\n"
        ),
    )
    .unwrap();
    for (from, to) in [
        (kernel, "::/vmlinuz"),
        (initrd, "::/initrd"),
        (cfg.as_path(), "::/syslinux.cfg"),
    ] {
        run("mcopy", &["-i", &fat, from.to_str().unwrap(), to]);
    }
    let offset = (start * 512).to_string();
    run(
        "syslinux",
        &["--install", "--offset", &offset, disk.to_str().unwrap()],
    );
    disk
}

/// Boots a domain from a disk in `layout` (no `kernel=`, `boot = 'c'`,
/// xvda only) and checks that the kernel and initramfs came from it.
fn boots_from_the_pv_disk(layout: Layout) {
    let env = Env::new();
    let kernel = GuestKernel::get().expect("guest kernel");
    let initrd = env.initramfs(&format!(
        "wait_for /sys/block/vda/serial\n\
         if grep -q '{MARKER}' /proc/cmdline; then echo BIOS-BOOT-CMDLINE-FROM-DISK; fi\n\
         echo \"BIOS-BOOT-DISK-SERIAL=$(cat /sys/block/vda/serial)\"\n\
         echo BIOS-BOOT-DONE\n\
         sleep 600\n"
    ));
    let disk = bootable_disk(&env, layout, kernel.vmlinuz(), &initrd);
    let cfg = env.path("biosboot.cfg");
    std::fs::write(
        &cfg,
        format!(
            "name = \"biosboot\"\ntype = \"hvm\"\nmemory = 256\nvcpus = 1\nboot = 'c'\n\
             disk = [ 'file:{},xvda,w' ]\nserial = 'file:{}'\non_poweroff = 'destroy'\n",
            disk.display(),
            env.console_path("biosboot").display()
        ),
    )
    .unwrap();
    let dry = env.ok(&["create", "--dry-run", cfg.to_str().unwrap()]);
    assert!(
        dry.contains("vhost-user-blk-pci,chardev=chr-xvda,id=xvda,bootindex=1"),
        "{dry}"
    );
    assert!(!dry.contains("-kernel"), "{dry}");
    env.ok(&["create", cfg.to_str().unwrap()]);
    env.wait_console("biosboot", "BIOS-BOOT-DONE", T);
    let console = std::fs::read_to_string(env.console_path("biosboot")).unwrap();
    assert!(
        console.contains("BIOS-BOOT-CMDLINE-FROM-DISK"),
        "the kernel's command line is not the disk's syslinux.cfg:\n{console}"
    );
    assert!(
        console.contains("BIOS-BOOT-DISK-SERIAL=xvda"),
        "the guest's virtio disk is not pvio's xvda:\n{console}"
    );
    env.ok(&["destroy", "biosboot"]);
}

#[test]
fn the_bios_boots_a_pv_disk_with_boot_c() {
    boots_from_the_pv_disk(Layout::WholeDisk);
}

#[test]
#[ignore = "needs KVM: under TCG the MBR's old translation runs again after it loads the partition's boot sector over itself (see the file's comment)"]
fn the_bios_boots_a_partitioned_pv_disk_under_kvm() {
    boots_from_the_pv_disk(Layout::Partitioned);
}
