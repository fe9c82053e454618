//! BIOS boot from a PV disk, as an HVM guest installed on `xvda` boots:
//! no `kernel=`, `boot = 'c'`, and the only disk a `vhost-user-blk-pci`
//! served by pvio's block backend (the plan gives it `bootindex=1`). The
//! test makes a bootable disk without mounting anything, copies the
//! kit's kernel and initramfs onto it (`mcopy`) with a loader
//! configuration whose command line carries a marker only this disk has,
//! and the guest's script reports the marker from `/proc/cmdline` and the
//! serial of its virtio disk (`xvda`, set by the backend): SeaBIOS loaded
//! the boot loader from the PV disk, and the loader the kernel and the
//! initramfs.
//!
//! Two disks, both booted under TCG here:
//!
//! - GRUB on a partitioned disk, the usual layout: `boot.img` and an
//!   msdos partition table in sector 0, the core image (`grub-mkimage -O
//!   i386-pc`) in the gap from sector 1, and a FAT partition from 1 MiB
//!   holding `/boot/grub/grub.cfg`, the kernel and the initramfs.
//!   `boot.img` runs at 0x7c00 and loads the core image to 0x8000 and up,
//!   memory no code ran from.
//! - syslinux in a FAT file system on the whole disk (its boot sector is
//!   the disk's sector 0), as on a USB stick.
//!
//! Not here: an MBR that loads the partition's boot sector to 0x7c00,
//! over the code it ran from (syslinux's `mbr.bin`, DOS and Windows
//! MBRs), fails under TCG. The backend writes guest memory through shared
//! memory, past QEMU, and TCG drops a translation only when the guest
//! memory under it is written through QEMU, so the old translation of
//! 0x7c00 runs again. KVM has no translations; see docs/config.md.
//!
//! Needs the Debian packages `grub-pc-bin`, `syslinux` and `mtools`
//! (`scripts/setup.sh`), the kit's guest kernel, QEMU, and `cargo build
//! --workspace --bins` first.

mod runtime_support;

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use pvio_tests::kernel::GuestKernel;
use runtime_support::Env;

const T: Duration = Duration::from_secs(180);
const DISK_MIB: u64 = 96;
const SECTORS: u64 = DISK_MIB << 11;
/// The FAT partition of the partitioned layout starts at 1 MiB; GRUB's
/// core image goes in the gap before it, from sector 1.
const PART_START: u64 = 2048;
const MARKER: &str = "pvio_boot=from-the-pv-disk-7f3a";
const GRUB_DIR: &str = "/usr/lib/grub/i386-pc";
/// What GRUB's core image needs to read `grub.cfg`, the kernel and the
/// initramfs from the FAT partition through the BIOS and boot Linux;
/// `grub-mkimage` adds their dependencies.
const GRUB_MODULES: &[&str] = &[
    "biosdisk",
    "part_msdos",
    "fat",
    "normal",
    "linux",
    "serial",
    "terminal",
];
const CMDLINE: &str = "console=ttyS0 panic=-1 loglevel=4";

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

/// Where the FAT file system goes and what boots it.
#[derive(Clone, Copy)]
enum Layout {
    /// syslinux in a FAT file system on the whole disk: its boot sector
    /// is the disk's sector 0.
    WholeDisk,
    /// GRUB: `boot.img` and a partition table in sector 0, the core
    /// image from sector 1, one active FAT partition from [`PART_START`]
    /// holding `/boot/grub/grub.cfg`, the kernel and the initramfs.
    Partitioned,
}

fn write_at(disk: &Path, offset: u64, bytes: &[u8]) {
    let mut f = OpenOptions::new().write(true).open(disk).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(bytes).unwrap();
}

