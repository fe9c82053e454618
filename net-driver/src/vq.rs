//! The driver's side of one split virtqueue (virtio 1.2 §2.7), laid out
//! with `pvio-frontend-protocol`'s ring types in memory the driver owns:
//! descriptors out, available ring published, used ring read back.
//!
//! Descriptor `d` owns buffer slot `d` of the queue's buffer area, so a
//! chain's data is found from its descriptor indexes alone.

use std::sync::atomic::{fence, Ordering};

use pvio_frontend_protocol::ring::{
    avail_event_offset, avail_ring_elem_offset, avail_ring_size, desc_table_size,
    used_event_offset, used_ring_elem_offset, used_ring_size, vring_need_event, VirtqDesc,
    VirtqUsedElem, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, VIRTQ_DESC_SIZE, VIRTQ_USED_F_NO_NOTIFY,
};
use pvio_frontend_protocol::zerocopy::{FromBytes, IntoBytes};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemory};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::DriverError;

/// Page alignment for each ring area and buffer area.
const PAGE: u64 = 4096;

fn align(addr: u64) -> u64 {
    addr.div_ceil(PAGE) * PAGE
}

fn at(base: GuestAddress, off: usize) -> GuestAddress {
    base.unchecked_add(u64::try_from(off).unwrap_or(u64::MAX))
}

/// One descriptor of a chain being added.
#[derive(Debug, Clone, Copy)]
pub enum Buf {
    /// A buffer from the descriptor's own slot: `len` bytes, device-writable
    /// or not.
    Slot {
        /// Length.
        len: u32,
        /// Device-writable.
        write: bool,
    },
    /// Any guest address (for malformed chains in tests).
    Raw {
        /// Guest-physical address.
        addr: u64,
        /// Length.
        len: u32,
        /// Device-writable.
        write: bool,
    },
}

/// A split virtqueue as a driver sees it.
#[derive(Debug)]
pub struct DriverQueue {
    /// Entries.
    pub size: u16,
    /// Descriptor table address.
    pub desc: GuestAddress,
    /// Available ring address.
    pub avail: GuestAddress,
    /// Used ring address.
    pub used: GuestAddress,
    /// Start of the buffer slots.
    pub slots: GuestAddress,
    /// Bytes per buffer slot.
    pub slot_len: u32,
    /// The driver writes it to notify the device.
    pub kick: EventFd,
    /// The device writes it to interrupt the driver.
    pub call: EventFd,
    avail_idx: u16,
    last_used: u16,
    free: Vec<u16>,
    /// Heads of the chains the device has and has not used yet: a used
    /// element naming anything else is a device bug (Linux says "id is not
    /// a head").
    outstanding: Vec<bool>,
}

impl DriverQueue {
    /// Lays out a queue of `size` entries with `slot_len`-byte buffers from
    /// `base`; returns it and the first free address after it.
    pub fn new(base: u64, size: u16, slot_len: u32) -> Result<(Self, u64), DriverError> {
        let desc = align(base);
        let avail = align(desc + to_u64(desc_table_size(size)));
        let used = align(avail + to_u64(avail_ring_size(size, true)));
        let slots = align(used + to_u64(used_ring_size(size, true)));
        let end = align(slots + u64::from(size) * u64::from(slot_len));
        let q = Self {
            size,
            desc: GuestAddress(desc),
            avail: GuestAddress(avail),
            used: GuestAddress(used),
            slots: GuestAddress(slots),
            slot_len,
            kick: EventFd::new(EFD_NONBLOCK).map_err(DriverError::Io)?,
            call: EventFd::new(EFD_NONBLOCK).map_err(DriverError::Io)?,
            avail_idx: 0,
            last_used: 0,
            free: (0..size).rev().collect(),
            outstanding: vec![false; usize::from(size)],
        };
        Ok((q, end))
    }

    /// Address of descriptor `d`'s buffer slot.
    pub fn slot(&self, d: u16) -> GuestAddress {
        self.slots
            .unchecked_add(u64::from(d) * u64::from(self.slot_len))
    }

    /// Free descriptors.
    pub fn free_count(&self) -> usize {
        self.free.len()
    }

    /// Writes a chain of `bufs` and publishes it; returns its head, or `None`
    /// when there are not enough free descriptors.
    pub fn add(
        &mut self,
        mem: &impl GuestMemory,
        bufs: &[Buf],
    ) -> Result<Option<u16>, DriverError> {
        if bufs.is_empty() || bufs.len() > self.free.len() {
            return Ok(None);
        }
        let ids: Vec<u16> = (0..bufs.len()).filter_map(|_| self.free.pop()).collect();
        for (i, (&d, buf)) in ids.iter().zip(bufs).enumerate() {
            let (addr, len, write) = match *buf {
                Buf::Slot { len, write } => {
                    (self.slot(d).raw_value(), len.min(self.slot_len), write)
                }
                Buf::Raw { addr, len, write } => (addr, len, write),
            };
            let mut flags = if write { VIRTQ_DESC_F_WRITE } else { 0 };
            let next = ids.get(i + 1).copied().unwrap_or(0);
            if i + 1 < ids.len() {
                flags |= VIRTQ_DESC_F_NEXT;
            }
            let desc = VirtqDesc::new(addr, len, flags, next);
            mem.write_slice(
                desc.as_bytes(),
                at(self.desc, usize::from(d) * VIRTQ_DESC_SIZE),
            )?;
        }
        let head = ids[0];
        if let Some(o) = self.outstanding.get_mut(usize::from(head)) {
            *o = true;
        }
        let slot = self.avail_idx % self.size;
        mem.write_slice(
            &head.to_le_bytes(),
            at(self.avail, avail_ring_elem_offset(slot)),
        )?;
        self.avail_idx = self.avail_idx.wrapping_add(1);
        fence(Ordering::Release);
        mem.store(self.avail_idx.to_le(), at(self.avail, 2), Ordering::Release)?;
        Ok(Some(head))
    }

