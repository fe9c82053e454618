//! Every key pvio knows: the ones it honours (with xl.cfg's type, default
//! and meaning) and the xl/xend keys it accepts without effect (with the
//! reason). Unknown keys are warned about with the nearest known one.

/// A key pvio honours.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// The key.
    pub name: &'static str,
    /// Its type, as docs show it.
    pub ty: &'static str,
    /// Its default.
    pub default: &'static str,
    /// What it does.
    pub meaning: &'static str,
}

/// A key accepted without effect, and why it has none.
#[derive(Debug, Clone, Copy)]
pub struct Inert {
    /// The key.
    pub name: &'static str,
    /// Why pvio ignores it.
    pub why: &'static str,
}

const fn k(
    name: &'static str,
    ty: &'static str,
    default: &'static str,
    meaning: &'static str,
) -> Key {
    Key {
        name,
        ty,
        default,
        meaning,
    }
}

const fn i(name: &'static str, why: &'static str) -> Inert {
    Inert { name, why }
}

/// The keys pvio honours.
pub const KEYS: &[Key] = &[
    k("name", "string", "(required)", "the domain's name, unique on the host"),
    k("uuid", "string", "random", "the domain's UUID (QEMU -uuid; the guest's SMBIOS UUID)"),
    k("type", "string", "\"hvm\"", "the guest type; pvio runs \"hvm\" guests only"),
    k("builder", "string", "\"hvm\"", "xend's name for type; \"hvm\" only"),
    k("memory", "number (MiB)", "32", "the guest's RAM"),
    k("vcpus", "number", "1", "the vCPUs the guest starts with"),
    k("maxvcpus", "number", "vcpus", "the vCPUs the guest may have (QEMU -smp maxcpus=)"),
    k("cpus", "string or list of strings", "all", "host CPUs the vCPU threads may run on: \"0-3,^1\", or one set per vCPU"),
    k("kernel", "string (path)", "none", "a Linux kernel to boot directly (QEMU -kernel); \"hvmloader\" is xend's firmware loader and has no effect"),
    k("ramdisk", "string (path)", "none", "the initrd for the direct kernel boot"),
    k("cmdline", "string", "none", "the kernel command line for the direct kernel boot"),
    k("root", "string", "none", "put as root=... at the start of the kernel command line (when cmdline is not set)"),
    k("extra", "string", "none", "appended to the kernel command line (when cmdline is not set)"),
    k("firmware", "string", "\"bios\"", "bios/seabios, uefi/ovmf (needs the ovmf package), or a firmware image path"),
    k("bios", "string", "\"seabios\"", "xl's older key for the firmware: seabios or ovmf"),
    k("boot", "string", "\"cd\"", "boot order: c (first disk), d (CD-ROM), n (network), a (floppy)"),
    k("disk", "list of strings", "[]", "the disks (see Disk specs)"),
    k("vif", "list of strings", "[]", "the NICs (see vif specs)"),
    k("pci", "list of strings", "[]", "the passed-through PCI devices (see PCI specs)"),
    k("pci_seize", "0 or 1", "0", "the default of seize= for every PCI device"),
    k("pci_permissive", "0 or 1", "0", "the default of permissive= for every PCI device"),
    k("acpi", "0 or 1", "1", "ACPI tables for the guest (0: QEMU -machine acpi=off)"),
    k("apic", "0 or 1", "1", "the local APIC (0: the CPU model loses its APIC; one vCPU only)"),
    k("pae", "0 or 1", "1", "PAE (0: the CPU model loses PAE and long mode: a 32-bit guest)"),
    k("viridian", "0 or 1, or list of strings", "0", "Hyper-V enlightenments for Windows guests (hv-* CPU flags; KVM only)"),
    k("localtime", "0 or 1", "0", "the RTC runs in host local time instead of UTC"),
    k("nomigrate", "0 or 1", "0", "`pvio save` and `pvio migrate` refuse the domain"),
    k("rtc_timeoffset", "number (seconds)", "0", "the RTC's offset from host time"),
    k("serial", "string or list of strings", "none", "serial ports: pty, file:PATH, unix:PATH, tcp:HOST:PORT, udp:..., null, none, /dev/ttyS*"),
    k("vnc", "0 or 1", "1", "a VNC server for the display"),
    k("vnclisten", "string", "\"127.0.0.1\"", "the VNC address (\"ADDR\" or \"ADDR:DISPLAY\")"),
    k("vncdisplay", "number", "first free from 0", "the VNC display number (port 5900+N)"),
    k("vncunused", "0 or 1", "1", "take the first free display from vncdisplay (or 0) on"),
    k("vncpasswd", "string", "\"\" (none)", "the VNC password, set over QMP after start"),
    k("keymap", "string", "none (en-us)", "the VNC keyboard layout (QEMU -k)"),
    k("sdl", "0 or 1", "0", "an SDL window on the host (needs qemu-system-gui)"),
    k("full-screen", "0 or 1", "0", "the SDL window full screen"),
    k("nographic", "0 or 1", "0", "no video card and no display"),
    k("vga", "string", "\"cirrus\"", "the video card: cirrus, stdvga, qxl, virtio, none"),
    k("stdvga", "0 or 1", "0", "xl's older key: 1 means vga=\"stdvga\""),
    k("videoram", "number (MiB)", "the card's default", "the video card's memory"),
    k("usb", "0 or 1", "0", "a USB controller"),
    k("usbdevice", "string or list of strings", "none", "USB input devices: tablet, mouse, keyboard (adds the controller)"),
    k("soundhw", "string", "none", "sound cards: sb16, es1370, ac97, hda, pcspk or all, comma-separated"),
    k("fda", "string (path)", "none", "a floppy image (xend)"),
    k("monitor", "0 or 1", "0", "QEMU's human monitor on a Unix socket in the run dir (unsafe: it can read host files)"),
    k("on_poweroff", "string", "\"destroy\"", "when the guest powers off: destroy, restart, preserve"),
    k("on_reboot", "string", "\"restart\"", "when the guest reboots: destroy, restart, preserve"),
    k("on_crash", "string", "\"destroy\"", "when the guest crashes: destroy, restart, preserve"),
    k("device_model_args", "list of strings", "[]", "extra QEMU arguments, appended to the command line"),
    k("device_model_override", "string (path)", "qemu-system-x86_64", "the QEMU binary to run"),
    k("machine", "string", "\"pc\"", "pvio only: the QEMU machine, pc (i440fx, as Xen HVM) or q35"),
];

