//! `pvio migrate NAME HOST` and its other end, `pvio migrate-receive`,
//! run by `ssh HOST pvio migrate-receive` as xl runs `xl
//! migrate-receive`.
//!
//! The conversation, over ssh's stdin (source to receiver) and stdout
//! (receiver to source):
//!
//! ```text
//! source                                 receiver
//!   header, then QEMU's stream  ------>   checks the header and images,
//!                                          starts the domain paused with
//!                                          `-incoming`, reads the stream
//!                              <------    "pvio-migrate received"
//!   "go"                        ------>   resumes the guest
//!                              <------    "pvio-migrate running NAME"
//!   ends the domain here                   (same host: takes the name once
//!                              <------     the source has gone)
//!                                          "pvio-migrate done NAME"
//! ```
//!
//! Until the source says "go", the guest runs nowhere but on the source:
//! a failure before it (the stream, the other side, ssh) resumes it
//! there, and the receiver ends its copy when its stdin closes without
//! "go". The "go" is sent only after the receiver said it has the whole
//! stream, so QEMU (which reads the stream from the same pipe) has
//! stopped reading before it.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{MigrateError, Result};
use crate::domain::control::{self, Request};
use crate::domain::outgoing::Sent;
use crate::domain::record::{DomainState, Origin};
use crate::domain::saved;
use crate::domain::{start, DomainError, RunRoot};

/// The prefix of every line the receiver sends back.
const TAG: &str = "pvio-migrate";
/// How long a migration's stream may take.
const STREAM_TIMEOUT: Duration = Duration::from_secs(3600);
/// How long each later step may take.
const STEP: Duration = Duration::from_secs(120);

/// What a finished migration reports.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Migrated {
    /// The domain.
    pub name: String,
    /// Where it went.
    pub host: String,
    /// The stream's figures (the downtime is QEMU's).
    pub sent: Sent,
    /// The name it runs under there.
    pub remote_name: String,
}

/// Options of a migration.
#[derive(Debug, Clone)]
pub struct MigrateOptions {
    /// The command that reaches the host, given to `sh -c` with the host
    /// and `pvio migrate-receive` after it (`ssh` by default).
    pub ssh: String,
    /// A config to run the domain with on the other side.
    pub config: Option<std::path::PathBuf>,
}

/// Moves domain `name` to `host` while it runs. `progress` is called
/// about once a second with (bytes sent, bytes remaining) of guest RAM.
pub fn migrate(
    name: &str,
    host: &str,
    o: &MigrateOptions,
    mut progress: impl FnMut(u64, u64) + Send,
) -> Result<Migrated> {
    let found = RunRoot::from_env().live(name)?;
    super::file::refuse_passthrough(&found.record)?;
    if found.record.state != DomainState::Running && found.record.state != DomainState::Paused {
        return Err(MigrateError::Refused(format!(
            "domain '{name}' is {}; only a running or paused domain can be moved",
            found.record.state
        )));
    }
    let socket = found.record.control_socket.clone();
    let cmd = format!("{} {} pvio migrate-receive", o.ssh, shell_word(host));
    // `-C`: the config goes to the other side inside the header.
    let config = match &o.config {
        Some(c) => Some(
            std::fs::read_to_string(c).map_err(|source| MigrateError::Io {
                what: "read",
                path: c.clone(),
                source,
            })?,
        ),
        None => None,
    };
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(&cmd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|source| MigrateError::Io {
            what: "run",
            path: "sh".into(),
            source,
        })?;
    let lines = read_lines(&mut child);
    let stdin = child.stdin.take().ok_or_else(|| {
        MigrateError::Remote("cannot write to the command that reaches the other host".to_owned())
    })?;
    // The stream: the supervisor writes the header, then QEMU the state.
    let done = std::sync::atomic::AtomicBool::new(false);
    let sent = std::thread::scope(|s| {
        let done = &done;
        let progress = &mut progress;
        let socket = &socket;
        let watcher = s.spawn(move || {
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                std::thread::sleep(Duration::from_secs(1));
                if let Ok(v) = control::call(name, socket, &Request::MigrationStatus) {
                    if v["status"] == "active" {
                        progress(
                            v["transferred"].as_u64().unwrap_or(0),
                            v["remaining"].as_u64().unwrap_or(0),
                        );
                    }
                }
            }
        });
        let req = Request::Migrate { config };
        let r = control::call_with_fd(name, socket, &req, stdin.as_fd(), STREAM_TIMEOUT);
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = watcher.join();
        r
    });
    let sent = match sent {
        Ok(v) => serde_json::from_value::<Sent>(v["sent"].clone()).unwrap_or_default(),
        Err(e) => {
            // The guest runs on here (the supervisor resumed it).
            let remote = remote_error(&lines);
            finish_child(child);
            return Err(MigrateError::Remote(format!(
                "{}{remote}; the domain runs on here",
                crate::report::error_line(&e)
            )));
        }
    };
    // Stopped here; the other side has it all once it says so.
    let fail_back = |why: String, child: Child| -> MigrateError {
        let resumed = control::call(name, &socket, &Request::Unpause);
        finish_child(child);
        MigrateError::Remote(match resumed {
            Ok(_) => format!("{why}; the domain runs on here"),
            Err(e) => format!(
                "{why}; resuming it here failed too ({}): `pvio unpause {name}`",
                crate::report::error_line(&e)
            ),
        })
    };
    match expect(&lines, "received", STEP) {
        Ok(_) => {}
        Err(why) => return Err(fail_back(why, child)),
    }
    let mut stdin = stdin;
    if let Err(e) = stdin.write_all(b"go\n").and_then(|()| stdin.flush()) {
        return Err(fail_back(
            format!("cannot tell the other side to run it: {e}"),
            child,
        ));
    }
    let remote_name = match expect(&lines, "running", STEP) {
        Ok(rest) => rest,
        Err(why) => {
            // It may run there: not here too.
            finish_child(child);
            return Err(MigrateError::Remote(format!(
                "{why}; the other side may run the domain, so it stays paused here: check there, then `pvio destroy {name}` or `pvio unpause {name}`"
            )));
        }
    };
    control::call(
        name,
        &socket,
        &Request::MigratedAway {
            to: host.to_owned(),
        },
    )?;
    drop(stdin);
    // The other side may take the name once this domain has gone.
    let final_name = expect(&lines, "done", STEP).unwrap_or(remote_name);
    finish_child(child);
    Ok(Migrated {
        name: name.to_owned(),
        host: host.to_owned(),
        sent,
        remote_name: final_name,
    })
}

