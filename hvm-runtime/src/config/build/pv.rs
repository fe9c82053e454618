//! Configs Xen writes for PV guests (`xlexample.pvlinux`): no `type` or
//! `builder` and a `kernel`, which xl boots as a PV domain. pvio boots the
//! same kernel directly as an HVM guest (a Linux kernel built for Xen PV
//! boots as HVM too) and says so in one warning, naming what differs: the
//! PV disks the kernel command line names (`/dev/xvda1`) are virtio disks
//! in the guest (`/dev/vda1`), named in the order the config lists them.

use std::path::PathBuf;

use super::Builder;
use crate::config::disk::{DiskBus, DiskSpec};
use crate::config::fields::Located;

impl Builder<'_> {
    /// Warns when the config is one xl would run as PV. `typed`: the
    /// config has `type` or `builder`.
    pub(super) fn pv_config(
        &mut self,
        typed: bool,
        kernel: Option<&Located<PathBuf>>,
        cmdline: Option<&str>,
        disks: &[Located<DiskSpec>],
    ) {
        let Some(kernel) = kernel else {
            return;
        };
        if typed {
            return;
        }
        let renamed = cmdline.map_or_else(Vec::new, |c| renamed_disks(c, disks));
        let names = if renamed.is_empty() {
            "PV disks (xvda, ...) are virtio disks (vda, ...)".to_owned()
        } else {
            renamed.join(", ")
        };
        self.f.warn(
            &kernel.at,
            "type",
            format!(
                "no type = \"hvm\": xl would boot this kernel as a PV guest; pvio boots it as an \
                 HVM guest with the same command line, where {names}; set type = \"hvm\" to \
                 say so"
            ),
        );
    }
}

/// For each `/dev/xvdX[N]` in `cmdline`, what the guest calls it:
/// `"/dev/xvda1 is /dev/vda1"`, or that the config has no such disk.
fn renamed_disks(cmdline: &str, disks: &[Located<DiskSpec>]) -> Vec<String> {
    let pv: Vec<&str> = disks
        .iter()
        .filter(|d| matches!(d.value.bus, DiskBus::Pv { .. }))
        .map(|d| d.value.vdev.as_str())
        .collect();
    let mut out = Vec::new();
    for word in cmdline.split(|c: char| c.is_whitespace() || c == '=' || c == ',') {
        let Some(rest) = word.strip_prefix("/dev/xvd") else {
            continue;
        };
        let letters: String = rest.chars().take_while(char::is_ascii_lowercase).collect();
        let partition = &rest[letters.len()..];
        let vdev = format!("xvd{letters}");
        let line = match pv.iter().position(|v| *v == vdev) {
            Some(i) => format!("{word} is /dev/vd{}{partition}", letters_of(i)),
            None => format!("{word} names no PV disk of this config"),
        };
        if !out.contains(&line) {
            out.push(line);
        }
    }
    out
}

/// Linux's disk letters: 0 is `a`, 25 `z`, 26 `aa`.
fn letters_of(mut i: usize) -> String {
    let mut s = Vec::new();
    loop {
        // i % 26 < 26 fits a u8.
        s.push(b'a' + u8::try_from(i % 26).unwrap_or(0));
        if i < 26 {
            break;
        }
        i = i / 26 - 1;
    }
    s.reverse();
    String::from_utf8_lossy(&s).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load_str, Origin};

    fn warnings(text: &str) -> Vec<String> {
        load_str(text, &Origin::File("/etc/xen/t".into()), &[])
            .unwrap_or_else(|e| panic!("{e}"))
            .warnings
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn letters_as_linux_names_disks() {
        assert_eq!(letters_of(0), "a");
        assert_eq!(letters_of(25), "z");
        assert_eq!(letters_of(26), "aa");
        assert_eq!(letters_of(27), "ab");
        assert_eq!(letters_of(701), "zz");
        assert_eq!(letters_of(702), "aaa");
    }

    #[test]
    fn xlexample_pvlinux_runs_as_hvm_with_one_warning_naming_the_root_disk() {
        // Xen's tools/examples/xlexample.pvlinux, as shipped.
        let text = "name = \"example.pvlinux\"\n\
                    kernel = \"/boot/vmlinuz\"\n\
                    extra = \"root=/dev/xvda1\"\n\
                    memory = 128\n\
                    vcpus = 2\n\
                    vif = [ '' ]\n\
                    disk = [ '/dev/vg/guest-volume,raw,xvda,rw' ]\n";
        let l = load_str(text, &Origin::File("/etc/xen/t".into()), &[]).unwrap();
        assert_eq!(
            l.warnings.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["/etc/xen/t:2: key 'type': no type = \"hvm\": xl would boot this kernel as a PV guest; \
              pvio boots it as an HVM guest with the same command line, where \
              /dev/xvda1 is /dev/vda1; set type = \"hvm\" to say so"]
        );
        assert_eq!(l.spec.cmdline.as_deref(), Some("root=/dev/xvda1"));
        assert_eq!(l.spec.kernel.unwrap().value, PathBuf::from("/boot/vmlinuz"));
    }

    #[test]
    fn pv_disks_are_named_in_config_order_whatever_their_letters() {
        let w = warnings(
            "name = 'x'\nkernel = '/k'\ncmdline = 'root=/dev/xvdb2 resume=/dev/xvdc'\n\
             disk = [ '/a,hda,w', '/b,xvdb,w', '/c,xvdc,w' ]\n",
        );
        assert_eq!(w.len(), 1);
        assert!(
            w[0].contains("where /dev/xvdb2 is /dev/vda2, /dev/xvdc is /dev/vdb;"),
            "{}",
            w[0]
        );
        let w = warnings("name = 'x'\nkernel = '/k'\nroot = '/dev/xvdz1'\n");
        assert!(
            w[0].contains("/dev/xvdz1 names no PV disk of this config"),
            "{}",
            w[0]
        );
    }

    #[test]
    fn typed_or_kernelless_configs_get_no_warning() {
        assert!(
            warnings("name = 'x'\ntype = 'hvm'\nkernel = '/k'\nroot = '/dev/xvda1'\n").is_empty()
        );
        assert!(warnings("name = 'x'\nbuilder = 'hvm'\nkernel = '/k'\n").is_empty());
        assert!(warnings("name = 'x'\ndisk = [ '/a,xvda,w' ]\n").is_empty());
    }
}
