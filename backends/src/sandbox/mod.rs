//! The sandbox a backend process enters after it has opened everything it
//! needs (image or tap fds, the listening socket) and before it reads the
//! first byte from a frontend.
//!
//! The layers, in the order they are applied (one file each):
//!
//! | file | layer |
//! | --- | --- |
//! | `namespaces.rs` | new network, IPC, UTS and mount namespaces (`unshare`) |
//! | `ids.rs` | no capabilities (bounding, ambient, inheritable, permitted, effective), no supplementary groups, the unprivileged uid/gid |
//! | `ids.rs` | `PR_SET_NO_NEW_PRIVS` |
//! | `landlock.rs` | Landlock: every filesystem access right handled, none allowed |
//! | `seccomp/` | a syscall allowlist per role on every thread, `KILL_PROCESS` otherwise |
//!
//! io_uring rings are restricted to the opcodes the block engine uses where
//! they are made (`blk/engine/uring.rs`): submissions do not pass seccomp.
//!
//! Id changes, `unshare` and Landlock act on the calling thread (and the
//! threads it starts later), so [`enter`] refuses to run in a process that
//! already has a second thread.
//!
//! It must not know what a backend serves: the caller names its [`Role`].

mod ids;
mod landlock;
mod namespaces;
pub mod seccomp;

use std::fmt;

pub use ids::{Ids, DEFAULT_ID};

/// Which allowlist a process gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The block backend (io_uring or pread/pwrite on an image).
    Blk,
    /// The net backend (reads and writes on tap queues).
    Net,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Blk => "blk",
            Self::Net => "net",
        })
    }
}

/// A sandbox layer, named in logs and errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    /// New namespaces.
    Namespaces,
    /// The capability sets and the uid/gid change.
    Ids,
    /// `no_new_privs`.
    NoNewPrivs,
    /// Landlock.
    Landlock,
    /// The seccomp filter.
    Seccomp,
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Namespaces => "namespaces",
            Self::Ids => "capabilities/uid",
            Self::NoNewPrivs => "no_new_privs",
            Self::Landlock => "landlock",
            Self::Seccomp => "seccomp",
        })
    }
}

/// How to enter the sandbox.
#[derive(Debug, Clone, Default)]
pub struct SandboxOptions {
    /// The uid and gid to run as when started as root (`None`:
    /// [`DEFAULT_ID`]); not root: the ids stay as they are.
    pub user: Option<Ids>,
    /// Go on with a warning when a layer is unavailable (kernel without
    /// Landlock, `unshare` refused) instead of failing.
    pub allow_partial: bool,
}

/// Errors entering the sandbox, each one line with what to do next.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// Threads exist that the id changes and Landlock would miss.
    #[error("the sandbox must be entered before any thread is started ({0} threads run); this is a pvio bug")]
    Threads(usize),
    /// Layers the system does not offer, and partial sandboxes not allowed.
    #[error("sandbox layer(s) unavailable: {}; pass --allow-partial-sandbox to run without them (or --no-sandbox to debug)", list(.0))]
    Unavailable(Vec<(Layer, String)>),
    /// A layer failed in a way that is not a missing feature.
    #[error("cannot apply the sandbox layer {layer}: {why}")]
    Failed {
        /// The layer.
        layer: Layer,
        /// What failed.
        why: String,
    },
}

fn list(missing: &[(Layer, String)]) -> String {
    missing
        .iter()
        .map(|(l, why)| format!("{l} ({why})"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What [`enter`] applied.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Layers in force.
    pub applied: Vec<Layer>,
    /// Layers missing (only with `allow_partial`), with why.
    pub missing: Vec<(Layer, String)>,
    /// The uid and gid the process runs as now.
    pub ids: Option<Ids>,
}

/// A layer's outcome: in force, unavailable on this system (with why), or
/// failed.
pub(crate) enum Outcome {
    Applied,
    Unavailable(String),
}

/// Enters the sandbox for `role`. Call it once, from the only thread, after
/// everything is open and before the first frontend is accepted. Logs one
/// info line saying what was applied (and one warning line naming what is
/// missing, when `allow_partial` lets it go on).
pub fn enter(role: Role, opts: &SandboxOptions) -> Result<Report, SandboxError> {
    let threads = thread_count();
    if threads > 1 {
        return Err(SandboxError::Threads(threads));
    }
    let mut report = Report::default();
    let mut note = |layer: Layer, outcome: Outcome| match outcome {
        Outcome::Applied => report.applied.push(layer),
        Outcome::Unavailable(why) => report.missing.push((layer, why)),
    };
    note(Layer::Namespaces, namespaces::unshare_all()?);
    let (outcome, ids) = ids::drop_privileges(opts.user)?;
    note(Layer::Ids, outcome);
    note(Layer::NoNewPrivs, ids::no_new_privs()?);
    note(Layer::Landlock, landlock::deny_filesystem()?);
    // Last: the filter does not allow the calls the layers above make.
    note(Layer::Seccomp, seccomp::install(role)?);
    report.ids = ids;
    if !report.missing.is_empty() {
        if !opts.allow_partial {
            return Err(SandboxError::Unavailable(report.missing));
        }
        tracing::warn!("sandbox is partial: missing {}", list(&report.missing));
    }
    tracing::info!(
        "sandbox ({role}) applied: {}{}",
        report
            .applied
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        report
            .ids
            .map(|i| format!("; running as {}:{}", i.uid, i.gid))
            .unwrap_or_default()
    );
    Ok(report)
}

/// Threads of this process, from `/proc/self/status` (1 if unreadable:
/// then the kernel's own checks still refuse `unshare` of a user namespace
/// in a threaded process).
fn thread_count() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(1)
}
