//! Opening a device through VFIO (`vfio-ioctls`): the container, the group
//! (which the kernel reports VIABLE only when every device of the group is
//! bound to vfio-pci or to no driver), the device; and DMA through the
//! IOMMU: a buffer mapped with `VFIO_IOMMU_MAP_DMA` at an I/O virtual
//! address of our choosing.
//!
//! The device may write the mapped buffer at any time, so the buffer is
//! never behind a Rust reference: it is read and written with volatile
//! accesses through a raw pointer only.

use std::io;
use std::ptr::NonNull;
use std::sync::Arc;

use vfio_ioctls::{VfioContainer, VfioDevice, VfioError as IoctlError, VfioOps};

use crate::bdf::Bdf;
use crate::host::Host;
use crate::sysfs::{Sysfs, SysfsError};

/// Opening a device through VFIO or mapping DMA failed.
#[derive(Debug, thiserror::Error)]
pub enum VfioError {
    /// Sysfs could not be read.
    #[error(transparent)]
    Sysfs(#[from] SysfsError),
    /// The device is not on vfio-pci.
    #[error("{bdf} is bound to {}, not vfio-pci: `pvio pci-assignable-add {bdf}` first", driver.as_deref().unwrap_or("no driver"))]
    NotOnVfio {
        /// The device.
        bdf: Bdf,
        /// Its driver.
        driver: Option<String>,
    },
    /// The device has no IOMMU group.
    #[error("{0} has no IOMMU group: is the IOMMU on?")]
    NoGroup(Bdf),
    /// `/dev/vfio/vfio` could not be opened or is unusable.
    #[error("cannot open the VFIO container /dev/vfio/vfio (is vfio-pci loaded?)")]
    Container(#[source] IoctlError),
    /// The kernel says the group is not viable.
    #[error("IOMMU group {group} of {bdf} is not viable: every device of the group must be bound to vfio-pci or to no driver")]
    NotViable {
        /// The device.
        bdf: Bdf,
        /// Its group.
        group: u32,
    },
    /// Opening the group or the device failed otherwise.
    #[error("cannot open {bdf} through /dev/vfio/{group}")]
    Open {
        /// The device.
        bdf: Bdf,
        /// Its group.
        group: u32,
        /// What the ioctl said.
        #[source]
        source: IoctlError,
    },
    /// The DMA buffer could not be allocated.
    #[error("cannot allocate a {len}-byte DMA buffer")]
    Alloc {
        /// The size asked for.
        len: usize,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// `VFIO_IOMMU_MAP_DMA` failed.
    #[error("cannot map {len} bytes for DMA at I/O address {iova:#x}")]
    Map {
        /// The I/O virtual address.
        iova: u64,
        /// The length.
        len: usize,
        /// What the ioctl said.
        #[source]
        source: IoctlError,
    },
    /// An access outside the buffer.
    #[error("{len} bytes at offset {offset} do not fit a {size}-byte DMA buffer")]
    OutOfBounds {
        /// Where.
        offset: usize,
        /// How many bytes.
        len: usize,
        /// The buffer's size.
        size: usize,
    },
}

type Result<T> = std::result::Result<T, VfioError>;

/// A device opened through VFIO: its container (with the IOMMU set up) and
/// the device itself.
pub struct VfioHandle {
    container: Arc<VfioContainer>,
    device: VfioDevice,
    bdf: Bdf,
    group: u32,
}

impl std::fmt::Debug for VfioHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VfioHandle")
            .field("bdf", &self.bdf)
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl VfioHandle {
    /// Opens `bdf`, which must be bound to vfio-pci, through its group.
    /// Success means the kernel found the group VIABLE.
    pub fn open(host: &Host, bdf: Bdf) -> Result<Self> {
        let driver = host.sys.driver(bdf)?;
        if driver.as_deref() != Some(Sysfs::VFIO_PCI) {
            return Err(VfioError::NotOnVfio { bdf, driver });
        }
        let group = host.sys.iommu_group(bdf)?.ok_or(VfioError::NoGroup(bdf))?;
        let container = Arc::new(VfioContainer::new(None).map_err(VfioError::Container)?);
        let ops: Arc<dyn VfioOps> = container.clone();
        let device =
            VfioDevice::new(&host.sys.device_dir(bdf), ops, false).map_err(|e| match e {
                IoctlError::GroupViable => VfioError::NotViable { bdf, group },
                source => VfioError::Open { bdf, group, source },
            })?;
        Ok(Self {
            container,
            device,
            bdf,
            group,
        })
    }

    /// The device.
    pub fn device(&self) -> &VfioDevice {
        &self.device
    }

    /// Its IOMMU group.
    pub fn group(&self) -> u32 {
        self.group
    }

    /// Its address.
    pub fn bdf(&self) -> Bdf {
        self.bdf
    }

    /// Maps `buf` for the device's DMA at `iova`; unmapped when the mapping
    /// is dropped, which the borrow makes happen before `buf` is freed.
    pub fn map<'a>(&'a self, buf: &'a DmaBuffer, iova: u64) -> Result<DmaMapping<'a>> {
        let err = |source| VfioError::Map {
            iova,
            len: buf.len,
            source,
        };
        // SAFETY: `buf` is an anonymous mapping of `buf.len` bytes owned by
        // the DmaBuffer, which is only ever accessed through volatile raw
        // pointer operations (never a Rust reference), and the returned
        // DmaMapping borrows it, so the range stays mapped until
        // `vfio_dma_unmap` runs in DmaMapping::drop.
        unsafe {
            self.container
                .vfio_dma_map(iova, buf.len, buf.ptr.as_ptr())
                .map_err(err)?;
        }
        Ok(DmaMapping {
            container: &self.container,
            iova,
            len: buf.len,
            _buf: buf,
        })
    }
}

/// A live DMA mapping; dropping it unmaps.
pub struct DmaMapping<'a> {
    container: &'a VfioContainer,
    iova: u64,
    len: usize,
    _buf: &'a DmaBuffer,
}

impl DmaMapping<'_> {
    /// The I/O virtual address the device uses.
    pub fn iova(&self) -> u64 {
        self.iova
    }
}

impl Drop for DmaMapping<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.container.vfio_dma_unmap(self.iova, self.len) {
            tracing::warn!("cannot unmap DMA at {:#x}: {e}", self.iova);
        }
    }
}

