//! What the supervisor starts, `<domain dir>/launch.json`: written by
//! `pvio create` from the [`DomainPlan`] and read by the supervisor, so
//! that both agree on every name, MAC and socket the plan made up.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::files::{CONTROL, LAUNCH};
use super::passthrough::PciLaunch;
use super::record::{
    DiskEntry, DomainIdentity, DomainRecord, DomainState, NicEntry, Origin, SerialEndpoint,
};
use super::DomainError;
use crate::config::disk::DiskBus;
use crate::config::options::{Action, Serial};
use crate::config::vif::Mac;
use crate::plan::{ids, DomainPlan};

/// What to do when the guest powers off, reboots or crashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnEvent {
    /// End the domain.
    Destroy,
    /// Reset the guest in place and run it again.
    Restart,
    /// Keep the stopped guest until `pvio destroy`.
    Preserve,
}

impl From<Action> for OnEvent {
    fn from(a: Action) -> OnEvent {
        match a {
            Action::Destroy => OnEvent::Destroy,
            Action::Restart => OnEvent::Restart,
            Action::Preserve => OnEvent::Preserve,
        }
    }
}

/// A PV disk's backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlkLaunch {
    /// The guest device name.
    pub vdev: String,
    /// The vhost-user socket.
    pub socket: PathBuf,
    /// The image.
    pub image: PathBuf,
    /// Read-only.
    pub read_only: bool,
}

/// A PV NIC's backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetLaunch {
    /// The NIC's number.
    pub devid: u32,
    /// The vhost-user socket.
    pub socket: PathBuf,
    /// The tap.
    pub tap: String,
    /// The MAC.
    pub mac: Mac,
    /// The MTU.
    pub mtu: Option<u16>,
}

/// A tap to make and join to a bridge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TapLaunch {
    /// The interface.
    pub name: String,
    /// The bridge.
    pub bridge: String,
    /// The MTU.
    pub mtu: Option<u16>,
}

/// Everything the supervisor needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchSpec {
    /// Who the domain is (its record carries the same).
    #[serde(flatten)]
    pub identity: DomainIdentity,
    /// The device model.
    pub qemu_binary: PathBuf,
    /// Its arguments, as planned: the whole command line but the devices
    /// `pvio assign` reserved, which the supervisor adds at the end
    /// (`create --dry-run` prints them in the same place).
    pub qemu_args: Vec<String>,
    /// The dir of the device model's vhost-user sockets
    /// (`<run root>/.dm/<name>`).
    #[serde(default)]
    pub dm_dir: PathBuf,
    /// The plan's QMP socket (commands).
    pub qmp_socket: PathBuf,
    /// The plan's second QMP socket, the supervisor's for events.
    pub events_socket: PathBuf,
    /// The supervisor's control socket.
    pub control_socket: PathBuf,
    /// PV disk backends.
    pub blk: Vec<BlkLaunch>,
    /// PV NIC backends.
    pub net: Vec<NetLaunch>,
    /// Taps.
    pub taps: Vec<TapLaunch>,
    /// The disks (for the record).
    pub disks: Vec<DiskEntry>,
    /// The NICs (for the record).
    pub nics: Vec<NicEntry>,
    /// The first serial port, when it has a fixed place (a pty is known
    /// only once QEMU runs).
    pub serial: Option<SerialEndpoint>,
    /// The first serial port is a pty.
    pub serial_pty: bool,
    /// On power-off.
    pub on_poweroff: OnEvent,
    /// On reboot.
    pub on_reboot: OnEvent,
    /// On crash.
    pub on_crash: OnEvent,
    /// The VNC password, set over QMP once QEMU runs.
    pub vnc_password: Option<String>,
    /// The host CPUs of each vCPU (empty: anywhere).
    #[serde(default)]
    pub pinning: Vec<Vec<u32>>,
    /// The config's `pci` devices, prepared by the supervisor before QEMU
    /// starts (their `-device vfio-pci` is in `qemu_args`).
    #[serde(default)]
    pub passthrough: Vec<PciLaunch>,
    /// The config's text as the domain was created from it: a save
    /// carries it.
    #[serde(default)]
    pub config_text: Option<String>,
    /// The `key=value` overrides given with the config.
    #[serde(default)]
    pub overrides: Vec<String>,
    /// The domain starts from a saved or migrated state, read from the
    /// descriptor the supervisor inherits on `INCOMING_FD`.
    #[serde(default)]
    pub incoming: Option<Incoming>,
    /// The config's `nomigrate = 1`: save and migrate are refused.
    #[serde(default)]
    pub nomigrate: bool,
}

