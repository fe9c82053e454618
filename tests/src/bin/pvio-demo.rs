//! pvio's main job on its built-in test guest: boots Debian's kernel with a
//! busybox initramfs under QEMU (KVM when usable, TCG otherwise) and shows
//! what the guest sees. `scripts/demo.sh` runs it.

use std::process::ExitCode;

use pvio_tests::{strict, Guest};

const SCRIPT: &str = r#"
echo "kernel:      $(uname -srm)"
echo "cpus:        $(grep -c ^processor /proc/cpuinfo) x $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "memory:      $(grep MemTotal /proc/meminfo | tr -s ' ' | cut -d' ' -f2-)"
echo "PCI devices:"
for d in /sys/bus/pci/devices/*; do
  drv=-
  [ -e "$d/driver" ] && drv=$(basename "$(readlink "$d/driver")")
  printf '  %s  %s:%s  class %s  driver %s\n' "$(basename "$d")" \
    "$(cut -c3- "$d/vendor")" "$(cut -c3- "$d/device")" "$(cut -c3-6 "$d/class")" "$drv"
done
echo "block devices: $(ls /sys/block | tr '\n' ' ')"
"#;

fn main() -> ExitCode {
    if std::env::var_os("PVIO_GUEST_ECHO").is_none() {
        // The demo shows what the guest says, not its whole boot log.
        std::env::set_var("PVIO_GUEST_ECHO", "0");
    }
    let accel = pvio_hvm_runtime::host::accel::detect();
    println!(
        "pvio demo: booting the test guest under {} ({})",
        accel.accel, accel.reason
    );
    let result = Guest::builder()
        .memory_mib(256)
        .modules(&["virtio_pci", "virtio_blk", "ata_piix", "e1000"])
        .run_strict(&strict(SCRIPT));
    match result {
        Ok(out) => {
            println!("guest booted in {:.1} s:", out.boot_time.as_secs_f64());
            print!("{}", out.output);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pvio demo: {e}");
            ExitCode::FAILURE
        }
    }
}
