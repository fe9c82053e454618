//! A supervisor that died leaves its domain running: QEMU and the
//! backends are not its children by death signal, so they carry on. The
//! next pvio command that finds the domain's lock free while its QEMU
//! lives starts a new supervisor with `--adopt` (this is also how pvio is
//! upgraded under running guests: stop the supervisor, run any pvio
//! command). The adopting supervisor reconnects to QEMU's QMP sockets,
//! starts the PV backends again on their sockets (the old ones are ended
//! first: their image locks must go; the block backend's in-flight
//! requests are replayed by the new one), serves the control socket again
//! and watches QEMU through a pidfd, since QEMU is not its child.
//!
//! It must not know how a domain is first started (`supervisor.rs`) nor
//! how the CLI finds domains (`rundir.rs` calls [`respawn`]).

use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::files::{LOCK, RECORD};
use super::live::{LiveDomain, Msg};
use super::lock::FileLock;
use super::record::{DomainRecord, DomainState};
use super::{process, DomainError};

/// How long an ended backend's image lock may take to go.
const LOCK_RELEASE: Duration = Duration::from_secs(5);
/// How long an adopting supervisor may take to take over.
const ADOPT_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether the domain of `record` can be adopted: its QEMU lives (and is
/// the one started for it).
pub fn adoptable(record: &DomainRecord) -> bool {
    record.state != DomainState::Ended
        && record.qemu_pid.is_some_and(|pid| {
            process::alive(pid) && process::cmdline_mentions(pid, &record.qmp_socket)
        })
}

/// Starts a supervisor that adopts the domain in `dir` (its lock is free,
/// its QEMU lives) and waits until it has; the caller holds the run dir's
/// global lock.
pub fn respawn(dir: &Path) -> Result<DomainRecord, DomainError> {
    let lock_path = dir.join(LOCK);
    let lock = FileLock::try_exclusive(&lock_path)
        .map_err(|source| DomainError::Io {
            what: "lock",
            path: lock_path.clone(),
            source,
        })?
        .ok_or_else(|| DomainError::Io {
            what: "lock (another supervisor took it)",
            path: lock_path.clone(),
            source: std::io::Error::from(std::io::ErrorKind::WouldBlock),
        })?;
    let before = DomainRecord::load(&dir.join(RECORD))?;
    let mut child = super::handover::spawn_supervisor_for(dir, &lock, true, None)?;
    drop(lock);
    let pid = child.id();
    let start = Instant::now();
    loop {
        if let Ok(r) = DomainRecord::load(&dir.join(RECORD)) {
            if r.supervisor_pid == Some(pid) && r.adopted > before.adopted {
                return Ok(r);
            }
            if r.state == DomainState::Ended {
                return Err(DomainError::StartFailed {
                    name: r.identity.name.clone(),
                    why: r.ended.map_or_else(String::new, |e| e.detail),
                });
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(DomainError::StartFailed {
                name: before.identity.name,
                why: format!("its new supervisor exited ({status}) before adopting it"),
            });
        }
        if start.elapsed() > ADOPT_TIMEOUT {
            return Err(DomainError::Timeout {
                what: "the new supervisor to adopt the domain".to_owned(),
                after: ADOPT_TIMEOUT,
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The adopting supervisor's start: end the old backends, start new ones
/// on the same sockets, reconnect QMP, watch QEMU, serve control requests.
pub(super) fn take_over(
    live: &Arc<LiveDomain>,
    exited: &Arc<AtomicBool>,
) -> Result<(), DomainError> {
    let record = live.record();
    let qemu = record.qemu_pid.ok_or(DomainError::QemuExited)?;
    let pidfd = rustix::process::pidfd_open(
        rustix::process::Pid::from_raw(i32::try_from(qemu).unwrap_or(0))
            .ok_or(DomainError::QemuExited)?,
        rustix::process::PidfdFlags::empty(),
    )
    .map_err(|_| DomainError::QemuExited)?;
    for (device, pid) in &record.backend_pids {
        if process::alive(*pid) && is_backend(*pid) {
            tracing::info!("ending the old backend of {device} (pid {pid})");
            process::signal(*pid, libc::SIGKILL);
            process::wait_gone(*pid, Duration::from_secs(5));
        }
    }
    for d in record.disks.iter().filter(|d| d.bus != "pv" && !d.cdrom) {
        if let Some(image) = &d.image {
            super::image_lock::wait_free(image, d.read_only, LOCK_RELEASE);
        }
    }
    live.lock_emulated_images()?;
    for d in record.disks.iter().filter(|d| d.bus == "pv") {
        if let (Some(socket), Some(image)) = (&d.socket, &d.image) {
            super::image_lock::wait_free(image, d.read_only, LOCK_RELEASE);
            live.backends()
                .start_blk(&d.vdev, socket, image, d.read_only)?;
        }
    }
    for n in &record.nics {
        if let Some(socket) = &n.socket {
            let mtu = live
                .spec
                .net
                .iter()
                .find(|s| s.devid == n.devid)
                .and_then(|s| s.mtu);
            live.backends().start_net(
                &crate::plan::qdev::netdev_id(n.devid),
                socket,
                &n.tap,
                n.mac,
                mtu,
            )?;
        }
    }
    live.refresh_backend_pids();
    watch_qemu(live, exited, pidfd)?;
    super::qemu_link::connect_qmp(live, exited)?;
    live.update(|r| {
        r.adopted = r.adopted.saturating_add(1);
        r.supervisor_pid = Some(std::process::id());
    });
    tracing::info!("adopted domain {} (QEMU pid {qemu})", live.name());
    Ok(())
}

/// Whether `pid` runs a pvio backend.
fn is_backend(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
        let args: Vec<&[u8]> = c.split(|b| *b == 0).collect();
        args.windows(2)
            .any(|w| w[0] == b"backend" && (w[1] == b"blk" || w[1] == b"net"))
    })
}

/// Tells the main loop when QEMU, not our child, exits.
fn watch_qemu(
    live: &Arc<LiveDomain>,
    exited: &Arc<AtomicBool>,
    pidfd: OwnedFd,
) -> Result<(), DomainError> {
    let live = Arc::clone(live);
    let exited = Arc::clone(exited);
    std::thread::Builder::new()
        .name("qemu-watch".to_owned())
        .spawn(move || {
            let mut fds = [rustix::event::PollFd::new(
                &pidfd,
                rustix::event::PollFlags::IN,
            )];
            loop {
                match rustix::event::poll(&mut fds, None) {
                    Ok(n) if n > 0 => break,
                    Err(rustix::io::Errno::INTR) | Ok(_) => continue,
                    Err(_) => break,
                }
            }
            exited.store(true, Ordering::SeqCst);
            live.send(Msg::QemuExited(
                "exited (it was adopted: no status)".to_owned(),
            ));
        })
        .map_err(DomainError::Spawn)?;
    Ok(())
}
