//! Boots a Linux guest under QEMU with the kit's initramfs and returns what
//! its test script printed.
//!
//! ```no_run
//! use pvio_tests::{strict, Guest};
//! let out = Guest::builder()
//!     .vcpus(2)
//!     .modules(&["virtio_pci", "virtio_blk"])
//!     .run(&strict("uname -r\ngrep -c ^processor /proc/cpuinfo"))
//!     .expect("guest ran");
//! assert_eq!(out.exit_code, 0, "{}", out.console);
//! ```
//!
//! [`GuestBuilder::run`] boots, waits for the script and the power-off, and
//! returns a [`GuestOutput`]. [`GuestBuilder::spawn`] returns a
//! [`RunningGuest`] for tests that act on the host while the guest runs
//! (wait for a console line the script prints, talk QMP, then
//! [`RunningGuest::wait`]). QEMU never outlives the handle: a guest past its
//! timeout is killed and reaped, and so is one whose handle is dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::accel::{detect, Accel};
use crate::console::{script_state, tail, Console, ScriptState, TAIL_LINES};
use crate::init::strict;
use crate::initramfs::{FileSource, InitramfsBuilder, InitramfsError};
use crate::kernel::{GuestKernel, KernelError};
use crate::qemu::{qemu_command, spawn_qemu, QemuConfig};

/// The environment variable that sets the default guest timeout, in seconds.
pub const TIMEOUT_ENV: &str = "PVIO_GUEST_TIMEOUT";

/// The timeout when neither the test nor `PVIO_GUEST_TIMEOUT` sets one. A
/// guest boots in seconds under TCG; this leaves room for a loaded machine.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(180);

/// Errors from booting a guest or waiting for it. `Debug` prints the same
/// text as `Display`, so `.expect()` in a test shows the console lines.
#[derive(thiserror::Error)]
pub enum GuestError {
    /// The guest kernel is unavailable.
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// The initramfs could not be built.
    #[error(transparent)]
    Initramfs(#[from] InitramfsError),
    /// QEMU is not installed.
    #[error("{qemu} not found: install qemu-system-x86 (scripts/setup.sh does)")]
    QemuMissing {
        /// The program looked for.
        qemu: String,
    },
    /// Something on the host failed (a temporary directory, starting QEMU).
    #[error("{what}: {source}")]
    Io {
        /// What the kit was doing.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// QEMU exited before the guest's `/init` ran: a bad argument, a
    /// missing file, a device QEMU does not know.
    #[error(
        "QEMU exited ({status}) before the guest started; QEMU said:\n{stderr}\ncommand: {command}"
    )]
    QemuFailed {
        /// QEMU's exit status.
        status: String,
        /// What QEMU wrote to stderr.
        stderr: String,
        /// The command line.
        command: String,
    },
    /// A module did not load in the guest; the script did not run.
    #[error("module {module} failed to load in the guest; last console lines:\n{console_tail}")]
    ModuleLoad {
        /// The module.
        module: String,
        /// The last console lines.
        console_tail: String,
    },
    /// The guest did not get there within the timeout; it was killed.
    #[error("timed out after {timeout:?} waiting for {waiting_for}; QEMU (pid {pid}) was killed; last {TAIL_LINES} console lines:\n{console_tail}{stderr}")]
    Timeout {
        /// What the kit was waiting for.
        waiting_for: String,
        /// The timeout.
        timeout: Duration,
        /// QEMU's process id (gone now).
        pid: u32,
        /// The last console lines.
        console_tail: String,
        /// What QEMU wrote to stderr, if anything (with a heading).
        stderr: String,
    },
    /// The guest stopped (powered off, panicked, QEMU died) before it got
    /// there.
    #[error("the guest stopped ({status}) before {waiting_for}; last {TAIL_LINES} console lines:\n{console_tail}{stderr}")]
    Stopped {
        /// What the kit was waiting for.
        waiting_for: String,
        /// QEMU's exit status.
        status: String,
        /// The last console lines.
        console_tail: String,
        /// What QEMU wrote to stderr, if anything (with a heading).
        stderr: String,
    },
    /// The script exited non-zero (from [`GuestOutput::success`]).
    #[error("the guest script exited with {exit_code}; its output:\n{output}")]
    ScriptFailed {
        /// The script's exit status.
        exit_code: i32,
        /// What it printed.
        output: String,
    },
}

