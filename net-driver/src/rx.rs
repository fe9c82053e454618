//! Receive: buffers posted, delivered frames taken (a frame over several
//! buffers with `MRG_RXBUF`), buffers posted again.

use std::time::{Duration, Instant};

use pvio_frontend_protocol::features::VIRTIO_F_EVENT_IDX;
use pvio_frontend_protocol::net::{NetHdr, NET_HDR_LEN};
use pvio_frontend_protocol::zerocopy::FromBytes;

use crate::{Buf, DriverError, NetDriver, Received};

/// An Ethernet header: anything shorter is no frame.
const ETH_HLEN: usize = 14;

impl NetDriver {
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
        let len = q.slot_len;
        // Buffers handed back without a frame (Linux drops them as "short
        // packets" and posts new ones).
        let first = loop {
            let Some(e) = q.pop_used(mem)? else {
                return Ok(None);
            };
            if usize::try_from(e.len()).unwrap_or(0) >= hdr_len + ETH_HLEN {
                break e;
            }
            let d = u16::try_from(e.id()).map_err(|_| DriverError::Protocol("used id".into()))?;
            q.free_chain(mem, d)?;
            q.add(mem, &[Buf::Slot { len, write: true }])?;
            self.empty_rx += 1;
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
}
