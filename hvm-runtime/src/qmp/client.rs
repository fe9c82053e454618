//! A synchronous QMP client over a Unix socket: connect (with a retry while
//! QEMU starts), the greeting and capabilities handshake, typed commands
//! with a read timeout, and event waits with a deadline.

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use std::io::Write;

use qapi::qmp;

use super::{QmpError, Result};

/// How long one reply may take before the connection counts as hung: a
/// stopped or hung QEMU holds no request (and no supervisor thread)
/// longer.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// Events kept on a command connection until someone takes them; older
/// ones are dropped.
const PENDING_KEPT: usize = 256;

/// How often an event wait asks QEMU for pending events.
const EVENT_POLL: Duration = Duration::from_millis(50);

/// One QMP connection, after the capabilities handshake.
pub struct Qmp {
    reader: BufReader<UnixStream>,
    /// The same socket: commands, and descriptors sent alongside them.
    raw: UnixStream,
    /// Events read while waiting for replies, oldest first.
    pending: Vec<qmp::Event>,
}

impl std::fmt::Debug for Qmp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Qmp")
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl Qmp {
    /// Connects to `path`, retrying while the socket does not exist or does
    /// not accept yet, for at most `timeout`.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Qmp> {
        Self::connect_while(path, timeout, || true)
    }

    /// Like [`connect`](Self::connect), but gives up early once
    /// `still_starting` says the QEMU that should create the socket is gone.
    pub fn connect_while(
        path: &Path,
        timeout: Duration,
        mut still_starting: impl FnMut() -> bool,
    ) -> Result<Qmp> {
        let start = Instant::now();
        loop {
            match UnixStream::connect(path) {
                Ok(s) => return Self::handshake(s),
                Err(e) => {
                    let retry = matches!(
                        e.kind(),
                        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                    );
                    if !retry || start.elapsed() >= timeout || !still_starting() {
                        return Err(QmpError::Connect {
                            path: path.to_owned(),
                            after: start.elapsed(),
                            source: e,
                        });
                    }
                    thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }

    fn handshake(stream: UnixStream) -> Result<Qmp> {
        stream
            .set_read_timeout(Some(REPLY_TIMEOUT))
            .map_err(QmpError::Io)?;
        let mut reader = BufReader::new(stream.try_clone().map_err(QmpError::Io)?);
        let mut line = String::new();
        let n = reader.read_line(&mut line).map_err(QmpError::Io)?;
        if n == 0 {
            return Err(QmpError::Closed);
        }
        let _greeting: qmp::QapiCapabilities =
            serde_json::from_str(&line).map_err(QmpError::Protocol)?;
        let mut qmp = Qmp {
            reader,
            raw: stream,
            pending: Vec::new(),
        };
        qmp.execute(&qmp::qmp_capabilities { enable: None })?;
        Ok(qmp)
    }

    /// Runs one typed command and returns QEMU's reply. Events that arrive
    /// first are kept for [`take_events`](Self::take_events); one this
    /// build's schema does not know (a newer QEMU's) is logged and
    /// skipped, never taken for a broken connection.
    pub fn execute<C: qapi::Command>(&mut self, command: &C) -> Result<C::Ok> {
        let args = serde_json::to_value(command).map_err(QmpError::Protocol)?;
        let ret = self.round_trip(C::NAME, args)?;
        serde_json::from_value(ret).map_err(QmpError::Protocol)
    }

    /// Runs command `name` with `arguments` as given (`pvio qmp`), and
    /// returns QEMU's `return` value as it came.
    pub fn execute_raw(
        &mut self,
        name: &str,
        arguments: serde_json::Value,
    ) -> Result<serde_json::Value> {
        self.round_trip(name, arguments)
    }

    fn round_trip(
        &mut self,
        name: &str,
        arguments: serde_json::Value,
    ) -> Result<serde_json::Value> {
        let mut cmd = serde_json::json!({ "execute": name });
        if !arguments.is_null() && arguments != serde_json::json!({}) {
            cmd["arguments"] = arguments;
        }
        let mut line = serde_json::to_string(&cmd).map_err(QmpError::Protocol)?;
        line.push('\n');
        self.raw.write_all(line.as_bytes()).map_err(io_error)?;
        loop {
            let mut text = String::new();
            if self.reader.read_line(&mut text).map_err(io_error)? == 0 {
                return Err(QmpError::Closed);
            }
            let v: serde_json::Value = serde_json::from_str(&text).map_err(QmpError::Protocol)?;
            if v.get("event").is_some() {
                match serde_json::from_value::<qmp::Event>(v) {
                    Ok(e) => {
                        if self.pending.len() >= PENDING_KEPT {
                            self.pending.remove(0);
                        }
                        self.pending.push(e);
                    }
                    Err(_) => {
                        tracing::debug!("QMP event this schema does not know: {}", text.trim())
                    }
                }
                continue;
            }
            if let Some(ret) = v.get("return") {
                return Ok(ret.clone());
            }
            if v.get("error").is_some() {
                let source: qapi::Error = serde_json::from_value(v).map_err(QmpError::Protocol)?;
                return Err(QmpError::Refused {
                    command: name.to_owned(),
                    source,
                });
            }
            tracing::debug!("QMP message skipped: {}", text.trim());
        }
    }

    /// Hands `fd` to QEMU in a new fd set (`add-fd`) and returns the set's
    /// id: `/dev/fdset/ID` then names it where QEMU opens a file. An
    /// unprivileged QEMU so uses files only root may open.
    pub fn add_fd(&mut self, fd: std::os::fd::BorrowedFd<'_>) -> Result<i64> {
        self.send_fd(fd)?;
        let info = self.execute(&qmp::add_fd {
            fdset_id: None,
            opaque: None,
        })?;
        Ok(info.fdset_id)
    }

    /// Forgets the fd set `id` (QEMU keeps the copies it opened from it).
    pub fn remove_fdset(&mut self, id: i64) -> Result<()> {
        self.execute(&qmp::remove_fd {
            fd: None,
            fdset_id: id,
        })
        .map(|_| ())
    }

    /// Hands `fd` to QEMU under `name` (`getfd`), for `netdev_add`'s
    /// `fd=` and the like.
    pub fn getfd(&mut self, name: &str, fd: std::os::fd::BorrowedFd<'_>) -> Result<()> {
        self.send_fd(fd)?;
        self.execute(&qmp::getfd {
            fdname: name.to_owned(),
        })
        .map(|_| ())
    }

    /// Sends one space (JSON whitespace, ignored by the parser) with `fd`
    /// attached: QEMU keeps the descriptor for the next command that takes
    /// one.
    fn send_fd(&mut self, fd: std::os::fd::BorrowedFd<'_>) -> Result<()> {
        crate::fd_passing::send_with_fd(&self.raw, b" ", fd).map_err(QmpError::Io)?;
        Ok(())
    }

    /// The VM's run state (`running`, `paused`, `shutdown`, ...).
    pub fn status(&mut self) -> Result<qmp::StatusInfo> {
        self.execute(&qmp::query_status {})
    }

    /// Takes the events received so far.
    pub fn take_events(&mut self) -> Vec<qmp::Event> {
        std::mem::take(&mut self.pending)
    }

    /// Waits until an event for which `pred` is true arrives (events already
    /// received count), for at most `timeout`. Other events are dropped.
    pub fn wait_event(
        &mut self,
        what: &str,
        timeout: Duration,
        mut pred: impl FnMut(&qmp::Event) -> bool,
    ) -> Result<qmp::Event> {
        let start = Instant::now();
        loop {
            let events = self.take_events();
            if let Some(e) = events.into_iter().find(|e| pred(e)) {
                return Ok(e);
            }
            if start.elapsed() >= timeout {
                return Err(QmpError::Timeout {
                    event: what.to_owned(),
                    after: timeout,
                });
            }
            thread::sleep(EVENT_POLL);
            // A cheap command: QEMU sends the events queued before it first.
            self.execute(&qmp::query_version {})?;
        }
    }

    /// The connection's reader and the events received so far, for a
    /// connection that from now on only listens.
    pub(super) fn into_reader(mut self) -> Result<(BufReader<UnixStream>, Vec<qmp::Event>)> {
        let events = self.take_events();
        let reader = self.reader;
        reader
            .get_ref()
            .set_read_timeout(None)
            .map_err(QmpError::Io)?;
        Ok((reader, events))
    }

    /// Waits for `DEVICE_DELETED` of the device with the qdev id `id`.
    pub fn wait_device_deleted(&mut self, id: &str, timeout: Duration) -> Result<()> {
        self.wait_event(&format!("DEVICE_DELETED for {id}"), timeout, |e| {
            is_device_deleted(e, id)
        })
        .map(drop)
    }
}

/// EOF as a closed connection, anything else as a failed one.
fn io_error(e: std::io::Error) -> QmpError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        QmpError::Closed
    } else {
        QmpError::Io(e)
    }
}