/// `host` quoted for `sh` when it needs to be.
fn shell_word(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "@._-:[]".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The receiver's lines, as they come.
fn read_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    if let Some(out) = child.stdout.take() {
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
    }
    rx
}

/// Waits for `TAG word REST` and returns REST; an error line or the end
/// of the conversation says why not.
fn expect(
    lines: &mpsc::Receiver<String>,
    word: &str,
    within: Duration,
) -> std::result::Result<String, String> {
    let start = Instant::now();
    loop {
        let left = within.saturating_sub(start.elapsed());
        match lines.recv_timeout(left) {
            Ok(line) => {
                let Some(rest) = line.strip_prefix(TAG).map(str::trim) else {
                    continue;
                };
                if let Some(r) = rest.strip_prefix(word) {
                    return Ok(r.trim().to_owned());
                }
                if let Some(e) = rest.strip_prefix("error") {
                    return Err(format!("the other side: {}", e.trim()));
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                return Err(format!(
                    "the other side did not answer '{word}' within {within:?}"
                ))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err("the other side ended the conversation".to_owned())
            }
        }
    }
}

/// The receiver's error line, if it sends one within 2 s (its words for
/// why a stream stopped).
fn remote_error(lines: &mpsc::Receiver<String>) -> String {
    let until = Instant::now() + Duration::from_secs(2);
    while let Ok(line) = lines.recv_timeout(until.saturating_duration_since(Instant::now())) {
        if let Some(e) = line
            .strip_prefix(TAG)
            .and_then(|rest| rest.trim().strip_prefix("error"))
        {
            return format!(" (the other side: {})", e.trim());
        }
    }
    String::new()
}

fn finish_child(mut child: Child) {
    drop(child.stdin.take());
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The temporary name of a domain migrating in on the host it leaves:
/// `NAME--incoming` (as xl names it), or `NAME--incoming2`, ... when a
/// domain that came in before still uses that one's device-model dir.
fn incoming_name(root: &RunRoot, want: &str) -> String {
    (1..100)
        .map(|n| {
            if n == 1 {
                format!("{want}--incoming")
            } else {
                format!("{want}--incoming{n}")
            }
        })
        .find(|c| root.live(c).is_err() && !crate::plan::dm_dir(root.path(), c).exists())
        .unwrap_or_else(|| format!("{want}--incoming{}", std::process::id()))
}

/// Copies `input` to `to_qemu` while `in_stream` holds, then sends each
/// line that follows to `words` (an empty one at the end of input).
fn copy_then_listen(
    input: &mut std::fs::File,
    to_qemu: &mut std::fs::File,
    in_stream: &std::sync::atomic::AtomicBool,
    words: &mpsc::Sender<String>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut line = Vec::new();
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) | Err(_) => {
                let _ = words.send(String::new());
                return;
            }
            Ok(n) => n,
        };
        if in_stream.load(std::sync::atomic::Ordering::SeqCst) {
            // A closed pipe means QEMU stopped reading: what is left is
            // not its to read.
            let _ = to_qemu.write_all(&buf[..n]);
            continue;
        }
        line.extend_from_slice(&buf[..n]);
        while let Some(i) = line.iter().position(|b| *b == b'\n') {
            let word: Vec<u8> = line.drain(..=i).collect();
            if words
                .send(String::from_utf8_lossy(&word).trim().to_owned())
                .is_err()
            {
                return;
            }
        }
    }
}

