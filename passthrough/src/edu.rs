//! A DMA self-test through VFIO on QEMU's `edu` device (`1234:11e8`, see
//! QEMU's docs/specs/edu.rst): it proves end to end that a device bound to
//! vfio-pci does DMA through the IOMMU into memory mapped with
//! `VFIO_IOMMU_MAP_DMA`, and nowhere else.
//!
//! The test fills a buffer with a pattern, has edu copy it into its own
//! 4 KiB window (RAM to device), then copy the window back to another part
//! of the buffer (device to RAM), and compares.
//!
//! edu registers in BAR0 (4-byte accesses): 0x00 id (`0x010000ed`), 0x04
//! liveness (reads back inverted), 0x80 DMA source, 0x88 DMA destination,
//! 0x90 count, 0x98 command (bit 0 start, bit 1 direction: device to RAM).
//! Its window is at 0x40000 in device space; it only reaches 28-bit
//! addresses by default, so the I/O address stays below 256 MiB.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::bdf::Bdf;
use crate::host::Host;
use crate::sysfs::SysfsError;
use crate::vfio::{DmaBuffer, VfioError, VfioHandle};

/// PCI vendor id of QEMU's test devices.
pub const EDU_VENDOR: u16 = 0x1234;
/// PCI device id of `edu`.
pub const EDU_DEVICE: u16 = 0x11e8;

/// VFIO's region index of PCI config space (`VFIO_PCI_CONFIG_REGION_INDEX`).
const CONFIG_REGION: u32 = 7;
/// VFIO's region index of BAR0.
const BAR0: u32 = 0;
/// PCI command register: memory space and bus master enable.
const COMMAND: u64 = 0x04;
const COMMAND_MEMORY_AND_MASTER: u16 = 0x0006;

const REG_ID: u64 = 0x00;
const REG_LIVENESS: u64 = 0x04;
const REG_DMA_SRC: u64 = 0x80;
const REG_DMA_DST: u64 = 0x88;
const REG_DMA_COUNT: u64 = 0x90;
const REG_DMA_CMD: u64 = 0x98;
const CMD_START: u32 = 0x1;
const CMD_TO_RAM: u32 = 0x2;
/// edu's own DMA window in device space.
const EDU_WINDOW: u32 = 0x40000;

/// Where the buffer is mapped in the device's I/O address space.
pub const TEST_IOVA: u64 = 0x0010_0000;
/// How many bytes go each way.
pub const TEST_LEN: usize = 1024;
/// Where in the buffer the copy comes back.
const BACK_OFFSET: usize = 4096;

/// The self-test failed.
#[derive(Debug, thiserror::Error)]
pub enum EduError {
    /// Sysfs could not be read.
    #[error(transparent)]
    Sysfs(#[from] SysfsError),
    /// The device is not an edu.
    #[error("{bdf} is {vendor:04x}:{device:04x}, not QEMU's edu device (1234:11e8)")]
    NotEdu {
        /// The device.
        bdf: Bdf,
        /// Its vendor id.
        vendor: u32,
        /// Its device id.
        device: u32,
    },
    /// VFIO failed.
    #[error(transparent)]
    Vfio(#[from] VfioError),
    /// BAR0 did not answer as edu does.
    #[error("{bdf} does not answer through VFIO: {what}")]
    NoAnswer {
        /// The device.
        bdf: Bdf,
        /// What was read.
        what: String,
    },
    /// A transfer did not finish.
    #[error("edu's DMA {direction} did not finish within {after:?}")]
    Timeout {
        /// Which transfer.
        direction: &'static str,
        /// How long it was given.
        after: Duration,
    },
    /// The bytes that came back differ.
    #[error("DMA data differs at byte {offset}: sent {sent:#04x}, got {got:#04x}")]
    Mismatch {
        /// The first differing byte.
        offset: usize,
        /// What was sent.
        sent: u8,
        /// What came back.
        got: u8,
    },
}

type Result<T> = std::result::Result<T, EduError>;

/// What the self-test did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DmaReport {
    /// The device.
    pub bdf: Bdf,
    /// Its IOMMU group (opened VIABLE).
    pub group: u32,
    /// The I/O virtual address used.
    pub iova: u64,
    /// Bytes copied each way.
    pub bytes: usize,
}

/// The pattern sent: no byte equals its neighbour, none is zero.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| u8::try_from(i % 251).unwrap_or(0).wrapping_add(1))
        .collect()
}

