//! Virtio device IDs (virtio 1.2 §5, "Device Types").
//!
//! The ID a transport reports for a device (the PCI device ID is
//! `0x1040 + id` for a modern virtio-pci device, virtio 1.2 §4.1.2).

/// Network card (virtio 1.2 §5, §5.1.1).
pub const VIRTIO_ID_NET: u32 = 1;
/// Block device (virtio 1.2 §5, §5.2.1).
pub const VIRTIO_ID_BLOCK: u32 = 2;

/// The modern virtio-pci device ID for a virtio device ID: `0x1040 + id`
/// (virtio 1.2 §4.1.2), or `None` if it does not fit 16 bits.
#[must_use]
pub fn virtio_pci_device_id(id: u32) -> Option<u16> {
    u16::try_from(id).ok()?.checked_add(0x1040)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_5_device_ids() {
        assert_eq!(VIRTIO_ID_NET, 1);
        assert_eq!(VIRTIO_ID_BLOCK, 2);
    }

    #[test]
    fn spec_4_1_2_modern_pci_device_ids() {
        assert_eq!(virtio_pci_device_id(VIRTIO_ID_NET), Some(0x1041));
        assert_eq!(virtio_pci_device_id(VIRTIO_ID_BLOCK), Some(0x1042));
        assert_eq!(virtio_pci_device_id(0x1_0000), None);
        assert_eq!(virtio_pci_device_id(0xffff), None);
    }
}
