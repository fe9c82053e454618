//! The names of the files in a domain's run dir: what every part of the
//! runtime that reads or writes one agrees on, with nothing else, so that
//! the lowest modules (records, locks, the launch spec) can name them.

/// The record file in a domain's dir.
pub const RECORD: &str = "domain.json";
/// The supervisor's lock file in a domain's dir.
pub const LOCK: &str = "lock";
/// What the supervisor starts.
pub const LAUNCH: &str = "launch.json";
/// The supervisor's log.
pub const LOG: &str = "supervisor.log";
/// The supervisor's control socket.
pub const CONTROL: &str = "control.sock";
/// QEMU's second QMP socket, the one the supervisor listens to events on.
pub const QMP_EVENTS: &str = crate::plan::EVENTS_SOCKET;
/// QEMU's output, beside the supervisor's log.
pub const QEMU_LOG: &str = "qemu.log";

/// The last lines of QEMU's log, as a suffix for an error line.
pub fn qemu_log_tail(dir: &std::path::Path) -> String {
    let text = std::fs::read_to_string(dir.join(QEMU_LOG)).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(3)..].join(" / ");
    if tail.is_empty() {
        String::new()
    } else {
        format!("; QEMU said: {tail}")
    }
}
