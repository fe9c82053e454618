//! The MSI-X vector count of a PV NIC (`virtio-net-pci`'s `vectors=`),
//! one rule for the plan and for `network-attach`.
//!
//! The device gets what virtio-net needs for `queues` queue pairs: one
//! vector per rx and tx queue, one for the control queue, one for config
//! changes. Only a QEMU older than 10.0 under TCG gets none: 7.2 (no
//! irqfd) segfaults in `msix_set_vector_notifiers` when the guest unmasks
//! an MSI-X vector of a vhost-user virtio-net device, and with `vectors=0`
//! the device uses INTx and runs; 10.0.2 runs the same guest with MSI-X.

use crate::host::accel::Accel;

/// The first QEMU release whose vhost-user NICs take MSI-X under TCG.
pub const MSIX_UNDER_TCG: (u32, u32) = (10, 0);

/// `vectors=` for a PV NIC with `queues` queue pairs under `accel`, on
/// QEMU `release` (`None`: the baseline, 10.0 or later).
pub fn pv_nic_vectors(accel: Accel, queues: u16, release: Option<(u32, u32)>) -> u32 {
    let old = release.is_some_and(|r| r < MSIX_UNDER_TCG);
    match accel {
        Accel::Tcg if old => 0,
        _ => u32::from(queues).saturating_mul(2).saturating_add(2),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_per_queue_pair_plus_two_but_none_on_old_qemu_under_tcg() {
        assert_eq!(pv_nic_vectors(Accel::Tcg, 1, None), 4);
        assert_eq!(pv_nic_vectors(Accel::Tcg, 1, Some((10, 0))), 4);
        assert_eq!(pv_nic_vectors(Accel::Tcg, 1, Some((7, 2))), 0);
        assert_eq!(pv_nic_vectors(Accel::Tcg, 4, Some((7, 2))), 0);
        assert_eq!(pv_nic_vectors(Accel::Kvm, 1, Some((7, 2))), 4);
        assert_eq!(pv_nic_vectors(Accel::Kvm, 4, None), 10);
        assert_eq!(pv_nic_vectors(Accel::Kvm, u16::MAX, None), 131_072);
    }
}
