//! The guest's serial console as the host sees it: a thread reads QEMU's
//! stdout line by line into a shared log that waiters can block on, and the
//! script's output and exit status are cut out of it by the markers `/init`
//! prints (see [`crate::init`]).
//!
//! Each console line is also written to the test's stderr as `[guest] ...`
//! with `eprintln!`: the test harness captures it and prints it when the
//! test fails (and live with `--nocapture`).

use std::io::Read;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::init::{BEGIN_MARKER, END_MARKER_PREFIX, INSMOD_FAILED_PREFIX, MARKER_SUFFIX};

/// Whether console lines are echoed to stderr: yes unless
/// `PVIO_GUEST_ECHO=0` (the demo sets it; tests keep the echo so a failure
/// shows the whole boot).
fn echo_enabled() -> bool {
    static ECHO: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ECHO.get_or_init(|| std::env::var("PVIO_GUEST_ECHO").map_or(true, |v| v != "0"))
}

/// How many console lines an error carries.
pub const TAIL_LINES: usize = 30;

/// What the reader thread has seen so far.
#[derive(Debug, Default)]
pub struct ConsoleState {
    /// Complete lines, without their `\r\n`.
    pub lines: Vec<String>,
    /// The end of the stream: QEMU closed its stdout (it exited).
    pub closed: bool,
    /// When the BEGIN marker arrived (the guest had booted).
    pub begin_at: Option<Instant>,
}

/// The console log shared between the reader thread and the guest handle.
#[derive(Debug, Default)]
pub struct Console {
    state: Mutex<ConsoleState>,
    changed: Condvar,
}

impl Console {
    /// Locks the state (a panicked reader leaves usable data behind).
    pub fn lock(&self) -> MutexGuard<'_, ConsoleState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a complete line and wakes waiters.
    fn push_line(&self, raw: &[u8], echo_prefix: &str) {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let line = String::from_utf8_lossy(raw).into_owned();
        if echo_enabled() {
            eprintln!("{echo_prefix}{line}");
        }
        let mut st = self.lock();
        if line == BEGIN_MARKER && st.begin_at.is_none() {
            st.begin_at = Some(Instant::now());
        }
        st.lines.push(line);
        drop(st);
        self.changed.notify_all();
    }

    fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }

    /// Reads `src` to its end into the log, one line at a time; a last line
    /// without a newline is kept too. Meant to run on its own thread.
    pub fn read_from(self: &Arc<Self>, mut src: impl Read, echo_prefix: &str) {
        let mut buf = [0u8; 4096];
        let mut pending: Vec<u8> = Vec::new();
        loop {
            match src.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    pending.extend_from_slice(buf.get(..n).unwrap_or_default());
                    while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = pending.drain(..=pos).collect();
                        self.push_line(line.get(..pos).unwrap_or_default(), echo_prefix);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        if !pending.is_empty() {
            self.push_line(&pending, echo_prefix);
        }
        self.close();
    }

    /// Waits until `done` says yes for the state, the stream closes, or
    /// `deadline` passes; returns the state then.
    pub fn wait_until(
        &self,
        deadline: Instant,
        mut done: impl FnMut(&ConsoleState) -> bool,
    ) -> MutexGuard<'_, ConsoleState> {
        let mut st = self.lock();
        loop {
            if done(&st) || st.closed {
                return st;
            }
            let now = Instant::now();
            if now >= deadline {
                return st;
            }
            st = match self.changed.wait_timeout(st, deadline - now) {
                Ok((st, _)) => st,
                Err(p) => p.into_inner().0,
            };
        }
    }

    /// The whole log as one string, lines ended by `\n`.
    pub fn text(&self) -> String {
        join_lines(&self.lock().lines)
    }

    /// The last [`TAIL_LINES`] lines, for error messages.
    pub fn tail(&self) -> String {
        tail(&self.lock().lines, TAIL_LINES)
    }
}

/// Lines joined, each ended by `\n`.
pub fn join_lines(lines: &[String]) -> String {
    let mut s = String::new();
    for l in lines {
        s.push_str(l);
        s.push('\n');
    }
    s
}

/// The last `n` lines, joined.
pub fn tail(lines: &[String], n: usize) -> String {
    join_lines(
        lines
            .get(lines.len().saturating_sub(n)..)
            .unwrap_or_default(),
    )
}

