//! A relay between a frontend and the vhost-user daemon: every control
//! message is checked by a [`Validator`] first (a refused one closes the
//! connection), and `VHOST_USER_SET_VRING_ENABLE` can be held back until
//! `VHOST_USER_SET_FEATURES`.
//!
//! QEMU's virtio-net enables a vhost-user ring (`peer_attach`) as soon as the
//! backend offers `VHOST_USER_F_PROTOCOL_FEATURES`, before it sends
//! `SET_FEATURES`; rust-vmm's `vhost` crate takes such an early
//! `SET_VRING_ENABLE` as a protocol error and drops the connection. The relay
//! answers the early requests itself (an ack when one is asked for),
//! remembers them, and replays them right after `SET_FEATURES` when that
//! acknowledges protocol features, so the backend ends in the state the
//! frontend asked for. Every other message, file descriptors included, passes
//! through unchanged and in order; replies come back the same way.
//!
//! For a device that tracks inflight I/O (see `inflight.rs`) the relay also
//! offers `VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD` in the daemon's
//! `GET_PROTOCOL_FEATURES` reply, answers `GET_INFLIGHT_FD` and
//! `SET_INFLIGHT_FD` itself (the daemon would refuse them), and once a
//! region is installed writes each kick eventfd once, so that a queue whose
//! driver waits only for completions still starts and resubmits what a
//! previous backend left in flight.
//!
//! For dirty logging (see `dirty_log.rs`) it stops the log when
//! `SET_FEATURES` comes without `VHOST_F_LOG_ALL`, and answers
//! `SET_LOG_FD` itself (the log is written directly; nothing is signalled).
//!
//! It must not know what device is served, nor the server that starts it:
//! the server hands it the device's wishes
//! ([`Device::relay_early_vring_enable`](super::Device::relay_early_vring_enable),
//! [`Device::inflight`](super::Device::inflight)) and the queue limits in a
//! [`RelayPolicy`].

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};

use vmm_sys_util::sock_ctrl_msg::ScmSocket;

use vm_memory::GuestAddressSpace;

use super::dirty_log::{self, GM, VHOST_F_LOG_ALL};
use super::inflight::{self, InflightCell, InflightRegion};
use super::validate::{Validator, SET_VRING_KICK};

/// What the relay of one connection enforces.
#[derive(Debug, Clone)]
pub struct RelayPolicy {
    /// Hold `SET_VRING_ENABLE` back until `SET_FEATURES` (see the module).
    pub hold_early_vring_enable: bool,
    /// The device's queues.
    pub num_queues: usize,
    /// The device's largest queue size.
    pub max_queue_size: usize,
    /// Where `SET_INFLIGHT_FD`'s region goes, for a device that tracks
    /// inflight I/O; `None` leaves the feature unoffered.
    pub inflight: Option<Arc<InflightCell>>,
    /// The connection's guest memory, whose dirty log stops when the
    /// frontend acks features without `VHOST_F_LOG_ALL` (see
    /// `dirty_log.rs`).
    pub memory: Option<GM>,
}

/// vhost-user header: request, flags, payload size (all `u32` LE).
const HDR_LEN: usize = 12;
/// Largest payload relayed (the protocol's messages are far smaller).
const MAX_PAYLOAD: usize = 64 * 1024;
/// Most file descriptors one message carries.
const MAX_FDS: usize = 32;

const SET_FEATURES: u32 = 2;
const RESET_OWNER: u32 = 4;
const SET_LOG_FD: u32 = 7;
const GET_PROTOCOL_FEATURES: u32 = 15;
const SET_PROTOCOL_FEATURES: u32 = 16;
const SET_VRING_ENABLE: u32 = 18;
const RESET_DEVICE: u32 = 34;

const FLAG_VERSION: u32 = 0x1;
const FLAG_REPLY: u32 = 0x4;
const FLAG_NEED_REPLY: u32 = 0x8;
const PROTOCOL_FEATURES: u64 = 1 << 30;

/// One vhost-user message with its file descriptors.
struct Msg {
    hdr: [u8; HDR_LEN],
    payload: Vec<u8>,
    fds: Vec<OwnedFd>,
}

impl Msg {
    fn field(&self, i: usize) -> u32 {
        let b = &self.hdr[4 * i..4 * i + 4];
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }

    fn request(&self) -> u32 {
        self.field(0)
    }

