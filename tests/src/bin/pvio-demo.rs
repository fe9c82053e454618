//! pvio's main job on its built-in test guest: `pvio create` starts the
//! test guest (Debian's kernel with a busybox initramfs) from an xl-style
//! config with a PV disk served by pvio's block backend and an emulated IDE
//! disk from the device model. The guest reads what the host put on the PV
//! disk and writes an answer that the host reads back from the image; then
//! it reads both disks the same way, and the demo shows PV against emulated
//! with the accelerator named. `scripts/demo.sh` runs it.

use std::path::Path;

use pvio_hvm_runtime::domain::lock::FileLock;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use pvio_tests::init::{BEGIN_MARKER, END_MARKER_PREFIX};
use pvio_tests::{pvio_bin, strict, GuestKernel, Initramfs};

/// Where the host's message sits on the disk (1 MiB in).
const HOST_OFFSET: u64 = 1 << 20;
const HOST_MESSAGE: &str = "hello from the host, through pvio's PV block backend";

/// Size of each disk image (sparse on the host).
const DISK_BYTES: u64 = 128 << 20;

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
echo "emulated:    /dev/sda, IDE through ata_piix, $(( $(cat /sys/block/sda/size) / 2048 )) MiB"
# The same direct reads from each disk, timed with /proc/uptime (10 ms).
rate() {
  read t0 x < /proc/uptime
  dd if=/dev/$1 of=/dev/null bs=$2 count=$3 iflag=direct 2>/dev/null
  read t1 x < /proc/uptime
  awk -v a="$t0" -v b="$t1" -v bs="$2" -v n="$3" 'BEGIN { d = b - a; if (d < 0.01) d = 0.01;
    printf "%.0f %.0f\n", bs * n / d / 1000000, n / d }'
}
for dev in vda sda; do
  set -- $(rate $dev 1048576 128)
  seq=$1
  set -- $(rate $dev 4096 3000)
  echo "rate $dev $seq $2"
done
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
    // The domain's QEMU drops to an unprivileged uid: it must pass through
    // to its sockets under the run dir (nothing is listable).
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o711))
        .map_err(|e| format!("temporary directory: {e}"))?;
    let run_dir = dir.join("run");
    let pvio = pvio_bin();

    // The PV disk, with a message from the host 1 MiB in, and the emulated
    // disk beside it.
    let disk = dir.join("pv.img");
    let emulated = dir.join("emulated.img");
    make_image(&disk, Some((HOST_OFFSET, HOST_MESSAGE.as_bytes())))?;
    make_image(&emulated, None)?;

    println!("pvio demo: building the test guest (Debian's kernel, busybox initramfs)");
    let kernel = GuestKernel::get().map_err(|e| e.to_string())?;
    let vmlinux = kernel.vmlinux().unwrap_or(kernel.vmlinuz()).to_owned();
    let initramfs = Initramfs::builder()
        .kernel(kernel)
        .modules(&["virtio_pci", "virtio_blk", "ata_piix", "sd_mod"])
        .script(&strict(SCRIPT))
        .build(&dir.join("initramfs.cpio"))
        .map_err(|e| e.to_string())?;
    let console = dir.join("console.log");
    let config = dir.join("demo.cfg");
    let text = format!(
        "# The demo domain: direct kernel boot, a PV disk and an emulated one.\n\
         name = \"pvio-demo\"\n\
         memory = 256\n\
         vcpus = 1\n\
         kernel = \"{}\"\n\
         ramdisk = \"{}\"\n\
         cmdline = \"console=ttyS0 panic=-1 loglevel=4\"\n\
         disk = [ 'file:{},xvda,w', 'file:{},hda,w' ]\n\
         serial = 'file:{}'\n\
         vnc = 0\n\
         on_poweroff = 'destroy'\n",
        vmlinux.display(),
        initramfs.display(),
        disk.display(),
        emulated.display(),
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
    let (rc, rates) = follow_console(&console, Duration::from_secs(300))?;
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
    print_rates(&rates, &out.stderr)?;
    println!("\npvio demo: data went both ways through the PV disk; the domain has ended.");
    Ok(())
}

