//! A synchronous QMP client over a Unix socket: connect (with a retry while
//! QEMU starts), the greeting and capabilities handshake, typed commands
//! with a read timeout, and event waits with a deadline.

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use qapi::qmp;
use qapi::{ExecuteError, Stream};

use super::{QmpError, Result};

/// How long one reply may take before the connection counts as hung.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// How often an event wait asks QEMU for pending events.
const EVENT_POLL: Duration = Duration::from_millis(50);

type Inner = qapi::Qmp<Stream<BufReader<UnixStream>, UnixStream>>;

/// One QMP connection, after the capabilities handshake.
pub struct Qmp {
    inner: Inner,
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
        let reader = BufReader::new(stream.try_clone().map_err(QmpError::Io)?);
        let mut inner = qapi::Qmp::new(Stream::new(reader, stream));
        // The greeting is read here rather than with `read_capabilities`,
        // which panics when QEMU closes the socket first.
        let mut line = String::new();
        let n = inner
            .inner_mut()
            .read_line(&mut line)
            .map_err(QmpError::Io)?;
        if n == 0 {
            return Err(QmpError::Closed);
        }
        let _greeting: qmp::QapiCapabilities =
            serde_json::from_str(&line).map_err(QmpError::Protocol)?;
        let mut qmp = Qmp {
            inner,
            pending: Vec::new(),
        };
        qmp.execute(&qmp::qmp_capabilities { enable: None })?;
        Ok(qmp)
    }

    /// Runs one typed command and returns QEMU's reply.
    pub fn execute<C: qapi::Command>(&mut self, command: &C) -> Result<C::Ok> {
        let result = self.inner.execute(command);
        self.pending.extend(self.inner.events());
        result.map_err(|e| match e {
            ExecuteError::Qapi(source) => QmpError::Refused {
                command: C::NAME,
                source,
            },
            ExecuteError::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                QmpError::Closed
            }
            ExecuteError::Io(e) => QmpError::Io(e),
        })
    }

    /// The VM's run state (`running`, `paused`, `shutdown`, ...).
    pub fn status(&mut self) -> Result<qmp::StatusInfo> {
        self.execute(&qmp::query_status {})
    }

    /// Takes the events received so far.
    pub fn take_events(&mut self) -> Vec<qmp::Event> {
        self.pending.extend(self.inner.events());
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
        let (reader, _writer) = self.inner.into_inner().into_inner();
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
        let line = crate::cli::error_line(&err);
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
