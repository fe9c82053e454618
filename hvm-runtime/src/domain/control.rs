//! The supervisor's control socket, `<domain dir>/control.sock`: the CLI
//! sends one JSON request per line and reads one JSON reply per line. The
//! supervisor holds the domain's QMP connection and starts its backends,
//! so every change to a running domain goes through here. Requests and
//! replies are typed; the supervisor checks each request on its own side.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::DomainError;

/// How long a request may take: a hot-unplug waits for the guest.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// A request to the supervisor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    /// The record.
    Status,
    /// Press the ACPI power button.
    Shutdown,
    /// Reboot the guest: with `force`, reset it at once; otherwise press
    /// the ACPI power button and treat the power-off that follows as a
    /// reboot. `on_reboot` applies either way.
    Reboot {
        /// Reset at once, without asking the guest.
        #[serde(default)]
        force: bool,
    },
    /// End the domain now.
    Destroy,
    /// Stop the vCPUs.
    Pause,
    /// Resume them.
    Unpause,
    /// Hot-plug a PV disk.
    BlockAttach {
        /// The disk spec as typed.
        spec: String,
        /// The CLI's working directory (for a relative image path).
        cwd: PathBuf,
    },
    /// Hot-unplug a PV disk.
    BlockDetach {
        /// The guest device.
        vdev: String,
    },
    /// The disks.
    BlockList,
    /// Change a CD-ROM's medium.
    CdInsert {
        /// The CD-ROM.
        vdev: String,
        /// The ISO (absolute).
        path: PathBuf,
    },
    /// Eject a CD-ROM's medium.
    CdEject {
        /// The CD-ROM.
        vdev: String,
    },
    /// Hot-plug a NIC.
    NetworkAttach {
        /// vif settings (`key=value`).
        settings: Vec<String>,
    },
    /// Hot-unplug a NIC.
    NetworkDetach {
        /// Its MAC or devid.
        nic: String,
    },
    /// The NICs.
    NetworkList,
    /// Hot-plug a host PCI device (already bound to vfio-pci) as
    /// `vfio-pci`.
    PciAttach {
        /// The host device (`0000:03:00.0`).
        host: pvio_passthrough::Bdf,
        /// QEMU's device id.
        id: String,
    },
    /// What hot-plugging these host PCI devices in turn would send to
    /// QEMU (the `device_add` lines), sending nothing: `assign --dry-run`.
    PciAttachPreview {
        /// The devices, with their QEMU ids.
        devices: Vec<super::record::PciEntry>,
    },
    /// Hot-unplug a `vfio-pci` device.
    PciDetach {
        /// QEMU's device id.
        id: String,
    },
    /// One QMP command, as the user wrote it (`pvio qmp`).
    Qmp {
        /// `{"execute": NAME, "arguments": {...}}`.
        command: serde_json::Value,
    },
    /// One human-monitor command line (`pvio monitor`).
    Monitor {
        /// The command line.
        command_line: String,
    },
    /// Write the domain's state into the attached descriptor (a file):
    /// pvio's header, then the device model's stream (`pvio save`).
    Save {
        /// What becomes of the domain.
        after: super::outgoing::AfterSave,
    },
    /// Copy the running domain into the attached descriptor (the pipe to
    /// the other host); it waits paused for [`Request::MigratedAway`] or
    /// `unpause` (`pvio migrate`).
    Migrate {
        /// The config to run it with on the other side (`-C`), instead of
        /// the one it was created from.
        #[serde(default)]
        config: Option<String>,
    },
    /// How far the stream has got.
    MigrationStatus,
    /// The other side runs the domain: end it here.
    MigratedAway {
        /// Where it went, for the record.
        to: String,
    },
    /// Take this name (a domain migrated in on the same host, once the
    /// one it came from has gone).
    Rename {
        /// The new name.
        name: String,
    },
}

/// What kind of failure a reply reports, so that a script can tell a
/// refusal from a failure without reading the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// The request did not parse.
    BadRequest,
    /// The caller may not control this domain (credentials).
    Forbidden,
    /// The supervisor's policy refuses it (an image another disk holds,
    /// a device the domain does not own, a name in use).
    Refused,
    /// It was tried and failed.
    Failed,
}

