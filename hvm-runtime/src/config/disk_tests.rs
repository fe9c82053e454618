//! The disk spec parser, against the forms of xl-disk-configuration(5).

use super::*;

fn disk(spec: &str) -> DiskSpec {
    parse(spec).unwrap_or_else(|e| panic!("{spec}: {e}")).disk
}

#[test]
fn legacy_file_disk_on_hda() {
    let d = disk("file:/root/xenimages/winXP128.img,hda,w");
    assert_eq!(d.vdev, "hda");
    assert_eq!(
        d.bus,
        DiskBus::Ide {
            channel: 0,
            unit: 0
        }
    );
    assert_eq!(d.target, Some("/root/xenimages/winXP128.img".into()));
    assert!(!d.read_only && !d.cdrom);
    assert_eq!(d.format, DiskFormat::Raw);
}

#[test]
fn legacy_cdrom_and_empty_drive() {
    let d = disk("file:/iso/x.iso,hdc:cdrom,r");
    assert_eq!(
        d.bus,
        DiskBus::Ide {
            channel: 1,
            unit: 0
        }
    );
    assert!(d.cdrom && d.read_only);
    let e = disk(",hdc:cdrom,r");
    assert_eq!(e.target, None);
    assert!(e.cdrom);
    assert_eq!(
        disk("phy:/dev/sr0,hdd:cdrom,r").bus,
        DiskBus::Ide {
            channel: 1,
            unit: 1
        }
    );
}

#[test]
fn phy_and_tap_prefixes() {
    let d = disk("phy:/dev/vg/lv,xvda,r");
    assert_eq!(d.bus, DiskBus::Pv { index: 0 });
    assert_eq!(d.target, Some("/dev/vg/lv".into()));
    assert!(d.read_only);
    assert_eq!(
        disk("tap:aio:/img/a.raw,xvdb,w").target,
        Some("/img/a.raw".into())
    );
    assert_eq!(
        disk("aio:/img/a.raw,xvdb,w").target,
        Some("/img/a.raw".into())
    );
    let q = disk("tap:qcow2:/img/a.qcow2,hdb,w");
    assert_eq!(q.format, DiskFormat::Qcow2);
    assert_eq!(q.target, Some("/img/a.qcow2".into()));
}

#[test]
fn positional_with_format() {
    let d = disk("/img/a.qcow2,qcow2,hda,w");
    assert_eq!(d.format, DiskFormat::Qcow2);
    let d = disk("/dev/vg/guest-volume,,hda");
    assert_eq!(d.vdev, "hda");
    assert!(!d.read_only);
}

#[test]
fn empty_positional_items_are_defaults() {
    // xl-disk-configuration(5)'s own examples, all the same CD-ROM.
    for spec in [
        "/root/image.iso,,hdc,cdrom",
        "/root/image.iso,,hdc,,cdrom",
        "/root/image.iso,raw,hdc,devtype=cdrom",
        "format=raw, vdev=hdc, access=ro, devtype=cdrom, target=/root/image.iso",
        "raw:/root/image.iso,hdc:cdrom,ro",
    ] {
        let d = disk(spec);
        assert_eq!(d.vdev, "hdc", "{spec}");
        assert!(d.cdrom && d.read_only, "{spec}");
        assert_eq!(d.target, Some("/root/image.iso".into()), "{spec}");
        assert_eq!(d.format, DiskFormat::Raw, "{spec}");
    }
    // And its equivalent disks.
    for spec in [
        "/dev/vg/guest-volume,,hda",
        "/dev/vg/guest-volume,raw,hda,rw",
        "/dev/vg/guest-volume,,hda,",
        "/dev/vg/guest-volume,,hda,,",
        "format=raw, vdev=hda, access=rw, target=/dev/vg/guest-volume",
        "raw:/dev/vg/guest-volume,hda,w",
    ] {
        let d = disk(spec);
        assert_eq!(d.vdev, "hda", "{spec}");
        assert!(!d.read_only && !d.cdrom, "{spec}");
        assert_eq!(d.target, Some("/dev/vg/guest-volume".into()), "{spec}");
    }
    // Empty named values: the defaults (raw, read-write).
    let d = disk("format=,access=,vdev=xvda,target=/x.img");
    assert_eq!((d.format, d.read_only), (DiskFormat::Raw, false));
    let c = disk("access=,vdev=hdc,devtype=cdrom,target=/x.iso");
    assert!(c.read_only, "a CD-ROM stays read-only");
}

#[test]
fn xend_ioemu_and_tap_prefixes() {
    // xmexample.hvm's disk.
    let d = disk("file:/var/lib/xen/images/disk.img,ioemu:hda,w");
    assert_eq!(d.vdev, "hda");
    assert_eq!(
        d.bus,
        DiskBus::Ide {
            channel: 0,
            unit: 0
        }
    );
    assert_eq!(d.target, Some("/var/lib/xen/images/disk.img".into()));
    let c = disk("file:/iso/x.iso,ioemu:hdc:cdrom,r");
    assert!(c.cdrom && c.vdev == "hdc");
    assert_eq!(
        disk("ioemu:/img/a.raw,hdb,w").target,
        Some("/img/a.raw".into())
    );
    let t = disk("tap2:aio:/img/a.raw,xvda,w");
    assert_eq!(t.target, Some("/img/a.raw".into()));
    assert_eq!(t.format, DiskFormat::Raw);
    let q = disk("tap:qcow:/img/old.qcow,hda,w");
    assert_eq!(q.format, DiskFormat::Qcow);
    assert_eq!(q.target, Some("/img/old.qcow".into()));
    let v = disk("tap:tapdisk:vhd:/img/a.vhd,hdb,w");
    assert_eq!(v.format, DiskFormat::Vhd);
    assert_eq!(v.target, Some("/img/a.vhd".into()));
    assert_eq!(
        parse("iscsi:iqn.2001-05.com.example:disk,xvda,w").unwrap_err(),
        "the 'iscsi:' prefix runs a Xen block script, which pvio does not have; attach the device on the host and give its path (phy:/dev/...)"
    );
}

