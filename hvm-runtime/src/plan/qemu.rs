//! The device model's command line: machine, accelerator, CPU model and
//! flags, memory (always shareable, for vhost-user), SMP,
//! firmware or direct kernel boot, RTC, boot order, the devices, display,
//! serial ports, USB, sound, QMP, the guest-event actions, and the user's
//! `device_model_args` last. Every option here is one QEMU 7.2 accepts
//! (the tests start QEMU on it).

use std::path::Path;

use super::devices::Devices;
use super::{
    bootorder, pcie, qemu_path, rtc, socket, text, PlanError, PlanOptions, QemuCommand,
    DEFAULT_QEMU,
};
use crate::config::options::{Action, BootDevice, Firmware, Machine, Serial, SoundHw, Vga};
use crate::config::DomainSpec;
use crate::host::accel::Accel;

/// The audio backend id for sound cards (`-audiodev none`).
const AUDIODEV: &str = "snd0";
/// The id of the text console (a `vc` chardev) the human monitor gets on
/// the display when `monitor=1` and VNC or SDL are on.
pub const MONITOR_VC: &str = "pvio-monitor-vc";

/// What an `acpi = 0` domain cannot do, for the create output.
pub const ACPI_OFF_NOTE: &str = "acpi=0: the guest has no ACPI, so it ignores `pvio shutdown` (the ACPI power button; `pvio destroy` ends it) and cannot take PCI hot-plug (block-attach, network-attach, assign)";

/// The domain's run dir and the QMP sockets QEMU listens on there.
pub(super) struct Places<'a> {
    /// The run dir.
    pub run_dir: &'a Path,
    /// The commands socket.
    pub qmp: &'a Path,
    /// The supervisor's events socket.
    pub events: &'a Path,
}

