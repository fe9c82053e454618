//! Disk specs (`disk = [ ... ]`), in xl's two forms:
//!
//! - positional: `[PREFIX:]TARGET,VDEV[:cdrom],ACCESS` (the legacy form,
//!   with `file:`, `phy:`, `aio:`, `ioemu:`, `tap:aio:`, `tap2:aio:`,
//!   `tap:qcow:`, `qcow2:`... prefixes, and xend's `ioemu:hda` vdev) or
//!   `TARGET,FORMAT,VDEV,ACCESS`; a positional item that is not a format
//!   name is taken as the vdev, so both forms read the same way. An empty
//!   item means the default (`/root/image.iso,,hdc,,cdrom`), as in
//!   xl-disk-configuration(5); `phy:NAME` without a leading `/` is the
//!   block device `/dev/NAME`, as in xl;
//! - `key=value`: `target=` (last, it may hold commas), `vdev=`,
//!   `format=`, `access=`, `devtype=cdrom`, `backendtype=`; an empty
//!   `format=` or `access=` is the default too.
//!
//! The device name decides how the guest sees the disk: `hd[a-d]` emulated
//! IDE, `sd[a-g]` emulated SCSI, `xvd*` and `vd*` PV (pvio's block backend
//! over vhost-user). CD-ROMs are emulated IDE CD-ROMs; `,hdc:cdrom,r` is an
//! empty drive.

use std::path::PathBuf;

use serde::Serialize;

use super::suggest::did_you_mean;

/// How the guest sees a disk, decided by its device name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum DiskBus {
    /// Emulated IDE: `hda`/`hdb` on the first channel (unit 0/1),
    /// `hdc`/`hdd` on the second.
    Ide {
        /// 0 or 1.
        channel: u8,
        /// 0 (master) or 1 (slave).
        unit: u8,
    },
    /// Emulated SCSI (an LSI 53C895A controller): `sda` is target 0.
    Scsi {
        /// The SCSI target id, 0 to 6.
        target: u8,
    },
    /// PV: a virtio-blk device served by pvio's block backend.
    Pv {
        /// The disk's number among `xvd*`/`vd*` names (`xvda` is 0).
        index: u32,
    },
}

/// The image format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DiskFormat {
    /// A raw image or a block device.
    Raw,
    /// qcow2.
    Qcow2,
    /// qcow (version 1).
    Qcow,
    /// VHD (QEMU's `vpc` driver).
    Vhd,
    /// QED.
    Qed,
}

impl DiskFormat {
    fn parse(s: &str) -> Option<DiskFormat> {
        match s {
            "raw" | "aio" => Some(DiskFormat::Raw),
            "qcow2" => Some(DiskFormat::Qcow2),
            "qcow" => Some(DiskFormat::Qcow),
            "vhd" => Some(DiskFormat::Vhd),
            "qed" => Some(DiskFormat::Qed),
            _ => None,
        }
    }

    /// QEMU's driver name for `-drive format=`.
    pub fn qemu_name(self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Qcow2 => "qcow2",
            DiskFormat::Qcow => "qcow",
            DiskFormat::Vhd => "vpc",
            DiskFormat::Qed => "qed",
        }
    }
}

/// One disk of a domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiskSpec {
    /// The guest device name (`hda`, `xvdb`, ...).
    pub vdev: String,
    /// How the guest sees it.
    pub bus: DiskBus,
    /// The image file or block device; `None` for an empty CD-ROM drive.
    pub target: Option<PathBuf>,
    /// The image format.
    pub format: DiskFormat,
    /// Read-only (`r`); CD-ROMs always are.
    pub read_only: bool,
    /// A CD-ROM drive.
    pub cdrom: bool,
    /// xl's `backendtype` (`phy`, `qdisk`, `tap`) when given: recorded,
    /// since the device name already chooses the path.
    pub backendtype: Option<String>,
}

/// A parsed disk spec and the notes (warnings) it produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedDisk {
    /// The disk.
    pub disk: DiskSpec,
    /// Things accepted without effect.
    pub notes: Vec<String>,
}

const KEYS: &[&str] = &[
    "target",
    "vdev",
    "format",
    "access",
    "devtype",
    "backendtype",
    "cdrom",
    "script",
    "backend",
    "direct-io-safe",
    "discard",
    "no-discard",
    "trusted",
    "untrusted",
];

