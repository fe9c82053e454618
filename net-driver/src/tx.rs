//! Transmit: frames queued behind a virtio-net header, notifications as
//! the device asks for them, used chains reclaimed.

use std::time::{Duration, Instant};

use pvio_frontend_protocol::net::NetHdr;
use pvio_frontend_protocol::zerocopy::IntoBytes;

use crate::ctrl::chain_ids;
use crate::{Buf, DriverError, NetDriver};

impl NetDriver {
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
}