#[test]
fn key_value_form() {
    let d = disk("vdev=xvdc, access=r, format=raw, target=/img/a,b.raw");
    assert_eq!(d.vdev, "xvdc");
    assert_eq!(d.bus, DiskBus::Pv { index: 2 });
    assert_eq!(d.target, Some("/img/a,b.raw".into()));
    assert!(d.read_only);
    let c = disk("vdev=hdc,devtype=cdrom,target=/iso/x.iso");
    assert!(c.cdrom && c.read_only);
    let e = disk("vdev=hdc,devtype=cdrom");
    assert_eq!(e.target, None);
    let b = disk("backendtype=qdisk,vdev=vda,target=/x");
    assert_eq!(b.backendtype.as_deref(), Some("qdisk"));
    assert_eq!(b.bus, DiskBus::Pv { index: 0 });
    assert!(disk("/x,hdc,r,cdrom").cdrom);
}

#[test]
fn device_names_choose_the_path() {
    assert_eq!(
        parse_vdev("hdb"),
        Ok(DiskBus::Ide {
            channel: 0,
            unit: 1
        })
    );
    assert_eq!(
        parse_vdev("hdd"),
        Ok(DiskBus::Ide {
            channel: 1,
            unit: 1
        })
    );
    assert_eq!(parse_vdev("sda"), Ok(DiskBus::Scsi { target: 0 }));
    assert_eq!(parse_vdev("sdg"), Ok(DiskBus::Scsi { target: 6 }));
    assert_eq!(parse_vdev("xvdz"), Ok(DiskBus::Pv { index: 25 }));
    assert_eq!(parse_vdev("xvdaa"), Ok(DiskBus::Pv { index: 26 }));
    assert_eq!(parse_vdev("vdb"), Ok(DiskBus::Pv { index: 1 }));
    assert!(parse_vdev("hde").unwrap_err().contains("four drives"));
    assert!(parse_vdev("sdh").unwrap_err().contains("seven disks"));
    assert!(parse_vdev("xvda1").unwrap_err().contains("partitions"));
    assert!(parse_vdev("nvme0n1")
        .unwrap_err()
        .starts_with("unknown device name 'nvme0n1'"));
}

#[test]
fn errors() {
    assert_eq!(
        parse("file:/x").unwrap_err(),
        "no device name (vdev): give one such as hda, xvda or hdc:cdrom"
    );
    assert_eq!(
        parse(",hda,w").unwrap_err(),
        "hda has no target: only a CD-ROM drive may be empty"
    );
    assert_eq!(
        parse("/x,hda,x").unwrap_err(),
        "unknown access 'x'; use r or w"
    );
    assert!(parse("/x,xvdc:cdrom,r")
        .unwrap_err()
        .contains("CD-ROMs are emulated IDE"));
    assert!(parse("/x.qcow2,qcow2,xvda,w")
        .unwrap_err()
        .contains("raw images"));
    assert_eq!(
        parse("vdev=hda,acess=r,target=/x").unwrap_err(),
        "unknown disk setting 'acess' (did you mean 'access'?)"
    );
    assert!(parse("vdev=hda,format=vmdk,target=/x")
        .unwrap_err()
        .contains("unknown format"));
    assert!(parse("/x,hda:floppy,w")
        .unwrap_err()
        .contains("device type"));
    assert!(parse("/x,raw,hda,w,extra")
        .unwrap_err()
        .contains("too many"));
}

#[test]
fn notes_for_accepted_settings_without_effect() {
    let p = parse("file:/iso,hdc:cdrom,w").unwrap();
    assert!(p.disk.read_only);
    assert_eq!(
        p.notes,
        ["a CD-ROM is always read-only; access 'w' is ignored"]
    );
    let p = parse("vdev=xvda,script=block-iscsi,target=/x").unwrap();
    assert_eq!(p.notes.len(), 1);
}

#[test]
fn phy_without_a_leading_slash_is_under_dev() {
    assert_eq!(
        disk("phy:loop0,xvda,w").target,
        Some(PathBuf::from("/dev/loop0"))
    );
    assert_eq!(
        disk("phy:mapper/vg-guest,hda,w").target,
        Some(PathBuf::from("/dev/mapper/vg-guest"))
    );
    assert_eq!(
        disk("phy:/dev/loop0,xvda,w").target,
        Some(PathBuf::from("/dev/loop0"))
    );
    // Only phy: names a device; a plain or file: target stays relative.
    assert_eq!(disk("loop0,xvda,w").target, Some(PathBuf::from("loop0")));
    assert_eq!(
        disk("file:img/a.raw,xvda,w").target,
        Some(PathBuf::from("img/a.raw"))
    );
    // An empty phy: CD-ROM drive stays empty.
    assert_eq!(disk("phy:,hdc:cdrom,r").target, None);
}