    fn flags(&self) -> u32 {
        self.field(1)
    }

    fn set_flags(&mut self, flags: u32) {
        self.hdr[4..8].copy_from_slice(&flags.to_le_bytes());
    }

    /// The `u64` at the start of the payload (`SET_FEATURES`' value).
    fn u64_payload(&self) -> u64 {
        let mut b = [0u8; 8];
        let n = self.payload.len().min(8);
        b[..n].copy_from_slice(&self.payload[..n]);
        u64::from_le_bytes(b)
    }

    /// Replaces the `u64` at the start of the payload.
    fn set_u64_payload(&mut self, v: u64) {
        if let Some(b) = self.payload.get_mut(..8) {
            b.copy_from_slice(&v.to_le_bytes());
        }
    }

    /// The ack (`u64` 0, success) for a request that asked for one.
    fn ack(&self) -> Self {
        self.reply(vec![0; 8], Vec::new())
    }

    /// A reply to this request.
    fn reply(&self, payload: Vec<u8>, fds: Vec<OwnedFd>) -> Self {
        let mut hdr = [0u8; HDR_LEN];
        hdr[0..4].copy_from_slice(&self.request().to_le_bytes());
        hdr[4..8].copy_from_slice(&(FLAG_VERSION | FLAG_REPLY).to_le_bytes());
        let len = u32::try_from(payload.len()).unwrap_or(0);
        hdr[8..12].copy_from_slice(&len.to_le_bytes());
        Self { hdr, payload, fds }
    }
}

/// Reads one message; `None` at a clean end of stream.
fn recv_msg(sock: &UnixStream) -> io::Result<Option<Msg>> {
    let mut hdr = [0u8; HDR_LEN];
    let mut raw_fds: [RawFd; MAX_FDS] = [-1; MAX_FDS];
    let mut iov = [libc::iovec {
        iov_base: hdr.as_mut_ptr().cast(),
        iov_len: HDR_LEN,
    }];
    // SAFETY: the iovec points to `hdr`, a live local buffer of HDR_LEN
    // bytes that any data may be written to.
    let (n, nfds) = unsafe { sock.recv_with_fds(&mut iov, &mut raw_fds) }
        .map_err(|e| io::Error::from_raw_os_error(e.errno()))?;
    let fds: Vec<OwnedFd> = raw_fds
        .iter()
        .take(nfds)
        // SAFETY: recvmsg gave these descriptors to this process; nothing
        // else owns them.
        .map(|&fd| unsafe { OwnedFd::from_raw_fd(fd) })
        .collect();
    for fd in &fds {
        // Every fd the backend holds is close-on-exec.
        rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC)?;
    }
    if n == 0 {
        return Ok(None);
    }
    let mut reader = sock;
    reader.read_exact(&mut hdr[n..])?;
    let mut msg = Msg {
        hdr,
        payload: Vec::new(),
        fds,
    };
    let size = usize::try_from(msg.field(2)).unwrap_or(usize::MAX);
    if size > MAX_PAYLOAD {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("vhost-user message of {size} bytes"),
        ));
    }
    msg.payload = vec![0; size];
    reader.read_exact(&mut msg.payload)?;
    Ok(Some(msg))
}

/// Writes one message with its descriptors.
fn send_msg(sock: &UnixStream, msg: &Msg) -> io::Result<()> {
    let mut bytes = Vec::with_capacity(HDR_LEN + msg.payload.len());
    bytes.extend_from_slice(&msg.hdr);
    bytes.extend_from_slice(&msg.payload);
    let fds: Vec<RawFd> = msg.fds.iter().map(AsRawFd::as_raw_fd).collect();
    let sent = sock
        .send_with_fds(&[&bytes[..]], &fds)
        .map_err(|e| io::Error::from_raw_os_error(e.errno()))?;
    let mut writer = sock;
    writer.write_all(&bytes[sent..])
}

/// The two relay threads of one connection.
pub struct Relay {
    threads: Vec<JoinHandle<()>>,
}

