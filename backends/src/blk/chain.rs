//! A descriptor chain read from the descriptor table by its head index, for
//! the chains a previous backend left in flight (see
//! `vhost_user/inflight.rs`): those are found in the inflight region, not in
//! the avail ring, and virtio-queue makes its chains only from the avail
//! ring (`DescriptorChain::new` is private to the crate). The walk is
//! virtio-queue's own: the same limits on length, loops and indirect tables.
//!
//! It must not know what a request means.

use crate::vhost_user::GuestMem;
use virtio_queue::desc::split::Descriptor;
use vm_memory::{Address, Bytes, GuestAddress};

/// One split descriptor's size.
const DESC_LEN: u64 = 16;

/// The descriptors of the chain at `head` of a table of `queue_size`.
#[derive(Debug)]
pub struct TableChain<'a> {
    mem: &'a GuestMem,
    table: GuestAddress,
    size: u16,
    next: u16,
    /// Descriptors still allowed (bounds loops).
    ttl: u16,
    indirect: bool,
    bytes: u32,
}

impl<'a> TableChain<'a> {
    /// The chain whose first descriptor is `head` in the table at `table`.
    pub fn new(mem: &'a GuestMem, table: GuestAddress, queue_size: u16, head: u16) -> Self {
        Self {
            mem,
            table,
            size: queue_size,
            next: head,
            ttl: queue_size,
            indirect: false,
            bytes: 0,
        }
    }

    /// §2.7.5.3: one level of indirection, a table of whole descriptors.
    fn enter_indirect(&mut self, d: &Descriptor) -> Option<()> {
        if self.indirect || u64::from(d.len()) % DESC_LEN != 0 {
            return None;
        }
        let n = u16::try_from(u64::from(d.len()) / DESC_LEN).ok()?;
        self.table = d.addr();
        self.size = n;
        self.ttl = n;
        self.next = 0;
        self.indirect = true;
        Some(())
    }
}

impl Iterator for TableChain<'_> {
    type Item = Descriptor;

    fn next(&mut self) -> Option<Descriptor> {
        loop {
            if self.ttl == 0 || self.next >= self.size {
                return None;
            }
            let addr = self.table.checked_add(u64::from(self.next) * DESC_LEN)?;
            let d: Descriptor = self.mem.read_obj(addr).ok()?;
            if d.refers_to_indirect_table() {
                self.enter_indirect(&d)?;
                continue;
            }
            // §2.7.5.2: a chain is never longer than 2^32 bytes.
            self.bytes = self.bytes.checked_add(d.len())?;
            if d.has_next() {
                self.next = d.next();
                self.ttl -= 1;
            } else {
                self.ttl = 0;
            }
            return Some(d);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::vhost_user::GuestMem;
    use virtio_queue::desc::split::Descriptor;
    use vm_memory::{Bytes, GuestAddress};

    use super::TableChain;

    const NEXT: u16 = 1;
    const WRITE: u16 = 2;
    const INDIRECT: u16 = 4;

    fn mem() -> GuestMem {
        GuestMem::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap()
    }

    fn put(m: &GuestMem, table: u64, i: u64, d: Descriptor) {
        m.write_obj(d, GuestAddress(table + 16 * i)).unwrap();
    }

    fn addrs(c: TableChain<'_>) -> Vec<(u64, u32, bool)> {
        c.map(|d| (d.addr().0, d.len(), d.is_write_only()))
            .collect()
    }

    #[test]
    fn a_direct_chain_is_read_by_its_head() {
        let m = mem();
        put(&m, 0, 3, Descriptor::new(0x1000, 16, NEXT, 7));
        put(&m, 0, 7, Descriptor::new(0x2000, 512, NEXT | WRITE, 1));
        put(&m, 0, 1, Descriptor::new(0x3000, 1, WRITE, 0));
        let got = addrs(TableChain::new(&m, GuestAddress(0), 8, 3));
        assert_eq!(
            got,
            [(0x1000, 16, false), (0x2000, 512, true), (0x3000, 1, true)]
        );
    }

    #[test]
    fn spec_2_7_5_3_an_indirect_table_is_followed_once() {
        let m = mem();
        put(&m, 0, 2, Descriptor::new(0x4000, 48, INDIRECT, 0));
        put(&m, 0x4000, 0, Descriptor::new(0x1000, 16, NEXT, 1));
        put(
            &m,
            0x4000,
            1,
            Descriptor::new(0x2000, 4096, NEXT | WRITE, 2),
        );
        put(&m, 0x4000, 2, Descriptor::new(0x3000, 1, WRITE, 0));
        let got = addrs(TableChain::new(&m, GuestAddress(0), 4, 2));
        assert_eq!(got.len(), 3);
        assert_eq!(got[1], (0x2000, 4096, true));
        // An indirect descriptor inside an indirect table ends the chain.
        put(&m, 0x4000, 1, Descriptor::new(0x5000, 16, INDIRECT, 0));
        assert_eq!(addrs(TableChain::new(&m, GuestAddress(0), 4, 2)).len(), 1);
    }

    #[test]
    fn loops_and_heads_past_the_table_end_the_chain() {
        let m = mem();
        put(&m, 0, 0, Descriptor::new(0x1000, 16, NEXT, 1));
        put(&m, 0, 1, Descriptor::new(0x1000, 16, NEXT, 0));
        assert_eq!(TableChain::new(&m, GuestAddress(0), 4, 0).count(), 4);
        assert_eq!(TableChain::new(&m, GuestAddress(0), 4, 4).count(), 0);
        assert_eq!(TableChain::new(&m, GuestAddress(0xfff8), 4, 0).count(), 0);
    }
}
