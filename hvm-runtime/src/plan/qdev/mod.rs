//! One typed description of each QEMU device pvio adds, and its two
//! spellings: the `-device` value of the command line a domain starts
//! with ([`QemuDevice::to_cmdline`]) and the arguments of the QMP
//! `device_add` that hot-plugs it ([`QemuDevice::to_qmp`]). The plan and
//! hot-plug build a device with the same constructor ([`kinds`]), so a
//! disk hot-plugged carries the properties the same disk has at start;
//! only where it sits (the bus and slot chosen at run time,
//! [`QemuDevice::placed`]) is hot-plug's own. The companions a PV device
//! connects through are described the same way: the socket chardev
//! ([`chardev`]) and the netdev ([`netdev`]).
//!
//! It must not know about domains, records, QMP connections or the CLI:
//! it turns values into text and JSON, nothing else.

pub mod chardev;
pub mod kinds;
pub mod netdev;

pub use chardev::SocketChardev;
pub use kinds::{
    chardev_id, emulated_nic, ide, netdev_id, nic_id, pcie_root_port, scsi_controller, scsi_hd,
    vfio_pci, vhost_user_blk, virtio_net, SCSI_CONTROLLER,
};
pub use netdev::{Netdev, TapFrom};

use serde_json::{Map, Value as Json};

/// A property value, typed: each renderer spells it as its side wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A string (an id, a MAC, a host address).
    Text(String),
    /// A number, decimal on the command line, a JSON number over QMP.
    Number(u64),
    /// A number written in hex on the command line (`0x10`), a JSON number
    /// over QMP.
    Hex(u64),
    /// A PCI slot (`addr`). QEMU takes it as a hex string in both places;
    /// the command line spells it short (`0x5`), `device_add` with two
    /// digits (`0x05`), as each always has.
    Slot(u8),
}

impl Value {
    /// The value as a command line option writes it: a string's commas
    /// doubled (QEMU's escape).
    fn cmdline(&self) -> String {
        match self {
            Value::Text(s) => s.replace(',', ",,"),
            Value::Number(n) => n.to_string(),
            Value::Hex(n) => format!("0x{n:x}"),
            Value::Slot(s) => format!("0x{s:x}"),
        }
    }

    /// The value as QMP takes it.
    fn qmp(&self) -> Json {
        match self {
            Value::Text(s) => Json::String(s.clone()),
            Value::Number(n) | Value::Hex(n) => Json::from(*n),
            Value::Slot(s) => Json::String(format!("{s:#04x}")),
        }
    }

    /// The text of a [`Value::Text`].
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::Text(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Text(s)
    }
}

impl From<u8> for Value {
    fn from(n: u8) -> Value {
        Value::Number(n.into())
    }
}

impl From<u16> for Value {
    fn from(n: u16) -> Value {
        Value::Number(n.into())
    }
}

impl From<u32> for Value {
    fn from(n: u32) -> Value {
        Value::Number(n.into())
    }
}

/// One QEMU device: its driver and its properties in order. `id` and
/// `bus` are properties like the others on the command line, in the
/// place a constructor gives them; `device_add` takes them as members of
/// its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuDevice {
    driver: String,
    props: Vec<(&'static str, Value)>,
}

impl QemuDevice {
    /// A device of `driver` with no properties yet.
    pub fn new(driver: impl Into<String>) -> QemuDevice {
        QemuDevice {
            driver: driver.into(),
            props: Vec::new(),
        }
    }

    /// The device with `key` set to `value`: replaced where it was, or
    /// added last.
    #[must_use]
    pub fn with(mut self, key: &'static str, value: impl Into<Value>) -> QemuDevice {
        self.set(key, value);
        self
    }

    /// Sets `key` to `value`: replaced where it was, or added last.
    pub fn set(&mut self, key: &'static str, value: impl Into<Value>) {
        let value = value.into();
        match self.props.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => *v = value,
            None => self.props.push((key, value)),
        }
    }

    /// The device put on `bus` (`None`: the root bus, where QEMU picks)
    /// at `slot` (`None`: QEMU picks): where hot-plug puts it.
    #[must_use]
    pub fn placed(mut self, bus: Option<&str>, slot: Option<u8>) -> QemuDevice {
        if let Some(bus) = bus {
            self.set("bus", bus);
        }
        if let Some(slot) = slot {
            self.set("addr", Value::Slot(slot));
        }
        self
    }

    /// The QEMU driver (`vhost-user-blk-pci`).
    pub fn driver(&self) -> &str {
        &self.driver
    }

    /// The value of property `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.props.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// The device id.
    pub fn id(&self) -> Option<&str> {
        self.get("id").and_then(Value::as_text)
    }

    /// The bus it is put on, if named.
    pub fn bus(&self) -> Option<&str> {
        self.get("bus").and_then(Value::as_text)
    }

    /// The `-device` value: `driver,key=value,...` in the properties'
    /// order.
    pub fn to_cmdline(&self) -> String {
        let mut out = self.driver.replace(',', ",,");
        for (k, v) in &self.props {
            out.push(',');
            out.push_str(k);
            out.push('=');
            out.push_str(&v.cmdline());
        }
        out
    }

    /// The arguments of `device_add`: `driver` and every property, each
    /// a typed JSON value.
    pub fn to_qmp(&self) -> Map<String, Json> {
        let mut m = Map::new();
        m.insert("driver".to_owned(), Json::String(self.driver.clone()));
        for (k, v) in &self.props {
            m.insert((*k).to_owned(), v.qmp());
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn one_description_two_spellings() {
        let d = QemuDevice::new("virtio-net-pci")
            .with("netdev", "net0")
            .with("id", "nic0")
            .with("vectors", 4u32)
            .with("port", Value::Hex(0x10))
            .placed(Some("pvio-rp1"), Some(5));
        assert_eq!(
            d.to_cmdline(),
            "virtio-net-pci,netdev=net0,id=nic0,vectors=4,port=0x10,bus=pvio-rp1,addr=0x5"
        );
        assert_eq!(
            Json::Object(d.to_qmp()),
            json!({
                "driver": "virtio-net-pci", "netdev": "net0", "id": "nic0",
                "vectors": 4, "port": 16, "bus": "pvio-rp1", "addr": "0x05"
            })
        );
        assert_eq!(d.id(), Some("nic0"));
        assert_eq!(d.bus(), Some("pvio-rp1"));
        assert_eq!(d.driver(), "virtio-net-pci");
    }

    #[test]
    fn commas_are_doubled_on_the_command_line_only() {
        let d = QemuDevice::new("x").with("serial", "a,b").with("id", "x0");
        assert_eq!(d.to_cmdline(), "x,serial=a,,b,id=x0");
        assert_eq!(d.to_qmp()["serial"], json!("a,b"));
    }

    #[test]
    fn setting_a_key_again_replaces_it_in_place() {
        let d = QemuDevice::new("x")
            .with("id", "a")
            .with("mac", "m")
            .with("id", "b")
            .placed(None, None);
        assert_eq!(d.to_cmdline(), "x,id=b,mac=m");
        assert_eq!(d.bus(), None);
    }
}