/// A sparse image of [`DISK_BYTES`], with `data` at an offset if given.
fn make_image(path: &Path, data: Option<(u64, &[u8])>) -> Result<(), String> {
    use std::io::{Seek, SeekFrom, Write};
    let err = |e: std::io::Error| format!("{}: {e}", path.display());
    let mut f = std::fs::File::create(path).map_err(err)?;
    f.set_len(DISK_BYTES).map_err(err)?;
    if let Some((at, bytes)) = data {
        f.seek(SeekFrom::Start(at)).map_err(err)?;
        f.write_all(bytes).map_err(err)?;
    }
    Ok(())
}

/// One disk's figures from the guest: 1 MiB reads in MB/s, 4 KiB reads per
/// second (both direct, queue depth 1).
#[derive(Debug, Clone, Copy)]
struct Rate {
    seq_mbs: f64,
    iops: f64,
}

/// Parses the guest's `rate DEV MBS IOPS` line.
fn parse_rate(line: &str) -> Option<(String, Rate)> {
    let mut w = line.strip_prefix("rate ")?.split_whitespace();
    let dev = w.next()?.to_owned();
    let seq_mbs = w.next()?.parse().ok()?;
    let iops = w.next()?.parse().ok()?;
    Some((dev, Rate { seq_mbs, iops }))
}

/// The PV-against-emulated table, with the accelerator the domain ran on
/// (from `pvio create`'s output).
fn print_rates(rates: &[(String, Rate)], create_stderr: &[u8]) -> Result<(), String> {
    let find = |d: &str| rates.iter().find(|(n, _)| n == d).map(|(_, r)| *r);
    let (Some(pv), Some(emu)) = (find("vda"), find("sda")) else {
        return Err(format!("the guest did not report both disks: {rates:?}"));
    };
    let tcg = String::from_utf8_lossy(create_stderr).contains("TCG");
    println!(
        "\nthe same direct reads in the guest (queue depth 1, accelerator {}):",
        if tcg { "TCG" } else { "KVM" }
    );
    println!("  disk                               1 MiB reads   4 KiB reads");
    for (name, r) in [
        ("xvda: PV, pvio's vhost-user-blk", pv),
        ("hda:  emulated IDE (the fallback)", emu),
    ] {
        println!("  {name:<34} {:>7.0} MB/s {:>7.0} IOPS", r.seq_mbs, r.iops);
    }
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    println!(
        "  PV / emulated                      {:>7.2}x     {:>7.2}x",
        ratio(pv.seq_mbs, emu.seq_mbs),
        ratio(pv.iops, emu.iops)
    );
    if tcg {
        println!(
            "  (under TCG an emulated register access is a function call, not a VM exit: \
             the gap is far smaller than on a KVM host; docs/benchmarks.md)"
        );
    }
    Ok(())
}

/// Prints the script's lines as they come; returns its exit status and the
/// disks' figures. Only whole lines are read: QEMU may be half-way through
/// writing the last one.
fn follow_console(path: &Path, timeout: Duration) -> Result<(String, Vec<(String, Rate)>), String> {
    let start = Instant::now();
    let mut shown = 0;
    let mut rates = Vec::new();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let whole = text.rfind('\n').map_or("", |end| &text[..end]);
        let lines: Vec<&str> = whole.lines().collect();
        let begin = lines.iter().position(|l| l.contains(BEGIN_MARKER));
        if let Some(b) = begin {
            for l in lines.iter().skip(b + 1).skip(shown) {
                if let Some(rest) = l.split(END_MARKER_PREFIX).nth(1) {
                    // The status is the number after the prefix; whatever
                    // the kernel printed on the same line after it (its
                    // power-off message, a carriage return) is not.
                    let rc: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_digit() || *c == '-')
                        .collect();
                    return Ok((rc, rates));
                }
                if let Some(rate) = parse_rate(l) {
                    rates.push(rate);
                } else if !l.starts_with('[') {
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
