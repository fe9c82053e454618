//! The host-network module against the real kernel, in network namespaces
//! the tests make: a persistent tap made for a user and group, given an
//! MTU, joined to a bridge and brought up, then read back from sysfs as
//! the namespace shows it (`ip netns exec`); deleted from the test's own
//! namespace through the name of the one it was made in. `ip` only makes
//! and reads the fixtures.

mod net_support;

use net_support::NetNs;
use pvio_backends::net::host::{self, Deleted, HostNetError, LinkKind, Route};
use pvio_backends::net::tap::{self, TapError, TapOwner};

/// What `PROGRAM PATH` prints inside the namespace, trimmed.
fn read_in(ns: &NetNs, program: &str, path: &str) -> String {
    let out = ns.command(program).arg(path).output().expect(program);
    assert!(
        out.status.success(),
        "{program} {path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn a_persistent_tap_is_owned_as_asked_and_joins_its_bridge() {
    let ns = NetNs::new("host");
    ns.ip(&["link", "add", "pvhbr0", "type", "bridge"]);
    let (where_made, tap, bridge) = ns.run(|| {
        let owner = TapOwner {
            uid: Some(4242),
            gid: Some(4343),
        };
        tap::create_persistent("pvhtap0", owner).expect("create the tap");
        let mut r = Route::open().unwrap();
        r.set_mtu("pvhtap0", 1400).unwrap();
        r.join_bridge("pvhtap0", "pvhbr0").unwrap();
        r.join_bridge("pvhtap0", "pvhbr0").unwrap(); // already a port: fine
        r.set_up("pvhtap0", true).unwrap();
        let tap = r
            .link("pvhtap0")
            .unwrap()
            .expect("the tap outlived its file");
        let bridge = r.bridge("pvhbr0").unwrap();
        (host::current_netns().unwrap(), tap, bridge)
    });
    assert_eq!(tap.kind, Some(LinkKind::Tun));
    assert_eq!(tap.master, Some(bridge.index));
    assert_eq!(tap.mtu, Some(1400));
    assert!(tap.up);
    // Read back as the kernel shows it to everyone, not through pvio.
    assert_eq!(read_in(&ns, "cat", "/sys/class/net/pvhtap0/owner"), "4242");
    assert_eq!(read_in(&ns, "cat", "/sys/class/net/pvhtap0/group"), "4343");
    let master = read_in(&ns, "readlink", "/sys/class/net/pvhtap0/master");
    assert!(master.ends_with("/pvhbr0"), "{master}");

    // A name that is taken is refused, never taken over: a tap or a bridge.
    ns.run(|| {
        for name in ["pvhtap0", "pvhbr0"] {
            let err = tap::create_persistent(name, TapOwner::default()).unwrap_err();
            assert!(matches!(err, TapError::Exists { .. }), "{err}");
        }
        let mut r = Route::open().unwrap();
        let err = r.join_bridge("pvhbr0", "pvhtap0").unwrap_err();
        assert!(matches!(err, HostNetError::NotABridge { .. }), "{err}");
    });

    // Deleted from the test's namespace, in the one it was made in.
    assert_ne!(host::current_netns().as_deref(), Some(where_made.as_str()));
    assert_eq!(
        host::delete_in("pvhtap0", Some(&where_made)).unwrap(),
        Deleted::Deleted
    );
    assert!(!ns.try_ip(&["link", "show", "pvhtap0"]));
    assert_eq!(
        host::delete_in("pvhtap0", Some(&where_made)).unwrap(),
        Deleted::Gone
    );
}

#[test]
fn a_tap_without_an_owner_is_root_s() {
    let ns = NetNs::new("hostn");
    ns.run(|| tap::create_persistent("pvhtap1", TapOwner::default()).unwrap());
    assert_eq!(read_in(&ns, "cat", "/sys/class/net/pvhtap1/owner"), "-1");
    assert_eq!(read_in(&ns, "cat", "/sys/class/net/pvhtap1/group"), "-1");
    ns.run(|| assert!(Route::open().unwrap().delete("pvhtap1").unwrap()));
    assert!(!ns.try_ip(&["link", "show", "pvhtap1"]));
}
