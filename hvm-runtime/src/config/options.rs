//! The small enumerated settings of a domain: actions on power-off, reboot
//! and crash, boot order, firmware, video card, USB devices, sound cards,
//! serial ports, the machine type and Hyper-V (viridian) groups. Each
//! `parse` returns the value or a message for the config error.

use std::path::PathBuf;

use serde::Serialize;

use super::suggest::did_you_mean;

fn unknown(what: &str, word: &str, known: &[&'static str]) -> String {
    format!(
        "unknown {what} '{word}'{}; known: {}",
        did_you_mean(word, known.iter().copied()),
        known.join(", ")
    )
}

/// What to do when the guest powers off, reboots or crashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Stop the domain and clean up.
    Destroy,
    /// Start the domain again with the same plan.
    Restart,
    /// Keep the stopped domain (its device model paused) for inspection.
    Preserve,
}

impl Action {
    /// Parses an xl action. xl's `rename-restart`, `coredump-destroy`,
    /// `coredump-restart` and `soft-reset` are accepted as the nearest pvio
    /// action, with a note saying so.
    pub fn parse(s: &str) -> Result<(Action, Option<String>), String> {
        const KNOWN: &[&str] = &[
            "destroy",
            "restart",
            "preserve",
            "rename-restart",
            "coredump-destroy",
            "coredump-restart",
            "soft-reset",
        ];
        let note = |a: Action, why: &str| Ok((a, Some(format!("'{s}' is taken as '{a}': {why}"))));
        match s {
            "destroy" => Ok((Action::Destroy, None)),
            "restart" => Ok((Action::Restart, None)),
            "preserve" => Ok((Action::Preserve, None)),
            "rename-restart" => note(
                Action::Restart,
                "pvio keeps no renamed copy of the old domain",
            ),
            "coredump-destroy" => note(Action::Destroy, "pvio writes no guest core dump"),
            "coredump-restart" => note(Action::Restart, "pvio writes no guest core dump"),
            "soft-reset" => note(Action::Restart, "QEMU has no Xen soft reset"),
            other => Err(unknown("action", other, KNOWN)),
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Action::Destroy => "destroy",
            Action::Restart => "restart",
            Action::Preserve => "preserve",
        })
    }
}

/// One device class in the boot order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BootDevice {
    /// `a`: the floppy.
    Floppy,
    /// `c`: the first hard disk.
    Disk,
    /// `d`: the first CD-ROM.
    Cdrom,
    /// `n`: the network (PXE).
    Network,
}

impl BootDevice {
    /// Parses xl's boot string (`c`, `dc`, `ncd`, ...).
    pub fn parse_order(s: &str) -> Result<Vec<BootDevice>, String> {
        if s.is_empty() {
            return Err("the boot order is empty; use letters c (disk), d (CD-ROM), n (network), a (floppy)".to_owned());
        }
        let mut order = Vec::new();
        for c in s.chars() {
            let d = match c {
                'a' => BootDevice::Floppy,
                'c' => BootDevice::Disk,
                'd' => BootDevice::Cdrom,
                'n' => BootDevice::Network,
                other => {
                    return Err(format!(
                        "unknown boot device '{other}'; use c (disk), d (CD-ROM), n (network), a (floppy)"
                    ))
                }
            };
            if order.contains(&d) {
                return Err(format!("boot device '{c}' is given twice"));
            }
            order.push(d);
        }
        Ok(order)
    }

    /// QEMU's letter for `-boot order=`.
    pub fn letter(self) -> char {
        match self {
            BootDevice::Floppy => 'a',
            BootDevice::Disk => 'c',
            BootDevice::Cdrom => 'd',
            BootDevice::Network => 'n',
        }
    }
}

/// The guest firmware.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Firmware {
    /// SeaBIOS, QEMU's default.
    Bios,
    /// OVMF (UEFI), when installed.
    Uefi,
    /// A firmware image given by path.
    File(PathBuf),
}

