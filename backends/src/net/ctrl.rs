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

use crate::vhost_user::GuestMem;
use pvio_frontend_protocol::net::{
    NetCtrlHdr, NetCtrlMq, VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, VIRTIO_NET_ERR,
    VIRTIO_NET_F_MQ, VIRTIO_NET_OK,
};
use pvio_frontend_protocol::zerocopy::FromBytes;
use vhost_user_backend::VringT;
use virtio_queue::{DescriptorChain, QueueT};
use vm_memory::{GuestAddressSpace, GuestMemory, GuestMemoryBackend};

use super::chain::{self, ChainError, Seg};
use super::shared::PairShared;
use super::stats::{guest_warn, PairStats, RateLimit};
use super::tap::Tap;
use crate::vhost_user::{Vring, GM};

/// The longest control command pvio reads (header and data).
const MAX_COMMAND: usize = 4096;

/// Most commands answered per event: a guest flooding the control queue
/// must not keep queue pair 0's thread from its frames (the pair's wake
/// eventfd brings it back for the rest).
pub const CTRL_BUDGET: usize = 32;

/// The control queue's state (used by the thread of queue pair 0).
pub struct Ctrl {
    mem: Option<GM>,
    acked: u64,
    tap: Arc<Tap>,
    pairs: Vec<Arc<PairShared>>,
    log: RateLimit,
    /// Log lines about what the guest asked for, rate-limited too.
    info: RateLimit,
    /// The pair count last set, logged only when it changes.
    in_use: Option<usize>,
    /// Commands were left for the next wake-up.
    more: bool,
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
            info: RateLimit::default(),
            in_use: None,
            more: false,
        }
    }

    /// Whether commands were left after a budget ran out.
    pub fn has_more(&self) -> bool {
        self.more
    }

    /// The guest memory changed.
    pub fn set_memory(&mut self, mem: GM) {
        self.mem = Some(mem);
    }

    /// The guest acknowledged features.
    pub fn set_acked(&mut self, acked: u64) {
        self.acked = acked;
    }

    /// Answers up to [`CTRL_BUDGET`] commands queued on `vring`; if more
    /// are left, wakes queue pair 0's thread to come back for them.
    pub fn process(&mut self, vring: &Vring) {
        self.more = false;
        let Some(gm) = self.mem.clone() else {
            return;
        };
        let mem = gm.memory();
        let mut state = vring.get_mut();
        let q = state.get_queue_mut();
        let mut done = 0;
        let mut taken = 0;
        while let Some(desc_chain) = q.pop_descriptor_chain(&*mem) {
            let head = desc_chain.head_index();
            let len = self.command(desc_chain, &mem);
            if q.add_used(&*mem, head, len).is_ok() {
                done += 1;
            }
            taken += 1;
            if taken >= CTRL_BUDGET {
                self.more = true;
                if let Some(p) = self.pairs.first() {
                    p.wake();
                }
                break;
            }
        }
        if done > 0 && q.needs_notification(&*mem).unwrap_or(true) {
            let _ = state.signal_used_queue();
        }
    }

    /// Runs one command; returns the bytes written (the ack, or 0 for a
    /// chain with nowhere to put it).
    fn command<M>(&mut self, desc_chain: DescriptorChain<M>, mem: &GuestMem) -> u32
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
                if let Some(suppressed) = self.info.check(std::time::Instant::now()) {
                    tracing::debug!(
                        "control command class {} cmd {} not supported{}",
                        h.class,
                        h.cmd,
                        also(suppressed)
                    );
                }
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
        if self.in_use != Some(n) {
            self.in_use = Some(n);
            if let Some(suppressed) = self.info.check(std::time::Instant::now()) {
                tracing::info!("guest uses {n} queue pair(s){}", also(suppressed));
            }
        }
        VIRTIO_NET_OK
    }

    fn bad(&mut self, what: &str) {
        if let Some(p) = self.pairs.first() {
            PairStats::inc(&p.stats.bad_chains);
        }
        guest_warn!(self.log, "control queue: {what}");
    }
}

/// " (N more not logged)" after a rate-limited line, when N > 0.
fn also(suppressed: u64) -> String {
    if suppressed == 0 {
        String::new()
    } else {
        format!(" ({suppressed} more not logged)")
    }
}

