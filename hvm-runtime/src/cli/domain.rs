//! The domain commands: `create` (starting a domain; the dry run is
//! `create.rs`'s), `list`, `shutdown`, `reboot`, `destroy`, `pause`,
//! `unpause`, `console`, `vncviewer`, and the hidden `supervise` that
//! `create` starts.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::args::{CreateArgs, DomainArg, RebootArgs, ShutdownArgs};
use crate::config::{self, ConfigError, Loaded};
use crate::domain::control::Request;
use crate::domain::hotplug::HotplugError;
use crate::domain::record::{format_uptime, DomainRecord};
use crate::domain::{console, lifecycle, start, supervisor, DomainError, RunRoot};
use crate::host::accel::Accel;
use crate::plan::{self, DomainPlan, HostView, OsEntropy, PlanError, PlanOptions, RealHost};

/// Errors of the domain and hot-plug commands.
#[derive(Debug, thiserror::Error)]
pub enum DomainCliError {
    /// The config cannot be used.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// No plan can be made, or the host lacks something.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The runtime failed.
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// A hot-plug request is wrong.
    #[error(transparent)]
    Hotplug(#[from] HotplugError),
    /// `cd-insert` was given something that is not an image file.
    #[error("{} {what}; cd-insert takes an ISO image file", .path.display())]
    NotAnImage {
        /// The path as resolved.
        path: PathBuf,
        /// What it is: "does not exist", "is a directory", ...
        what: String,
    },
    /// Writing the output failed.
    #[error("cannot write the output")]
    Output(#[source] serde_json::Error),
    /// A viewer could not be started.
    #[error("cannot start {viewer}")]
    Viewer {
        /// The program.
        viewer: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A local `Result`.
pub type Result<T> = std::result::Result<T, DomainCliError>;

/// `pvio qmp NAME 'JSON'`.
#[derive(Debug, Args)]
pub struct QmpArgs {
    /// The domain.
    pub name: String,
    /// One QMP command: `{"execute":"query-status"}` (with `arguments`).
    pub command: String,
}

/// `pvio monitor NAME 'HMP COMMAND'`.
#[derive(Debug, Args)]
pub struct MonitorArgs {
    /// The domain.
    pub name: String,
    /// One human-monitor command line: `info status`, `eject hdc`.
    pub command: String,
}

/// `pvio qmp NAME 'JSON'`: QEMU's `return` value, pretty-printed.
pub fn qmp(a: &QmpArgs) -> Result<ExitCode> {
    let v: serde_json::Value = serde_json::from_str(&a.command).map_err(|e| {
        DomainCliError::Domain(DomainError::Refused {
            name: a.name.clone(),
            message: format!(
                "the QMP command is not JSON ({e}); write it as '{{\"execute\":\"query-status\"}}'"
            ),
        })
    })?;
    let req = Request::Qmp { command: v };
    let out = lifecycle::request(&RunRoot::from_env(), &a.name, &req)?;
    print_json(&out)?;
    Ok(ExitCode::SUCCESS)
}

/// `pvio monitor NAME 'HMP COMMAND'`: the monitor's text output.
pub fn monitor(a: &MonitorArgs) -> Result<ExitCode> {
    let req = Request::Monitor {
        command_line: a.command.clone(),
    };
    let out = lifecycle::request(&RunRoot::from_env(), &a.name, &req)?;
    print!("{}", out.as_str().unwrap_or_default());
    Ok(ExitCode::SUCCESS)
}

/// `pvio supervise DIR` (hidden): the supervisor of one domain.
#[derive(Debug, Args)]
pub struct SuperviseArgs {
    /// Adopt a domain whose QEMU outlived its supervisor.
    #[arg(long)]
    pub adopt: bool,
    /// Start from the saved or migrated state on descriptor 4.
    #[arg(long)]
    pub incoming: bool,
    /// The domain's run dir.
    pub dir: PathBuf,
}

/// `pvio create FILE` without `--dry-run`: load, plan, check the host,
/// start. What the user should know (warnings, the keys with no effect,
/// the plan's notes) is printed first, whether the start goes on or not.
pub fn create(a: &CreateArgs) -> Result<ExitCode> {
    let loaded = config::load(&a.file, &a.overrides).inspect_err(|e| {
        let (warnings, no_effect) = e.warning_lines();
        print_config_warnings(&warnings, no_effect.as_deref());
    })?;
    let warnings: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
    print_config_warnings(&warnings, loaded.no_effect_line().as_deref());
    let mut entropy = OsEntropy;
    let host = RealHost::new();
    let mut opts = PlanOptions::for_host(&host, &mut entropy);
    let plan = plan::plan(&loaded.spec, &mut opts)?;
    print_plan_notes(&plan);
    let problems = plan::check_host(&loaded.spec, &plan, &host);
    if !problems.is_empty() {
        return Err(PlanError::Host(problems).into());
    }
    start_planned(&loaded, &plan, a)
}

/// The config's warnings and its no-effect line, one line each on stderr.
pub fn print_config_warnings(warnings: &[String], no_effect: Option<&str>) {
    for w in warnings {
        eprintln!("pvio: warning: {w}");
    }
    if let Some(line) = no_effect {
        eprintln!("pvio: note: {line}");
    }
}

/// The accelerator warning and the plan's notes, one line each on stderr.
fn print_plan_notes(plan: &DomainPlan) {
    if plan.accel.accel == Accel::Tcg {
        eprintln!(
            "pvio: warning: {} runs under TCG, not KVM ({}): correct but slow",
            plan.name, plan.accel.reason
        );
    }
    for n in plan.notes.iter().filter(|n| !n.starts_with("accelerator:")) {
        eprintln!("pvio: note: {n}");
    }
}

/// Starts the domain of a checked plan (its warnings printed), prints
/// the result, and attaches the console with `-c`.
pub fn start_planned(loaded: &Loaded, plan: &DomainPlan, a: &CreateArgs) -> Result<ExitCode> {
    let config_text = loaded
        .spec
        .source
        .as_deref()
        .and_then(|p| std::fs::read(p).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned());
    let record = start::start(
        plan,
        start::Origin {
            config: loaded.spec.source.as_deref(),
            serial: loaded.spec.serials.first(),
            config_text,
            overrides: a.overrides.clone(),
            nomigrate: loaded.spec.nomigrate,
            incoming: None,
        },
        true,
    )?;
    if a.json {
        print_json(&record)?;
    } else {
        println!(
            "{} (id {}) is running",
            record.identity.name, record.identity.id
        );
    }
    if a.console {
        match console::attach(&RunRoot::from_env(), &record.identity.name) {
            // The domain runs; a console that cannot be attached is a note.
            Err(DomainError::Refused { message, .. }) => {
                eprintln!("pvio: note: no console to attach: {message}");
            }
            other => other?,
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `pvio list [--json]`.
pub fn list(json: bool) -> Result<ExitCode> {
    let mut dead = Vec::new();
    let root = RunRoot::from_env();
    root.check_readable()?;
    let records = lifecycle::list(&root, &mut dead);
    for d in &dead {
        eprintln!("pvio: note: {d}; it was cleaned up");
    }
    for r in &records {
        if r.adopted > 0 {
            eprintln!(
                "pvio: note: domain '{}' runs on; its supervisor was replaced {} time(s) (adopted)",
                r.identity.name, r.adopted
            );
        }
        for b in &r.backends_down {
            eprintln!(
                "pvio: warning: domain '{}': the PV backend of {} is down: {}",
                r.identity.name, b.device, b.why
            );
        }
    }
    if json {
        let rows: Vec<ListEntry<'_>> = records.iter().map(ListEntry::of).collect();
        print_json(&rows)?;
    } else {
        print!("{}", table(&records));
    }
    Ok(ExitCode::SUCCESS)
}

/// One domain in `pvio list --json`: a stable shape, documented in
/// `docs/commands.md`; fields are only ever added.
#[derive(Debug, serde::Serialize)]
pub struct ListEntry<'a> {
    /// The domain's name.
    pub name: &'a str,
    /// Its id.
    pub id: u32,
    /// Its UUID.
    pub uuid: &'a str,
    /// RAM in MiB.
    pub memory: u64,
    /// vCPUs.
    pub vcpus: u32,
    /// `starting`, `running`, `paused`, `preserved`, `stopping`.
    pub state: crate::domain::DomainState,
    /// Seconds since it was created.
    pub uptime: u64,
    /// `kvm` or `tcg`.
    pub accelerator: Accel,
    /// How often its PV backends were started again after dying.
    pub backend_restarts: u32,
    /// PV backends left down after dying too often.
    pub backends_down: &'a [crate::domain::record::BackendDown],
    /// How often a new supervisor adopted the running domain.
    pub adopted: u32,
    /// Where it came from: `created`, `restored`, `migrated-in`.
    pub origin: crate::domain::record::Origin,
}

impl ListEntry<'_> {
    /// The entry of `r`.
    pub fn of(r: &DomainRecord) -> ListEntry<'_> {
        ListEntry {
            name: &r.identity.name,
            id: r.identity.id,
            uuid: &r.identity.uuid,
            memory: r.identity.memory_mib,
            vcpus: r.identity.vcpus,
            state: r.state,
            uptime: r.uptime_secs(),
            accelerator: r.identity.accel,
            backend_restarts: r.backend_restarts,
            backends_down: &r.backends_down,
            adopted: r.adopted,
            origin: r.origin,
        }
    }
}

/// The `pvio list` table.
pub fn table(records: &[DomainRecord]) -> String {
    let width = records
        .iter()
        .map(|r| r.identity.name.len())
        .max()
        .unwrap_or(0)
        .max(4);
    let mut out = format!(
        "{:<width$}  {:>4}  {:>8}  {:>5}  {:<9}  {:>11}  {}\n",
        "Name", "ID", "Mem(MiB)", "VCPUs", "State", "Uptime", "Accel"
    );
    for r in records {
        out.push_str(&format!(
            "{:<width$}  {:>4}  {:>8}  {:>5}  {:<9}  {:>11}  {}\n",
            r.identity.name,
            r.identity.id,
            r.identity.memory_mib,
            r.identity.vcpus,
            r.state.to_string(),
            format_uptime(r.uptime_secs()),
            r.identity.accel
        ));
    }
    out
}

/// `pvio shutdown [-w] NAME`.
pub fn shutdown(a: &ShutdownArgs) -> Result<ExitCode> {
    let wait = a.wait.then_some(lifecycle::SHUTDOWN_TIMEOUT);
    match lifecycle::shutdown(&RunRoot::from_env(), &a.name, wait)? {
        Some(end) if end.cause == "preserved" => println!("{}: {}", a.name, end.detail),
        Some(end) => println!("{} ended: {} ({})", a.name, end.cause, end.detail),
        None => println!("{}: power button pressed", a.name),
    }
    Ok(ExitCode::SUCCESS)
}

/// `pvio destroy NAME`.
pub fn destroy(a: &DomainArg) -> Result<ExitCode> {
    let end = lifecycle::destroy(&RunRoot::from_env(), &a.name)?;
    println!("{} destroyed ({})", a.name, end.detail);
    Ok(ExitCode::SUCCESS)
}

/// `pvio reboot`, `pause`, `unpause`: one request, one line.
pub fn simple(a: &DomainArg, req: Request, done: &str) -> Result<ExitCode> {
    lifecycle::request(&RunRoot::from_env(), &a.name, &req)?;
    println!("{}: {done}", a.name);
    Ok(ExitCode::SUCCESS)
}

/// `pvio reboot [-F] NAME`.
pub fn reboot(a: &RebootArgs) -> Result<ExitCode> {
    let req = Request::Reboot { force: a.force };
    lifecycle::request(&RunRoot::from_env(), &a.name, &req)?;
    if a.force {
        println!("{}: reset", a.name);
    } else {
        println!(
            "{}: asked to reboot (ACPI power button); it restarts once the guest has shut down",
            a.name
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `pvio console NAME`.
pub fn console(a: &DomainArg) -> Result<ExitCode> {
    console::attach(&RunRoot::from_env(), &a.name)?;
    Ok(ExitCode::SUCCESS)
}

/// `pvio vncviewer NAME`: prints the address, then runs `vncviewer` or
/// `gvncviewer` on it when one is installed and a display is there.
pub fn vncviewer(a: &DomainArg) -> Result<ExitCode> {
    let root = RunRoot::from_env();
    let addr = match lifecycle::vnc_address(&root, &a.name) {
        Ok(addr) => addr,
        // A live domain without a display: say which key turned it off.
        Err(DomainError::Refused { name, .. }) => {
            let config = root.live(&name).ok().and_then(|f| f.record.identity.config);
            return Err(DomainError::Refused {
                message: why_no_vnc(config.as_deref()),
                name,
            }
            .into());
        }
        Err(e) => return Err(e.into()),
    };
    println!("{addr}");
    let have_display =
        std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some();
    let viewer = ["vncviewer", "gvncviewer"].into_iter().find(|v| {
        RealHost::new()
            .find_program(std::path::Path::new(v))
            .is_some()
    });
    match (viewer, have_display) {
        (Some(v), true) => {
            use std::os::unix::process::CommandExt;
            let e = std::process::Command::new(v).arg(&addr).exec();
            Err(DomainCliError::Viewer {
                viewer: v.to_owned(),
                source: e,
            })
        }
        (Some(v), false) => {
            eprintln!(
                "pvio: note: no display (DISPLAY is unset); run `{v} {addr}` where there is one"
            );
            Ok(ExitCode::SUCCESS)
        }
        (None, _) => {
            eprintln!("pvio: note: no VNC viewer installed (vncviewer, gvncviewer); connect one to {addr}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Why a running domain has no VNC display, read from the config it was
/// created from (a display is on unless `vnc = 0` or `nographic = 1`).
fn why_no_vnc(config: Option<&std::path::Path>) -> String {
    let set = |key: &str| -> Option<(i64, u32)> {
        let text = std::fs::read(config?).ok()?;
        let text = String::from_utf8_lossy(&text);
        let parsed = config::file::Parsed::from_text(&text, &config::Origin::CommandLine);
        let s = parsed.file.get(key)?;
        match s.value.kind {
            config::ast::ValueKind::Num(n) => Some((n, s.at.line)),
            _ => None,
        }
    };
    let shown = config.map_or_else(|| "its config".to_owned(), |p| p.display().to_string());
    let fix = "create it again without it for a VNC display, or use `pvio console`";
    match (set("nographic"), set("vnc")) {
        (Some((n, line)), _) if n != 0 => format!(
            "it has no VNC display: nographic = {n} ({shown}:{line}) turns the display off; {fix}"
        ),
        (_, Some((0, line))) => {
            format!("it has no VNC display: vnc = 0 ({shown}:{line}) turns it off; {fix}")
        }
        _ => "it has no VNC display: it was created with vnc = 0 or nographic = 1 (given on the \
              command line); create it again without them for one, or use `pvio console`"
            .to_owned(),
    }
}

/// `pvio supervise DIR`.
pub fn supervise(a: &SuperviseArgs) -> Result<ExitCode> {
    supervisor::run(&a.dir, a.adopt, a.incoming)?;
    Ok(ExitCode::SUCCESS)
}

/// Prints `v` as pretty JSON.
pub fn print_json<T: serde::Serialize + ?Sized>(v: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(v).map_err(DomainCliError::Output)?;
    println!("{text}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::record::sample;

    #[test]
    fn the_list_json_has_the_documented_fields() {
        let mut r = sample("web");
        r.started_at = r.started_at.saturating_sub(90);
        let v = serde_json::to_value(ListEntry::of(&r)).unwrap();
        let obj = v.as_object().unwrap();
        let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "accelerator",
                "adopted",
                "backend_restarts",
                "backends_down",
                "id",
                "memory",
                "name",
                "origin",
                "state",
                "uptime",
                "uuid",
                "vcpus"
            ]
        );
        assert_eq!(v["name"], "web");
        assert_eq!(v["id"], 1);
        assert_eq!(v["memory"], 256);
        assert_eq!(v["vcpus"], 1);
        assert_eq!(v["state"], "running");
        assert!(v["uptime"].as_u64().unwrap() >= 90);
        assert_eq!(v["accelerator"], "tcg");
    }

    #[test]
    fn no_vnc_says_which_key_turned_the_display_off() {
        let d = tempfile::tempdir().unwrap();
        let cfg = d.path().join("winxp");
        std::fs::write(&cfg, "name = 'w'\nvnc = 1\nnographic = 1\nstdvga = 0\n").unwrap();
        let why = why_no_vnc(Some(&cfg));
        assert!(
            why.starts_with(&format!(
                "it has no VNC display: nographic = 1 ({}:3) turns the display off;",
                cfg.display()
            )),
            "{why}"
        );
        assert!(!why.contains("vnc = 1"), "{why}");
        std::fs::write(&cfg, "name = 'w'\nvnc = 0\n").unwrap();
        assert!(
            why_no_vnc(Some(&cfg)).contains("vnc = 0 ("),
            "{}",
            why_no_vnc(Some(&cfg))
        );
        assert!(why_no_vnc(None).contains("command line"));
    }

    #[test]
    fn the_list_table_has_xl_columns() {
        let mut r = sample("web");
        r.started_at = r.started_at.saturating_sub(3725);
        let t = table(&[r]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0],
            "Name    ID  Mem(MiB)  VCPUs  State           Uptime  Accel"
        );
        // A second may pass between the record and the table.
        assert!(
            lines[1].starts_with("web      1       256      1  running       01:02:0"),
            "{t}"
        );
        assert!(lines[1].ends_with("  TCG"), "{t}");
    }
}