/// A failed request: its kind and one line saying what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlError {
    /// The kind.
    pub kind: ErrorKind,
    /// One line.
    pub message: String,
}

impl ControlError {
    /// A refusal by policy.
    pub fn refused(message: impl Into<String>) -> ControlError {
        ControlError {
            kind: ErrorKind::Refused,
            message: message.into(),
        }
    }
}

impl From<String> for ControlError {
    fn from(message: String) -> ControlError {
        ControlError {
            kind: ErrorKind::Failed,
            message,
        }
    }
}

/// The supervisor's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// The request's result, when it worked.
    pub ok: Option<serde_json::Value>,
    /// Why it did not.
    pub error: Option<ControlError>,
}

/// Sends `req` to the supervisor at `socket` and returns its result.
pub fn call(name: &str, socket: &Path, req: &Request) -> Result<serde_json::Value, DomainError> {
    call_with(name, socket, req, None, REQUEST_TIMEOUT)
}

/// Sends `req` with descriptor `fd` attached (`SCM_RIGHTS`): the file or
/// pipe a save or a migration writes to, opened by the caller. Waits up to
/// `timeout` for the reply.
pub fn call_with_fd(
    name: &str,
    socket: &Path,
    req: &Request,
    fd: BorrowedFd<'_>,
    timeout: Duration,
) -> Result<serde_json::Value, DomainError> {
    call_with(name, socket, req, Some(fd), timeout)
}

fn call_with(
    name: &str,
    socket: &Path,
    req: &Request,
    fd: Option<BorrowedFd<'_>>,
    timeout: Duration,
) -> Result<serde_json::Value, DomainError> {
    let io = |source| DomainError::Control {
        name: name.to_owned(),
        source,
    };
    let mut s = UnixStream::connect(socket).map_err(io)?;
    s.set_read_timeout(Some(timeout)).map_err(io)?;
    let mut line = serde_json::to_string(req).map_err(|e| io(e.into()))?;
    line.push('\n');
    match fd {
        None => s.write_all(line.as_bytes()).map_err(io)?,
        Some(fd) => send_with_fd(&s, line.as_bytes(), fd).map_err(io)?,
    }
    let mut reader = BufReader::new(s);
    let mut answer = String::new();
    if reader.read_line(&mut answer).map_err(io)? == 0 {
        return Err(io(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "it closed the connection without a reply",
        )));
    }
    let reply: Reply = serde_json::from_str(&answer).map_err(|e| io(e.into()))?;
    match (reply.ok, reply.error) {
        (_, Some(e)) => Err(DomainError::Refused {
            name: name.to_owned(),
            message: e.message,
        }),
        (Some(v), None) => Ok(v),
        (None, None) => Ok(serde_json::Value::Null),
    }
}

/// What answers requests in the supervisor: the request, and the
/// descriptor that came with it, if any.
pub type Handler =
    dyn Fn(Request, Option<OwnedFd>) -> Result<serde_json::Value, ControlError> + Send + Sync;

/// Writes all of `bytes` with `fd` attached to the first part.
fn send_with_fd(s: &UnixStream, bytes: &[u8], fd: BorrowedFd<'_>) -> std::io::Result<()> {
    let sent = crate::fd_passing::send_with_fd(s, bytes, fd)?;
    let mut w = s;
    w.write_all(&bytes[sent..])
}

/// Reads one request line of at most `max` bytes, and a descriptor sent
/// with it (close-on-exec; at most one is kept, more are closed).
fn recv_request(s: &UnixStream, max: usize) -> std::io::Result<(Vec<u8>, Option<OwnedFd>)> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    let mut line = Vec::new();
    let mut fd = None;
    let mut buf = [0u8; 4096];
    while !line.contains(&b'\n') && line.len() < max {
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
        let mut anc = RecvAncillaryBuffer::new(&mut space);
        let got = rustix::net::recvmsg(
            s,
            &mut [std::io::IoSliceMut::new(&mut buf)],
            &mut anc,
            RecvFlags::CMSG_CLOEXEC,
        )?;
        for msg in anc.drain() {
            if let RecvAncillaryMessage::ScmRights(fds) = msg {
                for f in fds {
                    if fd.is_none() {
                        fd = Some(f);
                    }
                }
            }
        }
        if got.bytes == 0 {
            break;
        }
        line.extend_from_slice(&buf[..got.bytes]);
    }
    Ok((line, fd))
}

