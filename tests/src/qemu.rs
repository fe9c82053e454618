//! The QEMU command line for a test guest, and starting it with its console
//! and stderr read on their own threads.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::accel::Accel;
use crate::console::Console;

/// What the QEMU command line is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuConfig {
    /// The program.
    pub qemu: PathBuf,
    /// Guest RAM in MiB.
    pub memory_mib: u32,
    /// vCPUs.
    pub vcpus: u32,
    /// Machine type.
    pub machine: String,
    /// Extra `-machine` options.
    pub machine_options: Vec<String>,
    /// The accelerator; `None` until the host is asked.
    pub accel: Option<Accel>,
    /// RAM from a shared memfd.
    pub shared_memory: bool,
    /// Extra kernel command line words.
    pub cmdline: Vec<String>,
    /// Extra QEMU arguments.
    pub extra_args: Vec<String>,
}

impl Default for QemuConfig {
    fn default() -> Self {
        QemuConfig {
            qemu: PathBuf::from("qemu-system-x86_64"),
            memory_mib: 256,
            vcpus: 1,
            machine: "q35".to_owned(),
            machine_options: Vec::new(),
            accel: None,
            shared_memory: false,
            cmdline: Vec::new(),
            extra_args: Vec::new(),
        }
    }
}

/// The kernel command line: the console on the first serial port, reboot at
/// once on a panic (QEMU's `-no-reboot` turns that into an exit), only
/// error messages and worse from the kernel, then the test's words.
pub fn kernel_cmdline(config: &QemuConfig) -> String {
    let mut words = vec!["console=ttyS0", "panic=-1", "loglevel=4"];
    words.extend(config.cmdline.iter().map(String::as_str));
    words.join(" ")
}

/// The arguments after the program name.
pub fn qemu_args(config: &QemuConfig, vmlinuz: &Path, initrd: &Path, qmp: &Path) -> Vec<String> {
    let mut machine = config.machine.clone();
    for opt in &config.machine_options {
        machine.push(',');
        machine.push_str(opt);
    }
    let mut args: Vec<String> = [
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let accel = config.accel.unwrap_or(Accel::Tcg);
    args.extend(["-accel".to_owned(), accel.qemu_arg().to_owned()]);
    if accel == Accel::Kvm {
        // The host's CPU model: full speed, and what a real deployment uses.
        args.extend(["-cpu".to_owned(), "host".to_owned()]);
    }
    if config.shared_memory {
        machine.push_str(",memory-backend=mem");
        args.extend([
            "-object".to_owned(),
            format!(
                "memory-backend-memfd,id=mem,size={}M,share=on",
                config.memory_mib
            ),
        ]);
    }
    args.extend([
        "-machine".to_owned(),
        machine,
        "-m".to_owned(),
        format!("{}M", config.memory_mib),
        "-smp".to_owned(),
        config.vcpus.to_string(),
        "-serial".to_owned(),
        "stdio".to_owned(),
        "-qmp".to_owned(),
        format!("unix:{},server=on,wait=off", qmp.display()),
        "-kernel".to_owned(),
        vmlinuz.display().to_string(),
        "-initrd".to_owned(),
        initrd.display().to_string(),
        "-append".to_owned(),
        kernel_cmdline(config),
    ]);
    args.extend(config.extra_args.iter().cloned());
    args
}

/// The full command, not yet started.
pub fn qemu_command(config: &QemuConfig, vmlinuz: &Path, initrd: &Path, qmp: &Path) -> Command {
    let mut cmd = Command::new(&config.qemu);
    cmd.args(qemu_args(config, vmlinuz, initrd, qmp));
    cmd
}

/// A started QEMU and what reads its output.
#[derive(Debug)]
pub struct Spawned {
    /// The process.
    pub child: Child,
    /// Its console (stdout).
    pub console: Arc<Console>,
    /// Its stderr, line by line.
    pub stderr: Arc<Console>,
    /// The reader threads; they end when QEMU closes its output.
    pub readers: Vec<JoinHandle<()>>,
}

/// Starts `cmd` with stdin from `/dev/null`, stdout read as the console and
/// stderr kept, and with `PR_SET_PDEATHSIG` set to `SIGKILL`: QEMU dies
/// with the thread that started it, so a killed test leaves none behind.
pub fn spawn_qemu(mut cmd: Command) -> std::io::Result<Spawned> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: the closure runs in the forked child before exec and only
    // makes the async-signal-safe prctl system call; it touches no memory
    // of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    let console = Arc::new(Console::default());
    let stderr = Arc::new(Console::default());
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        let c = Arc::clone(&console);
        readers.push(std::thread::spawn(move || c.read_from(out, "[guest] ")));
    }
    if let Some(err) = child.stderr.take() {
        let c = Arc::clone(&stderr);
        readers.push(std::thread::spawn(move || c.read_from(err, "[qemu] ")));
    }
    Ok(Spawned {
        child,
        console,
        stderr,
        readers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(config: &QemuConfig) -> Vec<String> {
        qemu_args(
            config,
            Path::new("/k/vmlinuz"),
            Path::new("/w/initrd"),
            Path::new("/w/qmp.sock"),
        )
    }

    fn after<'a>(args: &'a [String], flag: &str) -> &'a str {
        let i = args
            .iter()
            .position(|a| a == flag)
            .unwrap_or_else(|| panic!("{flag} missing from {args:?}"));
        &args[i + 1]
    }

    #[test]
    fn defaults() {
        let a = args(&QemuConfig {
            accel: Some(Accel::Tcg),
            ..QemuConfig::default()
        });
        assert_eq!(after(&a, "-machine"), "q35");
        assert_eq!(after(&a, "-m"), "256M");
        assert_eq!(after(&a, "-smp"), "1");
        assert_eq!(after(&a, "-accel"), "tcg");
        assert_eq!(after(&a, "-serial"), "stdio");
        assert_eq!(after(&a, "-qmp"), "unix:/w/qmp.sock,server=on,wait=off");
        assert!(after(&a, "-append").starts_with("console=ttyS0 panic=-1"));
        assert!(a.iter().any(|x| x == "-nodefaults"));
        assert!(a.iter().any(|x| x == "-no-reboot"));
        assert!(!a.iter().any(|x| x == "-object"));
    }

    #[test]
    fn kvm_gets_the_host_cpu() {
        let a = args(&QemuConfig {
            accel: Some(Accel::Kvm),
            ..QemuConfig::default()
        });
        assert_eq!(after(&a, "-accel"), "kvm");
        assert_eq!(after(&a, "-cpu"), "host");
    }

    #[test]
    fn shared_memory_machine_options_and_extras() {
        let a = args(&QemuConfig {
            memory_mib: 512,
            vcpus: 2,
            machine_options: vec!["kernel-irqchip=split".to_owned()],
            shared_memory: true,
            cmdline: vec!["intel_iommu=on".to_owned()],
            extra_args: vec!["-device".to_owned(), "intel-iommu".to_owned()],
            ..QemuConfig::default()
        });
        assert_eq!(
            after(&a, "-machine"),
            "q35,kernel-irqchip=split,memory-backend=mem"
        );
        assert_eq!(
            after(&a, "-object"),
            "memory-backend-memfd,id=mem,size=512M,share=on"
        );
        assert!(after(&a, "-append").ends_with(" intel_iommu=on"));
        assert_eq!(a[a.len() - 2..], ["-device", "intel-iommu"]);
    }
}
