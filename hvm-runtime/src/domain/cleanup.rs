//! Cleaning up after a domain whose supervisor died without recording an
//! end (SIGKILL, OOM, a crash): the leftover QEMU is killed (only if its
//! command line still names this domain's QMP socket), the host PCI
//! devices the domain owned are given back (all of them if it had
//! started, its config's if it died starting), the sockets and the taps
//! pvio created are removed, and the record says what happened.

use std::fs;
use std::path::Path;
use std::time::Duration;

use super::files::RECORD;
use super::launch::LaunchSpec;
use super::record::{DomainRecord, DomainState};
use super::{passthrough, process, taps};

/// Cleans `dir` after a dead supervisor and marks `record` ended.
pub fn reap_dead(dir: &Path, record: &mut DomainRecord) {
    let mut done = Vec::new();
    if let Some(pid) = record.qemu_pid {
        if process::alive(pid) {
            if process::kill_if_ours(pid, &record.qmp_socket, Duration::from_secs(3)) {
                done.push(format!("killed QEMU (pid {pid})"));
            } else {
                tracing::warn!(
                    "QEMU (pid {pid}) of domain {} does not die",
                    record.identity.name
                );
            }
        }
    }
    for (device, pid) in &record.backend_pids {
        if process::alive(*pid) && process::cmdline_mentions(*pid, Path::new("backend")) {
            process::signal(*pid, libc::SIGKILL);
            done.push(format!("ended the backend of {device} (pid {pid})"));
        }
    }
    if !record.qemu_pid.is_some_and(process::alive) {
        let config = LaunchSpec::load(dir)
            .map(|l| l.passthrough)
            .unwrap_or_default();
        let ran = record.state != DomainState::Starting;
        done.extend(passthrough::domain_ended(
            &record.identity.name,
            &config,
            ran,
        ));
        record.pci.clear();
    }
    let removed = remove_sockets(dir);
    if removed > 0 {
        done.push(format!("removed {removed} socket(s)"));
    }
    for tap in &record.taps_created {
        match taps::delete_in(tap, record.netns.as_deref()) {
            Ok(taps::Deleted::Deleted) => done.push(format!("deleted tap {tap}")),
            Ok(taps::Deleted::Gone) => {}
            Ok(taps::Deleted::NamespaceGone) => done.push(format!(
                "found tap {tap} gone with its network namespace {}",
                record.netns.as_deref().unwrap_or("?")
            )),
            Err(e) => tracing::warn!("{e}"),
        }
    }
    let pid = record
        .supervisor_pid
        .map_or_else(String::new, |p| format!(" (pid {p})"));
    let detail = if done.is_empty() {
        format!("its supervisor{pid} died; nothing was left to clean")
    } else {
        format!("its supervisor{pid} died; pvio {}", done.join(", "))
    };
    record.end("supervisor-died", detail);
    if let Err(e) = record.store(&dir.join(RECORD)) {
        tracing::warn!("{e}");
    }
}

/// Removes every `*.sock` in the domain dir `dir` and its device-model
/// dir (the launch spec's, else `<run root>/.dm/<name>`; removed too);
/// returns how many.
pub fn remove_sockets(dir: &Path) -> usize {
    let mut n = remove_sockets_in(dir);
    let dm = super::launch::LaunchSpec::load(dir)
        .ok()
        .map(|s| s.dm_dir)
        .filter(|d| !d.as_os_str().is_empty())
        .or_else(|| {
            let (root, name) = (dir.parent()?, dir.file_name()?);
            Some(crate::plan::dm_dir(root, &name.to_string_lossy()))
        });
    if let Some(dm) = dm {
        n += remove_sockets_in(&dm);
        let _ = fs::remove_dir(&dm);
    }
    n
}

fn remove_sockets_in(dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "sock"))
        .filter(|p| fs::remove_file(p).is_ok())
        .count()
}
