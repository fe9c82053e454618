//! The supervisor: one detached process per domain (`pvio supervise DIR`,
//! started by `pvio create` in its own session with its output in
//! `supervisor.log`). It holds the domain's lock for its whole life, makes
//! the taps, runs the PV backends as threads, starts QEMU paused with two
//! QMP sockets (commands, events), sets it up and lets it run, answers the
//! control socket, applies `on_poweroff` / `on_reboot` / `on_crash`, and at
//! the end stops the backends, removes the sockets and the taps it made,
//! gives back the host PCI devices the domain owned (`passthrough.rs`)
//! and records how the domain ended.

use std::fs::OpenOptions;
use std::os::unix::io::RawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::files::{qemu_log_tail, LOCK, QEMU_LOG, RECORD};
use super::guest_events::GuestStop;
use super::handover::{INCOMING_FD, LOCK_FD};
use super::launch::{LaunchSpec, OnEvent};
use super::live::{LiveDomain, Msg};
use super::qemu_link::connect_qmp;
use super::record::{DomainRecord, DomainState, SerialEndpoint};
use super::{cleanup, control, control_answers, passthrough, process, taps, DomainError};
use crate::qmp::{qmp, QmpError};
use crate::report::error_line;

/// How long QEMU may take to exit after SIGTERM before it is killed.
const QUIT_GRACE: Duration = Duration::from_secs(10);
/// How often the idle main loop reads what QEMU queued on the command
/// connection.
const DRAIN_EVERY: Duration = Duration::from_secs(20);

/// Runs the supervisor of the domain in `dir` until the domain ends;
/// with `adopt`, of a domain whose QEMU outlived its first supervisor.
/// With `incoming`, the domain starts from the saved or migrated state
/// on [`INCOMING_FD`](INCOMING_FD).
pub fn run(dir: &Path, adopt: bool, incoming: bool) -> Result<(), DomainError> {
    let stream = if incoming {
        Some(super::incoming::take_inherited()?)
    } else {
        None
    };
    close_inherited(if incoming { INCOMING_FD } else { LOCK_FD });
    let _own_lock = keep_lock(dir)?;
    let spec = LaunchSpec::load(dir)?;
    let mut record = DomainRecord::load(&dir.join(RECORD))?;
    record.supervisor_pid = Some(std::process::id());
    let (tx, rx) = mpsc::channel();
    watch_signals(tx.clone())?;
    let live = Arc::new(LiveDomain::new(dir.to_owned(), spec, record, tx));
    live.update(|_| ());
    tracing::info!(
        "supervising domain {} (id {})",
        live.name(),
        live.spec.identity.id
    );
    let exited = Arc::new(AtomicBool::new(false));
    let began = if adopt {
        super::adopt::take_over(&live, &exited).and_then(|()| serve_control(&live))
    } else {
        start(&live, &exited, stream)
    };
    // An adopted domain ran before this supervisor: its end is a run's.
    let mut ran = adopt;
    let (cause, detail) = match began {
        Ok(()) => {
            ran = true;
            supervise(&live, &rx)
        }
        Err(e) => {
            let line = error_line(&e);
            tracing::error!("start failed: {line}");
            (
                "start-failed".to_owned(),
                format!("{line}{}", qemu_log_tail(dir)),
            )
        }
    };
    teardown(&live, &exited, ran, &cause, &detail);
    Ok(())
}

