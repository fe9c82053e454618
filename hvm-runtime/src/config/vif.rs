//! NIC specs (`vif = [ 'mac=...,bridge=...,model=...' ]`).
//!
//! `model` picks an emulated NIC (`rtl8139`, the default, `e1000`,
//! `e1000e`, `ne2k_pci`); `type=vif` or `model=virtio` makes it a PV NIC
//! served by pvio's net backend. `ip`, `script`, `rate`, `backend` and
//! friends are accepted and have no effect (a note says so).

use std::fmt;

use serde::Serialize;

use super::suggest::did_you_mean;

/// The longest Linux interface name.
pub const IFNAMSIZ_MAX: usize = 15;

/// xl's default bridge.
pub const DEFAULT_BRIDGE: &str = "xenbr0";

/// A MAC address (written `00:16:3e:12:34:56` in records and JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mac(pub [u8; 6]);

impl Serialize for Mac {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Mac {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Mac::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl Mac {
    /// Parses `aa:bb:cc:dd:ee:ff` (or with `-`).
    pub fn parse(s: &str) -> Result<Mac, String> {
        let bad = || format!("'{s}' is not a MAC address (six hex bytes, 00:16:3e:12:34:56)");
        let parts: Vec<&str> = s.split([':', '-']).collect();
        if parts.len() != 6 {
            return Err(bad());
        }
        let mut bytes = [0u8; 6];
        for (b, p) in bytes.iter_mut().zip(&parts) {
            if p.is_empty() || p.len() > 2 {
                return Err(bad());
            }
            *b = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        if bytes[0] & 1 == 1 {
            return Err(format!(
                "{s} is a multicast address; a NIC needs a unicast one (first byte even)"
            ));
        }
        Ok(Mac(bytes))
    }

    /// A MAC in Xen's range 00:16:3e:xx:xx:xx with the given last bytes.
    pub fn xen(tail: [u8; 3]) -> Mac {
        Mac([0x00, 0x16, 0x3e, tail[0], tail[1], tail[2]])
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

/// The NIC the guest sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NicModel {
    /// Realtek RTL8139 (emulated; xl's default).
    Rtl8139,
    /// Intel 82540EM (emulated).
    E1000,
    /// Intel 82574L (emulated).
    E1000e,
    /// NE2000 PCI (emulated).
    Ne2kPci,
    /// virtio-net, served by pvio's net backend (PV).
    Virtio,
}

impl NicModel {
    /// QEMU's device name.
    pub fn qemu_device(self) -> &'static str {
        match self {
            NicModel::Rtl8139 => "rtl8139",
            NicModel::E1000 => "e1000",
            NicModel::E1000e => "e1000e",
            NicModel::Ne2kPci => "ne2k_pci",
            NicModel::Virtio => "virtio-net-pci",
        }
    }

    /// True for the PV model.
    pub fn is_pv(self) -> bool {
        self == NicModel::Virtio
    }
}

/// One NIC of a domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VifSpec {
    /// The NIC's number (its position in `vif`, or `devid=`).
    pub devid: u32,
    /// The MAC; `None` means a random one in 00:16:3e is chosen at plan
    /// time.
    pub mac: Option<Mac>,
    /// The bridge the host side joins.
    pub bridge: String,
    /// The model; `Virtio` is the PV path.
    pub model: NicModel,
    /// The host interface (tap) name, if given.
    pub vifname: Option<String>,
    /// The MTU, if given.
    pub mtu: Option<u16>,
}

/// A parsed vif spec and its notes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedVif {
    /// The NIC.
    pub vif: VifSpec,
    /// Settings accepted without effect.
    pub notes: Vec<String>,
}

const KEYS: &[&str] = &[
    "mac",
    "bridge",
    "model",
    "type",
    "vifname",
    "mtu",
    "ip",
    "devid",
    "script",
    "rate",
    "backend",
    "gatewaydev",
    "accel",
    "trusted",
    "untrusted",
    "forwarddev",
    "match",
];

/// Parses one vif spec; `position` is its index in the list (the default
/// devid).
pub fn parse(spec: &str, position: u32) -> Result<ParsedVif, String> {
    let mut vif = VifSpec {
        devid: position,
        mac: None,
        bridge: DEFAULT_BRIDGE.to_owned(),
        model: NicModel::Rtl8139,
        vifname: None,
        mtu: None,
    };
    let mut notes = Vec::new();
    let mut model: Option<NicModel> = None;
    let mut pv_type = false;
    for item in spec.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let Some((key, value)) = item.split_once('=') else {
            return Err(format!("'{item}' is not a key=value setting"));
        };
        let (key, value) = (key.trim(), value.trim());
        match key {
            "mac" => vif.mac = Some(Mac::parse(value)?),
            "bridge" => {
                check_ifname(value, "bridge")?;
                vif.bridge = value.to_owned();
            }
            "model" => {
                model = Some(match value {
                    "rtl8139" => NicModel::Rtl8139,
                    "e1000" => NicModel::E1000,
                    "e1000e" => NicModel::E1000e,
                    "ne2k_pci" => NicModel::Ne2kPci,
                    "virtio" | "virtio-net" => NicModel::Virtio,
                    other => {
                        const MODELS: &[&str] = &["rtl8139", "e1000", "e1000e", "ne2k_pci", "virtio"];
                        return Err(format!(
                            "unknown model '{other}'{}; use rtl8139, e1000, e1000e, ne2k_pci (emulated) or virtio (PV)",
                            did_you_mean(other, MODELS.iter().copied())
                        ));
                    }
                })
            }
            "type" => match value {
                "vif" => pv_type = true,
                "ioemu" => {}
                other => return Err(format!("unknown type '{other}'; use vif (PV) or ioemu (emulated)")),
            },
            "vifname" => {
                check_ifname(value, "vifname")?;
                vif.vifname = Some(value.to_owned());
            }
            "mtu" => {
                let mtu: u16 = value
                    .parse()
                    .ok()
                    .filter(|m| (68..=65535).contains(m))
                    .ok_or_else(|| format!("mtu '{value}' is not a number from 68 to 65535"))?;
                vif.mtu = Some(mtu);
            }
            "devid" => {
                vif.devid = value
                    .parse()
                    .map_err(|_| format!("devid '{value}' is not a number"))?;
            }
            "ip" => notes.push(format!(
                "ip={value} has no effect: pvio does not filter or configure guest addresses (the guest sets its own)"
            )),
            k @ ("script" | "rate" | "backend" | "gatewaydev" | "accel" | "trusted" | "untrusted"
            | "forwarddev" | "match") => notes.push(format!("'{k}' has no effect under pvio")),
            other => {
                return Err(format!(
                    "unknown vif setting '{other}'{}",
                    did_you_mean(other, KEYS.iter().copied())
                ))
            }
        }
    }
    vif.model = match (pv_type, model) {
        (true, None | Some(NicModel::Virtio)) => NicModel::Virtio,
        (true, Some(m)) => {
            return Err(format!(
                "type=vif asks for a PV NIC but model={} is emulated; drop one of them",
                m.qemu_device()
            ))
        }
        (false, m) => m.unwrap_or(NicModel::Rtl8139),
    };
    Ok(ParsedVif { vif, notes })
}