impl std::fmt::Debug for GuestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// What a guest run produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestOutput {
    /// The script's stdout and stderr, between the markers, kernel messages
    /// left out.
    pub output: String,
    /// The script's exit status (its last command's, unless it used
    /// [`strict`](crate::strict)).
    pub exit_code: i32,
    /// The whole console log: kernel, `/init`, script.
    pub console: String,
    /// From QEMU's start to the script's start.
    pub boot_time: Duration,
    /// From QEMU's start to its exit.
    pub elapsed: Duration,
}

impl GuestOutput {
    /// `self` if the script exited 0, else [`GuestError::ScriptFailed`]
    /// with its output.
    pub fn success(self) -> Result<GuestOutput, GuestError> {
        if self.exit_code == 0 {
            Ok(self)
        } else {
            Err(GuestError::ScriptFailed {
                exit_code: self.exit_code,
                output: self.output,
            })
        }
    }
}

/// Namespace for [`Guest::builder`].
#[derive(Debug)]
pub struct Guest;

impl Guest {
    /// A 256 MiB, 1 vCPU `q35` guest on the detected accelerator.
    pub fn builder() -> GuestBuilder {
        GuestBuilder::default()
    }
}

/// How to boot a guest. Cheap to clone; one builder can boot many guests.
#[derive(Debug, Clone)]
pub struct GuestBuilder {
    pub(crate) config: QemuConfig,
    initramfs: InitramfsBuilder,
    kernel: Option<GuestKernel>,
    bzimage: bool,
    timeout: Duration,
}

impl Default for GuestBuilder {
    fn default() -> Self {
        GuestBuilder {
            config: QemuConfig::default(),
            initramfs: InitramfsBuilder::default(),
            kernel: None,
            bzimage: false,
            timeout: default_timeout(),
        }
    }
}

/// `PVIO_GUEST_TIMEOUT` seconds, else [`DEFAULT_TIMEOUT`].
fn default_timeout() -> Duration {
    std::env::var(TIMEOUT_ENV)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map_or(DEFAULT_TIMEOUT, Duration::from_secs)
}

impl GuestBuilder {
    /// Guest RAM in MiB (default 256).
    pub fn memory_mib(mut self, mib: u32) -> Self {
        self.config.memory_mib = mib;
        self
    }

    /// Number of vCPUs (default 1).
    pub fn vcpus(mut self, n: u32) -> Self {
        self.config.vcpus = n;
        self
    }

    /// QEMU machine type: `q35` (default) or `pc`.
    pub fn machine(mut self, machine: &str) -> Self {
        self.config.machine = machine.to_owned();
        self
    }

    /// An extra `-machine` option, such as `kernel-irqchip=split`.
    pub fn machine_option(mut self, option: &str) -> Self {
        self.config.machine_options.push(option.to_owned());
        self
    }

    /// The accelerator (default: what the host's detection says).
    pub fn accel(mut self, accel: Accel) -> Self {
        self.config.accel = Some(accel);
        self
    }

    /// Back guest RAM with a shared memfd (`memory-backend-memfd,share=on`),
    /// as vhost-user backends need.
    pub fn shared_memory(mut self, shared: bool) -> Self {
        self.config.shared_memory = shared;
        self
    }

    /// Appends to the kernel command line (`intel_iommu=on`). A later
    /// `loglevel=` overrides the kit's default of 4 (errors only).
    pub fn cmdline(mut self, extra: &str) -> Self {
        self.config.cmdline.push(extra.to_owned());
        self
    }

