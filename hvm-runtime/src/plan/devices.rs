//! The plan's devices: each disk, NIC and PCI device of the spec becomes
//! either a PV device (a pvio backend on a vhost-user socket, and the
//! QEMU vhost-user device that connects to it) or an emulated one (QEMU
//! `-drive`/`-netdev` and the emulated controller), plus `vfio-pci` for
//! passthrough. Each device, chardev and netdev is built by the
//! constructor hot-plug uses too (`plan::qdev`) and written here as its
//! command-line spelling.

use std::path::Path;

use super::{
    ids, msix, qdev, qemu_path, socket, text, BackendPlan, DiskPlan, NicPlan, PassthroughPlan,
    PlanError, TapPlan,
};
use crate::config::disk::{DiskBus, DiskSpec};
use crate::config::options::Machine;
use crate::config::vif::VifSpec;
use crate::config::{DomainSpec, Located};
use crate::host::accel::Accel;

/// The devices of a plan and their QEMU arguments.
pub(super) struct Devices {
    pub disks: Vec<DiskPlan>,
    pub nics: Vec<NicPlan>,
    pub passthrough: Vec<PassthroughPlan>,
    pub blk_backends: Vec<BackendPlan>,
    pub net_backends: Vec<BackendPlan>,
    pub taps: Vec<TapPlan>,
    /// `-drive`, `-chardev`, `-netdev` and `-device` arguments.
    pub args: Vec<String>,
}

pub(super) fn plan_devices(
    spec: &DomainSpec,
    dm_dir: &Path,
    (accel, release): (Accel, Option<(u32, u32)>),
    entropy: &mut dyn ids::Entropy,
    errors: &mut Vec<PlanError>,
) -> Devices {
    let mut d = Devices {
        disks: Vec::new(),
        nics: Vec::new(),
        passthrough: Vec::new(),
        blk_backends: Vec::new(),
        net_backends: Vec::new(),
        taps: Vec::new(),
        args: Vec::new(),
    };
    let mut scsi_controller = false;
    for disk in &spec.disks {
        if let Err(e) = disk_args(
            disk,
            (spec.machine, release),
            dm_dir,
            &mut d,
            &mut scsi_controller,
        ) {
            errors.push(e);
        }
    }
    for vif in &spec.vifs {
        if let Err(e) = vif_args(vif, &spec.name, dm_dir, (accel, release), entropy, &mut d) {
            errors.push(e);
        }
    }
    for pci in &spec.pci {
        let p = &pci.value;
        let dev = ids::vfio_pci_device(p.bdf, p.vslot);
        d.args.extend(["-device".to_owned(), dev]);
        d.passthrough.push(PassthroughPlan {
            bdf: p.bdf,
            vslot: p.vslot,
            seize: p.seize,
            at: pci.at.clone(),
        });
    }
    d
}

fn vif_args(
    vif: &Located<VifSpec>,
    name: &str,
    dm_dir: &Path,
    (accel, release): (Accel, Option<(u32, u32)>),
    entropy: &mut dyn ids::Entropy,
    d: &mut Devices,
) -> Result<(), PlanError> {
    let v = &vif.value;
    let tap = match &v.vifname {
        Some(n) => n.clone(),
        None => ids::tap_name(name, v.devid).ok_or_else(|| PlanError::Unsupported {
            at: vif.at.clone(),
            key: "vif",
            message: format!(
                "devid {} makes the tap name too long; set vifname=",
                v.devid
            ),
        })?,
    };
    let (mac, random_mac) = match v.mac {
        Some(m) => (m, false),
        None => (ids::random_mac(entropy), true),
    };
    let id = qdev::netdev_id(v.devid);
    let sock = if v.model.is_pv() {
        let sock = socket(dm_dir, &format!("net-{}.sock", v.devid))?;
        let args = super::backend_cmd::net_args(
            &mac.to_string(),
            v.mtu,
            super::backend_cmd::USER_PLACEHOLDER,
        );
        d.net_backends.push(BackendPlan {
            device: id.clone(),
            socket: sock.clone(),
            args,
        });
        // One queue pair: the net backend and the netdev use one.
        let vectors = msix::pv_nic_vectors(accel, 1, release);
        let chardev = qdev::SocketChardev {
            id: qdev::chardev_id(&id),
            path: text(&sock)?,
            release,
        };
        let netdev = qdev::Netdev::VhostUser {
            id,
            chardev: chardev.id.clone(),
        };
        d.args.extend([
            "-chardev".to_owned(),
            chardev.to_cmdline(),
            "-netdev".to_owned(),
            netdev.to_cmdline(),
            "-device".to_owned(),
            qdev::virtio_net(v.devid, mac, v.mtu, vectors).to_cmdline(),
        ]);
        Some(sock)
    } else {
        let netdev = qdev::Netdev::Tap {
            id,
            from: qdev::TapFrom::Ifname(tap.clone()),
        };
        d.args.extend([
            "-netdev".to_owned(),
            netdev.to_cmdline(),
            "-device".to_owned(),
            qdev::emulated_nic(v.model, v.devid, mac).to_cmdline(),
        ]);
        None
    };
    d.taps.push(TapPlan {
        name: tap.clone(),
        bridge: v.bridge.clone(),
        mtu: v.mtu,
    });
    d.nics.push(NicPlan {
        devid: v.devid,
        model: v.model,
        mac,
        random_mac,
        tap,
        bridge: v.bridge.clone(),
        mtu: v.mtu,
        socket: sock,
        at: vif.at.clone(),
    });
    Ok(())
}

