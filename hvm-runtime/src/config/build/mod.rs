//! From merged settings to a [`DomainSpec`]: every key read with its type,
//! defaults as in xl.cfg, specs parsed, xend-era keys accepted (the ones
//! with no effect collected for one summary line), unknown keys warned
//! about with the nearest known key. All errors are collected.
//!
//! The device lists are read in `devices.rs`, the console and display keys
//! in `display.rs`, the warning for a config xl would boot as PV in `pv.rs`.

mod devices;
mod display;
mod pv;

use std::collections::BTreeSet;
use std::path::PathBuf;

use super::ast::ValueKind;
use super::diag::{Diagnostic, Location, Origin};
use super::fields::{Fields, Located};
use super::file::ConfigFile;
use super::keys;
use super::options::{Action, BootDevice, Firmware, Machine, SoundHw, ViridianGroup};
use super::spec::{DomainSpec, Loaded, NoEffect};
use super::suggest::did_you_mean;

/// The largest `memory` accepted, in MiB (4 TiB).
pub const MAX_MEMORY_MIB: i64 = 4 * 1024 * 1024;
/// How many unknown keys get a "did you mean" suggestion.
pub const MAX_SUGGESTED: usize = 1000;
/// The most vCPUs QEMU's pc machine takes.
pub const MAX_VCPUS: i64 = 255;

/// What a config that cannot be built still tells: its errors, its
/// warnings and its keys with no effect.
#[derive(Debug)]
pub struct Failed {
    /// The errors.
    pub errors: Vec<Diagnostic>,
    /// The warnings.
    pub warnings: Vec<Diagnostic>,
    /// The keys with no effect, in line order.
    pub no_effect: Vec<NoEffect>,
}

/// Builds the spec; on failure returns everything found.
pub fn build(file: &ConfigFile, origin: &Origin) -> Result<Loaded, Failed> {
    let mut b = Builder {
        f: Fields::new(file),
        no_effect: Vec::new(),
    };
    let spec = b.spec(origin);
    b.unknown_keys();
    let Builder { f, mut no_effect } = b;
    no_effect.sort_by_key(|n| (matches!(n.at.origin, Origin::CommandLine), n.at.line));
    match spec {
        Some(spec) if f.errors.is_empty() => Ok(Loaded {
            spec,
            warnings: f.warnings,
            no_effect,
        }),
        _ => Err(Failed {
            errors: f.errors,
            warnings: f.warnings,
            no_effect,
        }),
    }
}

pub(super) struct Builder<'a> {
    pub(super) f: Fields<'a>,
    pub(super) no_effect: Vec<NoEffect>,
}

