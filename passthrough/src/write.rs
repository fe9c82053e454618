//! The one way passthrough changes the host: every sysfs write and every
//! command it runs (`modprobe`) goes through [`SysfsWriter`]. In dry-run mode
//! it prints what it would do (`write 'vfio-pci' > /sys/.../driver_override`)
//! and changes nothing.
//!
//! A sysfs write can block forever (some drivers never return from
//! `unbind`), so each write runs on its own thread and is given up after a
//! timeout; the thread is left behind, blocked in the kernel.

use std::fs::OpenOptions;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{mpsc, Mutex};
use std::time::Duration;

/// A change to the host that failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The kernel refused the write.
    #[error("writing '{value}' to {} failed", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// What was written (escaped).
        value: String,
        /// The kernel's answer.
        #[source]
        source: io::Error,
    },
    /// The write did not return in time.
    #[error("writing '{value}' to {} did not return within {after:?}", path.display())]
    Timeout {
        /// The file.
        path: PathBuf,
        /// What was written (escaped).
        value: String,
        /// How long it was given.
        after: Duration,
    },
    /// The writing thread could not be started.
    #[error("cannot start a thread to write {}", path.display())]
    Thread {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A command could not be run or failed.
    #[error("`{command}` failed: {detail}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status or why it could not start.
        detail: String,
    },
}

type Result<T> = std::result::Result<T, WriteError>;

/// Where dry-run lines go.
type Sink = Box<dyn Fn(&str) + Send + Sync>;

/// Makes sysfs writes and runs commands, or prints them in dry-run mode.
pub struct SysfsWriter {
    dry_run: bool,
    timeout: Duration,
    sink: Sink,
    log: Mutex<Vec<String>>,
}

impl std::fmt::Debug for SysfsWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SysfsWriter")
            .field("dry_run", &self.dry_run)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl SysfsWriter {
    /// How long a sysfs write may take before it is reported as stuck.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

    /// A writer that changes the host.
    pub fn apply() -> Self {
        Self::with_sink(false, Box::new(|_| {}))
    }

    /// A writer that prints each change on standard output instead.
    pub fn dry_run() -> Self {
        Self::with_sink(true, Box::new(|line| println!("{line}")))
    }

    /// A writer whose lines (dry run or not) also go to `sink`.
    pub fn with_sink(dry_run: bool, sink: Sink) -> Self {
        Self {
            dry_run,
            timeout: Self::DEFAULT_TIMEOUT,
            sink,
            log: Mutex::new(Vec::new()),
        }
    }

    /// Sets the write timeout.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Whether this writer only prints.
    pub fn is_dry_run(&self) -> bool {
        self.dry_run
    }

    /// Every change made or planned so far, as printed.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    fn record(&self, line: String) {
        if self.dry_run {
            (self.sink)(&line);
        }
        tracing::debug!("{line}");
        if let Ok(mut log) = self.log.lock() {
            log.push(line);
        }
    }

    /// Writes `value` to the sysfs file `path` in one `write(2)`, giving up
    /// after the timeout.
    pub fn write(&self, path: &Path, value: &str) -> Result<()> {
        let shown = value.escape_default().to_string();
        self.record(format!("write '{shown}' > {}", path.display()));
        if self.dry_run {
            return Ok(());
        }
        let (tx, rx) = mpsc::channel();
        let owned_path = path.to_owned();
        let bytes = value.as_bytes().to_vec();
        std::thread::Builder::new()
            .name("pvio-sysfs-write".into())
            .spawn(move || {
                let result = OpenOptions::new()
                    .write(true)
                    .truncate(true)
                    .open(&owned_path)
                    .and_then(|mut f| f.write_all(&bytes));
                let _ = tx.send(result);
            })
            .map_err(|source| WriteError::Thread {
                path: path.to_owned(),
                source,
            })?;
        match rx.recv_timeout(self.timeout) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => Err(WriteError::Write {
                path: path.to_owned(),
                value: shown,
                source,
            }),
            Err(_) => Err(WriteError::Timeout {
                path: path.to_owned(),
                value: shown,
                after: self.timeout,
            }),
        }
    }

    /// Runs a command (`modprobe vfio-pci`) and waits for it.
    pub fn run(&self, program: &str, args: &[&str]) -> Result<()> {
        let command = std::iter::once(program)
            .chain(args.iter().copied())
            .collect::<Vec<_>>()
            .join(" ");
        self.record(format!("run {command}"));
        if self.dry_run {
            return Ok(());
        }
        let output =
            Command::new(program)
                .args(args)
                .output()
                .map_err(|e| WriteError::Command {
                    command: command.clone(),
                    detail: e.to_string(),
                })?;
        if output.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        Err(WriteError::Command {
            command,
            detail: format!("{} {}", output.status, stderr.trim()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn dry_run_prints_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("driver_override");
        std::fs::write(&file, "(null)\n").unwrap();
        let printed = Arc::new(Mutex::new(Vec::new()));
        let p = Arc::clone(&printed);
        let w = SysfsWriter::with_sink(
            true,
            Box::new(move |l| p.lock().unwrap().push(l.to_owned())),
        );
        w.write(&file, "vfio-pci").unwrap();
        w.write(&file, "\n").unwrap();
        w.run("modprobe", &["vfio-pci"]).unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "(null)\n");
        let expected = [
            format!("write 'vfio-pci' > {}", file.display()),
            format!("write '\\n' > {}", file.display()),
            "run modprobe vfio-pci".to_owned(),
        ];
        assert_eq!(*printed.lock().unwrap(), expected);
        assert_eq!(w.log(), expected);
    }

    #[test]
    fn apply_writes_the_whole_value() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bind");
        std::fs::write(&file, "old content\n").unwrap();
        let w = SysfsWriter::apply();
        w.write(&file, "0000:00:03.0").unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "0000:00:03.0");
    }

    #[test]
    fn a_refused_write_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("missing/unbind");
        let e = SysfsWriter::apply().write(&file, "x").unwrap_err();
        assert!(matches!(e, WriteError::Write { .. }));
        assert!(e.to_string().contains("missing/unbind"), "{e}");
    }

    #[test]
    fn a_blocking_write_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("unbind");
        let ok = Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(ok.success());
        let w = SysfsWriter::apply().timeout(Duration::from_millis(200));
        let e = w.write(&fifo, "0000:00:03.0").unwrap_err();
        assert!(matches!(e, WriteError::Timeout { .. }), "{e:?}");
        // Let the stuck writer go.
        let mut reader = std::fs::File::open(&fifo).unwrap();
        let mut got = String::new();
        std::io::Read::read_to_string(&mut reader, &mut got).unwrap();
        assert_eq!(got, "0000:00:03.0");
    }

    #[test]
    fn a_failing_command_says_how() {
        let e = SysfsWriter::apply().run("false", &[]).unwrap_err();
        assert!(e.to_string().starts_with("`false` failed"), "{e}");
        let e = SysfsWriter::apply()
            .run("/nonexistent/pvio-no-such-program", &[])
            .unwrap_err();
        assert!(matches!(e, WriteError::Command { .. }));
    }
}
