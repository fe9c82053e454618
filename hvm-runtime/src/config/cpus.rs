//! vCPU pinning (`cpus`): which host CPUs the vCPU threads may run on.
//!
//! xl's forms: `"all"`, a range list such as `"0-3,^1,6"` (every vCPU on
//! the same set; a list that starts with `^` starts from all CPUs), or a
//! list of such strings, one per vCPU (`["2", "3-4"]`). `cpus = ""` is
//! xend's way of saying "no pinning".

use std::collections::BTreeSet;

use serde::Serialize;

/// The largest host CPU number a range may name.
pub const MAX_CPU: u32 = 4095;

/// Where the vCPU threads may run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CpuAffinity {
    /// Anywhere (no pinning).
    Any,
    /// Every vCPU on the same set of host CPUs.
    All(Vec<u32>),
    /// vCPU `i` on set `i`; vCPUs past the list run anywhere.
    PerVcpu(Vec<Vec<u32>>),
}

/// Parses one range list (`"0-3,^1"`, `"all"`) into sorted CPU numbers;
/// `None` means all CPUs.
pub fn parse_set(s: &str) -> Result<Option<Vec<u32>>, String> {
    let s = s.trim();
    if s == "all" {
        return Ok(None);
    }
    if s.starts_with("nodes:") || s.starts_with("node:") {
        return Err(format!(
            "NUMA node pinning ('{s}') is not supported; list host CPUs instead"
        ));
    }
    let mut include: BTreeSet<u32> = BTreeSet::new();
    let mut exclude: BTreeSet<u32> = BTreeSet::new();
    let mut all = false;
    for (i, part) in s.split(',').map(str::trim).enumerate() {
        let (negate, range) = match part.strip_prefix('^') {
            Some(r) => (true, r),
            None => (false, part),
        };
        if range == "all" && !negate {
            all = true;
            continue;
        }
        let (lo, hi) = match range.split_once('-') {
            Some((a, b)) => (cpu(a, part)?, cpu(b, part)?),
            None => {
                let n = cpu(range, part)?;
                (n, n)
            }
        };
        if lo > hi {
            return Err(format!("CPU range '{part}' runs backwards"));
        }
        if negate {
            all |= i == 0;
            exclude.extend(lo..=hi);
        } else {
            include.extend(lo..=hi);
        }
    }
    if all {
        if exclude.is_empty() {
            return Ok(None);
        }
        return Ok(Some(
            (0..=MAX_CPU).filter(|c| !exclude.contains(c)).collect(),
        ));
    }
    let kept: Vec<u32> = include.difference(&exclude).copied().collect();
    if kept.is_empty() {
        return Err(format!("'{s}' leaves no CPU to run on"));
    }
    Ok(Some(kept))
}

fn cpu(text: &str, part: &str) -> Result<u32, String> {
    let n: u32 = text
        .trim()
        .parse()
        .map_err(|_| format!("'{part}' is not a CPU number or range (like 0-3 or ^1)"))?;
    if n > MAX_CPU {
        return Err(format!(
            "CPU {n} is above the largest supported CPU number {MAX_CPU}"
        ));
    }
    Ok(n)
}

/// Shows a CPU set compactly: `0-3,6`.
pub fn format_set(cpus: &[u32]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let start = cpus[i];
        let mut end = start;
        while i + 1 < cpus.len() && cpus[i + 1] == end + 1 {
            i += 1;
            end = cpus[i];
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    out.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_exclusions() {
        assert_eq!(parse_set("0-3,^1"), Ok(Some(vec![0, 2, 3])));
        assert_eq!(parse_set("2"), Ok(Some(vec![2])));
        assert_eq!(parse_set(" 1 , 4-5 "), Ok(Some(vec![1, 4, 5])));
        assert_eq!(parse_set("all"), Ok(None));
        let all_but_one = parse_set("^1").unwrap().unwrap();
        assert_eq!(&all_but_one[..3], &[0, 2, 3]);
        let all_but = parse_set("all,^0-1").unwrap().unwrap();
        assert_eq!(all_but[0], 2);
    }

    #[test]
    fn bad_sets() {
        assert_eq!(
            parse_set("3-1").unwrap_err(),
            "CPU range '3-1' runs backwards"
        );
        assert_eq!(
            parse_set("a").unwrap_err(),
            "'a' is not a CPU number or range (like 0-3 or ^1)"
        );
        assert_eq!(
            parse_set("1,^1").unwrap_err(),
            "'1,^1' leaves no CPU to run on"
        );
        assert!(parse_set("5000").unwrap_err().contains("above"));
        assert!(parse_set("nodes:0").unwrap_err().contains("NUMA"));
    }

    #[test]
    fn formats_compactly() {
        assert_eq!(format_set(&[0, 1, 2, 3, 6, 8, 9]), "0-3,6,8-9");
        assert_eq!(format_set(&[]), "");
    }
}
