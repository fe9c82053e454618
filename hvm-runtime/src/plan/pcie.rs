//! Spare PCIe root ports for hot-plug on q35.
//!
//! On i440fx (`pc`) every slot of the root bus takes a hot-plugged device
//! (ACPI PCI hot-plug). On q35 the root complex (`pcie.0`) takes none: a
//! hot-plugged PCIe device needs a root port with nothing behind it. The
//! plan therefore gives every q35 domain [`SPARE_ROOT_PORTS`] empty
//! `pcie-root-port`s, ids `pvio-rp0` up, chassis 1 up; `block-attach`,
//! `network-attach` and PCI assignment put each new device behind the
//! first free one (`bus=pvio-rpN`). Devices in the config stay on
//! `pcie.0`.

use crate::config::options::Machine;

/// How many spare root ports a q35 domain gets: as many devices can be
/// hot-plugged at once.
pub const SPARE_ROOT_PORTS: u8 = 4;

/// The QEMU id prefix of the spare root ports (`pvio-rp0`...).
pub const ROOT_PORT_PREFIX: &str = "pvio-rp";

/// The QEMU id of spare root port `n`.
pub fn root_port_id(n: u8) -> String {
    format!("{ROOT_PORT_PREFIX}{n}")
}

/// Whether `qdev_id` is one of the spare root ports.
pub fn is_root_port_id(qdev_id: &str) -> bool {
    qdev_id
        .strip_prefix(ROOT_PORT_PREFIX)
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The ids of the spare root ports on a planned command line, in order
/// (none on i440fx).
pub fn root_ports_in(args: &[String]) -> Vec<String> {
    args.iter()
        .filter_map(|a| a.strip_prefix("pcie-root-port,id="))
        .filter_map(|rest| rest.split(',').next())
        .filter(|id| is_root_port_id(id))
        .map(str::to_owned)
        .collect()
}

/// The `-device` arguments of the spare root ports of `machine` (none on
/// i440fx).
pub(super) fn spare_root_port_args(machine: Machine) -> Vec<String> {
    if machine != Machine::Q35 {
        return Vec::new();
    }
    (0..SPARE_ROOT_PORTS)
        .flat_map(|n| {
            let port = super::qdev::pcie_root_port(
                &root_port_id(n),
                u16::from(n) + 1,
                0x10 + u16::from(n),
            );
            ["-device".to_owned(), port.to_cmdline()]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q35_gets_four_ports_and_pc_none() {
        assert!(spare_root_port_args(Machine::Pc).is_empty());
        let a = spare_root_port_args(Machine::Q35);
        assert_eq!(a.len(), 2 * usize::from(SPARE_ROOT_PORTS));
        assert_eq!(
            a[1],
            "pcie-root-port,id=pvio-rp0,bus=pcie.0,chassis=1,port=0x10"
        );
        assert_eq!(
            a[7],
            "pcie-root-port,id=pvio-rp3,bus=pcie.0,chassis=4,port=0x13"
        );
    }

    #[test]
    fn ports_are_found_on_the_command_line() {
        let mut args = vec!["-machine".to_owned(), "q35".to_owned()];
        args.extend(spare_root_port_args(Machine::Q35));
        args.extend(["-device".to_owned(), "pcie-root-port,id=mine".to_owned()]);
        assert_eq!(
            root_ports_in(&args),
            ["pvio-rp0", "pvio-rp1", "pvio-rp2", "pvio-rp3"]
        );
        assert!(root_ports_in(&spare_root_port_args(Machine::Pc)).is_empty());
    }

    #[test]
    fn root_port_ids() {
        assert!(is_root_port_id("pvio-rp0"));
        assert!(is_root_port_id("pvio-rp12"));
        assert!(!is_root_port_id("pvio-rp"));
        assert!(!is_root_port_id("pvio-rpx"));
        assert!(!is_root_port_id("xvda"));
    }
}
