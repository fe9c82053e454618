//! pvio's main job on its built-in test guest: `pvio create` starts the
//! test guest (Debian's kernel with a busybox initramfs) from an xl-style
//! config with a PV disk served by pvio's block backend, the guest reads
//! what the host put on the disk and writes an answer, and the host reads
//! the answer back from the image. `scripts/demo.sh` runs it.

use std::path::Path;

use pvio_hvm_runtime::domain::lock::FileLock;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use pvio_tests::init::{BEGIN_MARKER, END_MARKER_PREFIX};
use pvio_tests::{pvio_bin, strict, GuestKernel, Initramfs};

/// Where the host's message sits on the disk (1 MiB in).
const HOST_OFFSET: u64 = 1 << 20;
const HOST_MESSAGE: &str = "hello from the host, through pvio's PV block backend";

const SCRIPT: &str = r#"
echo "kernel:      $(uname -srm)"
echo "memory:      $(grep MemTotal /proc/meminfo | tr -s ' ' | cut -d' ' -f2-)"
echo "PCI devices:"
for d in /sys/bus/pci/devices/*; do
  drv=-
  [ -e "$d/driver" ] && drv=$(basename "$(readlink "$d/driver")")
  printf '  %s  %s:%s  driver %s\n' "$(basename "$d")" \
    "$(cut -c3- "$d/vendor")" "$(cut -c3- "$d/device")" "$drv"
done
echo "PV disk:     /dev/vda, serial $(cat /sys/block/vda/serial), $(( $(cat /sys/block/vda/size) / 2048 )) MiB"
echo "read:        $(dd if=/dev/vda bs=1M skip=1 count=1 2>/dev/null | tr -d '\000')"
printf 'hello from the guest (%s), written to /dev/vda' "$(uname -r)" | dd of=/dev/vda bs=512 conv=sync,fsync 2>/dev/null
sync
echo "wrote:       an answer at the start of /dev/vda"
"#;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pvio demo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let tmp = tempfile::Builder::new()
        .prefix("pvio-demo")
        .tempdir_in("/tmp")
        .map_err(|e| format!("temporary directory: {e}"))?;
    let dir = tmp.path();
    let run_dir = dir.join("run");
    let pvio = pvio_bin();

    // The PV disk, with a message from the host 1 MiB in.
    let disk = dir.join("disk.img");
    let mut image = vec![0u8; 64 << 20];
    let at = usize::try_from(HOST_OFFSET).map_err(|e| e.to_string())?;
    image[at..at + HOST_MESSAGE.len()].copy_from_slice(HOST_MESSAGE.as_bytes());
    std::fs::write(&disk, &image).map_err(|e| format!("{}: {e}", disk.display()))?;

    println!("pvio demo: building the test guest (Debian's kernel, busybox initramfs)");
    let kernel = GuestKernel::get().map_err(|e| e.to_string())?;
    let vmlinux = kernel.vmlinux().unwrap_or(kernel.vmlinuz()).to_owned();
    let initramfs = Initramfs::builder()
        .kernel(kernel)
        .modules(&["virtio_pci", "virtio_blk"])
        .script(&strict(SCRIPT))
        .build(&dir.join("initramfs.cpio"))
        .map_err(|e| e.to_string())?;
    let console = dir.join("console.log");
    let config = dir.join("demo.cfg");
    let text = format!(
        "# The demo domain: direct kernel boot, one PV disk.\n\
         name = \"pvio-demo\"\n\
         memory = 256\n\
         vcpus = 1\n\
         kernel = \"{}\"\n\
         ramdisk = \"{}\"\n\
         cmdline = \"console=ttyS0 panic=-1 loglevel=4\"\n\
         disk = [ 'file:{},xvda,w' ]\n\
         serial = 'file:{}'\n\
         vnc = 0\n\
         on_poweroff = 'destroy'\n",
        vmlinux.display(),
        initramfs.display(),
        disk.display(),
        console.display()
    );
    std::fs::write(&config, &text).map_err(|e| e.to_string())?;
    println!("pvio demo: the config ({}):\n", config.display());
    for line in text.lines() {
        println!("    {line}");
    }
    println!("\n$ pvio create {}", config.display());
    let out = Command::new(&pvio)
        .arg("create")
        .arg(&config)
        .env("PVIO_RUN_DIR", &run_dir)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", pvio.display()))?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        return Err("pvio create failed".to_owned());
    }

    let _destroy_on_error = Destroyer {
        pvio: &pvio,
        run_dir: &run_dir,
    };
    println!("\nthe guest says:");
    let rc = follow_console(&console, Duration::from_secs(180))?;
    // The guest powered off; on_poweroff = 'destroy' ends the domain: wait
    // for its supervisor to clean up (it holds this lock while it lives).
    let lock = run_dir.join("pvio-demo/lock");
    let _ = FileLock::wait_free(&lock, Duration::from_secs(60));
    if rc != "0" {
        return Err(format!("the guest script failed (status {rc})"));
    }

    let back = std::fs::read(&disk).map_err(|e| e.to_string())?;
    let answer: String = back[..512]
        .iter()
        .take_while(|b| **b != 0)
        .map(|b| char::from(*b))
        .collect();
    println!("\nthe host reads from {}:\n  {answer}", disk.display());
    if !answer.starts_with("hello from the guest") {
        return Err("the guest's answer is not on the disk".to_owned());
    }
    println!("\npvio demo: data went both ways through the PV disk; the domain has ended.");
    Ok(())
}

/// Prints the script's lines as they come; returns its exit status.
fn follow_console(path: &Path, timeout: Duration) -> Result<String, String> {
    let start = Instant::now();
    let mut shown = 0;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let begin = lines.iter().position(|l| l.contains(BEGIN_MARKER));
        if let Some(b) = begin {
            for l in lines.iter().skip(b + 1).skip(shown) {
                if let Some(rest) = l.split(END_MARKER_PREFIX).nth(1) {
                    return Ok(rest.trim_end_matches('=').to_owned());
                }
                if !l.starts_with('[') {
                    println!("  {l}");
                }
                shown += 1;
            }
        }
        if start.elapsed() > timeout {
            return Err(format!(
                "the guest did not finish within {timeout:?}; console:\n{text}"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Destroys the demo domain if it still runs when the demo returns (a
/// failure half-way must not leave QEMU behind).
struct Destroyer<'a> {
    pvio: &'a Path,
    run_dir: &'a Path,
}

impl Drop for Destroyer<'_> {
    fn drop(&mut self) {
        let lock = self.run_dir.join("pvio-demo/lock");
        if FileLock::is_held(&lock).unwrap_or(false) {
            let _ = Command::new(self.pvio)
                .args(["destroy", "pvio-demo"])
                .env("PVIO_RUN_DIR", self.run_dir)
                .output();
        }
    }
}
