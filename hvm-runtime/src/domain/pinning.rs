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
        let tid = i32::try_from(base.thread_id)
            .ok()
            .and_then(rustix::thread::Pid::from_raw)
            .ok_or_else(|| {
                pin_error(
                    base.cpu_index,
                    set,
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("QEMU gave the bad thread id {}", base.thread_id),
                    ),
                )
            })?;
        set_affinity(tid, set).map_err(|e| pin_error(base.cpu_index, set, e))?;
        tracing::info!(
            "vCPU {} (thread {tid}) pinned to host CPUs {}",
            base.cpu_index,
            crate::config::cpus::format_set(set)
        );
    }
    Ok(())
}

fn pin_error(vcpu: i64, set: &[u32], source: std::io::Error) -> DomainError {
    DomainError::Pinning {
        vcpu,
        cpus: set.to_vec(),
        source,
    }
}

fn set_affinity(tid: rustix::thread::Pid, set: &[u32]) -> std::io::Result<()> {
    let mut cpus = rustix::thread::CpuSet::new();
    for cpu in set {
        let i = usize::try_from(*cpu).unwrap_or(usize::MAX);
        if i >= rustix::thread::CpuSet::MAX_CPU {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("CPU {cpu} is beyond what the kernel's CPU sets hold"),
            ));
        }
        cpus.set(i);
    }
    rustix::thread::sched_setaffinity(Some(tid), &cpus).map_err(std::io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        set_affinity(rustix::thread::gettid(), &[0]).unwrap();
        let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
        assert!(
            status
                .lines()
                .any(|l| l.starts_with("Cpus_allowed_list:") && l.ends_with("\t0")),
            "{status}"
        );
    }
}