    /// Appends QEMU arguments (`-device`, `-chardev`, `-drive`, ...).
    pub fn qemu_args<S: AsRef<str>>(mut self, args: &[S]) -> Self {
        self.config
            .extra_args
            .extend(args.iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// The QEMU program (default `qemu-system-x86_64` from `PATH`).
    pub fn qemu_binary(mut self, program: impl Into<PathBuf>) -> Self {
        self.config.qemu = program.into();
        self
    }

    /// How long [`GuestBuilder::run`] waits for the script to finish and the
    /// guest to power off (default `PVIO_GUEST_TIMEOUT` seconds, else 180 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The guest kernel (default: [`GuestKernel::get`]).
    pub fn kernel(mut self, kernel: GuestKernel) -> Self {
        self.kernel = Some(kernel);
        self
    }

    /// Boot the compressed `vmlinuz` (bzImage, Linux boot protocol) instead
    /// of the default [`GuestKernel::boot_image`] (`vmlinux` through PVH,
    /// about 3 s faster under TCG).
    pub fn bzimage(mut self, bzimage: bool) -> Self {
        self.bzimage = bzimage;
        self
    }

    /// Modules to load before the script; see [`InitramfsBuilder::modules`].
    pub fn modules<S: AsRef<str>>(mut self, names: &[S]) -> Self {
        self.initramfs = self.initramfs.modules(names);
        self
    }

    /// A file in the guest; see [`InitramfsBuilder::file`].
    pub fn file(mut self, guest_path: &str, source: impl Into<FileSource>, mode: u32) -> Self {
        self.initramfs = self.initramfs.file(guest_path, source, mode);
        self
    }

    /// A host program (and its libraries) in the guest's `/usr/bin`; see
    /// [`InitramfsBuilder::host_binary`].
    pub fn host_binary(mut self, host_path: impl AsRef<Path>) -> Self {
        self.initramfs = self.initramfs.host_binary(host_path);
        self
    }

    /// Replaces the initramfs contents wholesale (its script is replaced by
    /// the one given to `run` or `spawn`).
    pub fn initramfs(mut self, initramfs: InitramfsBuilder) -> Self {
        self.initramfs = initramfs;
        self
    }

    /// Boots the guest, runs `script` in it, and returns its output once the
    /// guest has powered off. A guest still running at the timeout is killed.
    pub fn run(&self, script: &str) -> Result<GuestOutput, GuestError> {
        self.spawn(script)?.wait(self.timeout)
    }

    /// [`GuestBuilder::run`] with [`strict`] applied to `script`, and an
    /// error if the script exits non-zero.
    pub fn run_strict(&self, script: &str) -> Result<GuestOutput, GuestError> {
        self.run(&strict(script))?.success()
    }

    /// Boots the guest with `script` and returns at once.
    pub fn spawn(&self, script: &str) -> Result<RunningGuest, GuestError> {
        let kernel = match &self.kernel {
            Some(k) => k.clone(),
            None => GuestKernel::get()?,
        };
        let workdir = tempfile::Builder::new()
            .prefix("pvio-guest-")
            .tempdir()
            .map_err(|source| GuestError::Io {
                what: "cannot create a temporary directory for the guest".to_owned(),
                source,
            })?;
        let initrd = self
            .initramfs
            .clone()
            .kernel(kernel.clone())
            .script(script)
            .build(workdir.path())?;
        let qmp = workdir.path().join("qmp.sock");
        let mut config = self.config.clone();
        if config.accel.is_none() {
            let decision = detect();
            eprintln!(
                "[pvio-tests] accelerator {}: {}",
                decision.accel.qemu_arg(),
                decision.reason
            );
            config.accel = Some(decision.accel);
        }
        let image = if self.bzimage {
            kernel.vmlinuz()
        } else {
            kernel.boot_image()
        };
        let cmd = qemu_command(&config, image, &initrd, &qmp);
        let command_line = format!("{cmd:?}");
        let started = Instant::now();
        let spawned = spawn_qemu(cmd).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                GuestError::QemuMissing {
                    qemu: config.qemu.display().to_string(),
                }
            } else {
                GuestError::Io {
                    what: format!("cannot start {}", config.qemu.display()),
                    source,
                }
            }
        })?;
        Ok(RunningGuest {
            child: spawned.child,
            status: None,
            console: spawned.console,
            stderr: spawned.stderr,
            readers: spawned.readers,
            command_line,
            qmp,
            started,
            cursor: 0,
            _workdir: workdir,
            _not_send: std::marker::PhantomData,
        })
    }
}