/// How a domain starts from a saved or migrated state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incoming {
    /// Restored from a file, or migrated in.
    pub origin: Origin,
    /// Leave the guest paused once its state is in.
    pub paused: bool,
    /// Take the image locks only once the other side let go (a migration
    /// on one host: the source holds them until it ends).
    pub defer_locks: bool,
    /// The disks hot-plugged before the save, put back where they sat.
    pub disks: Vec<DiskEntry>,
    /// The NICs hot-plugged before the save.
    pub nics: Vec<NicEntry>,
    /// Where they sat.
    pub placements: Vec<crate::domain::saved::Placement>,
}

impl LaunchSpec {
    /// The identity the device model runs as.
    pub fn device_model(&self) -> super::access::Identity {
        super::access::device_model(self.identity.id)
    }

    /// The identity the PV backends run as.
    pub fn backend_identity(&self) -> super::access::Identity {
        super::access::backends(self.identity.id)
    }

    /// The launch spec of `plan` for the domain with id `id`, with the
    /// first serial port of the config.
    pub fn from_plan(
        plan: &DomainPlan,
        id: u32,
        config: Option<&Path>,
        serial: Option<&Serial>,
    ) -> LaunchSpec {
        let dir = &plan.run_dir;
        let dm_dir = crate::plan::dm_dir(dir.parent().unwrap_or(Path::new("/")), &plan.name);
        let blk = plan
            .disks
            .iter()
            .filter_map(|d| {
                Some(BlkLaunch {
                    vdev: d.vdev.clone(),
                    socket: d.socket.clone()?,
                    image: d.image.clone()?,
                    read_only: d.read_only,
                })
            })
            .collect();
        let net = plan
            .nics
            .iter()
            .filter_map(|n| {
                Some(NetLaunch {
                    devid: n.devid,
                    socket: n.socket.clone()?,
                    tap: n.tap.clone(),
                    mac: n.mac,
                    mtu: n.mtu,
                })
            })
            .collect();
        let taps = plan
            .taps
            .iter()
            .map(|t| TapLaunch {
                name: t.name.clone(),
                bridge: t.bridge.clone(),
                mtu: t.mtu,
            })
            .collect();
        let disks = plan
            .disks
            .iter()
            .map(|d| DiskEntry {
                vdev: d.vdev.clone(),
                bus: bus_name(d.bus).to_owned(),
                cdrom: d.cdrom,
                image: d.image.clone(),
                read_only: d.read_only,
                socket: d.socket.clone(),
                hotplugged: false,
            })
            .collect();
        let nics = plan
            .nics
            .iter()
            .map(|n| NicEntry {
                devid: n.devid,
                mac: n.mac,
                model: n.model.qemu_device().to_owned(),
                tap: n.tap.clone(),
                bridge: n.bridge.clone(),
                socket: n.socket.clone(),
                hotplugged: false,
            })
            .collect();
        let (serial_ep, serial_pty) = match serial {
            Some(Serial::Pty) => (None, true),
            Some(Serial::Unix(rest)) => {
                let path = rest.split(',').next().unwrap_or_default();
                (Some(SerialEndpoint::Unix(PathBuf::from(path))), false)
            }
            Some(Serial::File(p)) => (Some(SerialEndpoint::File(p.clone())), false),
            _ => (None, false),
        };
        LaunchSpec {
            identity: DomainIdentity {
                name: plan.name.clone(),
                id,
                uuid: plan.uuid.clone(),
                memory_mib: plan.memory_mib,
                vcpus: plan.vcpus,
                accel: plan.accel.accel,
                config: config.map(Path::to_owned),
            },
            qemu_binary: plan.qemu.binary.clone(),
            // The device model's identity is the domain's, known now.
            qemu_args: plan
                .qemu
                .args
                .iter()
                .map(|a| {
                    let placeholder = format!("user={}", crate::plan::DM_USER_PLACEHOLDER);
                    if *a == placeholder {
                        format!("user={}", super::access::device_model(id).arg())
                    } else {
                        a.clone()
                    }
                })
                .collect(),
            dm_dir,
            qmp_socket: plan.qmp_socket.clone(),
            events_socket: plan.events_socket.clone(),
            control_socket: dir.join(CONTROL),
            blk,
            net,
            taps,
            disks,
            nics,
            serial: serial_ep,
            serial_pty,
            on_poweroff: plan.on_poweroff.into(),
            on_reboot: plan.on_reboot.into(),
            on_crash: plan.on_crash.into(),
            vnc_password: plan.vnc_password.clone(),
            pinning: super::pinning::per_vcpu(&plan.cpu_pinning, plan.vcpus),
            passthrough: PciLaunch::from_plan(plan),
            config_text: None,
            overrides: Vec::new(),
            incoming: None,
            nomigrate: false,
        }
    }

