//! What a path given as a disk image, an ISO, a kernel or firmware is
//! when it cannot be used, said as it is ("is a directory", "is a FIFO"),
//! never "does not exist" for a path that exists. The plan's host check
//! asks about a config's files, the CLI about `cd-insert`'s ISO before it
//! sends the request, and the supervisor again about what `cd-insert` and
//! `block-attach` name (it resolves the path itself).

use std::path::Path;

/// What a command takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wanted {
    /// An image file (a CD-ROM's medium: pvio passes QEMU a descriptor
    /// of a raw file).
    ImageFile,
    /// An image file or a block device (a PV disk's backend).
    ImageOrBlockDevice,
}

/// Why `path` cannot be what `wanted` asks for ("does not exist", "is a
/// directory", ...), or `None` when it can.
pub fn unusable(path: &Path, wanted: Wanted) -> Option<String> {
    use std::os::unix::fs::FileTypeExt;
    let t = match std::fs::metadata(path) {
        Ok(m) => m.file_type(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Some("does not exist".to_owned())
        }
        Err(e) => return Some(format!("cannot be examined ({e})")),
    };
    let what = if t.is_file() {
        return None;
    } else if t.is_block_device() {
        if wanted == Wanted::ImageOrBlockDevice {
            return None;
        }
        "is a block device; pvio changes CD media to image files only (make one: dd if=DEVICE of=cd.iso)"
    } else if t.is_dir() {
        "is a directory"
    } else if t.is_fifo() {
        "is a FIFO (a named pipe), not a regular file or block device"
    } else if t.is_socket() {
        "is a Unix socket, not a regular file or block device"
    } else if t.is_char_device() {
        "is a character device, which has no medium to read"
    } else {
        "is not a regular file or block device"
    };
    Some(what.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_path_is_when_it_is_no_image() {
        let d = tempfile::tempdir().unwrap();
        for wanted in [Wanted::ImageFile, Wanted::ImageOrBlockDevice] {
            assert_eq!(
                unusable(d.path(), wanted).as_deref(),
                Some("is a directory")
            );
            assert_eq!(
                unusable(&d.path().join("nope.iso"), wanted).as_deref(),
                Some("does not exist")
            );
            assert!(unusable(Path::new("/dev/zero"), wanted)
                .unwrap()
                .starts_with("is a character device"));
        }
        let fifo = d.path().join("fifo");
        assert!(std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        assert_eq!(
            unusable(&fifo, Wanted::ImageFile).as_deref(),
            Some("is a FIFO (a named pipe), not a regular file or block device")
        );
        let iso = d.path().join("cd.iso");
        std::fs::write(&iso, b"x").unwrap();
        assert_eq!(unusable(&iso, Wanted::ImageFile), None);
        assert_eq!(unusable(&iso, Wanted::ImageOrBlockDevice), None);
    }

    #[test]
    fn a_block_device_is_a_disk_but_no_cd_medium() {
        use std::os::unix::fs::FileTypeExt;
        let Some(dev) = std::fs::read_dir("/dev")
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| std::fs::metadata(p).is_ok_and(|m| m.file_type().is_block_device()))
        else {
            panic!("this host has no block device in /dev to check with");
        };
        assert_eq!(unusable(&dev, Wanted::ImageOrBlockDevice), None);
        assert!(unusable(&dev, Wanted::ImageFile)
            .unwrap()
            .starts_with("is a block device"));
    }
}