impl Firmware {
    /// Parses `firmware` (or xl's `bios`): `bios`/`seabios`, `uefi`/`ovmf`,
    /// or a path.
    pub fn parse(s: &str) -> Result<Firmware, String> {
        match s {
            "bios" | "seabios" => Ok(Firmware::Bios),
            "uefi" | "ovmf" => Ok(Firmware::Uefi),
            p if p.starts_with('/') => Ok(Firmware::File(PathBuf::from(p))),
            other => Err(unknown(
                "firmware",
                other,
                &["bios", "seabios", "uefi", "ovmf", "an absolute path"],
            )),
        }
    }
}

/// The emulated video card.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Vga {
    /// Cirrus Logic GD5446 (xl's default).
    Cirrus,
    /// A standard VGA card with VBE.
    Std,
    /// QXL.
    Qxl,
    /// virtio-vga.
    Virtio,
    /// No video card.
    None,
}

impl Vga {
    /// Parses `vga`.
    pub fn parse(s: &str) -> Result<Vga, String> {
        match s {
            "cirrus" => Ok(Vga::Cirrus),
            "stdvga" => Ok(Vga::Std),
            "qxl" => Ok(Vga::Qxl),
            "virtio" => Ok(Vga::Virtio),
            "none" => Ok(Vga::None),
            other => Err(unknown(
                "video card",
                other,
                &["cirrus", "stdvga", "qxl", "virtio", "none"],
            )),
        }
    }
}

/// An emulated USB input device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UsbDevice {
    /// An absolute pointer (the pointer follows the VNC client's).
    Tablet,
    /// A relative mouse.
    Mouse,
    /// A keyboard.
    Keyboard,
}

impl UsbDevice {
    /// Parses one `usbdevice` entry.
    pub fn parse(s: &str) -> Result<UsbDevice, String> {
        match s {
            "tablet" => Ok(UsbDevice::Tablet),
            "mouse" => Ok(UsbDevice::Mouse),
            "keyboard" => Ok(UsbDevice::Keyboard),
            host if host.starts_with("host:") => Err(format!(
                "USB host device passthrough ('{host}') is not supported; pass the USB controller with pci = [...] instead"
            )),
            other => Err(unknown("USB device", other, &["tablet", "mouse", "keyboard"])),
        }
    }

    /// QEMU's device name.
    pub fn qemu_device(self) -> &'static str {
        match self {
            UsbDevice::Tablet => "usb-tablet",
            UsbDevice::Mouse => "usb-mouse",
            UsbDevice::Keyboard => "usb-kbd",
        }
    }
}

/// An emulated sound card.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SoundHw {
    /// Creative Sound Blaster 16 (ISA).
    Sb16,
    /// ENSONIQ AudioPCI ES1370.
    Es1370,
    /// Intel 82801AA AC97.
    Ac97,
    /// Intel HD Audio with a duplex codec.
    Hda,
    /// The PC speaker.
    Pcspk,
}

impl SoundHw {
    /// Parses `soundhw`: a comma-separated list, or `all`.
    pub fn parse_list(s: &str) -> Result<Vec<SoundHw>, String> {
        const KNOWN: &[&str] = &["sb16", "es1370", "ac97", "hda", "pcspk", "all"];
        let mut out = Vec::new();
        for word in s.split(',').map(str::trim) {
            let more: &[SoundHw] = match word {
                "sb16" => &[SoundHw::Sb16],
                "es1370" => &[SoundHw::Es1370],
                "ac97" => &[SoundHw::Ac97],
                "hda" => &[SoundHw::Hda],
                "pcspk" => &[SoundHw::Pcspk],
                "all" => &[
                    SoundHw::Sb16,
                    SoundHw::Es1370,
                    SoundHw::Ac97,
                    SoundHw::Hda,
                    SoundHw::Pcspk,
                ],
                other => return Err(unknown("sound card", other, KNOWN)),
            };
            for hw in more {
                if !out.contains(hw) {
                    out.push(*hw);
                }
            }
        }
        Ok(out)
    }
}