/// Checks a Linux interface name.
pub fn check_ifname(name: &str, what: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > IFNAMSIZ_MAX {
        return Err(format!(
            "{what} '{name}' must be 1 to {IFNAMSIZ_MAX} characters (a Linux interface name)"
        ));
    }
    if name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        return Err(format!("{what} '{name}' is not a valid interface name"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_an_rtl8139_on_xenbr0() {
        let v = parse("", 0).unwrap().vif;
        assert_eq!(v.model, NicModel::Rtl8139);
        assert_eq!(v.bridge, "xenbr0");
        assert_eq!(v.mac, None);
        let v = parse("bridge=xenbr0", 3).unwrap().vif;
        assert_eq!(v.devid, 3);
    }

    #[test]
    fn all_settings() {
        let v = parse(
            "mac=00:16:3E:01:02:03, bridge=br1, model=e1000, vifname=web0, mtu=9000, devid=7",
            0,
        )
        .unwrap()
        .vif;
        assert_eq!(v.mac.unwrap().to_string(), "00:16:3e:01:02:03");
        assert_eq!(v.bridge, "br1");
        assert_eq!(v.model, NicModel::E1000);
        assert_eq!(v.vifname.as_deref(), Some("web0"));
        assert_eq!(v.mtu, Some(9000));
        assert_eq!(v.devid, 7);
        assert_eq!(
            parse("model=ne2k_pci", 0).unwrap().vif.model,
            NicModel::Ne2kPci
        );
    }

    #[test]
    fn pv_by_type_or_model() {
        assert_eq!(parse("type=vif", 0).unwrap().vif.model, NicModel::Virtio);
        assert_eq!(
            parse("model=virtio", 0).unwrap().vif.model,
            NicModel::Virtio
        );
        assert_eq!(
            parse("type=ioemu,model=e1000", 0).unwrap().vif.model,
            NicModel::E1000
        );
        assert!(parse("type=vif,model=e1000", 0)
            .unwrap_err()
            .contains("drop one"));
    }

    #[test]
    fn accepted_without_effect() {
        let p = parse("ip=10.0.0.2,script=vif-bridge", 0).unwrap();
        assert_eq!(p.notes.len(), 2);
        assert!(p.notes[0].starts_with("ip=10.0.0.2 has no effect"));
    }

    #[test]
    fn errors() {
        assert_eq!(
            parse("brige=x", 0).unwrap_err(),
            "unknown vif setting 'brige' (did you mean 'bridge'?)"
        );
        assert!(parse("model=pcnet", 0)
            .unwrap_err()
            .starts_with("unknown model 'pcnet'"));
        assert!(parse("mac=00:16:3e:01:02", 0)
            .unwrap_err()
            .contains("not a MAC"));
        assert!(parse("mac=01:16:3e:01:02:03", 0)
            .unwrap_err()
            .contains("multicast"));
        assert!(parse("mtu=20", 0).unwrap_err().contains("68 to 65535"));
        assert!(parse("bridge=averyveryverylongname", 0)
            .unwrap_err()
            .contains("1 to 15"));
        assert!(parse("vifname=a/b", 0).unwrap_err().contains("not a valid"));
        assert_eq!(
            parse("xenbr0", 0).unwrap_err(),
            "'xenbr0' is not a key=value setting"
        );
        assert!(parse("type=foo", 0).is_err());
        assert!(parse("devid=x", 0).is_err());
    }

    #[test]
    fn xen_macs() {
        assert_eq!(Mac::xen([1, 0xab, 3]).to_string(), "00:16:3e:01:ab:03");
    }
}