    /// The first record of the domain, before its supervisor runs.
    pub fn initial_record(&self) -> DomainRecord {
        DomainRecord {
            identity: self.identity.clone(),
            started_at: super::record::now_secs(),
            supervisor_pid: None,
            qemu_pid: None,
            qmp_socket: self.qmp_socket.clone(),
            control_socket: self.control_socket.clone(),
            serial: self.serial.clone(),
            vnc: None,
            disks: self.disks.clone(),
            nics: self.nics.clone(),
            pci: Vec::new(),
            taps_created: Vec::new(),
            netns: None,
            backends_down: Vec::new(),
            backend_restarts: 0,
            backend_pids: std::collections::BTreeMap::new(),
            adopted: 0,
            reboots: 0,
            origin: self.incoming.as_ref().map_or(Origin::Created, |i| i.origin),
            state: DomainState::Starting,
            ended: None,
        }
    }

    /// Writes the spec into `dir` (mode 0600: it may hold the VNC
    /// password).
    pub fn store(&self, dir: &Path) -> Result<(), DomainError> {
        let p = dir.join(LAUNCH);
        let text = serde_json::to_vec_pretty(self).map_err(|source| DomainError::Record {
            path: p.clone(),
            source,
        })?;
        // It may hold the VNC password: root's alone.
        super::record::write_atomic_mode(&p, &text, super::access::PRIVATE_MODE, None)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).map_err(|source| {
            DomainError::Io {
                what: "protect",
                path: p,
                source,
            }
        })
    }

    /// Reads the spec from `dir`.
    pub fn load(dir: &Path) -> Result<LaunchSpec, DomainError> {
        let p = dir.join(LAUNCH);
        let text = std::fs::read(&p).map_err(|source| DomainError::Io {
            what: "read",
            path: p.clone(),
            source,
        })?;
        serde_json::from_slice(&text).map_err(|source| DomainError::Record { path: p, source })
    }
}

/// The `-device` arguments of the host devices `pvio assign` reserved
/// for the domain of `plan` (those not in its config), as the supervisor
/// adds them at the end of QEMU's command line (`Taken::extra_qemu_args`).
/// Reads the PCI ownership record; changes nothing.
pub fn reserved_device_args(
    plan: &DomainPlan,
) -> Result<Vec<String>, pvio_passthrough::ManagerError> {
    let records = super::passthrough::manager(true).owned_by(&plan.name)?;
    Ok(records
        .iter()
        .filter(|r| {
            !plan
                .passthrough
                .iter()
                .any(|p| p.bdf.to_string() == r.bdf.to_string())
        })
        .flat_map(|r| ["-device".to_owned(), ids::vfio_pci_device(r.bdf, None)])
        .collect())
}