/// Where a serial port goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Serial {
    /// A pseudo-terminal (`pvio console` attaches to it).
    Pty,
    /// Output discarded.
    Null,
    /// Output appended to a file.
    File(PathBuf),
    /// A Unix socket (QEMU chardev options after the path kept).
    Unix(String),
    /// A TCP socket (`host:port[,options]`).
    Tcp(String),
    /// A UDP socket (`host:port[@...]`).
    Udp(String),
    /// A host serial device such as `/dev/ttyS0`.
    HostDevice(PathBuf),
}

impl Serial {
    /// Parses one `serial` entry; `none` gives `None` (no port).
    pub fn parse(s: &str) -> Result<Option<Serial>, String> {
        const KNOWN: &[&str] = &[
            "pty",
            "none",
            "null",
            "file:PATH",
            "unix:PATH",
            "tcp:HOST:PORT",
            "udp:HOST:PORT",
            "/dev/DEVICE",
        ];
        let after = |p: &str| s.strip_prefix(p).filter(|r| !r.is_empty());
        Ok(Some(match s {
            "pty" => Serial::Pty,
            "none" => return Ok(None),
            "null" => Serial::Null,
            "stdio" | "vc" | "mon:stdio" => {
                return Err(format!(
                    "serial '{s}' needs a terminal the domain does not have (it runs under a supervisor); use 'pty' and `pvio console`"
                ))
            }
            _ if s.starts_with("file:") => Serial::File(PathBuf::from(
                after("file:").ok_or("file: needs a path")?,
            )),
            _ if s.starts_with("unix:") => Serial::Unix(after("unix:").ok_or("unix: needs a path")?.to_owned()),
            _ if s.starts_with("tcp:") => Serial::Tcp(after("tcp:").ok_or("tcp: needs HOST:PORT")?.to_owned()),
            _ if s.starts_with("udp:") => Serial::Udp(after("udp:").ok_or("udp: needs HOST:PORT")?.to_owned()),
            _ if s.starts_with("/dev/") => Serial::HostDevice(PathBuf::from(s)),
            other => return Err(unknown("serial port", other, KNOWN)),
        }))
    }
}

/// The QEMU machine type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Machine {
    /// i440fx + PIIX3, what Xen's HVM guests had: two IDE channels.
    Pc,
    /// Q35 + ICH9: PCIe, AHCI instead of IDE channels.
    Q35,
}

impl Machine {
    /// Parses pvio's `machine` key.
    pub fn parse(s: &str) -> Result<Machine, String> {
        match s {
            "pc" | "i440fx" => Ok(Machine::Pc),
            "q35" => Ok(Machine::Q35),
            other => Err(unknown("machine", other, &["pc", "i440fx", "q35"])),
        }
    }

    /// QEMU's machine name.
    pub fn qemu_name(self) -> &'static str {
        match self {
            Machine::Pc => "pc",
            Machine::Q35 => "q35",
        }
    }
}

/// The Hyper-V enlightenment groups of xl's `viridian`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ViridianGroup {
    /// Hypercalls, VP index, relaxed timing, spinlock hints.
    Base,
    /// The TSC and APIC frequency MSRs.
    Freq,
    /// The partition reference counter.
    TimeRefCount,
    /// The reference TSC page.
    ReferenceTsc,
    /// Remote TLB flush hypercalls.
    HcallRemoteTlbFlush,
    /// The APIC assist page (virtual APIC MSRs).
    ApicAssist,
    /// The crash MSRs.
    CrashCtl,
    /// Synthetic timers (with SynIC).
    Stimer,
    /// The IPI hypercalls.
    HcallIpi,
}