    /// Writes a buffer slot's contents.
    pub fn write_slot(
        &self,
        mem: &impl GuestMemory,
        d: u16,
        data: &[u8],
    ) -> Result<(), DriverError> {
        mem.write_slice(data, self.slot(d))?;
        Ok(())
    }

    /// Reads a buffer slot's contents.
    pub fn read_slot(
        &self,
        mem: &impl GuestMemory,
        d: u16,
        out: &mut [u8],
    ) -> Result<(), DriverError> {
        mem.read_slice(out, self.slot(d))?;
        Ok(())
    }

    /// The next used element, if the device published one. An element that
    /// does not name a chain the device holds (one it already used, or
    /// never got) is an error, as it is for Linux.
    pub fn pop_used(
        &mut self,
        mem: &impl GuestMemory,
    ) -> Result<Option<VirtqUsedElem>, DriverError> {
        let idx = u16::from_le(mem.load::<u16>(at(self.used, 2), Ordering::Acquire)?);
        if idx == self.last_used {
            return Ok(None);
        }
        fence(Ordering::Acquire);
        let mut raw = [0u8; 8];
        let slot = self.last_used % self.size;
        mem.read_slice(&mut raw, at(self.used, used_ring_elem_offset(slot)))?;
        self.last_used = self.last_used.wrapping_add(1);
        let elem = VirtqUsedElem::read_from_bytes(&raw)
            .map_err(|_| DriverError::Protocol("used element".into()))?;
        let held = usize::try_from(elem.id())
            .ok()
            .and_then(|id| self.outstanding.get_mut(id))
            .filter(|o| **o);
        match held {
            Some(o) => *o = false,
            None => {
                return Err(DriverError::Protocol(format!(
                    "used id {} is not a head the device holds",
                    elem.id()
                )))
            }
        }
        Ok(Some(elem))
    }

    /// Whether the device published used elements not popped yet.
    pub fn has_used(&self, mem: &impl GuestMemory) -> Result<bool, DriverError> {
        let idx = u16::from_le(mem.load::<u16>(at(self.used, 2), Ordering::Acquire)?);
        Ok(idx != self.last_used)
    }

    /// Frees the chain starting at `head` and returns its descriptors in
    /// order.
    pub fn free_chain(
        &mut self,
        mem: &impl GuestMemory,
        head: u16,
    ) -> Result<Vec<u16>, DriverError> {
        let mut ids = Vec::new();
        let mut d = head;
        loop {
            let mut raw = [0u8; VIRTQ_DESC_SIZE];
            mem.read_slice(&mut raw, at(self.desc, usize::from(d) * VIRTQ_DESC_SIZE))?;
            let desc = VirtqDesc::read_from_bytes(&raw)
                .map_err(|_| DriverError::Protocol("descriptor".into()))?;
            ids.push(d);
            self.free.push(d);
            if !desc.has_next() || ids.len() >= usize::from(self.size) {
                break;
            }
            d = desc.next();
        }
        Ok(ids)
    }

    /// Asks for an interrupt once the device uses the next element
    /// (`used_event`, with EVENT_IDX).
    pub fn arm_used_event(&self, mem: &impl GuestMemory) -> Result<(), DriverError> {
        mem.store(
            self.last_used.to_le(),
            at(self.avail, used_event_offset(self.size)),
            Ordering::Release,
        )?;
        fence(Ordering::SeqCst);
        Ok(())
    }

    /// With EVENT_IDX: sets `used_event` one behind the used elements seen,
    /// which asks for no interrupt (until the index wraps).
    pub fn hold_used_event(&self, mem: &impl GuestMemory) -> Result<(), DriverError> {
        mem.store(
            self.last_used.wrapping_sub(1).to_le(),
            at(self.avail, used_event_offset(self.size)),
            Ordering::Release,
        )?;
        fence(Ordering::SeqCst);
        Ok(())
    }

    /// The device's `avail_event` (with EVENT_IDX).
    pub fn avail_event(&self, mem: &impl GuestMemory) -> Result<u16, DriverError> {
        Ok(u16::from_le(mem.load::<u16>(
            at(self.used, avail_event_offset(self.size)),
            Ordering::Acquire,
        )?))
    }

    /// The driver's available index (entries published so far).
    pub fn avail_idx(&self) -> u16 {
        self.avail_idx
    }

    /// Whether the device wants a notification for what was published
    /// since available index `old` (virtio 1.2 §2.7.10: `avail_event` with
    /// EVENT_IDX, else the used ring's NO_NOTIFY flag).
    pub fn needs_kick(
        &self,
        mem: &impl GuestMemory,
        old: u16,
        event_idx: bool,
    ) -> Result<bool, DriverError> {
        if event_idx {
            fence(Ordering::SeqCst);
            Ok(vring_need_event(
                self.avail_event(mem)?,
                self.avail_idx,
                old,
            ))
        } else {
            let flags = u16::from_le(mem.load::<u16>(self.used, Ordering::Acquire)?);
            Ok(flags & VIRTQ_USED_F_NO_NOTIFY == 0)
        }
    }

    /// Notifies the device.
    pub fn notify(&self) -> Result<(), DriverError> {
        self.kick.write(1).map_err(DriverError::Io)
    }
}

fn to_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}
