//! What a guest's stop means and which action applies.
//!
//! The plan gives QEMU `-action reboot=reset|shutdown,shutdown=pause,
//! panic=pause`, so QEMU never ends on its own when the guest stops:
//!
//! - a guest power-off pauses the guest and sends `SHUTDOWN` with reason
//!   `guest-shutdown`: `on_poweroff` applies;
//! - a guest reboot, with `on_reboot = "restart"`, is done by QEMU itself
//!   (a `RESET` event, counted); otherwise QEMU turns it into a `SHUTDOWN`
//!   with reason `guest-reset` (`host-qmp-system-reset` for `pvio reboot`)
//!   and `on_reboot` applies;
//! - a guest panic reported through the pvpanic device (the plan always
//!   has one; Linux's `pvpanic-mmio` driver finds it through ACPI) pauses
//!   the guest and sends `GUEST_PANICKED`: `on_crash` applies. A guest
//!   without a pvpanic driver that reboots on panic is seen as a reboot;
//!   one that hangs on panic is not seen at all;
//! - `quit`, a signal or a host error end the device model: the domain
//!   ends with no action.

use super::launch::{LaunchSpec, OnEvent};
use crate::qmp::qmp::ShutdownCause;

/// Why the guest stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestStop {
    /// It powered off.
    Poweroff,
    /// It (or `pvio reboot`) reset.
    Reboot,
    /// It crashed.
    Crash,
    /// The host ended QEMU (`quit`, a signal, an error).
    Host,
}

impl GuestStop {
    /// The stop a `SHUTDOWN` event's reason means.
    pub fn from_reason(reason: ShutdownCause) -> GuestStop {
        match reason {
            ShutdownCause::guest_shutdown => GuestStop::Poweroff,
            ShutdownCause::guest_reset | ShutdownCause::host_qmp_system_reset => GuestStop::Reboot,
            ShutdownCause::guest_panic => GuestStop::Crash,
            _ => GuestStop::Host,
        }
    }

    /// The record's word for it.
    pub fn cause(self) -> &'static str {
        match self {
            GuestStop::Poweroff => "poweroff",
            GuestStop::Reboot => "reboot",
            GuestStop::Crash => "crash",
            GuestStop::Host => "device-model-exit",
        }
    }

    /// The action the config asks for (`None`: nothing to decide, the
    /// device model is ending).
    pub fn action(self, spec: &LaunchSpec) -> Option<OnEvent> {
        match self {
            GuestStop::Poweroff => Some(spec.on_poweroff),
            GuestStop::Reboot => Some(spec.on_reboot),
            GuestStop::Crash => Some(spec.on_crash),
            GuestStop::Host => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_map_to_stops() {
        assert_eq!(
            GuestStop::from_reason(ShutdownCause::guest_shutdown),
            GuestStop::Poweroff
        );
        assert_eq!(
            GuestStop::from_reason(ShutdownCause::guest_reset),
            GuestStop::Reboot
        );
        assert_eq!(
            GuestStop::from_reason(ShutdownCause::host_qmp_system_reset),
            GuestStop::Reboot
        );
        assert_eq!(
            GuestStop::from_reason(ShutdownCause::guest_panic),
            GuestStop::Crash
        );
        assert_eq!(
            GuestStop::from_reason(ShutdownCause::host_qmp_quit),
            GuestStop::Host
        );
        assert_eq!(
            GuestStop::from_reason(ShutdownCause::host_signal),
            GuestStop::Host
        );
    }
}
