//! A QMP connection that only listens: the supervisor keeps one open for
//! the domain's life and reads QEMU's events (`SHUTDOWN`, `RESET`,
//! `DEVICE_DELETED`, ...) as they come, blocking, with no commands in
//! between.

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use qapi::qmp;

use super::{Qmp, QmpError, Result};

/// What [`EventReader::next_event`] returns.
#[derive(Debug)]
pub enum Received {
    /// An event QEMU sent.
    Event(Box<qmp::Event>),
    /// A line pvio's schema does not know (an event newer or older than
    /// it); its text, for the log.
    Unknown(String),
    /// QEMU closed the connection (it exited).
    Closed,
}

/// Reads events from one QMP connection.
#[derive(Debug)]
pub struct EventReader {
    reader: BufReader<UnixStream>,
    early: std::vec::IntoIter<qmp::Event>,
    line: Vec<u8>,
}

impl EventReader {
    /// Connects to `path` (retrying as [`Qmp::connect_while`] does) and
    /// returns a reader of its events.
    pub fn connect_while(
        path: &Path,
        timeout: Duration,
        still_starting: impl FnMut() -> bool,
    ) -> Result<EventReader> {
        let qmp = Qmp::connect_while(path, timeout, still_starting)?;
        let (reader, early) = qmp.into_reader()?;
        Ok(EventReader {
            reader,
            early: early.into_iter(),
            line: Vec::new(),
        })
    }

    /// Blocks until the next event, or until QEMU closes the connection.
    pub fn next_event(&mut self) -> Result<Received> {
        if let Some(e) = self.early.next() {
            return Ok(Received::Event(Box::new(e)));
        }
        loop {
            self.line.clear();
            let n = self
                .reader
                .read_until(b'\n', &mut self.line)
                .map_err(QmpError::Io)?;
            if n == 0 {
                return Ok(Received::Closed);
            }
            if self.line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Ok(
                match serde_json::from_slice::<qmp::QmpMessageAny>(&self.line) {
                    Ok(qmp::QmpMessage::Event(e)) => Received::Event(Box::new(e)),
                    // No command is sent on this connection; a reply is noise.
                    Ok(qmp::QmpMessage::Response(_)) => continue,
                    Err(_) => {
                        Received::Unknown(String::from_utf8_lossy(&self.line).trim().to_owned())
                    }
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixListener;

    #[test]
    fn reads_known_and_unknown_events_then_closed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp.sock");
        let listener = UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            let mut w = s.try_clone().unwrap();
            let mut r = BufReader::new(s);
            w.write_all(b"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}, \"package\": \"\"}, \"capabilities\": []}}\n").unwrap();
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            w.write_all(b"{\"return\": {}}\n").unwrap();
            w.write_all(b"{\"event\": \"NOT_A_REAL_EVENT\", \"data\": {}, \"timestamp\": {\"seconds\": 1, \"microseconds\": 0}}\n").unwrap();
            w.write_all(b"{\"event\": \"SHUTDOWN\", \"data\": {\"guest\": true, \"reason\": \"guest-shutdown\"}, \"timestamp\": {\"seconds\": 1, \"microseconds\": 0}}\n").unwrap();
        });
        let mut ev = EventReader::connect_while(&path, Duration::from_secs(5), || true).unwrap();
        assert!(
            matches!(ev.next_event().unwrap(), Received::Unknown(t) if t.contains("NOT_A_REAL_EVENT"))
        );
        match ev.next_event().unwrap() {
            Received::Event(e) => match *e {
                qmp::Event::SHUTDOWN { data, .. } => {
                    assert!(data.guest);
                    assert_eq!(data.reason, qmp::ShutdownCause::guest_shutdown);
                }
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
        assert!(matches!(ev.next_event().unwrap(), Received::Closed));
    }
}