/// A guest whose QEMU is running. Dropping it kills and reaps QEMU.
///
/// It is not `Send`: QEMU is started with `PR_SET_PDEATHSIG`, so it also
/// dies if the thread that started it ends (a test killed mid-way leaves no
/// QEMU behind), and the handle must stay on that thread. Other threads can
/// still use [`RunningGuest::qmp_socket_path`].
#[derive(Debug)]
pub struct RunningGuest {
    child: Child,
    status: Option<ExitStatus>,
    console: Arc<Console>,
    stderr: Arc<Console>,
    readers: Vec<JoinHandle<()>>,
    command_line: String,
    qmp: PathBuf,
    started: Instant,
    cursor: usize,
    _workdir: tempfile::TempDir,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl RunningGuest {
    /// QEMU's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// QEMU's QMP socket (`-qmp unix:PATH,server=on,wait=off`). It exists
    /// once QEMU has set it up, which is before the guest's first console
    /// line.
    pub fn qmp_socket_path(&self) -> &Path {
        &self.qmp
    }

    /// The console log so far.
    pub fn console(&self) -> String {
        self.console.text()
    }

    /// Waits for a console line containing `pattern` (plain substring) that
    /// comes after the line the previous call matched, and returns it. The
    /// guest is killed if it does not come within `timeout`, or if the guest
    /// stops first.
    pub fn wait_for_console_line(
        &mut self,
        pattern: &str,
        timeout: Duration,
    ) -> Result<String, GuestError> {
        let deadline = Instant::now() + timeout;
        let from = self.cursor;
        let found = {
            let st = self.console.wait_until(deadline, |st| {
                st.lines.iter().skip(from).any(|l| l.contains(pattern))
            });
            st.lines
                .iter()
                .enumerate()
                .skip(from)
                .find(|(_, l)| l.contains(pattern))
                .map(|(i, l)| (i, l.clone()))
        };
        if let Some((i, line)) = found {
            self.cursor = i + 1;
            return Ok(line);
        }
        let waiting_for = format!("a console line containing {pattern:?}");
        Err(self.failure(waiting_for, timeout))
    }

    /// Waits for the script to finish and the guest to power off, and
    /// returns the script's output. The guest is killed at the timeout.
    pub fn wait(mut self, timeout: Duration) -> Result<GuestOutput, GuestError> {
        let deadline = Instant::now() + timeout;
        // The console closes when QEMU exits.
        drop(self.console.wait_until(deadline, |_| false));
        if !self.console.lock().closed {
            return Err(self.failure(
                "the script to finish and the guest to power off".to_owned(),
                timeout,
            ));
        }
        self.reap();
        let elapsed = self.started.elapsed();
        let (state, console, begin_at) = {
            let st = self.console.lock();
            (
                script_state(&st.lines),
                crate::console::join_lines(&st.lines),
                st.begin_at,
            )
        };
        match state {
            ScriptState::Finished { output, exit_code } => Ok(GuestOutput {
                output,
                exit_code,
                console,
                boot_time: begin_at.map_or(elapsed, |b| b.duration_since(self.started)),
                elapsed,
            }),
            other => Err(self.stopped_error(other, "the script finished")),
        }
    }

    /// Kills QEMU now and reaps it.
    pub fn kill(&mut self) {
        if self.status.is_none() {
            // It may have exited already; `wait` reaps it either way.
            let _ = self.child.kill();
        }
        self.reap();
    }

    /// Waits for QEMU's exit status and for the reader threads to drain.
    fn reap(&mut self) {
        if self.status.is_none() {
            self.status = self.child.wait().ok();
        }
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
    }

    /// The error for a wait that did not see what it waited for: a timeout
    /// (the guest is killed) or a stopped guest.
    fn failure(&mut self, waiting_for: String, timeout: Duration) -> GuestError {
        let closed = self.console.lock().closed;
        if closed {
            self.reap();
            let state = script_state(&self.console.lock().lines);
            return self.stopped_error(state, &waiting_for);
        }
        self.kill();
        GuestError::Timeout {
            waiting_for,
            timeout,
            pid: self.child.id(),
            console_tail: self.console.tail(),
            stderr: self.stderr_section(),
        }
    }

    fn stopped_error(&self, state: ScriptState, waiting_for: &str) -> GuestError {
        let lines = self.console.lock().lines.clone();
        let status = self
            .status
            .map_or_else(|| "unknown status".to_owned(), |s| s.to_string());
        if let ScriptState::InsmodFailed(module) = state {
            return GuestError::ModuleLoad {
                module,
                console_tail: tail(&lines, TAIL_LINES),
            };
        }
        let init_ran = lines.iter().any(|l| l == crate::init::INIT_MARKER);
        let failed = self.status.is_some_and(|s| !s.success());
        if !init_ran && (lines.is_empty() || failed) {
            return GuestError::QemuFailed {
                status,
                stderr: self.stderr_text(),
                command: self.command_line.clone(),
            };
        }
        GuestError::Stopped {
            waiting_for: waiting_for.to_owned(),
            status,
            console_tail: tail(&lines, TAIL_LINES),
            stderr: self.stderr_section(),
        }
    }

    /// QEMU's stderr (its last lines, if it said much).
    fn stderr_text(&self) -> String {
        tail(&self.stderr.lock().lines, 100).trim_end().to_owned()
    }

    fn stderr_section(&self) -> String {
        let s = self.stderr_text();
        if s.is_empty() {
            String::new()
        } else {
            format!("QEMU's stderr:\n{s}\n")
        }
    }
}

impl Drop for RunningGuest {
    fn drop(&mut self) {
        self.kill();
    }
}
