//! `pvio create --dry-run [--json] FILE [key=value...]`: load the config,
//! make the plan and check the host, print all of it, start nothing.
//!
//! The plan is printed even when the host lacks something (a missing
//! image, bridge or firmware): the problems follow it, each with its
//! config line, and the exit code is 1. A config with errors prints the
//! errors (all of them) and exits 1. `--json` prints one object instead:
//! `{"ok", "plan", "warnings", "problems"}` or `{"ok", "errors",
//! "warnings"}`.
//!
//! The device model's command line shown (`plan.qemu` in JSON) is the one
//! the launch gives QEMU, argument for argument: the plan makes all of it
//! (the supervisor's QMP socket, `-action`, `-S` included), and the
//! devices `pvio assign` reserved for the domain are added at the end,
//! where the supervisor adds them.

use std::process::ExitCode;

use serde::Serialize;

use super::args::CreateArgs;
use super::error_line;
use crate::config::{self, ConfigError};
use crate::domain::launch;
use crate::plan::{self, render, DomainPlan, OsEntropy, PlanError, PlanOptions, Problem, RealHost};

#[derive(Serialize)]
struct DryRun<'a> {
    ok: bool,
    plan: &'a DomainPlan,
    warnings: Vec<String>,
    problems: &'a [Problem],
}

#[derive(Serialize)]
struct Failed {
    ok: bool,
    errors: Vec<String>,
    warnings: Vec<String>,
}

/// Runs the dry run; the exit code says whether the domain could start.
pub fn dry_run(a: &CreateArgs) -> ExitCode {
    let loaded = match config::load(&a.file, &a.overrides) {
        Ok(l) => l,
        Err(e) => {
            let (warnings, no_effect) = e.warning_lines();
            return failed(a.json, &e, warnings, no_effect);
        }
    };
    let warnings: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
    let host = RealHost::new();
    let mut entropy = OsEntropy;
    let mut opts = PlanOptions::for_host(&host, &mut entropy);
    let mut plan = match plan::plan(&loaded.spec, &mut opts) {
        Ok(p) => p,
        Err(e) => return failed(a.json, &e, warnings, loaded.no_effect_line()),
    };
    // The devices `pvio assign` reserved for the domain: the supervisor
    // adds them at the end of the command line; so does the dry run, and
    // the command line shown is the one QEMU gets.
    match launch::reserved_device_args(&plan) {
        Ok(args) => plan.qemu.args.extend(args),
        Err(e) => plan.notes.push(format!(
            "devices reserved by `pvio assign` are not shown: {}",
            crate::report::error_line(&e)
        )),
    }
    let problems = plan::check_host(&loaded.spec, &plan, &host);
    let code = if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    };
    if a.json {
        let mut warnings = warnings;
        warnings.extend(loaded.no_effect_line());
        warnings.extend(plan.notes.iter().cloned());
        print_json(&DryRun {
            ok: problems.is_empty(),
            plan: &plan,
            warnings,
            problems: &problems,
        })
        .unwrap_or(code)
    } else {
        print!("{}", render::report(&plan, &loaded, &problems));
        if !problems.is_empty() {
            eprintln!(
                "pvio: the host is not ready for {}: {} problem{} (listed above)",
                plan.name,
                problems.len(),
                if problems.len() == 1 { "" } else { "s" }
            );
        }
        code
    }
}

fn failed(
    json: bool,
    e: &(dyn std::error::Error + 'static),
    mut warnings: Vec<String>,
    no_effect: Option<String>,
) -> ExitCode {
    if json {
        let errors = match (
            e.downcast_ref::<ConfigError>(),
            e.downcast_ref::<PlanError>(),
        ) {
            (Some(ConfigError::Invalid { errors, .. }), _) => {
                errors.0.iter().map(ToString::to_string).collect()
            }
            (_, Some(PlanError::Several(all))) => all.iter().map(|p| error_line(p)).collect(),
            _ => vec![error_line(e)],
        };
        warnings.extend(no_effect);
        let _ = print_json(&Failed {
            ok: false,
            errors,
            warnings,
        });
    } else {
        super::domain::print_config_warnings(&warnings, no_effect.as_deref());
        eprintln!("pvio: {}", error_line(e));
    }
    ExitCode::FAILURE
}

/// Prints `v` as JSON; `Some(FAILURE)` when it cannot.
fn print_json<T: Serialize>(v: &T) -> Option<ExitCode> {
    match serde_json::to_string_pretty(v) {
        Ok(text) => {
            println!("{text}");
            None
        }
        Err(e) => {
            eprintln!("pvio: cannot write the output: {e}");
            Some(ExitCode::FAILURE)
        }
    }
}
