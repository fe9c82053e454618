//! Control commands on the last queue, and walking a chain just added.

use std::time::{Duration, Instant};

use pvio_frontend_protocol::net::NetCtrlHdr;
use pvio_frontend_protocol::zerocopy::{FromBytes, IntoBytes};
use vm_memory::{Address, GuestMemoryMmap};

use crate::{Buf, DriverError, DriverQueue, NetDriver};

impl NetDriver {
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
}

/// The descriptor indexes of the (just added) chain at `head`.
pub(crate) fn chain_ids(
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