impl Relay {
    /// Relays between `frontend` (the VMM) and `backend` (the daemon's end)
    /// until either side closes; then both are shut down.
    pub fn start(
        frontend: UnixStream,
        backend: UnixStream,
        policy: RelayPolicy,
    ) -> io::Result<Self> {
        let fe_writer = Arc::new(Mutex::new(frontend.try_clone()?));
        let be_reader = backend.try_clone()?;
        let fe_for_replies = Arc::clone(&fe_writer);
        let offer_inflight = policy.inflight.is_some();
        let requests = thread::Builder::new()
            .name("vhost-relay-req".into())
            .spawn(move || {
                if let Err(e) = forward_requests(&frontend, &backend, &fe_writer, policy) {
                    tracing::debug!("vhost-user relay (requests) ended: {e}");
                }
                let _ = frontend.shutdown(std::net::Shutdown::Both);
                let _ = backend.shutdown(std::net::Shutdown::Both);
            })?;
        let replies = thread::Builder::new()
            .name("vhost-relay-rep".into())
            .spawn(move || {
                let result = (|| -> io::Result<()> {
                    while let Some(mut msg) = recv_msg(&be_reader)? {
                        if offer_inflight && msg.request() == GET_PROTOCOL_FEATURES {
                            let offered = msg.u64_payload() | inflight::PROTOCOL_F_INFLIGHT_SHMFD;
                            msg.set_u64_payload(offered);
                        }
                        tracing::trace!(
                            "vhost-user reply {} size {}",
                            msg.request(),
                            msg.payload.len()
                        );
                        let fe = fe_for_replies
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner);
                        send_msg(&fe, &msg)?;
                    }
                    Ok(())
                })();
                if let Err(e) = result {
                    tracing::debug!("vhost-user relay (replies) ended: {e}");
                }
                let fe = fe_for_replies
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                let _ = fe.shutdown(std::net::Shutdown::Both);
                let _ = be_reader.shutdown(std::net::Shutdown::Both);
            })?;
        Ok(Self {
            threads: vec![requests, replies],
        })
    }

    /// Waits for both threads (after either side closed).
    pub fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Frontend to daemon: checks each request, holds back early
/// `SET_VRING_ENABLE`s if asked to. A refused request ends the connection.
fn forward_requests(
    frontend: &UnixStream,
    backend: &UnixStream,
    fe_writer: &Mutex<UnixStream>,
    policy: RelayPolicy,
) -> io::Result<()> {
    let mut validator = Validator::new(policy.num_queues, policy.max_queue_size);
    let mut features_set = !policy.hold_early_vring_enable;
    let mut held: Vec<Msg> = Vec::new();
    let cell = policy.inflight.as_deref();
    while let Some(mut msg) = recv_msg(frontend)? {
        tracing::trace!(
            "vhost-user request {} flags {:#x} size {} fds {}",
            msg.request(),
            msg.flags(),
            msg.payload.len(),
            msg.fds.len()
        );
        if let Err(refusal) = validator.check(msg.request(), &msg.payload, &msg.fds) {
            // One line per connection: the connection ends here.
            tracing::warn!("refusing the frontend: {refusal}; closing the connection");
            return Err(io::Error::new(io::ErrorKind::InvalidData, refusal));
        }
        if msg.request() == SET_FEATURES && msg.u64_payload() & VHOST_F_LOG_ALL == 0 {
            if let Some(mem) = &policy.memory {
                dirty_log::stop(&mem.memory());
            }
        }
        match msg.request() {
            // The log is written directly; there is nothing to signal on
            // this fd, which the daemon would refuse. Closed here.
            SET_LOG_FD => {
                if msg.flags() & FLAG_NEED_REPLY != 0 {
                    let fe = fe_writer.lock().unwrap_or_else(PoisonError::into_inner);
                    send_msg(&fe, &msg.ack())?;
                }
                continue;
            }
            SET_VRING_ENABLE if !features_set => {
                if msg.flags() & FLAG_NEED_REPLY != 0 {
                    let fe = fe_writer.lock().unwrap_or_else(PoisonError::into_inner);
                    send_msg(&fe, &msg.ack())?;
                    msg.set_flags(msg.flags() & !FLAG_NEED_REPLY);
                }
                tracing::debug!("holding an early SET_VRING_ENABLE until SET_FEATURES");
                held.push(msg);
                continue;
            }
            SET_FEATURES if policy.hold_early_vring_enable => {
                let features = msg.u64_payload();
                send_msg(backend, &msg)?;
                features_set = true;
                if features & PROTOCOL_FEATURES != 0 {
                    for m in held.drain(..) {
                        send_msg(backend, &m)?;
                    }
                } else {
                    // Without protocol features the backend enables every
                    // ring at SET_FEATURES by itself.
                    held.clear();
                }
                continue;
            }
            inflight::GET_INFLIGHT_FD | inflight::SET_INFLIGHT_FD if cell.is_some() => {
                if let Some(cell) = cell {
                    let reply = answer_inflight(&mut msg, cell, &policy)?;
                    if let Some(reply) = reply {
                        let fe = fe_writer.lock().unwrap_or_else(PoisonError::into_inner);
                        send_msg(&fe, &reply)?;
                    }
                }
                continue;
            }
            // The daemon knows nothing of inflight tracking: it sees only
            // the features it offered itself.
            SET_PROTOCOL_FEATURES if cell.is_some() => {
                let acked = msg.u64_payload() & !inflight::PROTOCOL_F_INFLIGHT_SHMFD;
                msg.set_u64_payload(acked);
            }
            SET_VRING_KICK if cell.is_some_and(|c| c.current().is_some()) => {
                // A restarted backend must look at the ring even if the
                // driver never kicks again (it waits for completions). The
                // count stays in the eventfd until the ring is enabled.
                if let Some(kick) = msg.fds.first() {
                    let _ = rustix::io::write(kick, &1u64.to_ne_bytes());
                }
            }
            RESET_OWNER | RESET_DEVICE => {
                features_set = !policy.hold_early_vring_enable;
                held.clear();
            }
            _ => {}
        }
        send_msg(backend, &msg)?;
    }
    Ok(())
}