impl ViridianGroup {
    /// xl's `viridian=1` / `defaults`.
    pub const DEFAULTS: &'static [ViridianGroup] = &[
        ViridianGroup::Base,
        ViridianGroup::Freq,
        ViridianGroup::TimeRefCount,
        ViridianGroup::ApicAssist,
        ViridianGroup::CrashCtl,
    ];

    const ALL: &'static [ViridianGroup] = &[
        ViridianGroup::Base,
        ViridianGroup::Freq,
        ViridianGroup::TimeRefCount,
        ViridianGroup::ReferenceTsc,
        ViridianGroup::HcallRemoteTlbFlush,
        ViridianGroup::ApicAssist,
        ViridianGroup::CrashCtl,
        ViridianGroup::Stimer,
        ViridianGroup::HcallIpi,
    ];

    /// Parses xl's viridian list (`["defaults", "!apic_assist", "stimer"]`)
    /// into the set of enabled groups.
    pub fn parse_list(words: &[&str]) -> Result<Vec<ViridianGroup>, String> {
        const KNOWN: &[&str] = &[
            "base",
            "freq",
            "time_ref_count",
            "reference_tsc",
            "hcall_remote_tlb_flush",
            "apic_assist",
            "crash_ctl",
            "stimer",
            "hcall_ipi",
            "defaults",
            "all",
        ];
        let mut on: Vec<ViridianGroup> = Vec::new();
        for w in words {
            let (remove, name) = match w.strip_prefix('!') {
                Some(n) => (true, n),
                None => (false, *w),
            };
            let groups: &[ViridianGroup] = match name {
                "base" => &[ViridianGroup::Base],
                "freq" => &[ViridianGroup::Freq],
                "time_ref_count" => &[ViridianGroup::TimeRefCount],
                "reference_tsc" => &[ViridianGroup::ReferenceTsc],
                "hcall_remote_tlb_flush" => &[ViridianGroup::HcallRemoteTlbFlush],
                "apic_assist" => &[ViridianGroup::ApicAssist],
                "crash_ctl" => &[ViridianGroup::CrashCtl],
                "stimer" => &[ViridianGroup::Stimer],
                "hcall_ipi" => &[ViridianGroup::HcallIpi],
                "defaults" => Self::DEFAULTS,
                "all" => Self::ALL,
                other => return Err(unknown("viridian group", other, KNOWN)),
            };
            for g in groups {
                if remove {
                    on.retain(|x| x != g);
                } else if !on.contains(g) {
                    on.push(*g);
                }
            }
        }
        if !on.is_empty() && !on.contains(&ViridianGroup::Base) {
            return Err("every viridian group needs 'base'".to_owned());
        }
        on.sort();
        Ok(on)
    }

    /// The QEMU `-cpu` flags that give the group.
    pub fn qemu_flags(self) -> &'static [&'static str] {
        match self {
            ViridianGroup::Base => &["hv-relaxed", "hv-vpindex", "hv-spinlocks=0x1fff"],
            ViridianGroup::Freq => &["hv-frequencies"],
            ViridianGroup::TimeRefCount | ViridianGroup::ReferenceTsc => &["hv-time"],
            ViridianGroup::HcallRemoteTlbFlush => &["hv-tlbflush"],
            ViridianGroup::ApicAssist => &["hv-vapic"],
            ViridianGroup::CrashCtl => &["hv-crash"],
            ViridianGroup::Stimer => &["hv-synic", "hv-stimer"],
            ViridianGroup::HcallIpi => &["hv-ipi"],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions() {
        assert_eq!(Action::parse("destroy"), Ok((Action::Destroy, None)));
        assert_eq!(Action::parse("preserve"), Ok((Action::Preserve, None)));
        let (a, note) = Action::parse("rename-restart").unwrap();
        assert_eq!(a, Action::Restart);
        assert_eq!(
            note.unwrap(),
            "'rename-restart' is taken as 'restart': pvio keeps no renamed copy of the old domain"
        );
        assert_eq!(
            Action::parse("coredump-destroy").unwrap().0,
            Action::Destroy
        );
        assert!(Action::parse("destory").unwrap_err().starts_with(
            "unknown action 'destory' (did you mean 'destroy'?); known: destroy, restart"
        ));
    }

    #[test]
    fn boot_order() {
        assert_eq!(
            BootDevice::parse_order("dcn"),
            Ok(vec![
                BootDevice::Cdrom,
                BootDevice::Disk,
                BootDevice::Network
            ])
        );
        assert!(BootDevice::parse_order("").unwrap_err().contains("empty"));
        assert_eq!(
            BootDevice::parse_order("cx").unwrap_err(),
            "unknown boot device 'x'; use c (disk), d (CD-ROM), n (network), a (floppy)"
        );
        assert_eq!(
            BootDevice::parse_order("cc").unwrap_err(),
            "boot device 'c' is given twice"
        );
    }

    #[test]
    fn firmware_vga_usb_sound_machine() {
        assert_eq!(Firmware::parse("seabios"), Ok(Firmware::Bios));
        assert_eq!(Firmware::parse("ovmf"), Ok(Firmware::Uefi));
        assert_eq!(
            Firmware::parse("/fw.bin"),
            Ok(Firmware::File("/fw.bin".into()))
        );
        assert!(Firmware::parse("rombios").is_err());
        assert_eq!(Vga::parse("stdvga"), Ok(Vga::Std));
        assert!(Vga::parse("std").unwrap_err().contains("did you mean"));
        assert_eq!(UsbDevice::parse("tablet"), Ok(UsbDevice::Tablet));
        assert!(UsbDevice::parse("host:1234:5678")
            .unwrap_err()
            .contains("not supported"));
        assert_eq!(
            SoundHw::parse_list("ac97, hda,ac97"),
            Ok(vec![SoundHw::Ac97, SoundHw::Hda])
        );
        assert_eq!(SoundHw::parse_list("all").unwrap().len(), 5);
        assert!(SoundHw::parse_list("gus").is_err());
        assert_eq!(Machine::parse("i440fx"), Ok(Machine::Pc));
        assert!(Machine::parse("virt").is_err());
    }

    #[test]
    fn serial_ports() {
        assert_eq!(Serial::parse("pty"), Ok(Some(Serial::Pty)));
        assert_eq!(Serial::parse("none"), Ok(None));
        assert_eq!(
            Serial::parse("file:/tmp/s.log"),
            Ok(Some(Serial::File("/tmp/s.log".into())))
        );
        assert_eq!(
            Serial::parse("unix:/run/s.sock,server,nowait"),
            Ok(Some(Serial::Unix("/run/s.sock,server,nowait".into())))
        );
        assert_eq!(
            Serial::parse("tcp:127.0.0.1:4555"),
            Ok(Some(Serial::Tcp("127.0.0.1:4555".into())))
        );
        assert_eq!(
            Serial::parse("/dev/ttyS0"),
            Ok(Some(Serial::HostDevice("/dev/ttyS0".into())))
        );
        assert_eq!(Serial::parse("file:").unwrap_err(), "file: needs a path");
        assert!(Serial::parse("stdio").unwrap_err().contains("pvio console"));
        assert!(Serial::parse("ptty")
            .unwrap_err()
            .contains("did you mean 'pty'"));
    }

    #[test]
    fn viridian_groups() {
        assert_eq!(
            ViridianGroup::parse_list(&["defaults"]).unwrap(),
            ViridianGroup::DEFAULTS
        );
        assert_eq!(
            ViridianGroup::parse_list(&["base", "stimer", "!stimer", "hcall_ipi"]).unwrap(),
            vec![ViridianGroup::Base, ViridianGroup::HcallIpi]
        );
        assert_eq!(ViridianGroup::parse_list(&["all"]).unwrap().len(), 9);
        assert_eq!(
            ViridianGroup::parse_list(&["freq"]).unwrap_err(),
            "every viridian group needs 'base'"
        );
        assert!(ViridianGroup::parse_list(&["bsae"])
            .unwrap_err()
            .contains("did you mean 'base'"));
        assert_eq!(ViridianGroup::parse_list(&[]).unwrap(), vec![]);
    }
}