pub(super) fn command_line(
    spec: &DomainSpec,
    devs: &Devices,
    places: &Places<'_>,
    uuid: &str,
    opts: &PlanOptions<'_>,
    notes: &mut Vec<String>,
    errors: &mut Vec<PlanError>,
) -> Result<QemuCommand, PlanError> {
    let Places {
        run_dir,
        qmp,
        events,
    } = *places;
    let mut a: Vec<String> = Vec::new();
    let mut push = |flag: &str, value: String| {
        a.push(flag.to_owned());
        a.push(value);
    };
    push("-name", spec.name.clone());
    push("-uuid", uuid.to_owned());
    let mut plain = vec!["-nodefaults".to_owned(), "-no-user-config".to_owned()];

    // Machine.
    let mut machine = spec.machine.qemu_name().to_owned();
    if !spec.acpi {
        machine.push_str(",acpi=off");
    }
    // Guest RAM is always a shared memfd: the vhost-user backends of PV
    // devices map it, whether in the config or hot-plugged later.
    machine.push_str(",memory-backend=mem");
    if spec.soundhw.contains(&SoundHw::Pcspk) {
        machine.push_str(&format!(",pcspk-audiodev={AUDIODEV}"));
    }
    push("-machine", machine);
    push("-accel", opts.accel.accel.qemu_arg().to_owned());
    if opts.accel.accel == Accel::Tcg {
        notes.push(format!("accelerator: TCG, not KVM: {}", opts.accel.reason));
    }

    // CPU.
    let mut cpu = match opts.accel.accel {
        Accel::Kvm => "host".to_owned(),
        Accel::Tcg => "qemu64".to_owned(),
    };
    if !spec.apic {
        cpu.push_str(",-apic");
    }
    if !spec.pae {
        // No PAE means no long mode either: a 32-bit-only CPU, as Xen's pae=0.
        cpu.push_str(",-pae,-lm");
    }
    if !spec.viridian.is_empty() {
        if opts.accel.accel == Accel::Kvm {
            for g in &spec.viridian {
                for flag in g.qemu_flags() {
                    if !cpu.contains(flag) {
                        cpu.push(',');
                        cpu.push_str(flag);
                    }
                }
            }
        } else {
            notes.push("viridian has no effect under TCG: QEMU offers the Hyper-V enlightenments with KVM only".to_owned());
        }
    }
    push("-cpu", cpu);

    // Memory and vCPUs.
    push("-m", spec.memory_mib.to_string());
    push(
        "-object",
        format!(
            "memory-backend-memfd,id=mem,size={}M,share=on",
            spec.memory_mib
        ),
    );
    push("-smp", format!("{},maxcpus={}", spec.vcpus, spec.maxvcpus));

    // Firmware and boot.
    match &spec.firmware {
        Firmware::Bios => {}
        Firmware::Uefi => push("-bios", qemu_path(&opts.ovmf)?),
        Firmware::File(p) => push("-bios", qemu_path(p)?),
    }
    if let Some(k) = &spec.kernel {
        push("-kernel", qemu_path(&k.value)?);
        if let Some(r) = &spec.ramdisk {
            push("-initrd", qemu_path(&r.value)?);
        }
        if let Some(c) = &spec.cmdline {
            push("-append", c.clone());
        }
    } else {
        let order: String = spec.boot.iter().map(|b| b.letter()).collect();
        push("-boot", format!("order={order}"));
        if spec.boot.contains(&BootDevice::Floppy) && spec.fda.is_none() {
            notes.push("boot order has 'a' but there is no floppy (fda)".to_owned());
        }
    }

    // Clock.
    let base = match (spec.localtime, spec.rtc_timeoffset) {
        (false, 0) => "utc".to_owned(),
        (true, 0) => "localtime".to_owned(),
        (true, _) => {
            notes.push("rtc_timeoffset is ignored with localtime=1: QEMU takes either local time or a fixed start".to_owned());
            "localtime".to_owned()
        }
        (false, off) => rtc::utc_with_offset(opts.now, off).unwrap_or_else(|| {
            notes
                .push("rtc_timeoffset moves the clock before 1970; the RTC runs in UTC".to_owned());
            "utc".to_owned()
        }),
    };
    push("-rtc", format!("base={base}"));

    // Devices; a passed-through device gets its id from its address
    // (ids::passthrough_id), the one `pvio assign` / `pvio release` use.
    // A PV first hard disk boots through `bootindex` (plan::bootorder).
    let mut dev_args = devs.args.clone();
    let boot = if spec.kernel.is_none() {
        bootorder::boot_indexes(&spec.boot, &devs.disks, &devs.nics, spec.fda.is_some())
    } else {
        bootorder::BootIndexes::default()
    };
    bootorder::apply(&mut dev_args, &boot);
    if let Some((disk, _)) = boot
        .devices
        .iter()
        .find(|(id, _)| devs.disks.iter().any(|d| &d.vdev == id && !d.cdrom))
    {
        notes.push(format!(
            "{disk} is a PV disk: the BIOS boots it through bootindex, and every device of the boot order gets one"
        ));
    }
    a.extend(dev_args);
    // q35: empty root ports for hot-plug (plan::pcie).
    a.extend(pcie::spare_root_port_args(spec.machine));
    let mut push = |flag: &str, value: String| {
        a.push(flag.to_owned());
        a.push(value);
    };
    match &spec.fda {
        Some(f) if spec.machine == Machine::Q35 => errors.push(PlanError::Unsupported {
            at: f.at.clone(),
            key: "fda",
            message: "q35 has no floppy controller; use machine = \"pc\"".to_owned(),
        }),
        Some(f) => {
            push(
                "-drive",
                format!("file={},format=raw,if=floppy,index=0", qemu_path(&f.value)?),
            );
            if let Some(n) = boot.floppy {
                push("-global", format!("isa-fdc.bootindexA={n}"));
            }
        }
        None => {}
    }

    // Display.
    let vga = match spec.vga {
        Vga::Cirrus => Some("cirrus-vga"),
        Vga::Std => Some("VGA"),
        Vga::Qxl => Some("qxl-vga"),
        Vga::Virtio => Some("virtio-vga"),
        Vga::None => None,
    };
    if let Some(dev) = vga {
        let mut d = dev.to_owned();
        if let Some(mib) = spec.videoram_mib {
            if spec.vga == Vga::Virtio {
                notes.push("videoram has no effect on virtio-vga".to_owned());
            } else {
                d.push_str(&format!(",vgamem_mb={mib}"));
            }
        }
        push("-device", d);
    }
    if let Some(vnc) = &spec.vnc {
        let host = if vnc.listen.contains(':') {
            format!("[{}]", vnc.listen)
        } else {
            vnc.listen.clone()
        };
        let first = vnc.display.unwrap_or(0);
        let mut v = format!("{host}:{first}");
        if vnc.unused {
            // QEMU tries displays first..=to and takes the first free one.
            v.push_str(&format!(",to={}", first.saturating_add(99)));
        }
        if let Some(pw) = &vnc.password {
            let len = pw.chars().count();
            if len > VNC_PASSWORD_MAX {
                errors.push(PlanError::VncPassword(len));
            }
            v.push_str(",password=on");
        } else if !is_loopback(&vnc.listen) {
            notes.push(format!(
                "warning: the VNC display listens on {} without a password: anyone who reaches that address sees and types into the guest's console; set vncpasswd or vnclisten=\"127.0.0.1\"",
                vnc.listen
            ));
        }
        push("-vnc", v);
    }
    if let Some(k) = &spec.keymap {
        push("-k", k.clone());
    }
    if spec.sdl {
        push("-display", "sdl".to_owned());
        if spec.full_screen {
            plain.push("-full-screen".to_owned());
        }
    } else {
        push("-display", "none".to_owned());
    }

    // Serial ports.
    for port in &spec.serials {
        push("-serial", serial(port)?);
    }

    // USB.
    if spec.usb {
        plain.push("-usb".to_owned());
        for d in &spec.usbdevices {
            push("-device", d.qemu_device().to_owned());
        }
    }

    // Sound.
    if !spec.soundhw.is_empty() {
        push("-audiodev", format!("none,id={AUDIODEV}"));
        notes.push("sound cards play into QEMU's 'none' audio backend: the guest has them, the host hears nothing".to_owned());
    }
    for hw in &spec.soundhw {
        match hw {
            SoundHw::Sb16 => push("-device", format!("sb16,audiodev={AUDIODEV}")),
            SoundHw::Es1370 => push("-device", format!("ES1370,audiodev={AUDIODEV}")),
            SoundHw::Ac97 => push("-device", format!("AC97,audiodev={AUDIODEV}")),
            SoundHw::Hda => {
                push("-device", "intel-hda,id=hda0".to_owned());
                push(
                    "-device",
                    format!("hda-duplex,bus=hda0.0,audiodev={AUDIODEV}"),
                );
            }
            SoundHw::Pcspk => {} // on the machine, above
        }
    }

    // Crash reports, control sockets, actions.
    push("-device", "pvpanic".to_owned());
    if spec.monitor {
        // On a display, the monitor is also a text console there, as the
        // Xen HVM guide uses it: Ctrl-Alt-2 shows it, Ctrl-Alt-1 the guest.
        let on_display = spec.vnc.is_some() || spec.sdl;
        notes.push(format!(
            "warning: monitor=1 opens QEMU's human monitor on {}{}: whoever may connect (root and group '{}'{}) can do everything QEMU can (read and write files as its user, change devices); use `pvio` commands where they do",
            run_dir.join("monitor.sock").display(),
            if on_display {
                " and on the display (Ctrl-Alt-2; Ctrl-Alt-1 back to the guest)"
            } else {
                ""
            },
            "pvio",
            if on_display { ", and whoever sees the display" } else { "" }
        ));
        let m = socket(run_dir, "monitor.sock")?;
        push(
            "-monitor",
            format!("unix:{},server=on,wait=off", qemu_path(&m)?),
        );
        if on_display {
            push("-chardev", format!("vc,id={MONITOR_VC}"));
            push("-mon", format!("chardev={MONITOR_VC},mode=readline"));
        }
    }
    push(
        "-qmp",
        format!("unix:{},server=on,wait=off", qemu_path(qmp)?),
    );
    // The supervisor's own QMP connection, for events.
    push(
        "-qmp",
        format!("unix:{},server=on,wait=off", qemu_path(events)?),
    );
    // QEMU never ends on its own when the guest stops: a power-off and a
    // panic pause the guest and the supervisor applies on_poweroff /
    // on_crash (docs/architecture.md). QEMU resets the guest itself when
    // on_reboot is restart; otherwise a reboot stops it like a power-off.
    let reboot = if spec.on_reboot == Action::Restart {
        "reset"
    } else {
        "shutdown"
    };
    push(
        "-action",
        format!("reboot={reboot},shutdown=pause,panic=pause"),
    );
    // Start with the vCPUs stopped: the supervisor pins them and sets up
    // VNC over QMP, then lets the guest run.
    plain.push("-S".to_owned());
    if !spec.acpi {
        notes.push(ACPI_OFF_NOTE.to_owned());
    }

    a.append(&mut plain);
    confine(&mut a, opts.qemu_release, notes);
    a.extend(spec.device_model_args.iter().cloned());
    let binary = spec
        .device_model_override
        .as_ref()
        .map_or_else(|| DEFAULT_QEMU.into(), |o| o.value.clone());
    text(&binary)?;
    Ok(QemuCommand { binary, args: a })
}