/// Whether `line` is a kernel message (`[    1.234567] ...`, printk time
/// stamps are on in Debian's kernel).
pub fn is_kernel_line(line: &str) -> bool {
    let Some(rest) = line.strip_prefix('[') else {
        return false;
    };
    let Some((stamp, _)) = rest.split_once(']') else {
        return false;
    };
    let stamp = stamp.trim_start();
    match stamp.split_once('.') {
        Some((secs, frac)) => {
            !secs.is_empty()
                && !frac.is_empty()
                && secs.bytes().all(|b| b.is_ascii_digit())
                && frac.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

/// What the markers in a console log say about the script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptState {
    /// The script has not started.
    NotStarted,
    /// A module failed to load; the script never ran.
    InsmodFailed(String),
    /// The script started and has not finished.
    Running,
    /// The script exited.
    Finished {
        /// What it wrote (kernel messages left out).
        output: String,
        /// Its exit status.
        exit_code: i32,
    },
}

/// Reads the markers in `lines`.
pub fn script_state(lines: &[String]) -> ScriptState {
    let Some(begin) = lines.iter().position(|l| l == BEGIN_MARKER) else {
        for l in lines {
            if let Some(rest) = l.find(INSMOD_FAILED_PREFIX).map(|i| &l[i..]) {
                let name = rest
                    .trim_start_matches(INSMOD_FAILED_PREFIX)
                    .trim_end_matches(MARKER_SUFFIX);
                return ScriptState::InsmodFailed(name.to_owned());
            }
        }
        return ScriptState::NotStarted;
    };
    let mut output = String::new();
    for line in lines.get(begin + 1..).unwrap_or_default() {
        if let Some(at) = line.rfind(END_MARKER_PREFIX) {
            let code = line
                .get(at + END_MARKER_PREFIX.len()..)
                .and_then(|r| r.strip_suffix(MARKER_SUFFIX))
                .and_then(|c| c.parse::<i32>().ok());
            if let Some(exit_code) = code {
                output.push_str(line.get(..at).unwrap_or_default());
                return ScriptState::Finished { output, exit_code };
            }
        }
        if !is_kernel_line(line) {
            output.push_str(line);
            output.push('\n');
        }
    }
    ScriptState::Running
}

/// How long is left until `deadline`, for messages.
pub fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(s: &str) -> Vec<String> {
        s.lines().map(str::to_owned).collect()
    }

    #[test]
    fn output_between_markers() {
        let log = lines(
            "[    0.1] Linux version\n===PVIO-KIT-INIT===\n===PVIO-KIT-BEGIN===\n\
             6.1.0-56-amd64\nprocessor\t: 0\n===PVIO-KIT-END rc=0===\n[    2.0] reboot: Power down",
        );
        assert_eq!(
            script_state(&log),
            ScriptState::Finished {
                output: "6.1.0-56-amd64\nprocessor\t: 0\n".to_owned(),
                exit_code: 0
            }
        );
    }

    #[test]
    fn output_without_final_newline_and_a_failure() {
        let log = lines("===PVIO-KIT-BEGIN===\nno newline===PVIO-KIT-END rc=3===");
        assert_eq!(
            script_state(&log),
            ScriptState::Finished {
                output: "no newline".to_owned(),
                exit_code: 3
            }
        );
    }

    #[test]
    fn kernel_lines_are_left_out_of_the_output() {
        let log = lines(
            "===PVIO-KIT-BEGIN===\na\n[   12.345678] virtio_blk virtio1: [vda] 2048 512-byte\n\
             [not a stamp] b\n===PVIO-KIT-END rc=0===",
        );
        assert_eq!(
            script_state(&log),
            ScriptState::Finished {
                output: "a\n[not a stamp] b\n".to_owned(),
                exit_code: 0
            }
        );
    }

    #[test]
    fn states_before_the_end() {
        assert_eq!(script_state(&lines("boot")), ScriptState::NotStarted);
        assert_eq!(
            script_state(&lines("===PVIO-KIT-BEGIN===\nworking")),
            ScriptState::Running
        );
        assert_eq!(
            script_state(&lines("insmod: can't\n===PVIO-KIT-INSMOD-FAILED e1000===")),
            ScriptState::InsmodFailed("e1000".to_owned())
        );
    }

    #[test]
    fn reader_splits_lines_and_strips_cr() {
        let c = Arc::new(Console::default());
        c.read_from(&b"a\r\nb\nlast"[..], "");
        let st = c.lock();
        assert_eq!(st.lines, vec!["a", "b", "last"]);
        assert!(st.closed);
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let l: Vec<String> = (0..50).map(|i| i.to_string()).collect();
        let t = tail(&l, TAIL_LINES);
        assert!(t.starts_with("20\n") && t.ends_with("49\n"), "{t}");
    }
}
