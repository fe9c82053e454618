//! A host on a test bridge: a network namespace of the test's own with one
//! end of a veth pair in it (holding an address of the test network) and
//! the other end on the bridge. A guest NIC on that bridge reaches this
//! address and nothing else; the host's own namespace gets no address.
//! Dropping it removes the namespace and the veth pair.

use std::process::Command;

use super::TestBridge;

/// The namespace end of a veth pair on a test bridge.
pub struct BridgePeer {
    /// The namespace.
    pub netns: String,
    /// The veth end on the bridge (host namespace).
    pub veth: String,
    /// The address in the namespace, without prefix length.
    pub ip: String,
}

fn run(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("ip (iproute2) must be installed");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl BridgePeer {
    /// Adds a namespace with `ip/24` on a veth whose other end joins `br`.
    pub fn new(br: &TestBridge, ip: &str) -> BridgePeer {
        let n = std::process::id() % 100_000;
        let netns = format!("pvio-rtpeer-{n}");
        let veth = format!("pvtv{n}");
        let inner = format!("pvtp{n}");
        let _ = Command::new("ip").args(["netns", "del", &netns]).output();
        let _ = Command::new("ip").args(["link", "del", &veth]).output();
        run(&["netns", "add", &netns]);
        let peer = BridgePeer {
            netns,
            veth,
            ip: ip.to_owned(),
        };
        run(&[
            "link",
            "add",
            &peer.veth,
            "type",
            "veth",
            "peer",
            "name",
            &inner,
            "netns",
            &peer.netns,
        ]);
        run(&["link", "set", &peer.veth, "master", &br.name, "up"]);
        let ns = peer.netns.as_str();
        run(&["-n", ns, "link", "set", "lo", "up"]);
        run(&["-n", ns, "addr", "add", &format!("{ip}/24"), "dev", &inner]);
        run(&["-n", ns, "link", "set", &inner, "up"]);
        peer
    }

    /// Packets the bridge side of the veth sent toward the namespace.
    pub fn packets_to_peer(&self) -> u64 {
        std::fs::read_to_string(format!(
            "/sys/class/net/{}/statistics/tx_packets",
            self.veth
        ))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
    }
}

impl Drop for BridgePeer {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .output();
        let _ = Command::new("ip")
            .args(["link", "del", &self.veth])
            .output();
    }
}
