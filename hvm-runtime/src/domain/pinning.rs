//! vCPU pinning (`cpus`): once QEMU has started (paused), each vCPU
//! thread's id comes from `query-cpus-fast` and the thread is bound to its
//! host CPUs with `sched_setaffinity`, before the guest runs.

use super::DomainError;
use crate::config::cpus::CpuAffinity;
use crate::qmp::{qmp, Qmp};

/// The host CPUs of each vCPU (by index); an empty set runs anywhere.
pub fn per_vcpu(affinity: &CpuAffinity, vcpus: u32) -> Vec<Vec<u32>> {
    let n = usize::try_from(vcpus).unwrap_or(0);
    match affinity {
        CpuAffinity::Any => Vec::new(),
        CpuAffinity::All(set) => vec![set.clone(); n],
        CpuAffinity::PerVcpu(sets) => sets.iter().take(n).cloned().collect(),
    }
}

/// Pins the vCPU threads of the QEMU behind `q` as `sets` says.
pub fn pin(q: &mut Qmp, sets: &[Vec<u32>]) -> Result<(), DomainError> {
    if sets.iter().all(Vec::is_empty) {
        return Ok(());
    }
    let cpus = q.execute(&qmp::query_cpus_fast {})?;
    for cpu in cpus {
        let base = match &cpu {
            qmp::CpuInfoFast::x86_64(b) | qmp::CpuInfoFast::i386(b) => b,
            _ => continue,
        };
        let Some(set) = usize::try_from(base.cpu_index)
            .ok()
            .and_then(|i| sets.get(i))
        else {
            continue;
        };
        if set.is_empty() {
            continue;
        }
        let tid = libc::pid_t::try_from(base.thread_id)
            .map_err(|_| pin_error(base.cpu_index, set, "bad thread id"))?;
        set_affinity(tid, set).map_err(|e| pin_error(base.cpu_index, set, &e.to_string()))?;
        tracing::info!(
            "vCPU {} (thread {tid}) pinned to host CPUs {}",
            base.cpu_index,
            crate::config::cpus::format_set(set)
        );
    }
    Ok(())
}

fn pin_error(vcpu: i64, set: &[u32], why: &str) -> DomainError {
    DomainError::Pinning(format!(
        "cannot pin vCPU {vcpu} to host CPUs {} ({why}); check `cpus` against the host's CPUs (nproc)",
        crate::config::cpus::format_set(set)
    ))
}

/// The affinity mask of `set`, as `sched_setaffinity` reads it: one bit
/// per CPU in native-endian words.
pub fn mask(set: &[u32]) -> Vec<libc::c_ulong> {
    let bits = libc::c_ulong::BITS;
    let words = set.iter().max().map_or(1, |m| m / bits + 1);
    let mut mask = vec![0; usize::try_from(words).unwrap_or(1)];
    for cpu in set {
        if let Some(w) = usize::try_from(cpu / bits)
            .ok()
            .and_then(|i| mask.get_mut(i))
        {
            *w |= 1 << (cpu % bits);
        }
    }
    mask
}

fn set_affinity(tid: libc::pid_t, set: &[u32]) -> std::io::Result<()> {
    let m = mask(set);
    let bytes = std::mem::size_of_val(m.as_slice());
    // SAFETY: the kernel reads `bytes` bytes of the mask, which `m` owns
    // for the duration of the call; a shorter mask than cpu_set_t is
    // allowed (the rest counts as zero).
    let rc = unsafe { libc::sched_setaffinity(tid, bytes, m.as_ptr().cast::<libc::cpu_set_t>()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_have_one_bit_per_cpu() {
        assert_eq!(mask(&[0]), vec![1]);
        assert_eq!(mask(&[1, 3]), vec![0b1010]);
        assert_eq!(mask(&[64]), vec![0, 1]);
    }

    #[test]
    fn affinity_per_vcpu() {
        assert!(per_vcpu(&CpuAffinity::Any, 2).is_empty());
        assert_eq!(
            per_vcpu(&CpuAffinity::All(vec![1]), 2),
            vec![vec![1], vec![1]]
        );
        assert_eq!(
            per_vcpu(&CpuAffinity::PerVcpu(vec![vec![0], vec![1], vec![2]]), 2),
            vec![vec![0], vec![1]]
        );
    }

    #[test]
    fn this_thread_can_be_pinned_to_cpu_0() {
        // SAFETY: gettid has no arguments and cannot fail.
        let tid = unsafe { libc::gettid() };
        set_affinity(tid, &[0]).unwrap();
        let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
        assert!(
            status
                .lines()
                .any(|l| l.starts_with("Cpus_allowed_list:") && l.ends_with("\t0")),
            "{status}"
        );
    }
}
