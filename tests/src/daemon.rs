//! A program a test runs beside its guest (`pvio backend blk`, `pvio backend
//! net`, `qemu-storage-daemon`): started, ready once its Unix socket exists,
//! its stderr echoed as `[name] ...` and kept, stopped with SIGTERM, and
//! killed if the test ends without stopping it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long a daemon gets to create its socket, and to exit after SIGTERM:
/// a bound for a busy machine, not a guess at how long it takes (the wait
/// ends as soon as the socket is there).
const READY: Duration = Duration::from_secs(60);

/// A running daemon.
pub struct Daemon {
    name: String,
    child: Option<Child>,
    socket: PathBuf,
    log: Arc<Mutex<String>>,
    reader: Option<JoinHandle<()>>,
}

impl Daemon {
    /// Starts `cmd` and waits until `socket` exists. Fails with the
    /// daemon's stderr when it exits first or takes longer than 10 s.
    pub fn spawn(name: &str, mut cmd: Command, socket: &Path) -> Result<Daemon, String> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        let log = Arc::new(Mutex::new(String::new()));
        let reader = child.stderr.take().map(|stderr| {
            let sink = Arc::clone(&log);
            let tag = name.to_owned();
            thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    eprintln!("[{tag}] {line}");
                    if let Ok(mut l) = sink.lock() {
                        l.push_str(&line);
                        l.push('\n');
                    }
                }
            })
        });
        let mut d = Daemon {
            name: name.to_owned(),
            child: Some(child),
            socket: socket.to_owned(),
            log,
            reader,
        };
        let deadline = Instant::now() + READY;
        while !socket.exists() {
            if let Some(status) = d.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                d.child = None;
                d.join_reader();
                return Err(format!("{name} exited with {status}:\n{}", d.log()));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{name} did not create {} within {READY:?}:\n{}",
                    socket.display(),
                    d.log()
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
        Ok(d)
    }

    /// What the daemon wrote to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// The daemon's process id, if it still runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The socket it listens on.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// SIGTERM, then waits for the exit (killed after 10 s, an error).
    pub fn stop(self) -> Result<ExitStatus, String> {
        self.stop_with(libc::SIGTERM)
    }

    /// Sends `signal`, then waits for the exit (killed after 10 s, an
    /// error).
    pub fn stop_with(mut self, signal: libc::c_int) -> Result<ExitStatus, String> {
        let Some(mut child) = self.child.take() else {
            return Err(format!("{} is not running", self.name));
        };
        let pid = libc::pid_t::try_from(child.id()).map_err(|e| e.to_string())?;
        // SAFETY: kill only sends a signal to our own child, not yet reaped.
        let ret = unsafe { libc::kill(pid, signal) };
        if ret != 0 {
            return Err(format!(
                "kill -{signal} {pid}: {}",
                std::io::Error::last_os_error()
            ));
        }
        let deadline = Instant::now() + READY;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    self.join_reader();
                    return Ok(status);
                }
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "{} did not stop within {READY:?} of signal {signal}",
                        self.name
                    ));
                }
            }
        }
    }

    fn join_reader(&mut self) {
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.join_reader();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_when_the_socket_appears_and_stops_on_sigterm() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("s");
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(format!(
            "echo starting >&2; trap 'rm -f {0}; exit 0' TERM; touch {0}; while :; do sleep 0.05; done",
            sock.display()
        ));
        let d = Daemon::spawn("sh", cmd, &sock).unwrap();
        assert!(d.pid().is_some());
        let status = d.stop().unwrap();
        assert!(status.success(), "{status}");
        assert!(!sock.exists());
    }

    #[test]
    fn a_daemon_that_dies_first_is_an_error_with_its_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg("echo no image >&2; exit 3");
        let err = Daemon::spawn("sh", cmd, &dir.path().join("s"))
            .err()
            .unwrap();
        assert!(err.contains("no image"), "{err}");
    }
}
