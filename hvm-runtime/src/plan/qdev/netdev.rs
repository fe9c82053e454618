//! The netdev a NIC sends through: a vhost-user netdev on the PV NIC's
//! chardev, or a tap netdev for an emulated NIC. One description, the
//! plan's `-netdev` value and hot-plug's `netdev_add` arguments.

use serde_json::{Map, Value as Json};

/// Where a tap netdev's tap comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TapFrom {
    /// QEMU opens the interface by name (at start, before it drops its
    /// privileges), with no scripts.
    Ifname(String),
    /// A queue the supervisor opened and passed with `getfd` under this
    /// name (hot-plug: QEMU runs unprivileged by then).
    Fd(String),
}

/// A netdev.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Netdev {
    /// `vhost-user` on a socket chardev: a PV NIC's.
    VhostUser {
        /// The netdev id (`net0`).
        id: String,
        /// The chardev (`chr-net0`).
        chardev: String,
    },
    /// `tap`: an emulated NIC's.
    Tap {
        /// The netdev id.
        id: String,
        /// Where the tap comes from.
        from: TapFrom,
    },
}

impl Netdev {
    /// The type and the options, in the command line's order.
    fn options(&self) -> (&'static str, Vec<(&'static str, &str)>) {
        match self {
            Netdev::VhostUser { id, chardev } => (
                "vhost-user",
                vec![("id", id.as_str()), ("chardev", chardev.as_str())],
            ),
            Netdev::Tap {
                id,
                from: TapFrom::Ifname(name),
            } => (
                "tap",
                vec![
                    ("id", id.as_str()),
                    ("ifname", name.as_str()),
                    ("script", "no"),
                    ("downscript", "no"),
                ],
            ),
            Netdev::Tap {
                id,
                from: TapFrom::Fd(fd),
            } => ("tap", vec![("id", id.as_str()), ("fd", fd.as_str())]),
        }
    }

    /// The `-netdev` value (`vhost-user,id=net0,chardev=chr-net0`).
    pub fn to_cmdline(&self) -> String {
        let (kind, opts) = self.options();
        let mut out = kind.to_owned();
        for (k, v) in opts {
            out.push(',');
            out.push_str(k);
            out.push('=');
            out.push_str(&v.replace(',', ",,"));
        }
        out
    }

    /// The arguments of `netdev_add`.
    pub fn to_qmp(&self) -> Map<String, Json> {
        let (kind, opts) = self.options();
        let mut m = Map::new();
        m.insert("type".to_owned(), Json::String(kind.to_owned()));
        for (k, v) in opts {
            m.insert(k.to_owned(), Json::String(v.to_owned()));
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn vhost_user() {
        let n = Netdev::VhostUser {
            id: "net0".to_owned(),
            chardev: "chr-net0".to_owned(),
        };
        assert_eq!(n.to_cmdline(), "vhost-user,id=net0,chardev=chr-net0");
        assert_eq!(
            Json::Object(n.to_qmp()),
            json!({"type": "vhost-user", "id": "net0", "chardev": "chr-net0"})
        );
    }

    #[test]
    fn tap_by_name_at_start_and_by_descriptor_at_hot_plug() {
        let n = Netdev::Tap {
            id: "net0".to_owned(),
            from: TapFrom::Ifname("pv1a2b3c.0".to_owned()),
        };
        assert_eq!(
            n.to_cmdline(),
            "tap,id=net0,ifname=pv1a2b3c.0,script=no,downscript=no"
        );
        let n = Netdev::Tap {
            id: "net1".to_owned(),
            from: TapFrom::Fd("fd-net1".to_owned()),
        };
        assert_eq!(
            Json::Object(n.to_qmp()),
            json!({"type": "tap", "id": "net1", "fd": "fd-net1"})
        );
    }
}
