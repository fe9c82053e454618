//! The fourth sandbox layer: Landlock with every filesystem access right of
//! the best ABI this kernel offers handled and no rule added, so the process
//! can open no path at all (it needs none: every file it uses is already
//! open).
//!
//! It must not know what the backend serves.

use ::landlock::{Access, AccessFs, Ruleset, RulesetAttr, RulesetStatus, ABI};

use super::{Layer, Outcome, SandboxError};

/// The newest ABI this crate knows; older kernels get what they support
/// (best effort) and say so through the status.
const ABI_WANTED: ABI = ABI::V6;

/// Restricts the calling thread (and the threads it starts later).
pub(crate) fn deny_filesystem() -> Result<Outcome, SandboxError> {
    let failed = |e: &dyn std::fmt::Display| SandboxError::Failed {
        layer: Layer::Landlock,
        why: e.to_string(),
    };
    let status = Ruleset::default()
        .handle_access(AccessFs::from_all(ABI_WANTED))
        .map_err(|e| failed(&e))?
        .create()
        .map_err(|e| failed(&e))?
        .restrict_self()
        .map_err(|e| failed(&e))?;
    Ok(match status.ruleset {
        RulesetStatus::FullyEnforced | RulesetStatus::PartiallyEnforced => Outcome::Applied,
        RulesetStatus::NotEnforced => {
            Outcome::Unavailable("the kernel does not enforce Landlock".into())
        }
    })
}
