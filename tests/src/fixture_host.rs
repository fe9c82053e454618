//! A host described by a `PVIO_HOST_ROOT` tree for the `pvio create`
//! tests that stop before QEMU runs: a bridge `xenbr0` in its
//! `sys/class/net`, files and configs in a temporary dir, and `pvio` run
//! with that tree, its own run and state dirs, and TCG.
//!
//! It must not know what the tests assert.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The winxp config of the Xen guide (`hvm-runtime/tests/fixtures`).
pub const WINXP: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../hvm-runtime/tests/fixtures/winxp.cfg"
);

/// A fixture host in a temporary dir.
pub struct FixtureHost {
    dir: tempfile::TempDir,
}

impl FixtureHost {
    /// A host with the bridge `xenbr0`.
    pub fn new() -> FixtureHost {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("root/sys/class/net/xenbr0/bridge")).unwrap();
        FixtureHost { dir }
    }

    /// The temporary dir (`root/` is the host tree, `run/` the run dir).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// An empty file `name` in the dir.
    pub fn file(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, b"").unwrap();
        p
    }

    /// A config `t.cfg` holding `text`.
    pub fn cfg(&self, text: &str) -> PathBuf {
        let p = self.dir.path().join("t.cfg");
        std::fs::write(&p, text).unwrap();
        p
    }

    /// `pvio ARGS` on this host.
    pub fn pvio(&self, args: &[&str]) -> Output {
        Command::new(crate::pvio_bin())
            .args(args)
            .env("PVIO_HOST_ROOT", self.dir.path().join("root"))
            .env("PVIO_RUN_DIR", self.dir.path().join("run"))
            .env("PVIO_STATE_DIR", self.dir.path().join("state"))
            .env("PVIO_ACCEL", "tcg")
            .output()
            .unwrap()
    }
}

impl Default for FixtureHost {
    fn default() -> Self {
        Self::new()
    }
}
