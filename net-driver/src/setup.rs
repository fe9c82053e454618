//! The vhost-user handshake in QEMU's order, and the memfd that holds the
//! driver's guest memory.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use pvio_frontend_protocol::features::VHOST_USER_F_PROTOCOL_FEATURES;
use pvio_frontend_protocol::net::{net_hdr_len, NetConfig, NET_CONFIG_SIZE};
use pvio_frontend_protocol::zerocopy::FromBytes;
use vhost::vhost_user::message::{VhostUserConfigFlags, VhostUserProtocolFeatures};
use vhost::vhost_user::{Frontend, VhostUserFrontend};
use vhost::{VhostBackend, VhostUserDirtyLogRegion, VhostUserMemoryRegionInfo, VringConfigData};
use vm_memory::{FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestRegionMmap};

use crate::{vhost, DriverError, DriverOptions, DriverQueue, NetDriver};

/// The control queue's slot size.
const CTRL_SLOT: u32 = 64;

impl NetDriver {
    /// Connects to the backend at `socket` and sets up `opts.queue_pairs`
    /// pairs and the control queue.
    pub fn connect(socket: &Path, opts: &DriverOptions) -> Result<Self, DriverError> {
        let pairs = opts.queue_pairs.max(1);
        let nq = 2 * usize::from(pairs) + 1;
        let mut fe = vhost(
            "connect",
            Frontend::connect(socket, u64::try_from(nq).unwrap_or(3)),
        )?;
        vhost("SET_OWNER", fe.set_owner())?;
        let offered = vhost("GET_FEATURES", fe.get_features())?;
        let acked = offered & (opts.features | VHOST_USER_F_PROTOCOL_FEATURES);
        if offered & VHOST_USER_F_PROTOCOL_FEATURES == 0 {
            return Err(DriverError::Protocol("no protocol features".into()));
        }
        let pf = vhost("GET_PROTOCOL_FEATURES", fe.get_protocol_features())?;
        let want = VhostUserProtocolFeatures::CONFIG
            | VhostUserProtocolFeatures::MQ
            | VhostUserProtocolFeatures::LOG_SHMFD;
        vhost("SET_PROTOCOL_FEATURES", fe.set_protocol_features(pf & want))?;
        let qn = vhost("GET_QUEUE_NUM", fe.get_queue_num())?;
        if qn < u64::try_from(nq).unwrap_or(u64::MAX) {
            return Err(DriverError::Protocol(format!(
                "backend has {qn} queues, {nq} wanted"
            )));
        }
        let size = u32::try_from(NET_CONFIG_SIZE).unwrap_or(24);
        let (_, cfg) = vhost(
            "GET_CONFIG",
            fe.get_config(
                0,
                size,
                VhostUserConfigFlags::WRITABLE,
                &[0u8; NET_CONFIG_SIZE],
            ),
        )?;
        let config = NetConfig::read_from_bytes(&cfg)
            .map_err(|_| DriverError::Protocol(format!("config of {} bytes", cfg.len())))?;
        vhost("SET_FEATURES", fe.set_features(acked))?;

        // Lay out every queue, then make the memory that holds them.
        let mut queues = Vec::with_capacity(nq);
        let mut next = 0x1000u64;
        for i in 0..nq {
            let slot = if i + 1 == nq {
                CTRL_SLOT
            } else if i % 2 == 0 {
                opts.rx_buf_len
            } else {
                opts.tx_buf_len
            };
            let (q, end) = DriverQueue::new(next, opts.queue_size, slot)?;
            queues.push(q);
            next = end;
        }
        let mem =
            memfd_memory(usize::try_from(next).map_err(|_| DriverError::Memory("size".into()))?)?;
        let region = mem
            .iter()
            .next()
            .ok_or_else(|| DriverError::Memory("no region".into()))?;
        let info = vhost(
            "region",
            VhostUserMemoryRegionInfo::from_guest_region(region),
        )?;
        let va_base = info.userspace_addr;
        vhost("SET_MEM_TABLE", fe.set_mem_table(&[info]))?;
        for (i, q) in queues.iter().enumerate() {
            vhost("SET_VRING_NUM", fe.set_vring_num(i, q.size))?;
            let cfg = VringConfigData {
                queue_max_size: q.size,
                queue_size: q.size,
                flags: 0,
                desc_table_addr: va_base + q.desc.0,
                used_ring_addr: va_base + q.used.0,
                avail_ring_addr: va_base + q.avail.0,
                log_addr: None,
            };
            vhost("SET_VRING_ADDR", fe.set_vring_addr(i, &cfg))?;
            vhost("SET_VRING_BASE", fe.set_vring_base(i, 0))?;
            vhost("SET_VRING_CALL", fe.set_vring_call(i, &q.call))?;
            vhost("SET_VRING_KICK", fe.set_vring_kick(i, &q.kick))?;
        }
        for i in 0..nq {
            vhost("SET_VRING_ENABLE", fe.set_vring_enable(i, true))?;
        }
        Ok(Self {
            fe,
            mem,
            queues,
            acked,
            hdr_len: net_hdr_len(acked),
            config,
            pairs,
            empty_rx: 0,
        })
    }
}

impl NetDriver {
    /// Shares a dirty log of `size` bytes at the start of `log` with the
    /// backend (`SET_LOG_BASE`, as a migrating VMM does).
    pub fn set_dirty_log(&self, log: &OwnedFd, size: u64) -> Result<(), DriverError> {
        let region = VhostUserDirtyLogRegion {
            mmap_size: size,
            mmap_offset: 0,
            mmap_handle: log.as_raw_fd(),
        };
        vhost("SET_LOG_BASE", self.fe.set_log_base(0, Some(region)))
    }

    /// Acks `features` again (turning `VHOST_F_LOG_ALL` on or off), and
    /// waits until the backend has seen them.
    pub fn set_features(&mut self, features: u64) -> Result<(), DriverError> {
        vhost("SET_FEATURES", self.fe.set_features(features))?;
        // SET_FEATURES has no reply: a round trip orders what follows.
        vhost("GET_FEATURES", self.fe.get_features())?;
        self.acked = features;
        Ok(())
    }
}

/// Guest memory of `size` bytes at address 0, backed by a memfd the backend
/// can map.
fn memfd_memory(size: usize) -> Result<GuestMemoryMmap, DriverError> {
    // SAFETY: the name is a NUL-terminated literal; memfd_create takes no
    // other pointer.
    let fd = unsafe { libc::memfd_create(c"pvio-test-guest".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(DriverError::Io(io::Error::last_os_error()));
    }
    // SAFETY: memfd_create just returned this descriptor; nothing else owns it.
    let file = unsafe { File::from_raw_fd(fd) };
    file.set_len(u64::try_from(size).unwrap_or(u64::MAX))
        .map_err(DriverError::Io)?;
    let region = GuestRegionMmap::from_range(GuestAddress(0), size, Some(FileOffset::new(file, 0)))
        .map_err(|e| DriverError::Memory(e.to_string()))?;
    GuestMemoryMmap::from_regions(vec![region]).map_err(|e| DriverError::Memory(e.to_string()))
}