/// Legacy target prefixes: the access method (no effect, as in xl) or a
/// format.
const PREFIXES: &[&str] = &[
    "phy", "file", "tap", "tap2", "tapdisk", "aio", "ioemu", "raw", "qcow", "qcow2", "vhd", "qed",
];

/// Legacy target prefixes that named a Xen block script.
const SCRIPT_PREFIXES: &[&str] = &["iscsi", "nbd", "enbd", "drbd"];

/// Parses one disk spec.
pub fn parse(spec: &str) -> Result<ParsedDisk, String> {
    let mut target: Option<String> = None;
    let mut format: Option<DiskFormat> = None;
    let mut vdev: Option<String> = None;
    let mut access: Option<String> = None;
    let mut cdrom = false;
    let mut backendtype = None;
    let mut notes = Vec::new();
    let mut slot = 0; // 0 target, 1 format, 2 vdev, 3 access

    let mut rest = spec;
    while !rest.is_empty() || slot == 0 {
        if let Some(t) = rest.trim_start().strip_prefix("target=") {
            // target= takes the rest of the spec, commas included.
            target = Some(t.to_owned());
            break;
        }
        let (item, next) = match rest.split_once(',') {
            Some((a, b)) => (a, Some(b)),
            None => (rest, None),
        };
        let item = item.trim();
        if let Some((key, value)) = item.split_once('=') {
            let value = value.trim();
            match key.trim() {
                "vdev" => vdev = Some(value.to_owned()),
                "format" if value.is_empty() => format = None,
                "format" => {
                    format = Some(DiskFormat::parse(value).ok_or_else(|| bad_format(value))?)
                }
                "access" => access = (!value.is_empty()).then(|| value.to_owned()),
                "devtype" => match value {
                    "cdrom" => cdrom = true,
                    "disk" => {}
                    other => return Err(format!("unknown devtype '{other}'; use cdrom or disk")),
                },
                "backendtype" => match value {
                    "phy" | "qdisk" | "tap" => backendtype = Some(value.to_owned()),
                    other => {
                        return Err(format!(
                            "unknown backendtype '{other}'; use phy, qdisk or tap"
                        ))
                    }
                },
                k @ ("script" | "backend") => {
                    notes.push(format!("'{k}=' has no effect: pvio serves the disk itself"))
                }
                other => {
                    return Err(format!(
                        "unknown disk setting '{other}'{}",
                        did_you_mean(other, KEYS.iter().copied())
                    ))
                }
            }
        } else if item == "cdrom" {
            cdrom = true;
        } else if matches!(
            item,
            "direct-io-safe" | "discard" | "no-discard" | "trusted" | "untrusted"
        ) {
            notes.push(format!("'{item}' has no effect under pvio"));
        } else {
            // Positional.
            if slot == 1 && !item.is_empty() && DiskFormat::parse(item).is_none() {
                slot = 2; // not a format: the legacy TARGET,VDEV,ACCESS form
            }
            match slot {
                0 => target = Some(item.to_owned()),
                1 => {
                    if !item.is_empty() {
                        format = DiskFormat::parse(item);
                    }
                }
                2 => vdev = Some(item.to_owned()),
                3 => access = (!item.is_empty()).then(|| item.to_owned()),
                // An empty item past the fourth is a default too.
                _ if item.is_empty() => {}
                _ => return Err(format!("too many positional items ('{item}' is the fifth)")),
            }
            slot += 1;
        }
        match next {
            Some(n) => rest = n,
            None => break,
        }
    }

    // Legacy prefixes on the target: `phy:`, `file:`, `tap:aio:`, `qcow2:`...
    let mut target = target.unwrap_or_default();
    let mut phy = false;
    while let Some((prefix, after)) = target.split_once(':') {
        if SCRIPT_PREFIXES.contains(&prefix) {
            return Err(format!(
                "the '{prefix}:' prefix runs a Xen block script, which pvio does not have; attach the device on the host and give its path (phy:/dev/...)"
            ));
        }
        if !PREFIXES.contains(&prefix) {
            break;
        }
        if let Some(f) = DiskFormat::parse(prefix) {
            if prefix != "aio" {
                format = Some(f);
            }
        }
        phy |= prefix == "phy";
        target = after.to_owned();
    }
    // `phy:loop0` is `/dev/loop0`: a block device named without `/dev/`,
    // as xl-disk-configuration(5) reads it.
    if phy && !target.is_empty() && !target.starts_with('/') {
        target = format!("/dev/{target}");
    }

    let vdev = vdev
        .filter(|v| !v.is_empty())
        .ok_or("no device name (vdev): give one such as hda, xvda or hdc:cdrom")?;
    // xend's `ioemu:hda`: the emulated path, which the name chooses anyway.
    let vdev = vdev
        .strip_prefix("ioemu:")
        .map_or(vdev.clone(), str::to_owned);
    let (vdev, devtype) = match vdev.split_once(':') {
        Some((v, t)) => (v.to_owned(), Some(t.to_owned())),
        None => (vdev, None),
    };
    match devtype.as_deref() {
        None | Some("disk") => {}
        Some("cdrom") => cdrom = true,
        Some(other) => return Err(format!("unknown device type ':{other}'; use :cdrom")),
    }
    let bus = parse_vdev(&vdev)?;
    let read_only = match access.as_deref() {
        None if cdrom => true,
        None => false,
        Some("r" | "ro") => true,
        Some("w" | "rw" | "w!") => {
            if cdrom {
                notes.push("a CD-ROM is always read-only; access 'w' is ignored".to_owned());
            }
            cdrom
        }
        Some(other) => return Err(format!("unknown access '{other}'; use r or w")),
    };
    if cdrom && !matches!(bus, DiskBus::Ide { .. }) {
        return Err(format!(
            "{vdev} cannot be a CD-ROM: CD-ROMs are emulated IDE drives, use hda-hdd (hdc:cdrom is usual)"
        ));
    }
    let target = if target.is_empty() {
        if !cdrom {
            return Err(format!(
                "{vdev} has no target: only a CD-ROM drive may be empty"
            ));
        }
        None
    } else {
        Some(PathBuf::from(target))
    };
    let format = format.unwrap_or(DiskFormat::Raw);
    if matches!(bus, DiskBus::Pv { .. }) && format != DiskFormat::Raw {
        return Err(format!(
            "{vdev} is a PV disk, and pvio's block backend serves raw images and block devices only; convert it (qemu-img convert -O raw) or use an emulated hd*/sd* name"
        ));
    }
    Ok(ParsedDisk {
        disk: DiskSpec {
            vdev,
            bus,
            target,
            format,
            read_only,
            cdrom,
            backendtype,
        },
        notes,
    })
}