/// `GET_INFLIGHT_FD` / `SET_INFLIGHT_FD` (payload: mmap_size u64,
/// mmap_offset u64, num_queues u16, queue_size u16; QEMU pads it to 24
/// bytes, and a reply has the request's length). What the frontend asks for
/// must fit the device; anything else ends the connection.
fn answer_inflight(
    msg: &mut Msg,
    cell: &InflightCell,
    policy: &RelayPolicy,
) -> io::Result<Option<Msg>> {
    let bad = |why: String| {
        tracing::warn!("refusing the frontend: {why}; closing the connection");
        io::Error::new(io::ErrorKind::InvalidData, why)
    };
    let p = &msg.payload;
    if p.len() < 20 || p.len() > 32 {
        return Err(bad(format!("inflight message of {} bytes", p.len())));
    }
    let u64_at = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&p[at..at + 8]);
        u64::from_le_bytes(b)
    };
    let (mmap_size, mmap_offset) = (u64_at(0), u64_at(8));
    let num_queues = u16::from_le_bytes([p[16], p[17]]);
    let queue_size = u16::from_le_bytes([p[18], p[19]]);
    let fits = usize::from(num_queues) <= policy.num_queues
        && usize::from(queue_size) <= policy.max_queue_size;
    if !fits {
        return Err(bad(format!(
            "an inflight region for {num_queues} queue(s) of {queue_size}; the device has {} of at most {}",
            policy.num_queues, policy.max_queue_size
        )));
    }
    if msg.request() == inflight::GET_INFLIGHT_FD {
        let new = InflightRegion::create(num_queues, queue_size).map_err(|e| bad(e.to_string()))?;
        let mut payload = msg.payload.clone();
        payload[0..8].copy_from_slice(&new.mmap_size.to_le_bytes());
        payload[8..16].copy_from_slice(&0u64.to_le_bytes());
        tracing::debug!(
            "inflight region of {} bytes for {num_queues} queue(s) of {queue_size}",
            new.mmap_size
        );
        return Ok(Some(msg.reply(payload, vec![new.fd])));
    }
    let fd = match (msg.fds.pop(), msg.fds.is_empty()) {
        (Some(fd), true) => fd,
        _ => return Err(bad("SET_INFLIGHT_FD without exactly one fd".into())),
    };
    let region = InflightRegion::open(fd, mmap_size, mmap_offset, num_queues, queue_size)
        .map_err(|e| bad(e.to_string()))?;
    tracing::info!("inflight region installed ({num_queues} queue(s) of {queue_size})");
    cell.set(region);
    Ok((msg.flags() & FLAG_NEED_REPLY != 0).then(|| msg.ack()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOLD: RelayPolicy = RelayPolicy {
        hold_early_vring_enable: true,
        num_queues: 2,
        max_queue_size: 256,
        inflight: None,
        memory: None,
    };

    fn msg(request: u32, flags: u32, payload: &[u8]) -> Msg {
        let mut hdr = [0u8; HDR_LEN];
        hdr[0..4].copy_from_slice(&request.to_le_bytes());
        hdr[4..8].copy_from_slice(&flags.to_le_bytes());
        hdr[8..12].copy_from_slice(&u32::try_from(payload.len()).unwrap().to_le_bytes());
        Msg {
            hdr,
            payload: payload.to_vec(),
            fds: Vec::new(),
        }
    }

    fn enable(index: u32, on: u32, flags: u32) -> Msg {
        let mut p = index.to_le_bytes().to_vec();
        p.extend_from_slice(&on.to_le_bytes());
        msg(SET_VRING_ENABLE, FLAG_VERSION | flags, &p)
    }

    #[test]
    fn early_enables_are_acked_held_and_replayed_after_set_features() {
        let (fe_test, fe_relay) = UnixStream::pair().unwrap();
        let (be_relay, be_test) = UnixStream::pair().unwrap();
        let relay = Relay::start(fe_relay, be_relay, HOLD).unwrap();

        // An early enable asking for a reply: the relay answers it.
        send_msg(&fe_test, &enable(0, 1, FLAG_NEED_REPLY)).unwrap();
        let ack = recv_msg(&fe_test).unwrap().unwrap();
        assert_eq!(ack.request(), SET_VRING_ENABLE);
        assert_eq!(ack.flags(), FLAG_VERSION | FLAG_REPLY);
        assert_eq!(ack.payload, [0; 8]);
        send_msg(&fe_test, &enable(1, 0, 0)).unwrap();

        // A request with a file descriptor passes through with it.
        let (a, _b) = UnixStream::pair().unwrap();
        let mut kick = msg(12, FLAG_VERSION, &0u64.to_le_bytes());
        kick.fds.push(OwnedFd::from(a));
        send_msg(&fe_test, &kick).unwrap();
        let got = recv_msg(&be_test).unwrap().unwrap();
        assert_eq!(got.request(), 12);
        assert_eq!(got.fds.len(), 1);

        // SET_FEATURES with protocol features, then the held enables.
        let features = (PROTOCOL_FEATURES | 1 << 32).to_le_bytes();
        send_msg(&fe_test, &msg(SET_FEATURES, FLAG_VERSION, &features)).unwrap();
        assert_eq!(recv_msg(&be_test).unwrap().unwrap().request(), SET_FEATURES);
        let e0 = recv_msg(&be_test).unwrap().unwrap();
        assert_eq!(
            (e0.request(), e0.flags() & FLAG_NEED_REPLY),
            (SET_VRING_ENABLE, 0)
        );
        assert_eq!(e0.payload, enable(0, 1, 0).payload);
        let e1 = recv_msg(&be_test).unwrap().unwrap();
        assert_eq!(e1.payload, enable(1, 0, 0).payload);

        // Later enables pass straight through; replies flow back.
        send_msg(&fe_test, &enable(0, 1, 0)).unwrap();
        assert_eq!(
            recv_msg(&be_test).unwrap().unwrap().request(),
            SET_VRING_ENABLE
        );
        send_msg(
            &be_test,
            &msg(1, FLAG_VERSION | FLAG_REPLY, &7u64.to_le_bytes()),
        )
        .unwrap();
        assert_eq!(recv_msg(&fe_test).unwrap().unwrap().u64_payload(), 7);

        // The frontend leaves: the backend's end closes too.
        drop(fe_test);
        assert!(recv_msg(&be_test).unwrap().is_none());
        relay.join();
    }

    #[test]
    fn a_refused_request_closes_both_sides() {
        let (fe_test, fe_relay) = UnixStream::pair().unwrap();
        let (be_relay, be_test) = UnixStream::pair().unwrap();
        let relay = Relay::start(fe_relay, be_relay, HOLD).unwrap();
        // SET_VRING_NUM 100: not a power of two.
        let mut p = 0u32.to_le_bytes().to_vec();
        p.extend_from_slice(&100u32.to_le_bytes());
        send_msg(&fe_test, &msg(8, FLAG_VERSION, &p)).unwrap();
        assert!(recv_msg(&be_test).unwrap().is_none());
        assert!(recv_msg(&fe_test).unwrap().is_none());
        relay.join();
    }

    #[test]
    fn without_protocol_features_held_enables_are_dropped() {
        let (fe_test, fe_relay) = UnixStream::pair().unwrap();
        let (be_relay, be_test) = UnixStream::pair().unwrap();
        let relay = Relay::start(fe_relay, be_relay, HOLD).unwrap();
        send_msg(&fe_test, &enable(0, 1, 0)).unwrap();
        send_msg(
            &fe_test,
            &msg(SET_FEATURES, FLAG_VERSION, &(1u64 << 32).to_le_bytes()),
        )
        .unwrap();
        // SET_OWNER.
        send_msg(&fe_test, &msg(3, FLAG_VERSION, &[])).unwrap();
        assert_eq!(recv_msg(&be_test).unwrap().unwrap().request(), SET_FEATURES);
        assert_eq!(recv_msg(&be_test).unwrap().unwrap().request(), 3);
        drop(be_test);
        assert!(recv_msg(&fe_test).unwrap().is_none());
        relay.join();
    }

    #[test]
    fn spec_inflight_io_tracking_get_and_set_are_answered_by_the_relay() {
        let (fe_test, fe_relay) = UnixStream::pair().unwrap();
        let (be_relay, be_test) = UnixStream::pair().unwrap();
        let cell = Arc::new(InflightCell::default());
        let policy = RelayPolicy {
            inflight: Some(Arc::clone(&cell)),
            ..HOLD
        };
        let relay = Relay::start(fe_relay, be_relay, policy).unwrap();
        // The daemon's protocol features gain INFLIGHT_SHMFD on the way back.
        send_msg(&fe_test, &msg(GET_PROTOCOL_FEATURES, FLAG_VERSION, &[])).unwrap();
        let got = recv_msg(&be_test).unwrap().unwrap();
        send_msg(
            &be_test,
            &got.reply(0x20u64.to_le_bytes().to_vec(), Vec::new()),
        )
        .unwrap();
        let offered = recv_msg(&fe_test).unwrap().unwrap().u64_payload();
        assert_eq!(offered, 0x20 | inflight::PROTOCOL_F_INFLIGHT_SHMFD);
        // ... and lose it on the way in.
        let acked = (0x20 | inflight::PROTOCOL_F_INFLIGHT_SHMFD).to_le_bytes();
        send_msg(&fe_test, &msg(SET_PROTOCOL_FEATURES, FLAG_VERSION, &acked)).unwrap();
        assert_eq!(recv_msg(&be_test).unwrap().unwrap().u64_payload(), 0x20);

        // GET_INFLIGHT_FD as QEMU sends it: 24 bytes, 2 queues of 128.
        let mut p = vec![0u8; 24];
        p[16..18].copy_from_slice(&2u16.to_le_bytes());
        p[18..20].copy_from_slice(&128u16.to_le_bytes());
        send_msg(&fe_test, &msg(inflight::GET_INFLIGHT_FD, FLAG_VERSION, &p)).unwrap();
        let mut reply = recv_msg(&fe_test).unwrap().unwrap();
        assert_eq!(reply.request(), inflight::GET_INFLIGHT_FD);
        assert_eq!(reply.flags(), FLAG_VERSION | FLAG_REPLY);
        assert_eq!(reply.payload.len(), 24);
        assert_eq!(reply.u64_payload(), 2 * 2112, "mmap_size");
        assert_eq!(reply.payload[16..20], p[16..20]);
        assert_eq!(reply.fds.len(), 1);
        assert!(cell.current().is_none(), "GET alone installs nothing");

        // SET_INFLIGHT_FD with it, asking for an ack.
        let mut set = msg(
            inflight::SET_INFLIGHT_FD,
            FLAG_VERSION | FLAG_NEED_REPLY,
            &reply.payload,
        );
        set.fds.push(reply.fds.pop().unwrap());
        send_msg(&fe_test, &set).unwrap();
        assert_eq!(recv_msg(&fe_test).unwrap().unwrap().payload, [0; 8]);
        assert_eq!(cell.current().unwrap().num_queues(), 2);

        // More queues than the device has: the connection ends.
        p[16..18].copy_from_slice(&3u16.to_le_bytes());
        send_msg(&fe_test, &msg(inflight::GET_INFLIGHT_FD, FLAG_VERSION, &p)).unwrap();
        assert!(recv_msg(&fe_test).unwrap().is_none());
        assert!(recv_msg(&be_test).unwrap().is_none());
        relay.join();
    }
}
