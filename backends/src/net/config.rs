//! What `pvio backend net` takes and what the guest reads from the device:
//! the options and their checks, the MAC address (given or derived from the
//! tap name), the feature set by queue count, and the config space.
//!
//! No I/O.

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use pvio_frontend_protocol::features::VHOST_USER_F_PROTOCOL_FEATURES;

use crate::vhost_user::dirty_log::VHOST_F_LOG_ALL;
use pvio_frontend_protocol::net::{
    is_valid_unicast_mac, NetConfig, MAC_LEN, VIRTIO_NET_F_CTRL_VQ, VIRTIO_NET_F_MQ,
    VIRTIO_NET_S_LINK_UP,
};

use super::offload::{offered_features, MIN_MTU};
use crate::vhost_user::Listen;

/// Most queue pairs: the vhost-user library maps queues to threads with a
/// 64-bit mask, and pvio uses `2 * pairs + 1` queues (the control queue last).
pub const MAX_QUEUE_PAIRS: u16 = 31;

/// Errors in the net backend's options.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `--num-queue-pairs` out of range.
    #[error("--num-queue-pairs must be between 1 and {MAX_QUEUE_PAIRS}, not {0}")]
    QueuePairs(u16),
    /// `--queue-size` not a power of two in range.
    #[error("--queue-size must be a power of two between 2 and 32768, not {0}")]
    QueueSize(u16),
    /// `--mtu` below the minimum.
    #[error("--mtu must be between {MIN_MTU} and 65535, not {0}")]
    Mtu(u16),
    /// Not one `--tap-fd` per queue pair.
    #[error("{fds} --tap-fd given for {pairs} queue pair(s); pass one per queue pair")]
    TapFds {
        /// Fds given.
        fds: usize,
        /// Queue pairs asked for.
        pairs: u16,
    },
    /// `--mac` not six hex bytes.
    #[error("--mac {0:?} is not a MAC address; write six hex bytes like 52:54:00:12:34:56")]
    MacSyntax(String),
    /// `--mac` multicast or all zeroes.
    #[error("--mac {0} is not a unicast address; the first byte must be even and the address not all zeroes")]
    MacNotUnicast(String),
}

/// Which tap a NIC is served on.
#[derive(Debug)]
pub enum TapSource {
    /// A tap by name, opened (created if missing) by the backend.
    Name(String),
    /// Queues of an existing tap, opened by a supervisor with
    /// [`open_queues`](super::tap::open_queues), one per queue pair.
    Fds(Vec<OwnedFd>),
}

/// What `pvio backend net` takes.
#[derive(Debug)]
pub struct NetOptions {
    /// Where frontends connect.
    pub listen: Listen,
    /// The tap.
    pub tap: TapSource,
    /// Receive / transmit queue pairs.
    pub queue_pairs: u16,
    /// Descriptors per queue (a power of two).
    pub queue_size: u16,
    /// The guest NIC's MAC address (derived from the tap name if `None`).
    pub mac: Option<[u8; MAC_LEN]>,
    /// The MTU: set on the tap and offered to the guest (the tap's current
    /// MTU if `None`).
    pub mtu: Option<u16>,
}

impl NetOptions {
    /// Options with the CLI's defaults, a socket path and a tap name.
    pub fn new(socket: impl Into<PathBuf>, tap: impl Into<String>) -> Self {
        Self::with(Listen::Path(socket.into()), TapSource::Name(tap.into()))
    }

    /// Options with the CLI's defaults for any socket and tap source.
    pub fn with(listen: Listen, tap: TapSource) -> Self {
        Self {
            listen,
            tap,
            queue_pairs: 1,
            queue_size: 256,
            mac: None,
            mtu: None,
        }
    }

    /// Checks the numbers (the tap name is checked when the tap is opened).
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.queue_pairs == 0 || self.queue_pairs > MAX_QUEUE_PAIRS {
            return Err(ConfigError::QueuePairs(self.queue_pairs));
        }
        if let TapSource::Fds(fds) = &self.tap {
            if fds.len() != usize::from(self.queue_pairs) {
                return Err(ConfigError::TapFds {
                    fds: fds.len(),
                    pairs: self.queue_pairs,
                });
            }
        }
        if !self.queue_size.is_power_of_two() || self.queue_size < 2 {
            return Err(ConfigError::QueueSize(self.queue_size));
        }
        if let Some(mtu) = self.mtu {
            if mtu < MIN_MTU {
                return Err(ConfigError::Mtu(mtu));
            }
        }
        Ok(())
    }

    /// The MAC the guest gets on tap `tap_name`.
    pub fn mac_or_default(&self, tap_name: &str) -> [u8; MAC_LEN] {
        self.mac.unwrap_or_else(|| default_mac(tap_name))
    }
}

