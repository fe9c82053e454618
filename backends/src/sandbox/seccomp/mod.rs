//! The last sandbox layer: a seccomp allowlist per [`Role`], installed on
//! every thread of the process at once (`TSYNC`). A call outside it kills
//! the whole process (`SECCOMP_RET_KILL_PROCESS`): the supervisor sees the
//! backend die of SIGSYS and restarts it.
//!
//! One filter per process role; queue threads, relay threads and the accept
//! loop share it (a tighter filter per thread role would save little: the
//! threads share one address space and fd table). `common.rs` has what every
//! backend makes (threads, memory, epoll, eventfds, the vhost-user socket),
//! `blk.rs` and `net.rs` what each device adds. The lists were found with
//! `strace -f -c` on the backends driven by the socket tests and libblkio
//! (docs/backends.md says how to redo that).
//!
//! It must not know how a backend works beyond the system calls it makes.

mod blk;
mod common;
mod net;

use std::collections::BTreeMap;

use seccompiler::{
    apply_filter_all_threads, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp,
    SeccompCondition, SeccompFilter, SeccompRule, TargetArch,
};

use super::{Layer, Outcome, Role, SandboxError};

/// System call number to the rules that allow it (none: any arguments).
pub(crate) type Rules = BTreeMap<i64, Vec<SeccompRule>>;

/// Allows `calls` with any arguments.
pub(crate) fn allow(rules: &mut Rules, calls: &[libc::c_long]) {
    for &call in calls {
        rules.insert(call, Vec::new());
    }
}

/// Allows `call` only when argument `arg` is one of `values` (compared as
/// 32 bits: ioctl requests, socket families, prctl options are `int`s).
pub(crate) fn allow_arg(rules: &mut Rules, call: libc::c_long, arg: u8, values: &[u64]) {
    let entry = rules.entry(call).or_default();
    for &value in values {
        // `new` only fails for an argument index above 5.
        if let Ok(rule) =
            SeccompCondition::new(arg, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, value)
                .and_then(|c| SeccompRule::new(vec![c]))
        {
            entry.push(rule);
        }
    }
}

/// The rules for `role`.
pub fn rules(role: Role) -> Rules {
    let mut rules = Rules::new();
    common::add(&mut rules);
    match role {
        Role::Blk => blk::add(&mut rules),
        Role::Net => net::add(&mut rules),
    }
    rules
}

/// The compiled filter for `role`.
pub fn program(role: Role) -> Result<BpfProgram, SandboxError> {
    let failed = |e: seccompiler::BackendError| SandboxError::Failed {
        layer: Layer::Seccomp,
        why: e.to_string(),
    };
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(|e| SandboxError::Failed {
        layer: Layer::Seccomp,
        why: format!("no filter for {}: {e}", std::env::consts::ARCH),
    })?;
    let filter = SeccompFilter::new(
        rules(role),
        SeccompAction::KillProcess,
        SeccompAction::Allow,
        arch,
    )
    .map_err(failed)?;
    BpfProgram::try_from(filter).map_err(failed)
}

/// Installs the filter for `role` on every thread.
pub(crate) fn install(role: Role) -> Result<Outcome, SandboxError> {
    let program = program(role)?;
    match apply_filter_all_threads(&program) {
        Ok(()) => Ok(Outcome::Applied),
        Err(e) => Err(SandboxError::Failed {
            layer: Layer::Seccomp,
            why: e.to_string(),
        }),
    }
}