/// Closes every descriptor above `last` ([`LOCK_FD`], or the incoming
/// stream's) this process was started with (a supervisor run by hand
/// inherits its shell's), before any other thread exists: nothing the
/// caller had open reaches QEMU or a backend.
fn close_inherited(last: RawFd) {
    let first = libc::c_uint::try_from(last + 1).unwrap_or(4);
    // SAFETY: close_range with integer arguments; no descriptor above
    // LOCK_FD is owned by anything in this process yet (called first
    // thing, single-threaded).
    let rc = unsafe { libc::syscall(libc::SYS_close_range, first, libc::c_uint::MAX, 0) };
    if rc != 0 {
        tracing::warn!(
            "cannot close inherited descriptors: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// The domain lock: inherited on [`LOCK_FD`] from `pvio create` (kept
/// from QEMU with close-on-exec), or taken here when run by hand.
fn keep_lock(dir: &Path) -> Result<Option<super::lock::FileLock>, DomainError> {
    // SAFETY: fcntl on a descriptor number with integer arguments only; a
    // closed descriptor gives EBADF, handled below.
    let rc = unsafe { libc::fcntl(LOCK_FD, libc::F_SETFD, libc::FD_CLOEXEC) };
    if rc == 0 && super::lock::FileLock::is_held(&dir.join(LOCK)).unwrap_or(false) {
        return Ok(None);
    }
    let p = dir.join(LOCK);
    match super::lock::FileLock::try_exclusive(&p) {
        Ok(Some(l)) => Ok(Some(l)),
        Ok(None) => Err(DomainError::Io {
            what: "lock (another supervisor holds it)",
            path: p,
            source: std::io::Error::from(std::io::ErrorKind::WouldBlock),
        }),
        Err(source) => Err(DomainError::Io {
            what: "lock",
            path: p,
            source,
        }),
    }
}

/// Turns SIGTERM, SIGINT and SIGHUP into messages to the main loop. Must
/// run before any other thread starts (the mask is inherited).
fn watch_signals(tx: mpsc::Sender<Msg>) -> Result<(), DomainError> {
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: the set is initialised by sigemptyset before any other use,
    // and only signal numbers are added; pthread_sigmask reads it.
    let set = unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        for s in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(set.as_mut_ptr(), s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, set.as_ptr(), std::ptr::null_mut());
        set.assume_init()
    };
    std::thread::Builder::new()
        .name("signals".to_owned())
        .spawn(move || loop {
            let mut sig: libc::c_int = 0;
            // SAFETY: `set` is an initialised signal set owned by this
            // thread and `sig` a valid out-pointer.
            let rc = unsafe { libc::sigwait(&set, &mut sig) };
            if rc != 0 {
                continue;
            }
            if sig == libc::SIGHUP {
                tracing::info!("SIGHUP ignored: the domain keeps running");
                continue;
            }
            if tx.send(Msg::Signal(sig)).is_err() {
                return;
            }
        })
        .map_err(DomainError::Spawn)?;
    Ok(())
}

/// Host PCI devices, taps, backends, QEMU (paused), QMP, set-up,
/// control socket, run.
/// A domain from a saved or migrated state (`stream`) gets QEMU with
/// `-incoming defer`, its state read in before it runs, and stays paused
/// if it is to.
fn start(
    live: &Arc<LiveDomain>,
    exited: &Arc<AtomicBool>,
    stream: Option<std::os::fd::OwnedFd>,
) -> Result<(), DomainError> {
    let spec = &live.spec;
    if spec.incoming.as_ref().is_some_and(|i| i.defer_locks) {
        live.backends().defer_locks(true);
    }
    prepare_dm_dir(spec)?;
    // First: a refused device costs nothing else.
    let pci = passthrough::take(&passthrough::manager(false), live.name(), &spec.passthrough)
        .map_err(Box::new)?;
    live.update(|r| r.pci = pci.entries());
    live.lock_emulated_images()?;
    live.update(|r| r.netns = taps::current_netns());
    for t in &spec.taps {
        if taps::create(&t.name, &t.bridge, t.mtu)? {
            live.update(|r| r.taps_created.push(t.name.clone()));
        }
    }
    for b in &spec.blk {
        live.backends()
            .start_blk(&b.vdev, &b.socket, &b.image, b.read_only)?;
    }
    for n in &spec.net {
        let device = crate::plan::qdev::netdev_id(n.devid);
        live.backends()
            .start_net(&device, &n.socket, &n.tap, n.mac, n.mtu)?;
    }
    live.refresh_backend_pids();
    let mut extra = pci.extra_qemu_args();
    if spec.incoming.is_some() {
        extra.extend(["-incoming".to_owned(), "defer".to_owned()]);
    }
    spawn_qemu(live, exited, &extra)?;
    connect_qmp(live, exited)?;
    set_up_qemu(live)?;
    if let (Some(inc), Some(stream)) = (&spec.incoming, stream) {
        super::incoming::receive(live, inc, stream, exited)?;
        if inc.paused {
            serve_control(live)?;
            live.update(|r| r.state = DomainState::Paused);
            tracing::info!("domain {} is in, paused", live.name());
            return Ok(());
        }
    }
    serve_control(live)?;
    let status = live.qmp(|q| {
        q.execute(&qmp::cont {})?;
        q.status()
    })?;
    if !status.running {
        return Err(DomainError::NotRunning(format!("{:?}", status.status)));
    }
    live.update(|r| r.state = DomainState::Running);
    tracing::info!("domain {} runs", live.name());
    Ok(())
}

/// Serves the control socket.
pub(super) fn serve_control(live: &Arc<LiveDomain>) -> Result<(), DomainError> {
    let handler_live = Arc::clone(live);
    control::serve(
        &live.spec.control_socket,
        Arc::new(move |req, fd| control_answers::handle(&handler_live, req, fd)),
    )
}

/// Makes the device model's dir, reachable by its identity alone, after
/// checking that nothing above it stops QEMU from passing through.
fn prepare_dm_dir(spec: &LaunchSpec) -> Result<(), DomainError> {
    let root = spec
        .dm_dir
        .parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("/"));
    super::access::make_dm_dir(root, &spec.identity.name, spec.device_model()).map_err(
        |source| DomainError::Io {
            what: "create the device-model dir",
            path: spec.dm_dir.clone(),
            source,
        },
    )?;
    if let Some(blocked) = super::access::blocked_ancestor(&spec.dm_dir) {
        return Err(DomainError::StartFailed {
            name: spec.identity.name.clone(),
            why: format!(
                "{} lets no other user pass (no o+x), so the domain's unprivileged QEMU could not reach its sockets in {}; `chmod o+x` it or set PVIO_RUN_DIR elsewhere",
                blocked.display(),
                spec.dm_dir.display()
            ),
        });
    }
    Ok(())
}

fn spawn_qemu(
    live: &Arc<LiveDomain>,
    exited: &Arc<AtomicBool>,
    extra: &[String],
) -> Result<(), DomainError> {
    let spec = &live.spec;
    let log_path = live.dir().join(QEMU_LOG);
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|source| DomainError::Io {
            what: "open",
            path: log_path.clone(),
            source,
        })?;
    let log2 = log.try_clone().map_err(|source| DomainError::Io {
        what: "open",
        path: log_path,
        source,
    })?;
    let mut cmd = Command::new(&spec.qemu_binary);
    // The plan's command line (with -S: QEMU starts paused; and its
    // confinement, -sandbox and -run-with user= the domain's identity),
    // then the devices `pvio assign` reserved: what `create --dry-run`
    // prints.
    cmd.args(&spec.qemu_args)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2);
    // QEMU does not die with the supervisor: a new one adopts it
    // (`adopt.rs`). Its own session keeps a terminal's signals away.
    cmd.process_group(0);
    tracing::info!(
        "starting {} {} {}",
        spec.qemu_binary.display(),
        spec.qemu_args.join(" "),
        extra.join(" ")
    );
    let mut child = cmd.spawn().map_err(|source| DomainError::QemuMissing {
        binary: spec.qemu_binary.clone(),
        source,
    })?;
    let pid = child.id();
    live.update(|r| r.qemu_pid = Some(pid));
    let waiter_live = Arc::clone(live);
    let exited = Arc::clone(exited);
    std::thread::Builder::new()
        .name("qemu-wait".to_owned())
        .spawn(move || {
            let status = child
                .wait()
                .map_or_else(|e| format!("wait failed: {e}"), |s| s.to_string());
            exited.store(true, Ordering::SeqCst);
            waiter_live.send(Msg::QemuExited(status));
        })
        .map_err(DomainError::Spawn)?;
    Ok(())
}