/// Writes GRUB's `boot.img` with a partition table of one active FAT16
/// (LBA) partition from [`PART_START`] to the end of the disk, and a core
/// image from sector 1 that reads `(hd0,msdos1)/boot/grub`. What
/// `grub-bios-setup` would patch is already right in the stock images:
/// `boot.img` loads the core image's first sector from sector 1 with
/// the drive the BIOS passed, and that sector loads the rest from
/// sector 2 (`grub-mkimage` writes its length).
fn install_grub(env: &Env, disk: &Path) {
    let core = env.path("core.img");
    let mut args = vec![
        "-O",
        "i386-pc",
        "-d",
        GRUB_DIR,
        "-p",
        "(hd0,msdos1)/boot/grub",
        "-o",
        core.to_str().unwrap(),
    ];
    args.extend_from_slice(GRUB_MODULES);
    run("grub-mkimage", &args);
    let core = std::fs::read(&core).unwrap();
    assert!(
        core.len() as u64 <= (PART_START - 1) * 512,
        "GRUB's core image ({} bytes) does not fit before the partition",
        core.len()
    );
    let boot_img = format!("{GRUB_DIR}/boot.img");
    let mut mbr = std::fs::read(&boot_img).unwrap_or_else(|e| panic!("{boot_img}: {e}"));
    assert_eq!(mbr.len(), 512, "{boot_img}");
    // Past its code (up to 0x1b8) `boot.img` holds its floppy path;
    // `grub-bios-setup` keeps the disk's table there instead.
    mbr[0x1b8..510].fill(0);
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
    write_at(disk, 0, &mbr);
    write_at(disk, 512, &core);
}

/// A disk of [`DISK_MIB`] MiB in `layout` holding a boot loader, the
/// kernel, the initramfs and the loader's configuration, whose command
/// line carries [`MARKER`].
fn bootable_disk(env: &Env, layout: Layout, kernel: &Path, initrd: &Path) -> PathBuf {
    let disk = env.image("boot.raw", DISK_MIB);
    let start = match layout {
        Layout::WholeDisk => 0,
        Layout::Partitioned => PART_START,
    };
    let fat = match layout {
        Layout::WholeDisk => disk.display().to_string(),
        Layout::Partitioned => format!("{}@@{}", disk.display(), start * 512),
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
    let cfg = env.path("loader.cfg");
    let files: Vec<(&Path, &str)> = match layout {
        Layout::WholeDisk => {
            std::fs::write(
                &cfg,
                format!(
                    "DEFAULT pvio\nPROMPT 0\nTIMEOUT 0\nLABEL pvio\n  KERNEL vmlinuz\n  \
                     INITRD initrd\n  APPEND {CMDLINE} {MARKER}\n"
                ),
            )
            .unwrap();
            vec![
                (kernel, "::/vmlinuz"),
                (initrd, "::/initrd"),
                (cfg.as_path(), "::/syslinux.cfg"),
            ]
        }
        Layout::Partitioned => {
            std::fs::write(
                &cfg,
                format!(
                    "serial --unit=0 --speed=115200\nterminal_output --append serial\n\
                     set timeout=0\nset default=0\nmenuentry pvio {{\n  \
                     linux /boot/vmlinuz {CMDLINE} {MARKER}\n  initrd /boot/initrd\n}}\n"
                ),
            )
            .unwrap();
            run("mmd", &["-i", &fat, "::/boot", "::/boot/grub"]);
            vec![
                (kernel, "::/boot/vmlinuz"),
                (initrd, "::/boot/initrd"),
                (cfg.as_path(), "::/boot/grub/grub.cfg"),
            ]
        }
    };
    for (from, to) in files {
        run("mcopy", &["-i", &fat, from.to_str().unwrap(), to]);
    }
    match layout {
        Layout::WholeDisk => run("syslinux", &["--install", disk.to_str().unwrap()]),
        Layout::Partitioned => install_grub(env, &disk),
    }
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
         if [ -e /sys/block/vda/vda1 ]; then echo BIOS-BOOT-DISK-PARTITIONED; fi\n\
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
    if let Layout::Partitioned = layout {
        assert!(
            console.contains("BIOS-BOOT-DISK-PARTITIONED"),
            "the guest sees no partition on its virtio disk:\n{console}"
        );
    }
    env.ok(&["destroy", "biosboot"]);
}

#[test]
fn grub_boots_a_partitioned_pv_disk_with_boot_c() {
    boots_from_the_pv_disk(Layout::Partitioned);
}

#[test]
fn syslinux_boots_a_whole_disk_fat_pv_disk_with_boot_c() {
    boots_from_the_pv_disk(Layout::WholeDisk);
}