/// `pv`, `ide`, `scsi`.
pub fn bus_name(bus: DiskBus) -> &'static str {
    match bus {
        DiskBus::Pv { .. } => "pv",
        DiskBus::Ide { .. } => "ide",
        DiskBus::Scsi { .. } => "scsi",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load_str, Origin};
    use crate::host::accel::{Accel, AccelDecision};
    use crate::plan::{plan, FixedEntropy, PlanOptions};

    const CFG: &str = r#"
name = "web"
memory = 256
disk = [ 'file:/img/root.raw,xvda,w', 'file:/img/data.raw,hda,w', ',hdc:cdrom,r' ]
vif = [ 'model=virtio,bridge=br0,mac=00:16:3e:00:00:01', 'model=e1000,bridge=br0' ]
serial = 'pty'
on_reboot = 'destroy'
"#;

    fn spec() -> LaunchSpec {
        let loaded = load_str(CFG, &Origin::File("web.cfg".into()), &[]).unwrap();
        let mut entropy = FixedEntropy(7);
        let mut opts = PlanOptions {
            run_root: PathBuf::from("/run/pvio"),
            accel: AccelDecision {
                accel: Accel::Tcg,
                reason: "test".to_owned(),
            },
            ovmf: PathBuf::from("/usr/share/ovmf/OVMF.fd"),
            now: std::time::SystemTime::now(),
            entropy: &mut entropy,
            qemu_release: None,
        };
        let p = plan(&loaded.spec, &mut opts).unwrap();
        LaunchSpec::from_plan(
            &p,
            4,
            Some(Path::new("/etc/xen/web.cfg")),
            loaded.spec.serials.first(),
        )
    }

    #[test]
    fn the_plan_becomes_backends_taps_and_a_record() {
        let s = spec();
        assert_eq!(s.blk.len(), 1);
        assert_eq!(s.blk[0].vdev, "xvda");
        assert_eq!(
            s.blk[0].socket,
            PathBuf::from("/run/pvio/.dm/web/blk-xvda.sock")
        );
        assert_eq!(s.net.len(), 1);
        assert_eq!(s.net[0].mac.to_string(), "00:16:3e:00:00:01");
        assert_eq!(s.taps.len(), 2);
        assert!(s.taps.iter().all(|t| t.bridge == "br0"));
        assert!(s.serial_pty && s.serial.is_none());
        assert_eq!(s.on_reboot, OnEvent::Destroy);
        assert_eq!(s.on_poweroff, OnEvent::Destroy);
        let r = s.initial_record();
        assert_eq!(
            (r.identity.id, r.state, r.identity.accel.qemu_arg()),
            (4, DomainState::Starting, "tcg")
        );
        let buses: Vec<(&str, &str, bool)> = r
            .disks
            .iter()
            .map(|d| (d.vdev.as_str(), d.bus.as_str(), d.cdrom))
            .collect();
        assert_eq!(
            buses,
            vec![
                ("xvda", "pv", false),
                ("hda", "ide", false),
                ("hdc", "ide", true)
            ]
        );
    }

    #[test]
    fn qemu_gets_an_event_socket_and_never_exits_on_a_guest_stop() {
        let s = spec();
        assert_eq!(
            s.events_socket,
            PathBuf::from("/run/pvio/web/qmp-events.sock")
        );
        let a = &s.qemu_args;
        let pos = a
            .iter()
            .position(|x| x == "unix:/run/pvio/web/qmp-events.sock,server=on,wait=off")
            .expect("the events socket");
        assert_eq!(a[pos - 1], "-qmp");
        let action = a.iter().position(|x| x == "-action").expect("-action");
        assert_eq!(
            a[action + 1],
            "reboot=shutdown,shutdown=pause,panic=pause",
            "on_reboot = 'destroy': a reboot stops the guest"
        );
        assert_eq!(a.iter().filter(|x| *x == "-action").count(), 1);
        assert!(a.iter().any(|x| x == "-S"));
    }

    #[test]
    fn round_trips_through_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let s = spec();
        s.store(dir.path()).unwrap();
        assert_eq!(LaunchSpec::load(dir.path()).unwrap(), s);
    }
}