fn bad_format(value: &str) -> String {
    format!("unknown format '{value}'; use raw, qcow2, qcow, vhd or qed")
}

/// Maps a device name to the bus the guest sees.
pub fn parse_vdev(vdev: &str) -> Result<DiskBus, String> {
    let letters_index = |letters: &str| -> Option<u32> {
        if letters.is_empty()
            || !letters.chars().all(|c| c.is_ascii_lowercase())
            || letters.len() > 3
        {
            return None;
        }
        // a..z, aa..zz, aaa..zzz as in Linux's sd/xvd naming.
        let mut n: u32 = 0;
        for c in letters.chars() {
            n = n * 26 + (u32::from(c) - u32::from('a') + 1);
        }
        Some(n - 1)
    };
    if let Some(l) = vdev.strip_prefix("hd") {
        return match l {
            "a" | "b" | "c" | "d" => {
                let i = l.as_bytes()[0] - b'a';
                Ok(DiskBus::Ide {
                    channel: i / 2,
                    unit: i % 2,
                })
            }
            _ => Err(format!(
                "{vdev}: emulated IDE has four drives, hda to hdd; use xvd* for more (PV) disks"
            )),
        };
    }
    if let Some(l) = vdev.strip_prefix("sd") {
        return match letters_index(l) {
            Some(i) if i < 7 => Ok(DiskBus::Scsi {
                target: u8::try_from(i).map_err(|e| e.to_string())?,
            }),
            _ => Err(format!(
                "{vdev}: emulated SCSI has seven disks, sda to sdg; use xvd* for more (PV) disks"
            )),
        };
    }
    let pv = vdev.strip_prefix("xvd").or_else(|| vdev.strip_prefix("vd"));
    if let Some(l) = pv {
        return letters_index(l)
            .map(|index| DiskBus::Pv { index })
            .ok_or_else(|| format!("{vdev}: a PV disk name is xvd or vd and letters (xvda, xvdb, ..., xvdaa); partitions are not disks"));
    }
    Err(format!(
        "unknown device name '{vdev}': use hda-hdd (emulated IDE), sda-sdg (emulated SCSI) or xvd*/vd* (PV)"
    ))
}

#[cfg(test)]
#[path = "disk_tests.rs"]
mod tests;
