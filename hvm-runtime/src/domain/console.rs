//! `pvio console NAME`: the domain's first serial port on this terminal,
//! as `xl console` does. The terminal goes into raw mode (restored on
//! the way out, whatever happens), bytes are copied both ways, and
//! Ctrl-] detaches. A pty or a Unix socket can be attached; a serial port
//! that writes to a file cannot (its path is named instead).

use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;

use rustix::event::{PollFd, PollFlags};
use rustix::termios::{OptionalActions, Termios};
use std::os::unix::net::UnixStream;

use super::record::SerialEndpoint;
use super::rundir::RunRoot;
use super::DomainError;

/// The byte that detaches (Ctrl-]).
pub const DETACH: u8 = 0x1d;

/// Attaches this terminal to the console of `name` until Ctrl-], end of
/// input, or the domain's end.
pub fn attach(root: &RunRoot, name: &str) -> Result<(), DomainError> {
    let found = root.live(name)?;
    let fail = |what: &str| {
        let what = what.to_owned();
        move |source| DomainError::Console { what, source }
    };
    let mut dev: Box<dyn Device> = match found.record.serial {
        Some(SerialEndpoint::Pty(p)) => Box::new(
            OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_NOCTTY)
                .open(&p)
                .map_err(fail(&format!("cannot open {}", p.display())))?,
        ),
        Some(SerialEndpoint::Unix(p)) => Box::new(
            UnixStream::connect(&p).map_err(fail(&format!("cannot connect to {}", p.display())))?,
        ),
        Some(SerialEndpoint::File(p)) => {
            return Err(DomainError::Refused {
                name: name.to_owned(),
                message: format!("its serial port writes to {}; read it there", p.display()),
            })
        }
        None => {
            return Err(DomainError::Refused {
                name: name.to_owned(),
                message: "it has no serial console (serial = 'pty' in its config)".to_owned(),
            })
        }
    };
    let stdin = io::stdin();
    let _raw =
        RawMode::enter(stdin.as_fd()).map_err(fail("cannot set the terminal to raw mode"))?;
    eprint!("Connected to the console of {name}; Ctrl-] detaches.\r\n");
    let r = pump(stdin.as_fd(), &mut *dev);
    eprint!("\r\nDetached from {name}.\r\n");
    r.map_err(fail("copying failed"))
}

/// A console device: readable, writable, pollable.
trait Device: Read + Write + AsFd {}
impl<T: Read + Write + AsFd> Device for T {}

/// Copies both ways until Ctrl-], end of input or the device's end.
fn pump(input: BorrowedFd<'_>, dev: &mut dyn Device) -> io::Result<()> {
    let mut out = io::stdout();
    let mut buf = [0u8; 4096];
    loop {
        let (input_ready, dev_ready) = {
            let dev_fd = dev.as_fd();
            let mut fds = [
                PollFd::new(&input, PollFlags::IN),
                PollFd::new(&dev_fd, PollFlags::IN),
            ];
            match rustix::event::poll(&mut fds, None) {
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
                Ok(_) => {}
            }
            (!fds[0].revents().is_empty(), !fds[1].revents().is_empty())
        };
        if dev_ready {
            match dev.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => {
                    out.write_all(&buf[..n])?;
                    out.flush()?;
                }
                // A pty whose QEMU went away reads EIO.
                Err(e) if e.raw_os_error() == Some(libc::EIO) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if input_ready {
            let n = read_fd(input, &mut buf)?;
            if n == 0 {
                return Ok(());
            }
            let chunk = &buf[..n];
            if let Some(i) = chunk.iter().position(|b| *b == DETACH) {
                dev.write_all(&chunk[..i])?;
                return Ok(());
            }
            dev.write_all(chunk)?;
        }
    }
}

fn read_fd(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match rustix::io::read(fd, &mut *buf) {
            Err(rustix::io::Errno::INTR) => continue,
            r => return r.map_err(io::Error::from),
        }
    }
}

/// The terminal in raw mode; the old mode comes back on drop. Not a
/// terminal (a pipe, a file): nothing to do.
struct RawMode<'a> {
    fd: BorrowedFd<'a>,
    saved: Option<Termios>,
}

impl<'a> RawMode<'a> {
    fn enter(fd: BorrowedFd<'a>) -> io::Result<RawMode<'a>> {
        let Ok(saved) = rustix::termios::tcgetattr(fd) else {
            return Ok(RawMode { fd, saved: None });
        };
        let mut raw = saved.clone();
        raw.make_raw();
        rustix::termios::tcsetattr(fd, OptionalActions::Now, &raw)?;
        Ok(RawMode {
            fd,
            saved: Some(saved),
        })
    }
}

impl Drop for RawMode<'_> {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = rustix::termios::tcsetattr(self.fd, OptionalActions::Now, saved);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_both_ways_and_detaches_on_ctrl_bracket() {
        let (mut guest_side, mut dev) = UnixStream::pair().unwrap();
        let (input_r, mut input_w) = UnixStream::pair().unwrap();
        guest_side.write_all(b"login: ").unwrap();
        input_w.write_all(b"root\n\x1dignored").unwrap();
        pump(input_r.as_fd(), &mut dev).unwrap();
        let mut got = [0u8; 5];
        guest_side.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"root\n");
    }

    #[test]
    fn a_pipe_is_not_put_in_raw_mode() {
        let (a, _b) = UnixStream::pair().unwrap();
        let r = RawMode::enter(a.as_fd()).unwrap();
        assert!(r.saved.is_none());
    }
}