/// `pvio migrate-receive`: the other end, on stdin and stdout.
pub fn receive() -> Result<String> {
    let mut out = std::io::stdout();
    let said = |out: &mut std::io::Stdout, line: String| {
        let _ = writeln!(out, "{TAG} {line}");
        let _ = out.flush();
    };
    match receive_inner(&mut out, &said) {
        Ok(name) => Ok(name),
        Err(e) => {
            said(&mut out, format!("error {}", crate::report::error_line(&e)));
            Err(e)
        }
    }
}

fn receive_inner(
    out: &mut std::io::Stdout,
    said: &dyn Fn(&mut std::io::Stdout, String),
) -> Result<String> {
    // The raw descriptor, unbuffered: QEMU reads the rest of it.
    let stdin = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|source| MigrateError::Io {
            what: "read",
            path: "stdin".into(),
            source,
        })?;
    let mut input = std::fs::File::from(stdin);
    let header = saved::read_header(&mut input).map_err(|source| MigrateError::File {
        path: "the incoming stream".into(),
        source,
    })?;
    super::check_images(&header.domain, true)?;
    let root = RunRoot::from_env();
    let want = header.domain.name.clone();
    // On the host it leaves, the name is taken until the source ends.
    let here = root.live(&want).is_ok();
    let name = if here {
        incoming_name(&root, &want)
    } else {
        want.clone()
    };
    let (loaded, mut incoming) =
        super::load(&header.domain, None, Some(&name), Origin::MigratedIn)?;
    // Paused until the source says "go"; the images' locks follow the
    // source's end.
    let run_after = !incoming.paused;
    incoming.paused = true;
    incoming.defer_locks = true;
    let plan = super::plan(&loaded)?;
    // QEMU reads the stream from a pipe of ours, not from stdin itself:
    // at the end of a migration it shuts its channel down, which on a
    // socket (sshd's usual stdin) would also end the conversation that
    // still has to carry "go". A thread copies stdin into the pipe until
    // QEMU has it all; what comes after is the source's word.
    let (to_qemu_r, to_qemu_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| MigrateError::Io {
            what: "make a pipe for",
            path: "the incoming stream".into(),
            source: e.into(),
        })?;
    let in_stream = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let (word_tx, word_rx) = mpsc::channel::<String>();
    {
        let in_stream = std::sync::Arc::clone(&in_stream);
        let mut to_qemu = std::fs::File::from(to_qemu_w);
        std::thread::spawn(move || {
            copy_then_listen(&mut input, &mut to_qemu, &in_stream, &word_tx)
        });
    }
    let record = start::start(
        &plan,
        start::Origin {
            config: loaded.spec.source.as_deref(),
            serial: loaded.spec.serials.first(),
            config_text: Some(header.domain.config_text.clone()),
            overrides: header.domain.overrides.clone(),
            nomigrate: loaded.spec.nomigrate,
            incoming: Some((incoming, to_qemu_r.as_fd())),
        },
        true,
    )?;
    drop(to_qemu_r);
    in_stream.store(false, std::sync::atomic::Ordering::SeqCst);
    said(out, format!("received {}", record.identity.name));
    let go = word_rx.recv_timeout(STEP).unwrap_or_default();
    let socket = record.control_socket.clone();
    if go.trim() != "go" {
        let _ = control::call(&name, &socket, &Request::Destroy);
        return Err(MigrateError::Remote(
            "the source did not confirm the migration: the copy here was ended".to_owned(),
        ));
    }
    if run_after {
        control::call(&name, &socket, &Request::Unpause)?;
    }
    said(out, format!("running {name}"));
    if here {
        // Take the name once the source has gone.
        let start = Instant::now();
        while root.live(&want).is_ok() {
            if start.elapsed() > STEP {
                return Err(MigrateError::Remote(format!(
                    "the source domain '{want}' did not end; the domain runs here as '{name}'"
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let found = root.live(&name)?;
        control::call(
            &name,
            &found.record.control_socket,
            &Request::Rename { name: want.clone() },
        )
        .map_err(|e: DomainError| {
            MigrateError::Remote(format!(
                "{}; the domain runs here as '{name}'",
                crate::report::error_line(&e)
            ))
        })?;
        said(out, format!("done {want}"));
        return Ok(want);
    }
    said(out, format!("done {name}"));
    Ok(name)
}
