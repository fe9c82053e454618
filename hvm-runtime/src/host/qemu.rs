//! The installed device model's release, read from `--version`: what
//! some plans and the device model's confinement depend on.

use std::path::Path;
use std::process::Command;

/// `(major, minor)` of `qemu --version`, `None` if it does not run.
pub fn qemu_release(qemu: &Path) -> Option<(u32, u32)> {
    let out = Command::new(qemu).arg("--version").output().ok()?;
    parse_release(&String::from_utf8_lossy(&out.stdout))
}

/// `(major, minor)` from a `--version` text.
pub fn parse_release(text: &str) -> Option<(u32, u32)> {
    let rest = text.split("version ").nth(1)?;
    let mut it = rest.split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_parse() {
        assert_eq!(
            parse_release("QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2)"),
            Some((10, 0))
        );
        assert_eq!(
            parse_release("QEMU emulator version 7.2.15 (Debian 1:7.2+dfsg-7)"),
            Some((7, 2))
        );
        assert_eq!(parse_release("nonsense"), None);
        assert_eq!(qemu_release(Path::new("/surely/not/qemu")), None);
    }
}