fn disk_args(
    disk: &Located<DiskSpec>,
    (machine, release): (Machine, Option<(u32, u32)>),
    dm_dir: &Path,
    d: &mut Devices,
    scsi_controller: &mut bool,
) -> Result<(), PlanError> {
    let s = &disk.value;
    // The drive takes the vdev as its name too, so that monitor commands
    // (`eject hdc`, `change hdc FILE`) take the config's names.
    let drive_id = s.vdev.clone();
    let mut sock = None;
    match s.bus {
        DiskBus::Pv { .. } => {
            let path = socket(dm_dir, &format!("blk-{}.sock", s.vdev))?;
            let image = s.target.as_deref().ok_or_else(|| PlanError::Unsupported {
                at: disk.at.clone(),
                key: "disk",
                message: format!("{} is a PV disk without an image", s.vdev),
            })?;
            text(image)?;
            let args = super::backend_cmd::blk_args(
                &s.vdev,
                s.read_only,
                super::backend_cmd::USER_PLACEHOLDER,
            );
            d.blk_backends.push(BackendPlan {
                device: s.vdev.clone(),
                socket: path.clone(),
                args,
            });
            let chardev = qdev::SocketChardev {
                id: qdev::chardev_id(&s.vdev),
                path: text(&path)?,
                release,
            };
            d.args.extend([
                "-chardev".to_owned(),
                chardev.to_cmdline(),
                "-device".to_owned(),
                qdev::vhost_user_blk(&s.vdev).to_cmdline(),
            ]);
            sock = Some(path);
        }
        DiskBus::Ide { channel, unit } => {
            d.args.extend(["-drive".to_owned(), drive(s, &drive_id)?]);
            let dev = qdev::ide(s.cdrom, &s.vdev, &drive_id, machine, (channel, unit));
            d.args.extend(["-device".to_owned(), dev.to_cmdline()]);
        }
        DiskBus::Scsi { target } => {
            if !*scsi_controller {
                d.args
                    .extend(["-device".to_owned(), qdev::scsi_controller().to_cmdline()]);
                *scsi_controller = true;
            }
            d.args.extend(["-drive".to_owned(), drive(s, &drive_id)?]);
            d.args.extend([
                "-device".to_owned(),
                qdev::scsi_hd(&s.vdev, &drive_id, target).to_cmdline(),
            ]);
        }
    }
    d.disks.push(DiskPlan {
        vdev: s.vdev.clone(),
        bus: s.bus,
        image: s.target.clone(),
        format: s.format,
        read_only: s.read_only,
        cdrom: s.cdrom,
        socket: sock,
        at: disk.at.clone(),
    });
    Ok(())
}

/// The `-drive` value of an emulated disk.
fn drive(s: &DiskSpec, id: &str) -> Result<String, PlanError> {
    let mut v = String::new();
    if let Some(t) = &s.target {
        v.push_str(&format!(
            "file={},format={},",
            qemu_path(t)?,
            s.format.qemu_name()
        ));
    }
    v.push_str(&format!("if=none,id={id}"));
    if s.cdrom {
        v.push_str(",media=cdrom");
    }
    if s.read_only && s.target.is_some() {
        v.push_str(",readonly=on");
    } else if s.target.is_some() && !s.cdrom {
        // QEMU drops a writable image to read-only while a save or
        // migration has stopped the guest, and reopens it by path to
        // resume it (`save -c`, `-p`, a failed migration): as the
        // unprivileged device model it may not. Keeping the descriptor
        // it opened at start avoids the reopen.
        v.push_str(",auto-read-only=off");
    }
    Ok(v)
}
