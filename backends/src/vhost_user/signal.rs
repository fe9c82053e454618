//! SIGTERM and SIGINT turned into a [`StopHandle::stop`] for a backend run as
//! a foreground command.
//!
//! It must not know what is being stopped. Library users that start backends
//! in-process (the HVM runtime) keep their own signal handling and call
//! [`StopHandle::stop`] themselves.

use std::io;
use std::thread;

use vmm_sys_util::signal::block_signal;

use super::stop::StopHandle;

/// Errors setting up the signal watcher.
#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    /// The signals could not be blocked in this thread.
    #[error("cannot block SIGTERM/SIGINT: {0}")]
    Block(String),
    /// The watcher thread could not be started.
    #[error("cannot start the signal watcher thread")]
    Spawn(#[source] io::Error),
}

const SIGNALS: [libc::c_int; 2] = [libc::SIGTERM, libc::SIGINT];

/// Blocks SIGTERM and SIGINT in the calling thread: from then on they wait
/// for [`stop_on_signals`]'s watcher instead of killing the process. Call
/// it first thing, before the socket exists: a supervisor or test that
/// signals a backend as soon as its socket appears must stop it, not kill
/// it.
pub fn block_stop_signals() -> Result<(), SignalError> {
    for sig in SIGNALS {
        match block_signal(sig) {
            Ok(()) | Err(vmm_sys_util::signal::Error::SignalAlreadyBlocked(_)) => {}
            Err(e) => return Err(SignalError::Block(e.to_string())),
        }
    }
    Ok(())
}

/// Blocks SIGTERM and SIGINT in the calling thread and starts a thread that
/// waits for them and calls `handle.stop()`.
///
/// Call it before any other thread is spawned: threads inherit the signal
/// mask, so every thread started afterwards leaves the two signals to the
/// watcher instead of being killed by them.
pub fn stop_on_signals(handle: StopHandle) -> Result<(), SignalError> {
    block_stop_signals()?;
    thread::Builder::new()
        .name("pvio-signals".into())
        .spawn(move || loop {
            match wait_for_signal() {
                Ok(sig) => {
                    tracing::info!("signal {sig} received: stopping");
                    handle.stop();
                }
                Err(e) => {
                    tracing::warn!("cannot wait for signals: {e}");
                    return;
                }
            }
        })
        .map_err(SignalError::Spawn)?;
    Ok(())
}

/// Waits for one of [`SIGNALS`] (blocked in this thread) and returns it.
fn wait_for_signal() -> io::Result<libc::c_int> {
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set it is given; `set` is a valid,
    // writable sigset_t.
    let ret = unsafe { libc::sigemptyset(set.as_mut_ptr()) };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    for sig in SIGNALS {
        // SAFETY: `set` was initialised by sigemptyset above; `sig` is a valid
        // signal number.
        let ret = unsafe { libc::sigaddset(set.as_mut_ptr(), sig) };
        if ret != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    // SAFETY: initialised by sigemptyset/sigaddset above.
    let set = unsafe { set.assume_init() };
    loop {
        let mut sig: libc::c_int = 0;
        // SAFETY: `set` is an initialised signal set and `sig` a valid place
        // for the result; sigwait touches nothing else.
        let ret = unsafe { libc::sigwait(&set, &mut sig) };
        match ret {
            0 => return Ok(sig),
            libc::EINTR => continue,
            err => return Err(io::Error::from_raw_os_error(err)),
        }
    }
}