/// vCPU pinning, the serial pty, the VNC address and password.
fn set_up_qemu(live: &LiveDomain) -> Result<(), DomainError> {
    // Pinning errors are the domain's; QMP failures come out of qmp().
    live.qmp(|q| Ok(super::pinning::pin(q, &live.spec.pinning)))??;
    if live.spec.serial_pty {
        let chardevs = live.qmp(|q| q.execute(&qmp::query_chardev {}))?;
        let pty = chardevs
            .iter()
            .find(|c| c.label == "serial0")
            .and_then(|c| c.filename.strip_prefix("pty:"))
            .map(|p| SerialEndpoint::Pty(p.into()));
        live.update(|r| r.serial = pty);
    }
    if live.spec.qemu_args.iter().any(|a| a == "-vnc") {
        let vnc = live.qmp(|q| q.execute(&qmp::query_vnc {}))?;
        if let (true, Some(host), Some(port)) = (vnc.enabled, vnc.host, vnc.service) {
            let display = port
                .parse::<u32>()
                .ok()
                .and_then(|p| p.checked_sub(5900))
                .map_or(port.clone(), |d| d.to_string());
            live.update(|r| r.vnc = Some(format!("{host}:{display}")));
        }
        if let Some(pw) = &live.spec.vnc_password {
            live.qmp(|q| {
                q.execute(&qmp::change_vnc_password {
                    password: pw.clone(),
                })
            })?;
        }
    }
    Ok(())
}

