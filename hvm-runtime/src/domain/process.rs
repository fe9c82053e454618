//! Processes by pid: is it alive, is it the QEMU of this domain, signal
//! it. The pid-based checks back up the supervisor lock; before a leftover
//! QEMU is killed, its command line must name the domain's QMP socket, so
//! a pid reused by another program is never touched.

use std::path::Path;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

/// A pid as `kill(2)` takes it, or `None` if it does not fit.
fn raw(pid: u32) -> Option<Pid> {
    i32::try_from(pid).ok().and_then(Pid::from_raw)
}

/// Whether `pid` is a live process (a zombie counts as gone).
pub fn alive(pid: u32) -> bool {
    let Some(p) = raw(pid) else { return false };
    let exists = match rustix::process::test_kill_process(p) {
        Ok(()) | Err(rustix::io::Errno::PERM) => true,
        Err(_) => false,
    };
    exists && !zombie(pid)
}

fn zombie(pid: u32) -> bool {
    // /proc/<pid>/stat: "pid (comm) S ..."; comm may hold spaces and
    // parentheses, so the state is the first field after the last ')'.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rfind(')').and_then(|i| {
                s[i + 1..]
                    .split_whitespace()
                    .next()
                    .map(|st| st == "Z" || st == "X")
            })
        })
        .unwrap_or(false)
}

/// Whether the command line of `pid` contains `needle` as one argument's
/// substring (for "is this still our QEMU").
pub fn cmdline_mentions(pid: u32, needle: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let needle = needle.as_os_str().as_encoded_bytes();
    !needle.is_empty()
        && cmdline
            .split(|b| *b == 0)
            .any(|arg| arg.windows(needle.len()).any(|w| w == needle))
}

/// Sends `sig` to `pid`; false if there is no such process.
pub fn signal(pid: u32, sig: libc::c_int) -> bool {
    let (Some(p), Some(s)) = (raw(pid), Signal::from_named_raw(sig)) else {
        return false;
    };
    rustix::process::kill_process(p, s).is_ok()
}

/// Waits up to `timeout` for `pid` to be gone.
pub fn wait_gone(pid: u32, timeout: Duration) -> bool {
    let start = Instant::now();
    while alive(pid) {
        if start.elapsed() >= timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// Kills `pid` if it still runs and its command line mentions `marker`:
/// SIGTERM, then SIGKILL after `grace`. True when it is gone.
pub fn kill_if_ours(pid: u32, marker: &Path, grace: Duration) -> bool {
    if !alive(pid) {
        return true;
    }
    if !cmdline_mentions(pid, marker) {
        tracing::warn!("pid {pid} no longer runs this domain's QEMU; leaving it alone");
        return true;
    }
    signal(pid, libc::SIGTERM);
    if wait_gone(pid, grace) {
        return true;
    }
    signal(pid, libc::SIGKILL);
    wait_gone(pid, Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sees_itself_and_its_arguments() {
        let me = std::process::id();
        assert!(alive(me));
        let exe = std::env::current_exe().unwrap();
        let name = exe.file_name().unwrap();
        assert!(cmdline_mentions(me, Path::new(name)));
        assert!(!cmdline_mentions(
            me,
            Path::new("/surely/not/an/argument.sock")
        ));
    }

    #[test]
    fn a_finished_child_is_gone_and_unknown_pids_are_refused() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        assert!(alive(pid));
        assert!(kill_if_ours(pid, Path::new("30"), Duration::from_secs(2)));
        let _ = child.wait();
        assert!(!alive(pid));
        assert!(!alive(0));
        assert!(!alive(u32::MAX));
    }
}