/// xl and xend keys pvio accepts and ignores.
pub const NO_EFFECT: &[Inert] = &[
    i(
        "device_model",
        "xend's qemu-dm path; pvio always runs QEMU (choose the binary with device_model_override)",
    ),
    i(
        "device_model_version",
        "pvio has one device model, upstream QEMU",
    ),
    i(
        "device_model_stubdomain_override",
        "there are no stub domains outside Xen",
    ),
    i(
        "vncconsole",
        "xend started a viewer; run `pvio vncviewer NAME`",
    ),
    i(
        "vncviewer",
        "xend started a viewer; run `pvio vncviewer NAME`",
    ),
    i("maxmem", "no memory ballooning: the guest gets memory MiB"),
    i("shadow_memory", "a Xen hypervisor setting"),
    i(
        "hap",
        "a Xen hypervisor setting (KVM always uses EPT/NPT when the CPU has it)",
    ),
    i("nestedhvm", "nested virtualization follows the accelerator"),
    i("hpet", "QEMU's default HPET is kept"),
    i("timer_mode", "a Xen hypervisor setting"),
    i("tsc_mode", "a Xen hypervisor setting"),
    i("cpu_weight", "a Xen scheduler setting"),
    i("cpu_cap", "a Xen scheduler setting"),
    i("pool", "Xen CPU pools do not exist here"),
    i(
        "xen_platform_pci",
        "there is no Xen platform device; PV drivers use virtio",
    ),
    i("on_watchdog", "no watchdog device is emulated"),
    i("bootloader", "pygrub-style bootloaders are for PV guests"),
    i(
        "bootloader_args",
        "pygrub-style bootloaders are for PV guests",
    ),
    i(
        "vfb",
        "a PV framebuffer is for PV guests; HVM guests use vga/vnc",
    ),
    i("vkb", "a PV keyboard is for PV guests"),
    i("console", "a PV console is for PV guests; use serial"),
    i(
        "dhcp",
        "xend network settings for PV guests; the guest configures itself",
    ),
    i(
        "netmask",
        "xend network settings for PV guests; the guest configures itself",
    ),
    i(
        "gateway",
        "xend network settings for PV guests; the guest configures itself",
    ),
    i(
        "ip",
        "xend network settings for PV guests; the guest configures itself",
    ),
    i(
        "hostname",
        "xend network settings for PV guests; the guest configures itself",
    ),
    i("vcpu_avail", "all vcpus are online at start"),
    i(
        "cpuid",
        "Xen CPUID policy strings do not map to QEMU CPU flags",
    ),
    i("seclabel", "Xen security labels (XSM/FLASK)"),
    i("e820_host", "a Xen PV setting"),
    i("max_grant_frames", "no grant tables outside Xen"),
    i("max_maptrack_frames", "no grant tables outside Xen"),
    i("gfx_passthru", "pass the GPU with pci = [...] instead"),
    i("acpi_s3", "QEMU's default S3/S4 support is kept"),
    i("acpi_s4", "QEMU's default S3/S4 support is kept"),
    i("driver_domain", "no driver domains outside Xen"),
    i("pci_msitranslate", "a Xen passthrough setting"),
    i("pci_power_mgmt", "a Xen passthrough setting"),
    i(
        "usbversion",
        "the USB controller is QEMU's default for the machine",
    ),
    i("spice", "SPICE is not offered; use VNC"),
    i("opengl", "no OpenGL display"),
    i(
        "display",
        "the SDL window uses the supervisor's environment",
    ),
    i(
        "xauthority",
        "the SDL window uses the supervisor's environment",
    ),
    i("extid", "no Viridian extended id"),
    i("localtime_offset", "use rtc_timeoffset"),
    // xend-era HVM keys (xmexample.hvm and xend's image.py).
    i(
        "ne2000",
        "xend's ISA NE2000 switch; choose a NIC with vif model= (ne2k_pci)",
    ),
    i(
        "isa",
        "xend's ISA-only machine; pvio's machines are pc and q35",
    ),
    i("vpt_align", "a Xen virtual platform timer setting"),
    i(
        "guest_os_type",
        "a xend hint with no effect on the virtual hardware",
    ),
    i(
        "cpuid_check",
        "Xen CPUID policy strings do not map to QEMU CPU flags",
    ),
    i(
        "on_xend_start",
        "there is no xend; start domains with pvio create",
    ),
    i(
        "on_xend_stop",
        "there is no xend; domains run until they end",
    ),
    i("memory_sharing", "a Xen memory-sharing setting"),
    i("actmem", "no memory paging: the guest gets memory MiB"),
    i(
        "xenpaging_file",
        "no memory paging: the guest gets memory MiB",
    ),
    i(
        "xenpaging_extra",
        "no memory paging: the guest gets memory MiB",
    ),
    i(
        "xen_extended_power_mgmt",
        "a Xen power-management setting; QEMU's ACPI is used",
    ),
    i(
        "vscsi",
        "PV SCSI is for PV guests; give the host disk with disk = [...]",
    ),
    i(
        "restart",
        "xend's old restart policy; use on_poweroff, on_reboot and on_crash",
    ),
    i("s3_integrity", "a Xen TXT setting"),
];

/// Every known key name: honoured, then no-effect.
pub fn names() -> impl Iterator<Item = &'static str> {
    KEYS.iter()
        .map(|k| k.name)
        .chain(NO_EFFECT.iter().map(|i| i.name))
}

/// Why `name` has no effect, if it is one of the accepted-but-ignored keys.
pub fn inert(name: &str) -> Option<&'static Inert> {
    NO_EFFECT.iter().find(|i| i.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_key_is_listed_twice() {
        let mut all: Vec<&str> = names().collect();
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n);
    }
}