/// The main loop: guest stops, `pvio destroy`, signals, QEMU's exit.
/// Returns how the domain ended.
fn supervise(live: &LiveDomain, rx: &Receiver<Msg>) -> (String, String) {
    let mut end: Option<(String, String)> = None;
    let mut deadline: Option<Instant> = None;
    loop {
        let msg = match deadline {
            None => rx.recv_timeout(DRAIN_EVERY),
            Some(d) => rx.recv_timeout(d.saturating_duration_since(Instant::now())),
        };
        let msg = match msg {
            Ok(m) => m,
            Err(RecvTimeoutError::Timeout) if deadline.is_none() => {
                live.drain_qmp();
                continue;
            }
            Err(RecvTimeoutError::Timeout) => {
                tracing::warn!("QEMU did not quit within {QUIT_GRACE:?}; killing it");
                kill_qemu(live);
                deadline = Some(Instant::now() + QUIT_GRACE);
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        match msg {
            Msg::Event(e) => {
                if let Some(stop) = on_event(live, *e) {
                    end.get_or_insert(stop);
                    live.update(|r| r.state = DomainState::Stopping);
                    if deadline.is_none() {
                        quit_qemu(live);
                        deadline = Some(Instant::now() + QUIT_GRACE);
                    }
                }
            }
            Msg::Backend(device, None) => {
                live.update(|r| r.backend_restarts = r.backend_restarts.saturating_add(1));
                live.refresh_backend_pids();
                tracing::info!("backend {device} restarted");
            }
            Msg::Backend(device, Some(why)) => {
                tracing::error!("backend {device} left down: {why}");
                live.update(|r| {
                    r.backends_down.retain(|b| b.device != device);
                    r.backends_down
                        .push(super::record::BackendDown { device, why });
                });
            }
            Msg::Destroy | Msg::Signal(_) | Msg::End(..) => {
                let (cause, why) = match msg {
                    Msg::Signal(s) => (
                        "destroy".to_owned(),
                        format!("the supervisor got signal {s}"),
                    ),
                    Msg::End(cause, why) => (cause, why),
                    _ => (
                        "destroy".to_owned(),
                        "destroyed by `pvio destroy`".to_owned(),
                    ),
                };
                end.get_or_insert((cause, why));
                live.update(|r| r.state = DomainState::Stopping);
                if deadline.is_none() {
                    quit_qemu(live);
                    deadline = Some(Instant::now() + QUIT_GRACE);
                }
            }
            Msg::QemuExited(status) => {
                live.drop_qmp();
                tracing::info!("QEMU exited: {status}");
                return end.unwrap_or_else(|| {
                    (
                        "device-model-exit".to_owned(),
                        format!("QEMU exited ({status}){}", qemu_log_tail(&live.dir())),
                    )
                });
            }
        }
    }
    end.unwrap_or_else(|| ("device-model-exit".to_owned(), "QEMU went away".to_owned()))
}

/// Reacts to one QEMU event; `Some((cause, detail))` when the domain must
/// end.
fn on_event(live: &LiveDomain, e: qmp::Event) -> Option<(String, String)> {
    match e {
        qmp::Event::SHUTDOWN { data, .. } => {
            let mut stop = GuestStop::from_reason(data.reason);
            if live.reboot_requested.swap(false, Ordering::SeqCst) && stop == GuestStop::Poweroff {
                // `pvio reboot` asked for it with the power button.
                stop = GuestStop::Reboot;
            }
            if stop == GuestStop::Host {
                return Some((
                    stop.cause().to_owned(),
                    format!("the host ended QEMU ({:?})", data.reason),
                ));
            }
            apply(live, stop)
        }
        // A panic the guest reported through pvpanic: QEMU paused it
        // (`panic=pause`), on_crash decides.
        qmp::Event::GUEST_PANICKED { .. } => apply(live, GuestStop::Crash),
        qmp::Event::RESET { .. } => {
            live.reboot_requested.store(false, Ordering::SeqCst);
            live.update(|r| r.reboots = r.reboots.saturating_add(1));
            None
        }
        qmp::Event::DEVICE_TRAY_MOVED { .. } => {
            live.refresh_media();
            None
        }
        qmp::Event::STOP { .. } => {
            live.update(|r| {
                if r.state == DomainState::Running {
                    r.state = DomainState::Paused;
                }
            });
            None
        }
        qmp::Event::RESUME { .. } => {
            live.update(|r| {
                if matches!(r.state, DomainState::Paused | DomainState::Preserved) {
                    r.state = DomainState::Running;
                }
            });
            None
        }
        _ => None,
    }
}

/// Applies the config's action to a guest stopped by `stop`.
fn apply(live: &LiveDomain, stop: GuestStop) -> Option<(String, String)> {
    let action = stop.action(&live.spec)?;
    let what = match stop {
        GuestStop::Poweroff => "the guest powered off",
        GuestStop::Reboot => "the guest rebooted",
        GuestStop::Crash => "the guest crashed",
        GuestStop::Host => "the host ended QEMU",
    };
    tracing::info!("{what}: on_{} = {action:?}", stop.cause());
    match action {
        OnEvent::Destroy => Some((stop.cause().to_owned(), what.to_owned())),
        OnEvent::Preserve => {
            live.update(|r| r.state = DomainState::Preserved);
            None
        }
        OnEvent::Restart => match restart_in_place(live) {
            Ok(()) => {
                live.update(|r| r.state = DomainState::Running);
                None
            }
            Err(err) => Some((
                stop.cause().to_owned(),
                format!("{what} and could not be restarted: {}", error_line(&err)),
            )),
        },
    }
}

/// Resets a guest stopped by a power-off, reboot or crash and runs it
/// again, in the same QEMU (hot-plugged devices stay).
fn restart_in_place(live: &LiveDomain) -> Result<(), QmpError> {
    let keep = if live.spec.on_reboot == OnEvent::Restart {
        qmp::RebootAction::reset
    } else {
        qmp::RebootAction::shutdown
    };
    let action = |reboot| qmp::set_action {
        panic: None,
        reboot: Some(reboot),
        shutdown: None,
        watchdog: None,
    };
    live.qmp(|q| {
        // With reboot=shutdown a reset request would stop the guest again.
        q.execute(&action(qmp::RebootAction::reset))?;
        q.execute(&qmp::system_reset {})?;
        let start = Instant::now();
        // A powered-off guest is in `shutdown`, a panicked one in
        // `guest-panicked`; the reset takes it out of either.
        while matches!(
            q.status()?.status,
            qmp::RunState::shutdown | qmp::RunState::guest_panicked
        ) {
            if start.elapsed() > Duration::from_secs(10) {
                return Err(QmpError::Timeout {
                    event: "the reset".to_owned(),
                    after: Duration::from_secs(10),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        q.execute(&action(keep))?;
        q.execute(&qmp::cont {})
    })?;
    tracing::info!("guest restarted");
    Ok(())
}

/// Asks QEMU to quit with SIGTERM (what QMP `quit` does, without waiting
/// for a QMP connection a hung or stopped QEMU would never answer); the
/// main loop kills it after [`QUIT_GRACE`].
fn quit_qemu(live: &LiveDomain) {
    if let Some(pid) = live.record().qemu_pid {
        process::signal(pid, libc::SIGTERM);
    }
}

fn kill_qemu(live: &LiveDomain) {
    if let Some(pid) = live.record().qemu_pid {
        process::signal(pid, libc::SIGKILL);
    }
}

/// Backends, taps, host PCI devices (all the domain owned if it ran, only
/// its config's if its start failed), sockets, the record.
fn teardown(live: &LiveDomain, exited: &AtomicBool, ran: bool, cause: &str, detail: &str) {
    live.update(|r| r.state = DomainState::Stopping);
    live.drop_qmp();
    if let Some(pid) = live.record().qemu_pid {
        if !exited.load(Ordering::SeqCst) {
            process::kill_if_ours(pid, &live.spec.qmp_socket, Duration::from_secs(5));
        }
    }
    live.backends().stop_all();
    // Only once QEMU is gone can vfio-pci let go of the devices.
    if live.record().qemu_pid.is_some_and(process::alive) {
        tracing::warn!("QEMU is still alive: its PCI devices stay on vfio-pci; `pvio release` them once it is gone");
    } else {
        passthrough::domain_ended(live.name(), &live.spec.passthrough, ran);
        live.update(|r| r.pci.clear());
    }
    let netns = live.record().netns;
    for tap in live.record().taps_created {
        if let Err(e) = taps::delete_in(&tap, netns.as_deref()) {
            tracing::warn!("{e}");
        }
    }
    cleanup::remove_sockets(&live.dir());
    live.update(|r| {
        r.end(cause, detail);
        r.taps_created.clear();
    });
    tracing::info!("domain {} ended: {cause}: {detail}", live.name());
}
