//! Network namespaces named as the kernel shows them
//! (`net:[4026531840]`, the link `/proc/PID/ns/net` reads), and how to get
//! hold of one again later: through its name under `/run/netns` or a
//! process still in it.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Where `ip netns` keeps the namespaces it names.
const NAMED: &str = "/run/netns";

/// The network namespace this thread is in (`net:[4026531840]`).
pub fn current() -> Option<String> {
    std::fs::read_link("/proc/thread-self/ns/net")
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// The inode in `net:[4026531840]`.
pub fn inode(ns: &str) -> Option<u64> {
    ns.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
}

/// A file that refers to namespace `ns`: its name under `/run/netns`, or
/// `/proc/PID/ns/net` of a process in it; `None` when nothing refers to
/// it any more (the namespace is gone). The file is checked to be that
/// namespace after it was opened.
pub fn open(ns: &str) -> Option<File> {
    let ino = inode(ns)?;
    let is_it = |f: &File| f.metadata().is_ok_and(|m| m.ino() == ino);
    let named = std::fs::read_dir(NAMED)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path());
    let procs = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .map(|e| e.path().join("ns/net"));
    named
        .chain(procs)
        .filter(|p| refers_to(p, ns, ino))
        .find_map(|p| File::open(p).ok().filter(is_it))
}

/// Whether `path` (a namespace file) looks like namespace `ns` before it is
/// opened: a `/proc` link reads as the name, a named one has its inode.
fn refers_to(path: &Path, ns: &str, ino: u64) -> bool {
    match std::fs::read_link(path) {
        Ok(link) => link.to_string_lossy() == ns,
        Err(_) => std::fs::metadata(path).is_ok_and(|m| m.ino() == ino),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_read_as_the_kernel_writes_them() {
        assert_eq!(inode("net:[4026531840]"), Some(4_026_531_840));
        assert_eq!(inode("mnt:[1]"), None);
        assert_eq!(inode("net:[x]"), None);
    }

    #[test]
    fn this_namespace_is_found_and_a_gone_one_is_not() {
        let here = current().unwrap();
        let f = open(&here).expect("this process is in it");
        assert_eq!(f.metadata().unwrap().ino(), inode(&here).unwrap());
        assert!(open("net:[1]").is_none());
    }
}
