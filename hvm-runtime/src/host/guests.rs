//! Which guest types this host runs, named as Xen's `xen_caps` (`xm info`)
//! names them: 32-bit, 32-bit PAE and 64-bit HVM. Under KVM the host CPU
//! decides (`pae`, `lm` in `/proc/cpuinfo`); under TCG QEMU's x86-64
//! emulator runs all three, slowly; without QEMU there are none.

use serde::Serialize;

use super::accel::Accel;

/// One kind of guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum GuestType {
    /// A 32-bit guest without PAE (at most 4 GiB of RAM).
    #[serde(rename = "hvm-x86_32")]
    Hvm32,
    /// A 32-bit guest with PAE (NX, and RAM past 4 GiB).
    #[serde(rename = "hvm-x86_32p")]
    Hvm32Pae,
    /// A 64-bit guest.
    #[serde(rename = "hvm-x86_64")]
    Hvm64,
}

impl GuestType {
    /// The `xen_caps`-style name: `hvm-x86_32`, `hvm-x86_32p`, `hvm-x86_64`.
    pub fn name(self) -> &'static str {
        match self {
            GuestType::Hvm32 => "hvm-x86_32",
            GuestType::Hvm32Pae => "hvm-x86_32p",
            GuestType::Hvm64 => "hvm-x86_64",
        }
    }

    /// In words: "32-bit", "32-bit PAE", "64-bit".
    pub fn words(self) -> &'static str {
        match self {
            GuestType::Hvm32 => "32-bit",
            GuestType::Hvm32Pae => "32-bit PAE",
            GuestType::Hvm64 => "64-bit",
        }
    }
}

/// The guest types of a host and the accelerator they run under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GuestTypes {
    /// The accelerator guests get.
    pub accelerator: Accel,
    /// What runs, in `xen_caps` order; empty without QEMU.
    pub types: Vec<GuestType>,
}

impl GuestTypes {
    /// What runs under `accel` on a CPU with `flags`, given whether QEMU
    /// is installed.
    pub fn of(flags: &[&str], accel: Accel, qemu: bool) -> GuestTypes {
        let types = match (qemu, accel) {
            (false, _) => Vec::new(),
            (true, Accel::Tcg) => vec![GuestType::Hvm32, GuestType::Hvm32Pae, GuestType::Hvm64],
            (true, Accel::Kvm) => {
                let mut t = vec![GuestType::Hvm32];
                if flags.contains(&"pae") {
                    t.push(GuestType::Hvm32Pae);
                }
                if flags.contains(&"lm") {
                    t.push(GuestType::Hvm64);
                }
                t
            }
        };
        GuestTypes {
            accelerator: accel,
            types,
        }
    }

    /// "32-bit, 32-bit PAE and 64-bit HVM under KVM (hvm-x86_32 ...)", or
    /// why there are none.
    pub fn detail(&self) -> String {
        let words: Vec<&str> = self.types.iter().map(|t| t.words()).collect();
        let names: Vec<&str> = self.types.iter().map(|t| t.name()).collect();
        let list = match words.as_slice() {
            [] => return "none: QEMU (the device model) is not installed".to_owned(),
            [one] => (*one).to_owned(),
            [init @ .., last] => format!("{} and {last}", init.join(", ")),
        };
        let how = match self.accelerator {
            Accel::Kvm => "KVM",
            Accel::Tcg => "TCG (emulated, slow)",
        };
        format!("{list} HVM under {how} ({})", names.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kvm_follows_the_cpu_flags() {
        let all = GuestTypes::of(&["fpu", "pae", "vmx", "lm"], Accel::Kvm, true);
        assert_eq!(
            all.types,
            [GuestType::Hvm32, GuestType::Hvm32Pae, GuestType::Hvm64]
        );
        assert_eq!(
            all.detail(),
            "32-bit, 32-bit PAE and 64-bit HVM under KVM (hvm-x86_32 hvm-x86_32p hvm-x86_64)"
        );
        // The guide's host: a 32-bit CPU with PAE, as `xm info` showed it.
        let guide = GuestTypes::of(&["fpu", "pae", "vmx"], Accel::Kvm, true);
        assert_eq!(guide.types, [GuestType::Hvm32, GuestType::Hvm32Pae]);
        assert_eq!(
            guide.detail(),
            "32-bit and 32-bit PAE HVM under KVM (hvm-x86_32 hvm-x86_32p)"
        );
    }

    #[test]
    fn tcg_runs_every_type_and_no_qemu_none() {
        let tcg = GuestTypes::of(&[], Accel::Tcg, true);
        assert_eq!(tcg.types.len(), 3);
        assert!(tcg.detail().contains("under TCG"), "{}", tcg.detail());
        let none = GuestTypes::of(&["pae", "lm"], Accel::Kvm, false);
        assert!(none.types.is_empty());
        assert!(none.detail().starts_with("none:"));
    }

    #[test]
    fn json_names_are_xen_caps_style() {
        let v = serde_json::to_value(GuestTypes::of(&["pae", "lm"], Accel::Kvm, true)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "accelerator": "kvm",
                "types": ["hvm-x86_32", "hvm-x86_32p", "hvm-x86_64"]
            })
        );
    }
}
