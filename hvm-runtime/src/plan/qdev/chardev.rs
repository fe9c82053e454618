//! The socket chardev a PV device reaches its backend through: a client
//! of the backend's vhost-user socket that reconnects when the backend is
//! restarted (`plan::reconnect`). One description, the plan's `-chardev`
//! value and hot-plug's `chardev-add` arguments.

use serde_json::{json, Map, Value as Json};

use crate::plan::reconnect;

/// A client chardev of a Unix socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketChardev {
    /// The chardev id (`chr-xvdb`).
    pub id: String,
    /// The socket path.
    pub path: String,
    /// The installed QEMU's `(major, minor)` (`None`: 10.0 or later): how
    /// it spells the reconnect delay.
    pub release: Option<(u32, u32)>,
}

impl SocketChardev {
    /// The `-chardev` value: `socket,id=...,path=...,reconnect-ms=1000`,
    /// commas in the path doubled.
    pub fn to_cmdline(&self) -> String {
        format!(
            "socket,id={},path={},{}",
            self.id.replace(',', ",,"),
            self.path.replace(',', ",,"),
            reconnect::chardev_option(self.release)
        )
    }

    /// The arguments of `chardev-add`.
    pub fn to_qmp(&self) -> Map<String, Json> {
        let mut data = json!({
            "addr": { "type": "unix", "data": { "path": self.path } },
            "server": false,
        });
        let every = reconnect::RECONNECT_MS;
        if reconnect::takes_ms(self.release) {
            data["reconnect-ms"] = json!(every);
        } else {
            data["reconnect"] = json!(every.div_ceil(1000));
        }
        let mut m = Map::new();
        m.insert("id".to_owned(), Json::String(self.id.clone()));
        m.insert(
            "backend".to_owned(),
            json!({ "type": "socket", "data": data }),
        );
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chardev(release: Option<(u32, u32)>) -> SocketChardev {
        SocketChardev {
            id: "chr-xvdb".to_owned(),
            path: "/run/pvio/.dm/d/blk-xvdb.sock".to_owned(),
            release,
        }
    }

    #[test]
    fn both_spellings_reconnect() {
        let c = chardev(None);
        assert_eq!(
            c.to_cmdline(),
            "socket,id=chr-xvdb,path=/run/pvio/.dm/d/blk-xvdb.sock,reconnect-ms=1000"
        );
        assert_eq!(
            Json::Object(c.to_qmp()),
            json!({"id": "chr-xvdb", "backend": {"type": "socket", "data": {
                "addr": {"type": "unix", "data": {"path": "/run/pvio/.dm/d/blk-xvdb.sock"}},
                "server": false, "reconnect-ms": 1000}}})
        );
        let old = chardev(Some((7, 2)));
        assert!(old.to_cmdline().ends_with(",reconnect=1"));
        assert_eq!(old.to_qmp()["backend"]["data"]["reconnect"], json!(1));
        assert!(old.to_qmp()["backend"]["data"]
            .get("reconnect-ms")
            .is_none());
    }

    #[test]
    fn commas_in_the_path_are_doubled_on_the_command_line_only() {
        let mut c = chardev(None);
        c.path = "/r/a,b.sock".to_owned();
        assert!(c.to_cmdline().contains("path=/r/a,,b.sock,"));
        assert_eq!(
            c.to_qmp()["backend"]["data"]["addr"]["data"]["path"],
            json!("/r/a,b.sock")
        );
    }
}