impl Builder<'_> {
    pub(super) fn inert(&mut self, shown: String, at: &Location, why: &str) {
        self.no_effect.push(NoEffect {
            shown,
            at: at.clone(),
            why: why.to_owned(),
        });
    }

    /// Reads every key; `None` when a required one is missing.
    fn spec(&mut self, origin: &Origin) -> Option<DomainSpec> {
        let typed = self.guest_type();
        let name = self.name(origin);
        let uuid = self.uuid();
        let memory_mib = self.f.number_in("memory", 1, MAX_MEMORY_MIB).unwrap_or(32);
        let vcpus: u32 = self.f.number_in("vcpus", 1, MAX_VCPUS).unwrap_or(1);
        let maxvcpus = self.maxvcpus(vcpus);
        let cpus = self.cpus();
        let (kernel, ramdisk, cmdline) = self.direct_boot();
        let (firmware, firmware_at) = self.firmware();
        let boot = self.boot();
        let machine = self
            .f
            .string("machine")
            .and_then(|m| self.parsed("machine", &m, Machine::parse))
            .unwrap_or(Machine::Pc);
        let disks = self.disks();
        self.pv_config(typed, kernel.as_ref(), cmdline.as_deref(), &disks);
        let vifs = self.vifs();
        let pci = self.pci();
        let acpi = self.f.boolean("acpi").unwrap_or(true);
        let apic = self.apic(maxvcpus);
        let pae = self.f.boolean("pae").unwrap_or(true);
        let viridian = self.viridian();
        let localtime = self.f.boolean("localtime").unwrap_or(false);
        let nomigrate = self.f.boolean("nomigrate").unwrap_or(false);
        let rtc_timeoffset = self
            .f
            .number_in("rtc_timeoffset", -3_155_760_000, 3_155_760_000)
            .unwrap_or(0);
        let serials = self.serials();
        let nographic = self.f.boolean("nographic").unwrap_or(false);
        let vnc = self.vnc(nographic);
        let keymap = self.keymap();
        let sdl = self.f.boolean("sdl").unwrap_or(false) && !nographic;
        let full_screen = self.full_screen(sdl);
        let vga = self.vga(nographic);
        let videoram_mib = self.f.number_in("videoram", 1, 1024);
        let usbdevices = self.usbdevices();
        let usb = self.f.boolean("usb").unwrap_or(false) || !usbdevices.is_empty();
        let soundhw = self
            .f
            .string("soundhw")
            .and_then(|s| self.parsed("soundhw", &s, SoundHw::parse_list))
            .unwrap_or_default();
        let fda = self.f.path("fda");
        let monitor = self.monitor();
        let on_poweroff = self.action("on_poweroff", Action::Destroy);
        let on_reboot = self.action("on_reboot", Action::Restart);
        let on_crash = self.action("on_crash", Action::Destroy);
        let device_model_args = self
            .f
            .strings("device_model_args")
            .unwrap_or_default()
            .into_iter()
            .map(|a| a.value)
            .collect();
        let device_model_override = self.f.path("device_model_override");
        for inert in keys::NO_EFFECT {
            if let Some(s) = self.f.take(inert.name) {
                let at = s.at.clone();
                self.inert(inert.name.to_owned(), &at, inert.why);
            }
        }
        Some(DomainSpec {
            source: match origin {
                Origin::File(p) => Some(p.clone()),
                Origin::CommandLine => None,
            },
            name: name?,
            uuid,
            memory_mib,
            vcpus,
            maxvcpus,
            cpus,
            kernel,
            ramdisk,
            cmdline,
            firmware,
            firmware_at,
            boot,
            disks,
            vifs,
            pci,
            acpi,
            apic,
            pae,
            viridian,
            localtime,
            nomigrate,
            rtc_timeoffset,
            serials,
            vnc,
            sdl,
            full_screen,
            vga,
            videoram_mib,
            usb,
            usbdevices,
            soundhw,
            fda,
            monitor,
            keymap,
            on_poweroff,
            on_reboot,
            on_crash,
            device_model_args,
            device_model_override,
            machine,
        })
    }

    /// Runs `parse` on a located string; records its error.
    pub(super) fn parsed<T>(
        &mut self,
        key: &str,
        s: &Located<String>,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        match parse(&s.value) {
            Ok(v) => Some(v),
            Err(e) => {
                self.f.error(&s.at, key, e);
                None
            }
        }
    }

    /// Checks `type` and `builder`; true when either is set.
    fn guest_type(&mut self) -> bool {
        let typed = self.f.take("type").is_some() | self.f.take("builder").is_some();
        for key in ["type", "builder"] {
            let Some(t) = self.f.string(key) else {
                continue;
            };
            match t.value.as_str() {
                "hvm" => {}
                "pv" | "linux" | "pvh" => self.f.error(
                    &t.at,
                    key,
                    format!("pvio runs HVM guests only, not '{}'; set {key} = \"hvm\" (a Linux kernel can still boot directly with kernel=)", t.value),
                ),
                other => self.f.error(&t.at, key, format!("unknown guest type '{other}'; pvio runs \"hvm\" guests")),
            }
        }
        typed
    }

    fn name(&mut self, origin: &Origin) -> Option<String> {
        let Some(n) = self.f.string("name") else {
            if self.f.take("name").is_none() {
                let at = Location {
                    origin: origin.clone(),
                    line: 1,
                };
                self.f.error(
                    &at,
                    "name",
                    "missing: every domain needs a name (name = \"...\")",
                );
            }
            return None;
        };
        let valid = !n.value.is_empty()
            && n.value.len() <= 64
            && !n.value.starts_with(['.', '-'])
            && n.value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if !valid {
            self.f.error(
                &n.at,
                "name",
                format!("'{}' is not a usable name: 1 to 64 letters, digits, '.', '_' or '-', not starting with '.' or '-'", n.value),
            );
            return None;
        }
        Some(n.value)
    }

    fn uuid(&mut self) -> Option<String> {
        let u = self.f.string("uuid")?;
        let groups: Vec<&str> = u.value.split('-').collect();
        let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
        let hex = groups
            .iter()
            .all(|g| g.chars().all(|c| c.is_ascii_hexdigit()));
        if lens != [8, 4, 4, 4, 12] || !hex {
            self.f.error(
                &u.at,
                "uuid",
                format!(
                    "'{}' is not a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)",
                    u.value
                ),
            );
            return None;
        }
        Some(u.value.to_ascii_lowercase())
    }

    fn maxvcpus(&mut self, vcpus: u32) -> u32 {
        let Some(setting) = self.f.take("maxvcpus").map(|s| s.value.at.clone()) else {
            return vcpus;
        };
        let max: u32 = self.f.number_in("maxvcpus", 1, MAX_VCPUS).unwrap_or(vcpus);
        if max < vcpus {
            self.f.error(
                &setting,
                "maxvcpus",
                format!("{max} is below vcpus ({vcpus})"),
            );
            return vcpus;
        }
        max
    }

    fn direct_boot(
        &mut self,
    ) -> (
        Option<Located<PathBuf>>,
        Option<Located<PathBuf>>,
        Option<String>,
    ) {
        let kernel = self.f.string("kernel").and_then(|k| {
            let v = k.value.as_str();
            if v == "hvmloader" || v.ends_with("/hvmloader") {
                self.inert(
                    format!("kernel={:?}", k.value),
                    &k.at,
                    "hvmloader is Xen's HVM firmware loader; QEMU boots its own firmware",
                );
                None
            } else if v.is_empty() {
                self.f
                    .error(&k.at, "kernel", "expected a path, found an empty string");
                None
            } else {
                Some(Located {
                    value: PathBuf::from(v),
                    at: k.at,
                })
            }
        });
        let ramdisk = self.f.path("ramdisk");
        let cmdline = self.f.string("cmdline");
        let root = self.f.string("root");
        let extra = self.f.string("extra");
        if kernel.is_none() {
            let set: Vec<(&str, &Location)> = [
                ("ramdisk", ramdisk.as_ref().map(|r| &r.at)),
                ("cmdline", cmdline.as_ref().map(|c| &c.at)),
                ("root", root.as_ref().map(|r| &r.at)),
                ("extra", extra.as_ref().map(|e| &e.at)),
            ]
            .into_iter()
            .filter_map(|(k, at)| at.map(|a| (k, a)))
            .collect();
            let warnings: Vec<(String, Location)> = set
                .into_iter()
                .map(|(k, at)| (k.to_owned(), at.clone()))
                .collect();
            for (k, at) in warnings {
                self.f.warn(
                    &at,
                    &k,
                    "has no effect without kernel = \"/path/to/vmlinuz\" (direct kernel boot)",
                );
            }
            return (None, None, None);
        }
        let line = match cmdline {
            Some(c) => {
                for (k, other) in [("root", &root), ("extra", &extra)] {
                    if let Some(o) = other {
                        self.f.warn(
                            &o.at,
                            k,
                            "ignored: cmdline is set and replaces root and extra (as in xl)",
                        );
                    }
                }
                Some(c.value)
            }
            None => {
                let mut parts = Vec::new();
                if let Some(r) = root {
                    parts.push(format!("root={}", r.value));
                }
                if let Some(e) = extra {
                    parts.push(e.value);
                }
                (!parts.is_empty()).then(|| parts.join(" "))
            }
        };
        (kernel, ramdisk, line)
    }

    fn firmware(&mut self) -> (Firmware, Option<Location>) {
        let firmware = self.f.string("firmware");
        let bios = self.f.string("bios");
        if let (Some(_), Some(b)) = (&firmware, &bios) {
            self.f
                .warn(&b.at, "bios", "ignored: firmware is set and wins");
        }
        match (firmware, bios) {
            (Some(fw), _) => {
                let v = self
                    .parsed("firmware", &fw, Firmware::parse)
                    .unwrap_or(Firmware::Bios);
                (v, Some(fw.at))
            }
            (None, Some(b)) => {
                let v = match b.value.as_str() {
                    "seabios" => Firmware::Bios,
                    "ovmf" => Firmware::Uefi,
                    "rombios" => {
                        self.inert(
                            "bios=\"rombios\"".to_owned(),
                            &b.at,
                            "ROMBIOS was qemu-traditional's; QEMU boots SeaBIOS",
                        );
                        Firmware::Bios
                    }
                    other => {
                        self.f.error(
                            &b.at,
                            "bios",
                            format!("unknown bios '{other}'; use seabios or ovmf"),
                        );
                        Firmware::Bios
                    }
                };
                (v, Some(b.at))
            }
            (None, None) => (Firmware::Bios, None),
        }
    }

    fn boot(&mut self) -> Vec<BootDevice> {
        let default = vec![BootDevice::Disk, BootDevice::Cdrom];
        match self.f.string("boot") {
            Some(b) => self
                .parsed("boot", &b, BootDevice::parse_order)
                .unwrap_or(default),
            None => default,
        }
    }

    fn apic(&mut self, maxvcpus: u32) -> bool {
        let at = self.f.take("apic").map(|s| s.value.at.clone());
        let apic = self.f.boolean("apic").unwrap_or(true);
        if let (false, Some(at)) = (apic, at) {
            if maxvcpus > 1 {
                self.f.error(
                    &at,
                    "apic",
                    format!(
                        "apic=0 leaves no APIC to start {maxvcpus} vCPUs; use one vCPU or apic=1"
                    ),
                );
            }
        }
        apic
    }

    fn viridian(&mut self) -> Vec<ViridianGroup> {
        let Some(s) = self.f.take("viridian") else {
            return Vec::new();
        };
        let at = s.value.at.clone();
        let result = match &s.value.kind {
            ValueKind::Num(0) => Ok(Vec::new()),
            ValueKind::Num(1) => Ok(ViridianGroup::DEFAULTS.to_vec()),
            ValueKind::List(items) => {
                let words: Vec<&str> = items
                    .iter()
                    .filter_map(|i| match &i.kind {
                        ValueKind::Str(s) => Some(s.as_str()),
                        _ => None,
                    })
                    .collect();
                if words.len() == items.len() {
                    ViridianGroup::parse_list(&words)
                } else {
                    Err("expected a list of strings (viridian groups)".to_owned())
                }
            }
            _ => Err(format!(
                "expected 0, 1 or a list of groups, found {}",
                s.value
            )),
        };
        result.unwrap_or_else(|e| {
            self.f.error(&at, "viridian", e);
            Vec::new()
        })
    }

    fn action(&mut self, key: &str, default: Action) -> Action {
        let Some(s) = self.f.string(key) else {
            return default;
        };
        match Action::parse(&s.value) {
            Ok((a, note)) => {
                if let Some(n) = note {
                    self.f.warn(&s.at, key, n);
                }
                a
            }
            Err(e) => {
                self.f.error(&s.at, key, e);
                default
            }
        }
    }

    /// Warns about every key nobody read, with the nearest known key for
    /// the first [`MAX_SUGGESTED`] of them (a config of thousands of unknown
    /// keys is no typo, and searching for each would take seconds).
    fn unknown_keys(&mut self) {
        let unknown: Vec<(String, Location)> = self
            .f
            .unused()
            .map(|s| (s.key.clone(), s.at.clone()))
            .collect();
        let mut seen = BTreeSet::new();
        for (key, at) in unknown {
            if seen.insert(key.clone()) {
                if keys::names().any(|k| k == key) {
                    // A known key that this config's other keys leave
                    // unread: not unknown, and no typo of itself.
                    self.f
                        .warn(&at, &key, "ignored: no effect with the rest of this config");
                    continue;
                }
                let hint = if seen.len() <= MAX_SUGGESTED {
                    did_you_mean(&key, keys::names())
                } else {
                    String::new()
                };
                self.f
                    .warn(&at, &key, format!("unknown key, ignored{hint}"));
            }
        }
    }
}
