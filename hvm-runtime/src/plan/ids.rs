//! Names and numbers the plan makes up: random MACs in Xen's 00:16:3e
//! range, a random UUID when the config has none, tap names, and the
//! QEMU ids of devices.
//!
//! A passed-through host PCI device has one QEMU id wherever it is added:
//! [`passthrough_id`] (`pt-0000-03-00.0`), derived from its address. The
//! plan (config `pci = [...]`), the supervisor (devices reserved by
//! `pvio assign`) and `pvio assign` / `pvio release` (QMP hot-plug) all use
//! it, so `release` finds the device however it was added.

use std::io::Read;

use crate::config::vif::{Mac, IFNAMSIZ_MAX};

/// A source of random bytes (the OS in real use; fixed bytes in tests).
pub trait Entropy {
    /// Fills `buf`.
    fn fill(&mut self, buf: &mut [u8]);
}

/// Random bytes from `/dev/urandom`.
#[derive(Debug, Default)]
pub struct OsEntropy;

impl Entropy for OsEntropy {
    fn fill(&mut self, buf: &mut [u8]) {
        let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(buf));
        if read.is_err() {
            // No /dev/urandom: fall back on the clock and the process id,
            // which is enough to keep two domains' MACs apart.
            let seed = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
                ^ u128::from(std::process::id());
            for (i, b) in buf.iter_mut().enumerate() {
                *b = seed.to_le_bytes()[i % 16];
            }
        }
    }
}

/// Counts up from a start byte: predictable "random" bytes for tests.
#[derive(Debug)]
pub struct FixedEntropy(pub u8);

impl Entropy for FixedEntropy {
    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            *b = self.0;
            self.0 = self.0.wrapping_add(1);
        }
    }
}

/// A random MAC in 00:16:3e:xx:xx:xx.
pub fn random_mac(e: &mut dyn Entropy) -> Mac {
    let mut tail = [0u8; 3];
    e.fill(&mut tail);
    Mac::xen(tail)
}

/// A random (version 4) UUID.
pub fn random_uuid(e: &mut dyn Entropy) -> String {
    let mut b = [0u8; 16];
    e.fill(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// FNV-1a: a short stable hash of a domain name for tap names.
fn fnv1a(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// The default tap name of NIC `devid` of domain `name`: `pv` + six hex
/// digits of the name's hash + `.` + devid (`pv1a2b3c.0`). Linux allows
/// 15 characters; `None` when the devid is too long for that.
pub fn tap_name(name: &str, devid: u32) -> Option<String> {
    let t = format!("pv{:06x}.{devid}", fnv1a(name) & 0x00ff_ffff);
    (t.len() <= IFNAMSIZ_MAX).then_some(t)
}

/// The QEMU id of the passed-through host device `bdf`
/// (`0000:03:00.0` -> `pt-0000-03-00.0`).
pub fn passthrough_id(bdf: impl std::fmt::Display) -> String {
    format!("pt-{}", bdf.to_string().replace(':', "-"))
}

/// The `-device` value that passes `bdf` through, at guest slot `vslot`
/// if given.
pub fn vfio_pci_device(bdf: impl std::fmt::Display, vslot: Option<u8>) -> String {
    let host = bdf.to_string();
    super::qdev::vfio_pci(&host, &passthrough_id(&host), vslot).to_cmdline()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passthrough_ids_come_from_the_address() {
        assert_eq!(passthrough_id("0000:03:00.0"), "pt-0000-03-00.0");
        assert_eq!(
            vfio_pci_device("0000:03:00.0", Some(5)),
            "vfio-pci,host=0000:03:00.0,id=pt-0000-03-00.0,addr=0x5"
        );
    }

    #[test]
    fn macs_are_in_xens_range() {
        let m = random_mac(&mut FixedEntropy(0xa0));
        assert_eq!(m.to_string(), "00:16:3e:a0:a1:a2");
        let m = random_mac(&mut OsEntropy);
        assert_eq!(&m.0[..3], &[0x00, 0x16, 0x3e]);
    }

    #[test]
    fn uuids_are_version_4() {
        let u = random_uuid(&mut FixedEntropy(0));
        assert_eq!(u, "00010203-0405-4607-8809-0a0b0c0d0e0f");
        assert_ne!(random_uuid(&mut OsEntropy), random_uuid(&mut OsEntropy));
    }

    #[test]
    fn tap_names_fit_ifnamsiz_and_differ_by_domain() {
        let a = tap_name("winxp", 0).unwrap();
        assert!(
            a.starts_with("pv") && a.ends_with(".0") && a.len() == 10,
            "{a}"
        );
        assert_ne!(a, tap_name("winxp2", 0).unwrap());
        assert_eq!(tap_name("winxp", 0), tap_name("winxp", 0));
        assert!(tap_name("x", 999_999).is_some());
        assert!(tap_name("x", 1_000_000).is_none());
    }
}
