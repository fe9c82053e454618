//! A minimal virtio-net driver that speaks vhost-user to a net backend with
//! no VM: guest memory is a memfd shared with the backend, rings are laid
//! out with `pvio-frontend-protocol`, and frames go in and out as a guest's
//! driver would send them. The socket-level tests and the benchmark use it;
//! it is not a VMM.
//!
//! The handshake is QEMU's order: owner, features, protocol features, queue
//! count, config, memory table, then each ring's size, addresses, base,
//! call and kick eventfds, and enable.

mod vq;

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::Path;
use std::time::{Duration, Instant};

use pvio_frontend_protocol::features::{VHOST_USER_F_PROTOCOL_FEATURES, VIRTIO_F_EVENT_IDX};
pub use pvio_frontend_protocol::net::NetHdr;
use pvio_frontend_protocol::net::{
    net_hdr_len, NetConfig, NetCtrlHdr, NET_CONFIG_SIZE, NET_HDR_LEN,
};
use pvio_frontend_protocol::zerocopy::{FromBytes, IntoBytes};
use vhost::vhost_user::message::{VhostUserConfigFlags, VhostUserProtocolFeatures};
use vhost::vhost_user::{Frontend, VhostUserFrontend};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use vm_memory::{FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestRegionMmap};

pub use vq::{Buf, DriverQueue};

/// Errors of the test driver.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// A vhost-user request failed.
    #[error("vhost-user {0}")]
    Vhost(String),
    /// Guest memory could not be made or accessed.
    #[error("guest memory: {0}")]
    Memory(String),
    /// A system call failed.
    #[error("system call")]
    Io(#[source] io::Error),
    /// The backend said something unexpected.
    #[error("protocol: {0}")]
    Protocol(String),
    /// Nothing came in time.
    #[error("timed out")]
    Timeout,
}

impl From<vm_memory::GuestMemoryError> for DriverError {
    fn from(e: vm_memory::GuestMemoryError) -> Self {
        Self::Memory(e.to_string())
    }
}

fn vhost<T>(what: &str, r: Result<T, vhost::Error>) -> Result<T, DriverError> {
    r.map_err(|e| DriverError::Vhost(format!("{what}: {e}")))
}

/// How to set the device up.
#[derive(Debug, Clone)]
pub struct DriverOptions {
    /// Queue pairs to use.
    pub queue_pairs: u16,
    /// Entries per queue.
    pub queue_size: u16,
    /// Bytes per receive buffer (one descriptor each).
    pub rx_buf_len: u32,
    /// Bytes per transmit buffer slot.
    pub tx_buf_len: u32,
    /// Features wanted (kept where the device offers them).
    pub features: u64,
}

impl Default for DriverOptions {
    fn default() -> Self {
        Self {
            queue_pairs: 1,
            queue_size: 256,
            rx_buf_len: 2048,
            tx_buf_len: 2048,
            features: u64::MAX,
        }
    }
}

/// A frame the device delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// Its header.
    pub hdr: NetHdr,
    /// The frame.
    pub frame: Vec<u8>,
    /// Receive buffers it took.
    pub buffers: usize,
}

