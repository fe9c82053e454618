//! One writer per image: every image a PV backend serves is opened by the
//! supervisor and locked with `flock` on its open file description, held
//! for as long as the domain uses the disk. A writable disk takes the lock
//! exclusively, a read-only one shared, so two read-only uses may meet and
//! a writer meets nobody: the same image as two writable disks of one
//! domain, or of two domains, is refused with the holder named.
//!
//! `flock` locks belong to the open file, not the process: a second open
//! in the same supervisor conflicts as one in another. They do not
//! interact with the OFD `fcntl` locks QEMU takes on the images it opens
//! itself (emulated disks); QEMU checks those among its own.
//!
//! It must not know what serves the image: it opens, locks, and names the
//! holder from the domains' records.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::FlockOperation;

use super::files::RECORD;
use super::record::DomainRecord;

/// Why an image cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ImageLockError {
    /// It cannot be opened.
    #[error("cannot open {}", path.display())]
    Open {
        /// The image.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Another disk holds it.
    #[error("{} is in use by {holder}{}; an image may have one writer or several readers", path.display(), if *writable { " (asked for writing)" } else { " for writing" })]
    InUse {
        /// The image.
        path: PathBuf,
        /// Who holds it, in words.
        holder: String,
        /// This request wanted to write.
        writable: bool,
    },
}

/// An open, locked image; the lock goes with the file.
#[derive(Debug)]
pub struct LockedImage {
    file: File,
    /// Not locked yet: opened for a domain migrating in on this host,
    /// whose source holds the lock until it ends.
    pending: Option<bool>,
}

impl LockedImage {
    /// The open image.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Takes a deferred lock if it is free now; true once held (at once
    /// for an image locked when opened).
    pub fn try_take(&mut self) -> bool {
        let Some(read_only) = self.pending else {
            return true;
        };
        let op = if read_only {
            FlockOperation::NonBlockingLockShared
        } else {
            FlockOperation::NonBlockingLockExclusive
        };
        if rustix::fs::flock(self.file.as_fd(), op).is_ok() {
            self.pending = None;
        }
        self.pending.is_none()
    }
}

/// Takes every deferred lock of `images` that is free now (each is tried,
/// whatever the others do); true once all are held.
pub fn take_deferred<'a>(images: impl IntoIterator<Item = &'a mut LockedImage>) -> bool {
    let mut all = true;
    for i in images {
        all &= i.try_take();
    }
    all
}

/// `path` opened for reading (and writing unless `read_only`),
/// close-on-exec.
fn open(path: &Path, read_only: bool) -> Result<File, ImageLockError> {
    OpenOptions::new()
        .read(true)
        .write(!read_only)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOCTTY)
        .open(path)
        .map_err(|source| ImageLockError::Open {
            path: path.to_owned(),
            source,
        })
}

/// Opens `path` as [`open_locked`] does but leaves the lock to
/// [`LockedImage::try_take`]: a domain migrating in on the same host
/// serves the image only once its source stopped, and takes the lock once
/// the source has let go of it.
pub fn open_deferred(path: &Path, read_only: bool) -> Result<LockedImage, ImageLockError> {
    let file = open(path, read_only)?;
    let mut image = LockedImage {
        file,
        pending: Some(read_only),
    };
    image.try_take();
    Ok(image)
}

/// Opens `path` (read-only or read-write, close-on-exec) and locks it:
/// shared for reading, exclusive for writing. A conflict names the disk
/// of a domain under `run_root` that uses the image (`domain` and
/// `device` are the asker, for the words only).
pub fn open_locked(
    path: &Path,
    read_only: bool,
    run_root: &Path,
    domain: &str,
    device: &str,
) -> Result<LockedImage, ImageLockError> {
    let file = open(path, read_only)?;
    let op = if read_only {
        FlockOperation::NonBlockingLockShared
    } else {
        FlockOperation::NonBlockingLockExclusive
    };
    match rustix::fs::flock(file.as_fd(), op) {
        Ok(()) => Ok(LockedImage {
            file,
            pending: None,
        }),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(ImageLockError::InUse {
            path: path.to_owned(),
            holder: holder(path, run_root, (domain, device)),
            writable: !read_only,
        }),
        Err(e) => Err(ImageLockError::Open {
            path: path.to_owned(),
            source: e.into(),
        }),
    }
}

