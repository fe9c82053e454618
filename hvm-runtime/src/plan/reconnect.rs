//! How QEMU's vhost-user chardevs reconnect to a PV backend that was
//! restarted: one rule for the plan's `-chardev` and for hot-plug's
//! `chardev-add`. A backend that dies is started again on the same socket
//! by the supervisor; QEMU, the client, tries again every second until it
//! is back, and the guest sees a slow device.

/// How long QEMU waits between two connection attempts, in milliseconds.
pub const RECONNECT_MS: u64 = 1000;

/// The first QEMU with `reconnect-ms` (earlier ones take whole seconds as
/// `reconnect`, removed since).
const RECONNECT_MS_SINCE: (u32, u32) = (9, 2);

/// Whether QEMU `release` (`None`: the 10.0 baseline) takes `reconnect-ms`.
pub fn takes_ms(release: Option<(u32, u32)>) -> bool {
    release.is_none_or(|r| r >= RECONNECT_MS_SINCE)
}

/// The `-chardev socket` option, `reconnect-ms=1000` or `reconnect=1`.
pub fn chardev_option(release: Option<(u32, u32)>) -> String {
    if takes_ms(release) {
        format!("reconnect-ms={RECONNECT_MS}")
    } else {
        format!("reconnect={}", RECONNECT_MS.div_ceil(1000))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_qemu_gets_seconds_and_new_milliseconds() {
        assert_eq!(chardev_option(None), "reconnect-ms=1000");
        assert_eq!(chardev_option(Some((10, 0))), "reconnect-ms=1000");
        assert_eq!(chardev_option(Some((7, 2))), "reconnect=1");
    }
}
