//! The control queue (virtio 1.2 §5.1.6.5): the guest tells how many queue
//! pairs it uses (`VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET`), and pvio attaches the
//! matching tap queues and detaches the others so the kernel steers frames
//! only to pairs the guest reads. Every other class is answered
//! `VIRTIO_NET_ERR`: pvio offers none of their features.
//!
//! With QEMU and Cloud Hypervisor the frontend keeps the control queue for
//! itself; a frontend that passes it on (and the socket test) lands here.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use pvio_frontend_protocol::net::{
    NetCtrlHdr, NetCtrlMq, VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, VIRTIO_NET_ERR,
    VIRTIO_NET_F_MQ, VIRTIO_NET_OK,
};
use pvio_frontend_protocol::zerocopy::FromBytes;
use vhost_user_backend::VringT;
use virtio_queue::{DescriptorChain, QueueT};
use vm_memory::{GuestAddressSpace, GuestMemory, GuestMemoryBackend, GuestMemoryMmap};

use super::chain::{self, ChainError, Seg};
use super::stats::{guest_warn, PairStats, RateLimit};
use super::tap::Tap;
use super::worker::PairShared;
use crate::vhost_user::{Vring, GM};

/// The longest control command pvio reads (header and data).
const MAX_COMMAND: usize = 4096;

/// The control queue's state (used by the thread of queue pair 0).
pub struct Ctrl {
    mem: Option<GM>,
    acked: u64,
    tap: Arc<Tap>,
    pairs: Vec<Arc<PairShared>>,
    log: RateLimit,
}

impl Ctrl {
    /// The control queue of a device with `pairs` on `tap`.
    pub fn new(tap: Arc<Tap>, pairs: Vec<Arc<PairShared>>) -> Self {
        Self {
            mem: None,
            acked: 0,
            tap,
            pairs,
            log: RateLimit::default(),
        }
    }

    /// The guest memory changed.
    pub fn set_memory(&mut self, mem: GM) {
        self.mem = Some(mem);
    }

    /// The guest acknowledged features.
    pub fn set_acked(&mut self, acked: u64) {
        self.acked = acked;
    }

    /// Answers the commands queued on `vring`.
    pub fn process(&mut self, vring: &Vring) {
        let Some(gm) = self.mem.clone() else {
            return;
        };
        let mem = gm.memory();
        let mut state = vring.get_mut();
        let q = state.get_queue_mut();
        let mut done = 0;
        while let Some(desc_chain) = q.pop_descriptor_chain(&*mem) {
            let head = desc_chain.head_index();
            let len = self.command(desc_chain, &mem);
            if q.add_used(&*mem, head, len).is_ok() {
                done += 1;
            }
        }
        if done > 0 && q.needs_notification(&*mem).unwrap_or(true) {
            let _ = state.signal_used_queue();
        }
    }

    /// Runs one command; returns the bytes written (the ack, or 0 for a
    /// chain with nowhere to put it).
    fn command<M>(&mut self, desc_chain: DescriptorChain<M>, mem: &GuestMemoryMmap) -> u32
    where
        M: std::ops::Deref,
        M::Target: GuestMemory,
    {
        let (readable, writable) = match split(desc_chain, mem) {
            Ok(parts) => parts,
            Err(e) => {
                self.bad(&format!("bad control chain: {e}"));
                return 0;
            }
        };
        let mut raw = [0u8; 4];
        let hdr = chain::read_at(mem, &readable, 0, &mut raw[..2])
            .ok()
            .and_then(|()| NetCtrlHdr::read_from_bytes(&raw[..2]).ok());
        let ack = match hdr {
            Some(h)
                if h.class == VIRTIO_NET_CTRL_MQ && h.cmd == VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET =>
            {
                let mq = chain::read_at(mem, &readable, 2, &mut raw[2..4])
                    .ok()
                    .and_then(|()| NetCtrlMq::read_from_bytes(&raw[2..4]).ok());
                match mq {
                    Some(mq) => self.set_pairs(mq),
                    None => VIRTIO_NET_ERR,
                }
            }
            Some(h) => {
                tracing::debug!(
                    "control command class {} cmd {} not supported",
                    h.class,
                    h.cmd
                );
                VIRTIO_NET_ERR
            }
            None => VIRTIO_NET_ERR,
        };
        match chain::write_at(mem, &writable, 0, &[ack]) {
            Ok(()) => 1,
            Err(e) => {
                self.bad(&format!("control chain has no room for the ack: {e}"));
                0
            }
        }
    }

    /// `VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET`.
    fn set_pairs(&mut self, mq: NetCtrlMq) -> u8 {
        let max = u16::try_from(self.pairs.len()).unwrap_or(u16::MAX);
        if self.acked & VIRTIO_NET_F_MQ == 0 || !mq.is_valid_for(max) {
            self.bad(&format!(
                "VQ_PAIRS_SET {} refused (max {max})",
                mq.virtqueue_pairs()
            ));
            return VIRTIO_NET_ERR;
        }
        let n = usize::from(mq.virtqueue_pairs());
        if self.tap.queues().len() > 1 {
            for (i, shared) in self.pairs.iter().enumerate() {
                shared.in_use.store(i < n, Ordering::Release);
                shared.set_attached(&self.tap, i, i < n);
            }
        }
        tracing::info!("guest uses {n} queue pair(s)");
        VIRTIO_NET_OK
    }

    fn bad(&mut self, what: &str) {
        if let Some(p) = self.pairs.first() {
            PairStats::inc(&p.stats.bad_chains);
        }
        guest_warn!(self.log, "control queue: {what}");
    }
}

/// A control chain: its device-readable part (command) then its
/// device-writable part (ack).
fn split<M>(
    desc_chain: DescriptorChain<M>,
    mem: &GuestMemoryMmap,
) -> Result<(Vec<Seg>, Vec<Seg>), ChainError>
where
    M: std::ops::Deref,
    M::Target: GuestMemory,
{
    let mut readable = Vec::new();
    let mut writable = Vec::new();
    let mut total = 0usize;
    for desc in desc_chain {
        let len = usize::try_from(desc.len()).map_err(|_| ChainError::TooLong(MAX_COMMAND))?;
        if len == 0 {
            continue;
        }
        if !GuestMemoryBackend::check_range(mem, desc.addr(), len) {
            return Err(ChainError::OutsideMemory);
        }
        total = total.saturating_add(len);
        if total > MAX_COMMAND {
            return Err(ChainError::TooLong(MAX_COMMAND));
        }
        let seg = Seg {
            addr: desc.addr(),
            len,
        };
        if desc.is_write_only() {
            writable.push(seg);
        } else if writable.is_empty() {
            readable.push(seg);
        } else {
            return Err(ChainError::WrongDirection);
        }
    }
    if readable.is_empty() || writable.is_empty() {
        return Err(ChainError::Empty);
    }
    Ok((readable, writable))
}