/// Parses `52:54:00:12:34:56` (also with `-` separators).
pub fn parse_mac(text: &str) -> Result<[u8; MAC_LEN], ConfigError> {
    let syntax = || ConfigError::MacSyntax(text.to_owned());
    let mut mac = [0u8; MAC_LEN];
    let mut parts = text.split([':', '-']);
    for byte in &mut mac {
        let part = parts.next().ok_or_else(syntax)?;
        if part.len() != 2 {
            return Err(syntax());
        }
        *byte = u8::from_str_radix(part, 16).map_err(|_| syntax())?;
    }
    if parts.next().is_some() {
        return Err(syntax());
    }
    if !is_valid_unicast_mac(&mac) {
        return Err(ConfigError::MacNotUnicast(text.to_owned()));
    }
    Ok(mac)
}

/// A stable, locally administered unicast MAC derived from the tap name
/// (FNV-1a), so that a guest keeps its address across backend restarts.
pub fn default_mac(tap: &str) -> [u8; MAC_LEN] {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in tap.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let b = h.to_le_bytes();
    // 0x02: locally administered, unicast.
    [0x02, b[0], b[1], b[2], b[3], b[4]]
}

/// The device features on a kernel taking `tun_support` offloads:
/// [`offered_features`] plus MQ and the control queue (always present, so
/// the queue layout does not depend on the pair count), and the vhost-user
/// bit that enables protocol features.
pub fn features(tun_support: libc::c_uint) -> u64 {
    offered_features(tun_support)
        | VIRTIO_NET_F_MQ
        | VIRTIO_NET_F_CTRL_VQ
        | VHOST_USER_F_PROTOCOL_FEATURES
        | VHOST_F_LOG_ALL
}

/// The config space the guest reads (virtio 1.2 §5.1.4): the MAC, link up,
/// the number of queue pairs and the MTU.
pub fn config_space(mac: [u8; MAC_LEN], queue_pairs: u16, mtu: u16) -> NetConfig {
    NetConfig::default()
        .with_mac(mac)
        .with_status(VIRTIO_NET_S_LINK_UP)
        .with_max_virtqueue_pairs(queue_pairs)
        .with_mtu(mtu)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pvio_frontend_protocol::net::NET_CONFIG_SIZE;
    use pvio_frontend_protocol::zerocopy::IntoBytes;

    #[test]
    fn options_are_checked() {
        let ok = NetOptions::new("/tmp/s", "tap0");
        assert_eq!(ok.check(), Ok(()));
        let bad = |f: fn(&mut NetOptions)| {
            let mut o = NetOptions::new("/tmp/s", "tap0");
            f(&mut o);
            o.check().unwrap_err()
        };
        assert_eq!(bad(|o| o.queue_pairs = 0), ConfigError::QueuePairs(0));
        assert_eq!(bad(|o| o.queue_pairs = 32), ConfigError::QueuePairs(32));
        assert_eq!(bad(|o| o.queue_size = 300), ConfigError::QueueSize(300));
        assert_eq!(bad(|o| o.queue_size = 1), ConfigError::QueueSize(1));
        assert_eq!(bad(|o| o.mtu = Some(67)), ConfigError::Mtu(67));
    }

    #[test]
    fn macs_parse_and_must_be_unicast() {
        assert_eq!(
            parse_mac("52:54:00:12:34:5f").unwrap(),
            [0x52, 0x54, 0x00, 0x12, 0x34, 0x5f]
        );
        assert_eq!(parse_mac("02-00-00-00-00-01").unwrap()[5], 1);
        for bad in [
            "",
            "52:54:00:12:34",
            "52:54:00:12:34:56:78",
            "5254.0012.3456",
            "g2:54:00:12:34:56",
            "520:54:00:12:34:5",
        ] {
            assert!(
                matches!(parse_mac(bad), Err(ConfigError::MacSyntax(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_mac("01:00:5e:00:00:01"),
            Err(ConfigError::MacNotUnicast(_))
        ));
        assert!(matches!(
            parse_mac("00:00:00:00:00:00"),
            Err(ConfigError::MacNotUnicast(_))
        ));
    }

    #[test]
    fn default_macs_are_stable_local_unicast_and_differ_by_tap() {
        let a = default_mac("pvio0");
        assert_eq!(a, default_mac("pvio0"));
        assert_ne!(a, default_mac("pvio1"));
        assert_eq!(a[0], 0x02);
        assert!(is_valid_unicast_mac(&a));
    }

    #[test]
    fn spec_5_1_4_config_space_layout() {
        let cfg = config_space([2, 0, 0, 0, 0, 9], 2, 1400);
        let bytes = cfg.as_bytes();
        assert_eq!(bytes.len(), NET_CONFIG_SIZE);
        assert_eq!(&bytes[0..6], &[2, 0, 0, 0, 0, 9]);
        assert_eq!(&bytes[6..8], &VIRTIO_NET_S_LINK_UP.to_le_bytes());
        assert_eq!(&bytes[8..10], &2u16.to_le_bytes());
        assert_eq!(&bytes[10..12], &1400u16.to_le_bytes());
    }

    #[test]
    fn mq_and_the_control_queue_are_always_offered() {
        let f = features(0);
        assert_ne!(f & VIRTIO_NET_F_MQ, 0);
        assert_ne!(f & VIRTIO_NET_F_CTRL_VQ, 0);
    }
}