/// A control chain: its device-readable part (command) then its
/// device-writable part (ack).
fn split<M>(
    desc_chain: DescriptorChain<M>,
    mem: &GuestMem,
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

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use crate::vhost_user::GuestMem;
    use pvio_frontend_protocol::net::{
        NetCtrlMq, VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, VIRTIO_NET_CTRL_RX,
        VIRTIO_NET_F_MQ, VIRTIO_NET_OK,
    };
    use pvio_frontend_protocol::zerocopy::IntoBytes;
    use pvio_net_driver::{Buf, DriverQueue};
    use vhost_user_backend::{VringRwLock, VringT};
    use vm_memory::{GuestAddress, GuestMemoryAtomic};

    use super::*;

    /// Moves the calling thread into a network namespace of its own, where
    /// it may create taps.
    fn own_network_namespace() {
        // SAFETY: unshare takes a flag and changes only this thread's
        // network namespace.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "unshare: {}", std::io::Error::last_os_error());
    }

    #[test]
    fn spec_5_1_6_5_commands_are_answered_a_budget_at_a_time() {
        std::thread::spawn(|| {
            own_network_namespace();
            let tap = Arc::new(Tap::open("pvioctl0", 2).unwrap());
            let pairs: Vec<_> = (0..2)
                .map(|_| Arc::new(PairShared::new().unwrap()))
                .collect();
            let (mut dq, end) = DriverQueue::new(0x1000, 256, 64).unwrap();
            let mem =
                GuestMem::from_ranges(&[(GuestAddress(0), usize::try_from(end).unwrap())]).unwrap();
            let gm = GuestMemoryAtomic::new(mem.clone());
            let vring = VringRwLock::new(gm.clone(), 256).unwrap();
            vring.set_queue_size(256);
            vring
                .set_queue_info(dq.desc.0, dq.avail.0, dq.used.0)
                .unwrap();
            vring.set_queue_ready(true);
            vring.set_enabled(true);
            let mut ctrl = Ctrl::new(Arc::clone(&tap), pairs.clone());
            ctrl.set_memory(gm);
            ctrl.set_acked(VIRTIO_NET_F_MQ);

            // 80 commands: pairs set to 1 and 2 in turn, and an unsupported
            // one now and then.
            let n: usize = 80;
            for i in 0..n {
                let mut cmd = if i % 10 == 9 {
                    NetCtrlHdr::new(VIRTIO_NET_CTRL_RX, 0).as_bytes().to_vec()
                } else {
                    NetCtrlHdr::new(VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET)
                        .as_bytes()
                        .to_vec()
                };
                cmd.extend_from_slice(NetCtrlMq::new(1 + u16::from(i % 2 == 0)).as_bytes());
                let bufs = [
                    Buf::Slot {
                        len: u32::try_from(cmd.len()).unwrap(),
                        write: false,
                    },
                    Buf::Slot {
                        len: 1,
                        write: true,
                    },
                ];
                let head = dq.add(&mem, &bufs).unwrap().unwrap();
                dq.write_slot(&mem, head, &cmd).unwrap();
            }
            let wake = pairs[0].wake.as_raw_fd();
            let mut answered = Vec::new();
            let mut events = 0;
            loop {
                ctrl.process(&vring);
                events += 1;
                let before = answered.len();
                while let Some(e) = dq.pop_used(&mem).unwrap() {
                    let ids = dq.free_chain(&mem, u16::try_from(e.id()).unwrap()).unwrap();
                    let mut ack = [0u8];
                    dq.read_slot(&mem, ids[1], &mut ack).unwrap();
                    answered.push(ack[0]);
                }
                assert!(answered.len() - before <= CTRL_BUDGET);
                // The thread is woken for the rest, and only then.
                let woken = pairs[0].wake.read().is_ok();
                assert_eq!(woken, ctrl.has_more(), "wake fd {wake}");
                if !ctrl.has_more() {
                    break;
                }
            }
            assert_eq!(events, n.div_ceil(CTRL_BUDGET));
            assert_eq!(answered.len(), n);
            for (i, ack) in answered.iter().enumerate() {
                let want = if i % 10 == 9 {
                    VIRTIO_NET_ERR
                } else {
                    VIRTIO_NET_OK
                };
                assert_eq!(*ack, want, "command {i}");
            }
            // The last VQ_PAIRS_SET (command 78) asked for two pairs.
            assert!(pairs[1].in_use.load(Ordering::Acquire));
        })
        .join()
        .unwrap();
    }
}