/// QEMU's own seccomp filter: what libvirt denies, but set*id, which
/// QEMU 10.0 needs for its own `-run-with user=` drop (`elevateprivileges=deny`
/// and `=children` kill it there with SIGSYS: checked). After the drop all
/// its ids are the domain's, its capabilities empty and `no_new_privs` set,
/// so set*id cannot raise it again (docs/security.md).
pub const SANDBOX_ARG: &str =
    "on,obsolete=deny,elevateprivileges=allow,spawn=deny,resourcecontrol=deny";

/// What the plan writes for the device model's identity: the domain's id
/// fixes it at start (`PVIO_UID_BASE + 2 * id`), when the supervisor puts
/// it in (`domain::launch`).
pub const DM_USER_PLACEHOLDER: &str = "DM_UID:DM_GID";

/// The first QEMU whose `-run-with` takes `user=`.
const RUN_WITH_USER: (u32, u32) = (9, 1);

/// The device model's confinement: its seccomp filter, and its drop to
/// the domain's unprivileged identity once it has opened what it needs.
fn confine(a: &mut Vec<String>, release: Option<(u32, u32)>, notes: &mut Vec<String>) {
    a.push("-sandbox".to_owned());
    a.push(SANDBOX_ARG.to_owned());
    match release {
        Some((major, minor)) if (major, minor) < RUN_WITH_USER => notes.push(format!(
            "warning: QEMU {major}.{minor} cannot drop to the domain's own uid (-run-with user= needs 9.1): the device model runs as root under its seccomp filter; install QEMU 10 (scripts/setup.sh)"
        )),
        _ => {
            a.push("-run-with".to_owned());
            a.push(format!("user={DM_USER_PLACEHOLDER}"));
        }
    }
}

