//! The MSI-X vector count of a PV NIC (`virtio-net-pci`'s `vectors=`),
//! one rule for the plan and for `network-attach`.
//!
//! QEMU 7.2 under TCG (no irqfd) segfaults in `msix_set_vector_notifiers`
//! when the guest unmasks an MSI-X vector of a vhost-user virtio-net
//! device; with `vectors=0` the device uses INTx and runs. Under KVM the
//! device gets what virtio-net needs for `queues` queue pairs: one vector
//! per rx and tx queue, one for the control queue, one for config changes.

use crate::host::accel::Accel;

/// `vectors=` for a PV NIC with `queues` queue pairs under `accel`.
pub fn pv_nic_vectors(accel: Accel, queues: u16) -> u32 {
    match accel {
        Accel::Tcg => 0,
        Accel::Kvm => u32::from(queues).saturating_mul(2).saturating_add(2),
    }
}

/// The accelerator named as in QEMU's `-accel` (`kvm`, `tcg`), as a
/// domain's record keeps it; anything else is taken as TCG, the safe side.
pub fn accel_named(name: &str) -> Accel {
    if name == Accel::Kvm.qemu_arg() {
        Accel::Kvm
    } else {
        Accel::Tcg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcg_gets_no_msix_and_kvm_two_per_queue_pair_plus_two() {
        assert_eq!(pv_nic_vectors(Accel::Tcg, 1), 0);
        assert_eq!(pv_nic_vectors(Accel::Tcg, 4), 0);
        assert_eq!(pv_nic_vectors(Accel::Kvm, 1), 4);
        assert_eq!(pv_nic_vectors(Accel::Kvm, 4), 10);
        assert_eq!(pv_nic_vectors(Accel::Kvm, u16::MAX), 131_072);
    }

    #[test]
    fn record_names_map_back() {
        assert_eq!(accel_named("kvm"), Accel::Kvm);
        assert_eq!(accel_named("tcg"), Accel::Tcg);
        assert_eq!(accel_named("?"), Accel::Tcg);
    }
}