/// True for the `DEVICE_DELETED` event of the device with the qdev id `id`.
pub fn is_device_deleted(e: &qmp::Event, id: &str) -> bool {
    matches!(e, qmp::Event::DEVICE_DELETED { data, .. } if data.device.as_deref() == Some(id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixListener;

    /// A fake QEMU: sends the greeting, then answers each line with the
    /// next scripted reply.
    fn fake_qemu(dir: &Path, replies: Vec<&'static str>) -> std::path::PathBuf {
        let path = dir.join("qmp.sock");
        let listener = UnixListener::bind(&path).unwrap();
        thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            let mut w = s.try_clone().unwrap();
            let mut r = BufReader::new(s);
            w.write_all(
                br#"{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": []}}"#,
            )
            .unwrap();
            w.write_all(b"\n").unwrap();
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            w.write_all(b"{\"return\": {}}\n").unwrap();
            for reply in replies {
                line.clear();
                if r.read_line(&mut line).unwrap() == 0 {
                    return;
                }
                w.write_all(reply.as_bytes()).unwrap();
                w.write_all(b"\n").unwrap();
            }
        });
        path
    }

    #[test]
    fn typed_command_and_reply() {
        let dir = tempfile::tempdir().unwrap();
        let path = fake_qemu(
            dir.path(),
            vec![r#"{"return": {"running": true, "singlestep": false, "status": "running"}}"#],
        );
        let mut q = Qmp::connect(&path, Duration::from_secs(5)).unwrap();
        let st = q.status().unwrap();
        assert!(st.running);
        assert_eq!(st.status, qmp::RunState::running);
    }

    #[test]
    fn refusal_carries_qemus_message() {
        let dir = tempfile::tempdir().unwrap();
        let path = fake_qemu(
            dir.path(),
            vec![r#"{"error": {"class": "GenericError", "desc": "Duplicate device ID 'xvdb'"}}"#],
        );
        let mut q = Qmp::connect(&path, Duration::from_secs(5)).unwrap();
        let err = q
            .execute(&qmp::device_del { id: "xvdb".into() })
            .unwrap_err();
        let line = crate::report::error_line(&err);
        assert_eq!(line, "QEMU refused device_del: Duplicate device ID 'xvdb'");
    }

    #[test]
    fn events_before_a_reply_are_kept_and_awaited() {
        let dir = tempfile::tempdir().unwrap();
        let path = fake_qemu(
            dir.path(),
            vec![concat!(
                r#"{"event": "DEVICE_DELETED", "data": {"device": "xvdb", "path": "/machine/peripheral/xvdb"}, "timestamp": {"seconds": 1, "microseconds": 2}}"#,
                "\n",
                r#"{"return": {}}"#
            )],
        );
        let mut q = Qmp::connect(&path, Duration::from_secs(5)).unwrap();
        q.execute(&qmp::device_del { id: "xvdb".into() }).unwrap();
        q.wait_device_deleted("xvdb", Duration::from_secs(1))
            .unwrap();
    }

    #[test]
    fn a_closed_socket_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp.sock");
        let listener = UnixListener::bind(&path).unwrap();
        thread::spawn(move || drop(listener.accept()));
        let err = Qmp::connect(&path, Duration::from_secs(5)).unwrap_err();
        assert!(matches!(err, QmpError::Closed), "{err:?}");
    }

    #[test]
    fn connect_gives_up_when_qemu_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("never.sock");
        let err = Qmp::connect_while(&path, Duration::from_secs(30), || false).unwrap_err();
        assert!(matches!(err, QmpError::Connect { .. }), "{err:?}");
    }
}