/// The longest password VNC authentication uses (DES, 8 bytes).
const VNC_PASSWORD_MAX: usize = 8;

/// Whether a listen address is the host's own.
fn is_loopback(listen: &str) -> bool {
    let a = listen.trim_start_matches('[').trim_end_matches(']');
    a == "localhost"
        || a.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A serial port as QEMU's `-serial` value.
fn serial(port: &Serial) -> Result<String, PlanError> {
    Ok(match port {
        Serial::Pty => "pty".to_owned(),
        Serial::Null => "null".to_owned(),
        Serial::File(p) => format!("file:{}", text(p)?),
        Serial::Unix(rest) => format!("unix:{}", socket_options(rest, true)),
        Serial::Tcp(rest) => format!("tcp:{}", socket_options(rest, false)),
        Serial::Udp(rest) => format!("udp:{rest}"),
        Serial::HostDevice(p) => text(p)?,
    })
}

/// xend's `path,server,nowait` spelled as QEMU 7.2 wants it
/// (`server=on,wait=off`); with `listen`, a bare Unix path gets
/// `server=on,wait=off` so that the guest waits for no client.
fn socket_options(rest: &str, listen: bool) -> String {
    let mut parts = rest.split(',');
    let head = parts.next().unwrap_or_default().to_owned();
    let opts: Vec<String> = parts
        .map(|o| match o {
            "server" => "server=on".to_owned(),
            "nowait" => "wait=off".to_owned(),
            "wait" => "wait=on".to_owned(),
            other => other.to_owned(),
        })
        .collect();
    if opts.is_empty() && listen {
        format!("{head},server=on,wait=off")
    } else if opts.is_empty() {
        head
    } else {
        format!("{head},{}", opts.join(","))
    }
}