/// Runs the DMA self-test on the edu device `bdf`, bound to vfio-pci.
pub fn dma_selftest(host: &Host, bdf: Bdf) -> Result<DmaReport> {
    let vendor = host.sys.hex_attr(bdf, "vendor")?.unwrap_or_default();
    let device = host.sys.hex_attr(bdf, "device")?.unwrap_or_default();
    if vendor != u32::from(EDU_VENDOR) || device != u32::from(EDU_DEVICE) {
        return Err(EduError::NotEdu {
            bdf,
            vendor,
            device,
        });
    }
    let vfio = VfioHandle::open(host, bdf)?;
    let dev = vfio.device();

    let mut cmd = [0u8; 2];
    dev.region_read(CONFIG_REGION, &mut cmd, COMMAND);
    let enabled = u16::from_le_bytes(cmd) | COMMAND_MEMORY_AND_MASTER;
    dev.region_write(CONFIG_REGION, &enabled.to_le_bytes(), COMMAND);

    let read = |off: u64| {
        let mut b = [0xffu8; 4];
        dev.region_read(BAR0, &mut b, off);
        u32::from_le_bytes(b)
    };
    let write = |off: u64, v: u32| dev.region_write(BAR0, &v.to_le_bytes(), off);

    let id = read(REG_ID);
    if id & 0xff != 0xed {
        return Err(EduError::NoAnswer {
            bdf,
            what: format!("identification register reads {id:#010x}"),
        });
    }
    write(REG_LIVENESS, 0x1234_5678);
    let live = read(REG_LIVENESS);
    if live != !0x1234_5678 {
        return Err(EduError::NoAnswer {
            bdf,
            what: format!("liveness register reads {live:#010x}"),
        });
    }

    let buf = DmaBuffer::new(2 * BACK_OFFSET)?;
    let sent = pattern(TEST_LEN);
    buf.write_bytes(0, &sent)?;
    let mapping = vfio.map(&buf, TEST_IOVA)?;
    let iova = u32::try_from(mapping.iova()).map_err(|_| EduError::NoAnswer {
        bdf,
        what: "I/O address above 4 GiB".into(),
    })?;
    let back = iova + u32::try_from(BACK_OFFSET).unwrap_or(4096);
    let count = u32::try_from(TEST_LEN).unwrap_or(1024);

    let transfer = |src: u32, dst: u32, command: u32, direction: &'static str| {
        write(REG_DMA_SRC, src);
        write(REG_DMA_DST, dst);
        write(REG_DMA_COUNT, count);
        write(REG_DMA_CMD, command);
        let after = Duration::from_secs(10);
        let start = Instant::now();
        while read(REG_DMA_CMD) & CMD_START != 0 {
            if start.elapsed() > after {
                return Err(EduError::Timeout { direction, after });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    };
    transfer(iova, EDU_WINDOW, CMD_START, "from RAM to the device")?;
    transfer(
        EDU_WINDOW,
        back,
        CMD_START | CMD_TO_RAM,
        "from the device to RAM",
    )?;

    let got = buf.read_bytes(BACK_OFFSET, TEST_LEN)?;
    drop(mapping);
    if let Some((offset, (s, g))) = sent
        .iter()
        .zip(got.iter())
        .enumerate()
        .find(|(_, (s, g))| s != g)
    {
        return Err(EduError::Mismatch {
            offset,
            sent: *s,
            got: *g,
        });
    }
    Ok(DmaReport {
        bdf,
        group: vfio.group(),
        iova: TEST_IOVA,
        bytes: TEST_LEN,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::Fixture;

    #[test]
    fn the_pattern_has_no_zeros_and_no_repeats_in_a_row() {
        let p = pattern(TEST_LEN);
        assert!(p.iter().all(|b| *b != 0));
        assert!(p.windows(2).all(|w| w[0] != w[1]));
    }

    #[test]
    fn only_edu_devices_are_tested() {
        let fx = Fixture::new();
        fx.device("0000:00:03.0", 0x1af4, 0x1005, 0x00ff00)
            .driver("vfio-pci")
            .group(4);
        let e = dma_selftest(&fx.host(), "00:03.0".parse().unwrap()).unwrap_err();
        assert!(e.to_string().contains("not QEMU's edu device"), "{e}");
    }
}