/// Waits up to `timeout` until `path` could be locked as `read_only`
/// asks: a backend killed a moment ago may still hold its lock while the
/// kernel tears its io_uring down (registered files go last). True when
/// it is free.
pub fn wait_free(path: &Path, read_only: bool, timeout: std::time::Duration) -> bool {
    let start = std::time::Instant::now();
    loop {
        match open_locked(path, read_only, Path::new("/nonexistent"), "", "") {
            Ok(_) => return true,
            Err(ImageLockError::InUse { .. }) if start.elapsed() < timeout => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(_) => return false,
        }
    }
}

/// Who uses `image`, in words: the first disk of a live domain's record
/// with the same file, or "another process".
fn holder(image: &Path, run_root: &Path, asker: (&str, &str)) -> String {
    let want = std::fs::canonicalize(image).unwrap_or_else(|_| image.to_owned());
    let Ok(entries) = std::fs::read_dir(run_root) else {
        return "another process".to_owned();
    };
    for e in entries.filter_map(Result::ok) {
        let Ok(r) = DomainRecord::load(&e.path().join(RECORD)) else {
            continue;
        };
        if r.state == super::record::DomainState::Ended {
            continue;
        }
        for d in &r.disks {
            let same = d
                .image
                .as_ref()
                .is_some_and(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()) == want);
            if same && (r.identity.name.as_str(), d.vdev.as_str()) != asker {
                let mode = if d.read_only { "read-only" } else { "writable" };
                return format!("disk {} of domain '{}' ({mode})", d.vdev, r.identity.name);
            }
        }
    }
    "another process".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_writer_or_many_readers() {
        let tmp = tempfile::tempdir().unwrap();
        let img = tmp.path().join("disk.img");
        std::fs::write(&img, vec![0u8; 4096]).unwrap();
        let root = tmp.path().join("run");
        let w = open_locked(&img, false, &root, "web", "xvda").unwrap();
        let e = open_locked(&img, false, &root, "web", "xvdb").unwrap_err();
        assert!(e.to_string().contains("in use by another process"), "{e}");
        let e = open_locked(&img, true, &root, "web", "xvdc").unwrap_err();
        assert!(e.to_string().contains("for writing"), "{e}");
        drop(w);
        let r1 = open_locked(&img, true, &root, "web", "xvdb").unwrap();
        let _r2 = open_locked(&img, true, &root, "db", "xvdb").unwrap();
        assert!(open_locked(&img, false, &root, "db", "xvdc").is_err());
        drop(r1);
    }

    #[test]
    fn the_holder_is_named_from_the_records() {
        let tmp = tempfile::tempdir().unwrap();
        let img = tmp.path().join("disk.img");
        std::fs::write(&img, vec![0u8; 4096]).unwrap();
        let root = tmp.path().join("run");
        std::fs::create_dir_all(root.join("web")).unwrap();
        let mut r = super::super::record::sample("web");
        r.state = super::super::record::DomainState::Running;
        r.disks.push(super::super::record::DiskEntry {
            vdev: "xvdb".into(),
            bus: "pv".into(),
            cdrom: false,
            image: Some(img.clone()),
            read_only: false,
            socket: None,
            hotplugged: false,
        });
        r.store(&root.join("web").join(RECORD)).unwrap();
        let _w = open_locked(&img, false, &root, "web", "xvdb").unwrap();
        let e = open_locked(&img, false, &root, "db", "xvda").unwrap_err();
        assert!(
            e.to_string()
                .contains("disk xvdb of domain 'web' (writable)"),
            "{e}"
        );
    }

    #[test]
    fn a_missing_image_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let e = open_locked(&tmp.path().join("nope.img"), false, tmp.path(), "a", "b").unwrap_err();
        assert!(e.to_string().contains("nope.img"), "{e}");
    }
}
