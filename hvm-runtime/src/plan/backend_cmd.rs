//! The command line of a PV backend process, one function per kind, used
//! by the plan (what `create --dry-run` prints) and by the supervisor
//! (what it runs, at start and at hot-plug): `pvio backend blk|net` on
//! descriptors the supervisor opened, under the domain's backend identity.
//!
//! It must not know how the descriptors are opened or passed.

/// Where a backend finds its listening vhost-user socket.
pub const LISTEN_FD: i32 = 3;
/// Where a block backend finds its image, a net backend its tap queue.
pub const RESOURCE_FD: i32 = 4;
/// What the dry run prints for the backend identity: it is fixed when
/// the domain starts (`PVIO_UID_BASE + 2 * id + 1`, docs/security.md).
pub const USER_PLACEHOLDER: &str = "BACKEND_UID:BACKEND_GID";

/// `backend blk ...`: the image on [`RESOURCE_FD`], the vdev as the
/// serial the guest finds the disk by.
pub fn blk_args(device: &str, read_only: bool, user: &str) -> Vec<String> {
    let mut a = vec![
        "backend".to_owned(),
        "blk".to_owned(),
        "--listen-fd".to_owned(),
        LISTEN_FD.to_string(),
        "--image-fd".to_owned(),
        RESOURCE_FD.to_string(),
        "--serial".to_owned(),
        device.to_owned(),
        "--user".to_owned(),
        user.to_owned(),
    ];
    if read_only {
        a.push("--read-only".to_owned());
    }
    a
}

/// `backend net ...`: one tap queue on [`RESOURCE_FD`].
pub fn net_args(mac: &str, mtu: Option<u16>, user: &str) -> Vec<String> {
    let mut a = vec![
        "backend".to_owned(),
        "net".to_owned(),
        "--listen-fd".to_owned(),
        LISTEN_FD.to_string(),
        "--tap-fd".to_owned(),
        RESOURCE_FD.to_string(),
        "--mac".to_owned(),
        mac.to_owned(),
        "--user".to_owned(),
        user.to_owned(),
    ];
    if let Some(m) = mtu {
        a.push("--mtu".to_owned());
        a.push(m.to_string());
    }
    a
}