/// Page-aligned anonymous memory that a device may read and write by DMA.
pub struct DmaBuffer {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the buffer is plain memory owned by this value; every access goes
// through volatile raw-pointer operations, so sharing it between threads
// gives no Rust-level data race beyond what DMA already implies.
unsafe impl Send for DmaBuffer {}
// SAFETY: as above; `&DmaBuffer` only allows volatile accesses.
unsafe impl Sync for DmaBuffer {}

impl std::fmt::Debug for DmaBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DmaBuffer").field("len", &self.len).finish()
    }
}

impl DmaBuffer {
    /// `len` bytes of zeroed memory (rounded up to pages by the kernel).
    pub fn new(len: usize) -> Result<Self> {
        // SAFETY: an anonymous private mapping with no address hint touches
        // no existing memory; the result is checked for MAP_FAILED.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(VfioError::Alloc {
                len,
                source: io::Error::last_os_error(),
            });
        }
        let ptr = NonNull::new(addr.cast::<u8>()).ok_or_else(|| VfioError::Alloc {
            len,
            source: io::Error::other("mmap returned null"),
        })?;
        Ok(Self { ptr, len })
    }

    /// The size in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn check(&self, offset: usize, len: usize) -> Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(VfioError::OutOfBounds {
                offset,
                len,
                size: self.len,
            }),
        }
    }

    /// Copies `data` into the buffer at `offset`, byte by byte, volatile.
    pub fn write_bytes(&self, offset: usize, data: &[u8]) -> Result<()> {
        self.check(offset, data.len())?;
        for (i, b) in data.iter().enumerate() {
            // SAFETY: offset + i < len was checked above, so the pointer is
            // inside the mapping; volatile because the device shares it.
            unsafe { self.ptr.as_ptr().add(offset + i).write_volatile(*b) };
        }
        Ok(())
    }

    /// Copies `len` bytes out of the buffer at `offset`, volatile.
    pub fn read_bytes(&self, offset: usize, len: usize) -> Result<Vec<u8>> {
        self.check(offset, len)?;
        Ok((0..len)
            // SAFETY: offset + i < len was checked above, so the pointer is
            // inside the mapping; volatile because the device shares it.
            .map(|i| unsafe { self.ptr.as_ptr().add(offset + i).read_volatile() })
            .collect())
    }
}

impl Drop for DmaBuffer {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly what mmap returned, and every
        // DmaMapping borrowing this buffer has been dropped (unmapped) first.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::Fixture;

    #[test]
    fn dma_buffer_reads_back_and_checks_bounds() {
        let buf = DmaBuffer::new(4096).unwrap();
        assert_eq!(buf.read_bytes(0, 4).unwrap(), [0, 0, 0, 0]);
        buf.write_bytes(100, b"pvio").unwrap();
        assert_eq!(buf.read_bytes(100, 4).unwrap(), b"pvio");
        assert!(matches!(
            buf.write_bytes(4094, b"abc"),
            Err(VfioError::OutOfBounds { .. })
        ));
        assert!(buf.read_bytes(usize::MAX, 2).is_err());
    }

    #[test]
    fn a_device_not_on_vfio_is_refused_before_any_ioctl() {
        let fx = Fixture::new();
        fx.device("0000:00:03.0", 0x1af4, 0x1005, 0x00ff00)
            .driver("virtio-pci")
            .group(4);
        let e = VfioHandle::open(&fx.host(), "00:03.0".parse().unwrap()).unwrap_err();
        assert!(
            e.to_string().contains("bound to virtio-pci, not vfio-pci"),
            "{e}"
        );
    }
}
