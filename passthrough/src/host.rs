//! Where the host's kernel interfaces are: sysfs, procfs and `/dev`. All three
//! are parameters so that every check runs over a fixture tree in tests.

use std::path::{Path, PathBuf};

use crate::sysfs::Sysfs;

/// The roots of the kernel interfaces passthrough reads and writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// sysfs (`/sys`).
    pub sys: Sysfs,
    /// procfs (`/proc`).
    pub proc_root: PathBuf,
    /// devtmpfs (`/dev`), where `/dev/vfio/<group>` appears.
    pub dev_root: PathBuf,
}

impl Host {
    /// The running host: `/sys`, `/proc`, `/dev`.
    pub fn real() -> Self {
        Self::under(Path::new("/"))
    }

    /// `root/sys`, `root/proc` and `root/dev` (a fixture tree in tests).
    pub fn under(root: &Path) -> Self {
        Self {
            sys: Sysfs::new(root.join("sys")),
            proc_root: root.join("proc"),
            dev_root: root.join("dev"),
        }
    }

    /// Whether this is the running host (then VFIO ioctls make sense).
    pub fn is_real(&self) -> bool {
        *self == Self::real()
    }

    /// `/dev/vfio/<group>`.
    pub fn vfio_group_dev(&self, group: u32) -> PathBuf {
        self.dev_root.join("vfio").join(group.to_string())
    }
}