/// Binds the control socket at `path` (replacing a stale one), gives it
/// [`SOCKET_MODE`](super::access::SOCKET_MODE) and the operators' group
/// whatever the umask, and serves requests on a thread, each connection on
/// its own thread. A peer that is neither root nor an operator gets one
/// `forbidden` line (`SO_PEERCRED`).
pub fn serve(path: &Path, handler: Arc<Handler>) -> Result<(), DomainError> {
    let _ = std::fs::remove_file(path);
    let io = |what, source| DomainError::Io {
        what,
        path: path.to_owned(),
        source,
    };
    let listener = UnixListener::bind(path).map_err(|e| io("listen on", e))?;
    super::access::protect(
        path,
        super::access::SOCKET_MODE,
        super::access::operators_gid(),
    )
    .map_err(|e| io("set the mode of", e))?;
    std::thread::Builder::new()
        .name("control".to_owned())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let h = Arc::clone(&handler);
                let spawned = std::thread::Builder::new()
                    .name("control-req".to_owned())
                    .spawn(move || answer(conn, &*h));
                if let Err(e) = spawned {
                    tracing::warn!("cannot answer a control request: {e}");
                }
            }
        })
        .map_err(DomainError::Spawn)?;
    Ok(())
}

fn send(mut writer: &UnixStream, reply: &Reply) {
    if let Ok(mut text) = serde_json::to_string(reply) {
        text.push('\n');
        let _ = writer.write_all(text.as_bytes());
    }
}

fn answer(conn: UnixStream, handler: &Handler) {
    if let Err(why) = super::access::check_peer(&conn) {
        tracing::warn!("control: refused a caller: {why}");
        send(
            &conn,
            &Reply {
                ok: None,
                error: Some(ControlError {
                    kind: ErrorKind::Forbidden,
                    message: why.to_string(),
                }),
            },
        );
        return;
    }
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    // One request of at most 64 KiB per connection.
    let Ok((line, fd)) = recv_request(&conn, 64 * 1024) else {
        return;
    };
    let line = String::from_utf8_lossy(&line);
    let line = line.split('\n').next().unwrap_or_default();
    let writer = conn;
    let reply = match serde_json::from_str::<Request>(line) {
        Ok(req) => {
            tracing::info!("control: {}", line.trim());
            match handler(req, fd) {
                Ok(v) => Reply {
                    ok: Some(v),
                    error: None,
                },
                Err(e) => Reply {
                    ok: None,
                    error: Some(e),
                },
            }
        }
        Err(e) => Reply {
            ok: None,
            error: Some(ControlError {
                kind: ErrorKind::BadRequest,
                message: format!("bad request: {e}"),
            }),
        },
    };
    send(&writer, &reply);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_refusals_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("control.sock");
        serve(
            &sock,
            Arc::new(|req, _fd| match req {
                Request::BlockDetach { vdev } if vdev == "xvda" => {
                    Ok(serde_json::json!({"detached": vdev}))
                }
                Request::BlockDetach { vdev } => Err(format!("{vdev} is not attached").into()),
                _ => Ok(serde_json::Value::Null),
            }),
        )
        .unwrap();
        let v = call(
            "web",
            &sock,
            &Request::BlockDetach {
                vdev: "xvda".into(),
            },
        )
        .unwrap();
        assert_eq!(v["detached"], "xvda");
        let e = call(
            "web",
            &sock,
            &Request::BlockDetach {
                vdev: "xvdz".into(),
            },
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "domain 'web': xvdz is not attached");
        assert_eq!(
            call("web", &sock, &Request::Status).unwrap(),
            serde_json::Value::Null
        );
    }

    #[test]
    fn wire_format_is_tagged_by_op() {
        let t = serde_json::to_string(&Request::CdEject { vdev: "hdc".into() }).unwrap();
        assert_eq!(t, r#"{"op":"cd-eject","vdev":"hdc"}"#);
    }

    #[test]
    fn a_missing_supervisor_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let e = call("web", &dir.path().join("none.sock"), &Request::Status).unwrap_err();
        assert!(e
            .to_string()
            .starts_with("the supervisor of domain 'web' does not answer"));
    }
}