/// A driver connected to a backend.
pub struct NetDriver {
    fe: Frontend,
    mem: GuestMemoryMmap,
    queues: Vec<DriverQueue>,
    acked: u64,
    hdr_len: usize,
    config: NetConfig,
    pairs: u16,
}

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
        let want = VhostUserProtocolFeatures::CONFIG | VhostUserProtocolFeatures::MQ;
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
        })
    }

    /// The negotiated features.
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// The config space the device gave.
    pub fn config(&self) -> NetConfig {
        self.config
    }

    /// The virtio-net header length in use.
    pub fn hdr_len(&self) -> usize {
        self.hdr_len
    }

    /// Guest memory (to plant malformed chains in tests).
    pub fn memory(&self) -> &GuestMemoryMmap {
        &self.mem
    }

    /// The queue `i` (`2p` receive, `2p + 1` transmit, last the control).
    pub fn queue(&mut self, i: usize) -> Result<&mut DriverQueue, DriverError> {
        self.queues
            .get_mut(i)
            .ok_or_else(|| DriverError::Protocol(format!("no queue {i}")))
    }

    /// Adds a chain to queue `q` without notifying.
    pub fn add_chain(&mut self, q: usize, bufs: &[Buf]) -> Result<Option<u16>, DriverError> {
        let mem = &self.mem;
        let queue = self
            .queues
            .get_mut(q)
            .ok_or_else(|| DriverError::Protocol(format!("no queue {q}")))?;
        queue.add(mem, bufs)
    }

    /// Notifies the device about queue `q`.
    pub fn kick(&self, q: usize) -> Result<(), DriverError> {
        self.queues
            .get(q)
            .ok_or_else(|| DriverError::Protocol(format!("no queue {q}")))?
            .notify()
    }

    /// Posts up to `n` receive buffers on pair `pair` and notifies; returns
    /// how many.
    pub fn post_rx(&mut self, pair: usize, n: usize) -> Result<usize, DriverError> {
        let q = 2 * pair;
        let len = self.queue(q)?.slot_len;
        let mut posted = 0;
        while posted < n {
            if self
                .add_chain(q, &[Buf::Slot { len, write: true }])?
                .is_none()
            {
                break;
            }
            posted += 1;
        }
        if posted > 0 {
            self.kick(q)?;
        }
        Ok(posted)
    }

    /// Fills the receive queue of `pair`.
    pub fn fill_rx(&mut self, pair: usize) -> Result<usize, DriverError> {
        self.post_rx(pair, usize::MAX)
    }

    /// Queues one frame on pair `pair` behind `hdr` (without notifying); in
    /// two descriptors (header, frame) when `split`. Returns false when the
    /// ring is full (reclaim first).
    pub fn queue_frame(
        &mut self,
        pair: usize,
        hdr: &NetHdr,
        frame: &[u8],
        split: bool,
    ) -> Result<bool, DriverError> {
        let q = 2 * pair + 1;
        let hdr_bytes = &hdr.as_bytes()[..self.hdr_len];
        let mem = &self.mem;
        let queue = self
            .queues
            .get_mut(q)
            .ok_or_else(|| DriverError::Protocol(format!("no queue {q}")))?;
        let to_u32 =
            |n: usize| u32::try_from(n).map_err(|_| DriverError::Protocol("frame too long".into()));
        if split {
            if hdr_bytes.len() > usize::try_from(queue.slot_len).unwrap_or(0)
                || frame.len() > usize::try_from(queue.slot_len).unwrap_or(0)
            {
                return Err(DriverError::Protocol("frame larger than a slot".into()));
            }
            let bufs = [
                Buf::Slot {
                    len: to_u32(hdr_bytes.len())?,
                    write: false,
                },
                Buf::Slot {
                    len: to_u32(frame.len())?,
                    write: false,
                },
            ];
            let Some(head) = queue.add(mem, &bufs)? else {
                return Ok(false);
            };
            // The chain is published already; write the data before the
            // device is notified.
            let ids = chain_ids(queue, mem, head)?;
            queue.write_slot(mem, ids[0], hdr_bytes)?;
            queue.write_slot(mem, ids[1], frame)?;
        } else {
            let total = hdr_bytes.len() + frame.len();
            if total > usize::try_from(queue.slot_len).unwrap_or(0) {
                return Err(DriverError::Protocol("frame larger than a slot".into()));
            }
            let Some(head) = queue.add(
                mem,
                &[Buf::Slot {
                    len: to_u32(total)?,
                    write: false,
                }],
            )?
            else {
                return Ok(false);
            };
            let mut buf = Vec::with_capacity(total);
            buf.extend_from_slice(hdr_bytes);
            buf.extend_from_slice(frame);
            queue.write_slot(mem, head, &buf)?;
        }
        Ok(true)
    }

    /// Sends one frame on pair `pair` and notifies.
    pub fn send(&mut self, pair: usize, hdr: &NetHdr, frame: &[u8]) -> Result<(), DriverError> {
        self.reclaim_tx(pair)?;
        if !self.queue_frame(pair, hdr, frame, false)? {
            return Err(DriverError::Protocol("transmit ring full".into()));
        }
        self.kick(2 * pair + 1)
    }

    /// Frees the transmit chains the device used; returns how many.
    pub fn reclaim_tx(&mut self, pair: usize) -> Result<usize, DriverError> {
        let mem = &self.mem;
        let q = self
            .queues
            .get_mut(2 * pair + 1)
            .ok_or_else(|| DriverError::Protocol("no queue".into()))?;
        let mut n = 0;
        while let Some(e) = q.pop_used(mem)? {
            let head =
                u16::try_from(e.id()).map_err(|_| DriverError::Protocol("used id".into()))?;
            q.free_chain(mem, head)?;
            n += 1;
        }
        Ok(n)
    }

    /// Waits until the transmit ring of `pair` is empty again.
    pub fn wait_tx_done(&mut self, pair: usize, timeout: Duration) -> Result<(), DriverError> {
        let end = Instant::now() + timeout;
        loop {
            self.reclaim_tx(pair)?;
            let q = self.queue(2 * pair + 1)?;
            if q.free_count() == usize::from(q.size) {
                return Ok(());
            }
            if Instant::now() >= end {
                return Err(DriverError::Timeout);
            }
            self.wait_call(2 * pair + 1, Duration::from_millis(10))?;
        }
    }

    /// Notifies the device about queue `q` if it asked to be, for what was
    /// published since available index `old`.
    pub fn kick_if_needed(&self, q: usize, old: u16) -> Result<(), DriverError> {
        let queue = self
            .queues
            .get(q)
            .ok_or_else(|| DriverError::Protocol(format!("no queue {q}")))?;
        if queue.needs_kick(&self.mem, old, self.acked & VIRTIO_F_EVENT_IDX != 0)? {
            queue.notify()?;
        }
        Ok(())
    }

    /// Takes every buffer the device filled on `pair` and posts it again,
    /// without reading the data (for the benchmark: with frames smaller
    /// than a buffer, one buffer is one frame). Returns how many.
    pub fn drain_rx(&mut self, pair: usize) -> Result<usize, DriverError> {
        let qi = 2 * pair;
        let mem = &self.mem;
        let q = self
            .queues
            .get_mut(qi)
            .ok_or_else(|| DriverError::Protocol("no queue".into()))?;
        let old = q.avail_idx();
        let len = q.slot_len;
        let mut n = 0;
        while let Some(e) = q.pop_used(mem)? {
            let d = u16::try_from(e.id()).map_err(|_| DriverError::Protocol("used id".into()))?;
            q.free_chain(mem, d)?;
            q.add(mem, &[Buf::Slot { len, write: true }])?;
            n += 1;
        }
        if n > 0 {
            self.kick_if_needed(qi, old)?;
        }
        Ok(n)
    }

    /// Queues as many copies of `frame` on pair `pair` as the ring takes,
    /// notifies if needed, and reclaims what the device finished. Returns
    /// the frames the device completed (for the benchmark).
    pub fn pump_tx(&mut self, pair: usize, frame: &[u8]) -> Result<usize, DriverError> {
        let qi = 2 * pair + 1;
        let done = self.reclaim_tx(pair)?;
        let old = self.queue(qi)?.avail_idx();
        let hdr = NetHdr::default();
        while self.queue_frame(pair, &hdr, frame, false)? {}
        if self.queue(qi)?.avail_idx() != old {
            self.kick_if_needed(qi, old)?;
        }
        Ok(done)
    }

    /// Takes the next delivered frame of `pair`, if any, and re-posts its
    /// buffers.
    pub fn try_recv(&mut self, pair: usize) -> Result<Option<Received>, DriverError> {
        let qi = 2 * pair;
        let hdr_len = self.hdr_len;
        let mem = &self.mem;
        let q = self
            .queues
            .get_mut(qi)
            .ok_or_else(|| DriverError::Protocol("no queue".into()))?;
        let Some(first) = q.pop_used(mem)? else {
            return Ok(None);
        };
        let mut parts = vec![first];
        let mut raw = [0u8; NET_HDR_LEN];
        let head =
            u16::try_from(first.id()).map_err(|_| DriverError::Protocol("used id".into()))?;
        q.read_slot(mem, head, &mut raw[..hdr_len])?;
        let hdr =
            NetHdr::read_from_bytes(&raw).map_err(|_| DriverError::Protocol("header".into()))?;
        let n = usize::from(hdr.num_buffers()).max(1);
        let deadline = Instant::now() + Duration::from_secs(5);
        while parts.len() < n {
            match q.pop_used(mem)? {
                Some(e) => parts.push(e),
                None if Instant::now() < deadline => std::thread::yield_now(),
                None => {
                    return Err(DriverError::Protocol(format!(
                        "{n} buffers announced, {} used",
                        parts.len()
                    )))
                }
            }
        }
        let mut frame = Vec::new();
        for (i, e) in parts.iter().enumerate() {
            let d = u16::try_from(e.id()).map_err(|_| DriverError::Protocol("used id".into()))?;
            let len = usize::try_from(e.len()).unwrap_or(0);
            let mut data = vec![0u8; len];
            q.read_slot(mem, d, &mut data)?;
            let skip = if i == 0 { hdr_len.min(len) } else { 0 };
            frame.extend_from_slice(&data[skip..]);
            q.free_chain(mem, d)?;
        }
        let len = q.slot_len;
        for _ in &parts {
            q.add(mem, &[Buf::Slot { len, write: true }])?;
        }
        q.notify()?;
        Ok(Some(Received {
            hdr,
            frame,
            buffers: n,
        }))
    }

    /// Waits up to `timeout` for the next frame of `pair`.
    pub fn recv(&mut self, pair: usize, timeout: Duration) -> Result<Received, DriverError> {
        let end = Instant::now() + timeout;
        loop {
            if self.acked & VIRTIO_F_EVENT_IDX != 0 {
                let mem = &self.mem;
                self.queues
                    .get(2 * pair)
                    .ok_or_else(|| DriverError::Protocol("no queue".into()))?
                    .arm_used_event(mem)?;
            }
            if let Some(r) = self.try_recv(pair)? {
                return Ok(r);
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(DriverError::Timeout);
            }
            self.wait_call(2 * pair, left.min(Duration::from_millis(50)))?;
        }
    }

    /// Waits up to `timeout` until queue `q` has used elements, sleeping on
    /// its call eventfd (with EVENT_IDX, after asking for an interrupt at
    /// the next one) instead of spinning.
    pub fn wait_used(&self, q: usize, timeout: Duration) -> Result<(), DriverError> {
        let queue = self
            .queues
            .get(q)
            .ok_or_else(|| DriverError::Protocol(format!("no queue {q}")))?;
        if self.acked & VIRTIO_F_EVENT_IDX != 0 {
            queue.arm_used_event(&self.mem)?;
        }
        if !queue.has_used(&self.mem)? {
            self.wait_call(q, timeout)?;
        }
        Ok(())
    }

    /// Waits up to `timeout` for queue `q`'s call eventfd.
    pub fn wait_call(&self, q: usize, timeout: Duration) -> Result<bool, DriverError> {
        let call = &self
            .queues
            .get(q)
            .ok_or_else(|| DriverError::Protocol("no queue".into()))?
            .call;
        let mut pfd = libc::pollfd {
            fd: call.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: `pfd` is one live pollfd for the call.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n > 0 {
            let _ = call.read();
        }
        Ok(n > 0)
    }

    /// Sends a control command and waits for its ack byte.
    pub fn ctrl(&mut self, class: u8, cmd: u8, data: &[u8]) -> Result<u8, DriverError> {
        let qi = 2 * usize::from(self.pairs);
        let mem = &self.mem;
        let q = self
            .queues
            .get_mut(qi)
            .ok_or_else(|| DriverError::Protocol("no control queue".into()))?;
        let mut cmd_bytes = NetCtrlHdr::new(class, cmd).as_bytes().to_vec();
        cmd_bytes.extend_from_slice(data);
        let len = u32::try_from(cmd_bytes.len())
            .map_err(|_| DriverError::Protocol("command too long".into()))?;
        let Some(head) = q.add(
            mem,
            &[
                Buf::Slot { len, write: false },
                Buf::Slot {
                    len: 1,
                    write: true,
                },
            ],
        )?
        else {
            return Err(DriverError::Protocol("control ring full".into()));
        };
        let ids = chain_ids(q, mem, head)?;
        q.write_slot(mem, ids[0], &cmd_bytes)?;
        q.write_slot(mem, ids[1], &[0xee])?;
        q.notify()?;
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            let mem = &self.mem;
            let q = self
                .queues
                .get_mut(qi)
                .ok_or_else(|| DriverError::Protocol("no control queue".into()))?;
            if let Some(e) = q.pop_used(mem)? {
                let d =
                    u16::try_from(e.id()).map_err(|_| DriverError::Protocol("used id".into()))?;
                let ids = q.free_chain(mem, d)?;
                let mut ack = [0u8];
                if let Some(&w) = ids.get(1) {
                    q.read_slot(mem, w, &mut ack)?;
                }
                return Ok(ack[0]);
            }
            if Instant::now() >= end {
                return Err(DriverError::Timeout);
            }
            self.wait_call(qi, Duration::from_millis(20))?;
        }
    }

    /// Sends `VHOST_USER_GET_VRING_BASE` for every queue (stops the rings),
    /// as a frontend does before it goes away.
    pub fn stop(&mut self) -> Result<(), DriverError> {
        for i in 0..self.queues.len() {
            vhost("GET_VRING_BASE", self.fe.get_vring_base(i))?;
        }
        Ok(())
    }
}

/// The descriptor indexes of the (just added) chain at `head`.
fn chain_ids(
    q: &mut DriverQueue,
    mem: &GuestMemoryMmap,
    head: u16,
) -> Result<Vec<u16>, DriverError> {
    // Walk it without freeing: read the `next` links.
    let mut ids = vec![head];
    let mut d = head;
    for _ in 0..q.size {
        let mut raw = [0u8; 16];
        vm_memory::Bytes::read_slice(mem, &mut raw, q.desc.unchecked_add(u64::from(d) * 16))?;
        let desc = pvio_frontend_protocol::ring::VirtqDesc::read_from_bytes(&raw)
            .map_err(|_| DriverError::Protocol("descriptor".into()))?;
        if !desc.has_next() {
            break;
        }
        d = desc.next();
        ids.push(d);
    }
    Ok(ids)
}

use vm_memory::Address;

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
