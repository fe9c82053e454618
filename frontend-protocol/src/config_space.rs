//! Reading and writing a window of a device configuration space (virtio 1.2
//! §2.5 "Device Configuration Space").
//!
//! A vhost-user frontend forwards the driver's config accesses as
//! `VHOST_USER_GET_CONFIG` / `SET_CONFIG` messages carrying an offset and a
//! size it took from the guest. These helpers turn them into a sub-slice of
//! a config struct's bytes (`BlkConfig::as_bytes()`, say) with checked
//! arithmetic, so an access past the end is `None`, never a panic.

/// The `size` bytes of `config` at `offset`, or `None` if any of them lies
/// outside `config` (or the arithmetic overflows).
#[must_use]
pub fn config_window(config: &[u8], offset: u32, size: u32) -> Option<&[u8]> {
    let (start, end) = window_bounds(offset, size)?;
    config.get(start..end)
}

/// Mutable form of [`config_window`], for a driver's config write.
#[must_use]
pub fn config_window_mut(config: &mut [u8], offset: u32, size: u32) -> Option<&mut [u8]> {
    let (start, end) = window_bounds(offset, size)?;
    config.get_mut(start..end)
}

fn window_bounds(offset: u32, size: u32) -> Option<(usize, usize)> {
    let start = usize::try_from(offset).ok()?;
    let end = start.checked_add(usize::try_from(size).ok()?)?;
    Some((start, end))
}

#[cfg(test)]
mod tests {
    use zerocopy::IntoBytes;

    use super::*;
    use crate::blk::BlkConfig;

    #[test]
    fn spec_2_5_window_inside_the_config() {
        let cfg = BlkConfig::default()
            .with_capacity(0x1234)
            .with_num_queues(2);
        let bytes = cfg.as_bytes();
        assert_eq!(
            config_window(bytes, 0, 8),
            Some(&[0x34, 0x12, 0, 0, 0, 0, 0, 0][..])
        );
        assert_eq!(config_window(bytes, 34, 2), Some(&[2, 0][..]));
        assert_eq!(config_window(bytes, 0, 96).map(<[u8]>::len), Some(96));
        assert_eq!(config_window(bytes, 96, 0), Some(&[][..]));
    }

    #[test]
    fn spec_2_5_window_outside_the_config_is_none() {
        let bytes = [0u8; 24];
        assert_eq!(config_window(&bytes, 20, 8), None);
        assert_eq!(config_window(&bytes, 25, 0), None);
        assert_eq!(config_window(&bytes, u32::MAX, u32::MAX), None);
        assert_eq!(config_window(&bytes, 1, u32::MAX), None);
    }

    #[test]
    fn spec_2_5_driver_write_lands_at_its_offset() {
        let mut cfg = BlkConfig::default();
        let window = config_window_mut(cfg.as_mut_bytes(), 32, 1).expect("writeback byte");
        window.copy_from_slice(&[1]);
        assert!(cfg.writeback());
        assert!(config_window_mut(cfg.as_mut_bytes(), 95, 2).is_none());
    }
}
