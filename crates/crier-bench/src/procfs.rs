//! Server and tool resource use, read from `/proc` (Linux only; elsewhere every reading
//! is `None` and reports say n/a).

use std::time::Instant;

/// /proc reports CPU times in USER_HZ ticks, which is 100 on every Linux ABI.
const TICKS_PER_SEC: f64 = 100.0;

/// Resident memory of `pid`, in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// CPU ticks (user + system) used by `pid` so far.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    Some(stat_field(pid, 14)? + stat_field(pid, 15)?)
}

/// CPU ticks of a server made of processes, like PostgreSQL: `parent` itself, the
/// children it has already reaped (its cutime and cstime), and every live child
/// (PostgreSQL's backends, walsenders and background workers). Children come and go
/// during a run, so neither the live ones nor the reaped ones alone would do.
pub fn family_cpu_ticks(parent: u32) -> Option<u64> {
    let reaped = stat_field(parent, 16)? + stat_field(parent, 17)?;
    let children: u64 = std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| stat_field(pid, 4) == Some(parent.into()))
        .filter_map(cpu_ticks)
        .sum();
    Some(cpu_ticks(parent)? + reaped + children)
}

/// Numeric field `number` of `/proc/<pid>/stat`, counted from 1 as in proc(5): the
/// parent pid is 4, utime 14, stime 15, cutime 16, cstime 17.
fn stat_field(pid: u32, number: usize) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; field 3 starts after its ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace()
        .nth(number.checked_sub(3)?)?
        .parse()
        .ok()
}

/// CPU time of a set of processes at one instant.
#[derive(Debug, Clone)]
pub struct CpuSample {
    at: Instant,
    ticks: Option<u64>,
}

impl CpuSample {
    /// Reads the summed CPU time of `pids` now (`None` if any cannot be read).
    pub fn take(pids: &[u32]) -> CpuSample {
        let ticks = if pids.is_empty() {
            None
        } else {
            pids.iter().map(|&pid| cpu_ticks(pid)).sum::<Option<u64>>()
        };
        CpuSample::from_ticks(ticks)
    }

    /// A sample of ticks read some other way (e.g. a whole process tree), taken now.
    pub fn from_ticks(ticks: Option<u64>) -> CpuSample {
        CpuSample {
            at: Instant::now(),
            ticks,
        }
    }

    /// CPU use since `earlier`, in percent of one core.
    pub fn percent_since(&self, earlier: &CpuSample) -> Option<f64> {
        let wall = self.at.duration_since(earlier.at).as_secs_f64().max(1e-9);
        let used = self.ticks?.checked_sub(earlier.ticks?)?;
        Some(used as f64 / TICKS_PER_SEC / wall * 100.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(rss_bytes(me).unwrap() > 0);
        assert!(cpu_ticks(me).is_some());
        assert!(rss_bytes(u32::MAX).is_none());
        let a = CpuSample::take(&[me]);
        let b = CpuSample::take(&[me]);
        assert!(b.percent_since(&a).is_some());
        assert!(CpuSample::take(&[]).percent_since(&a).is_none());
        assert!(CpuSample::from_ticks(None).percent_since(&a).is_none());
    }

    #[test]
    fn reads_parents_and_families() {
        let me = std::process::id();
        assert_eq!(
            stat_field(me, 4),
            Some(std::os::unix::process::parent_id().into())
        );
        assert!(stat_field(me, 16).is_some());
        assert!(stat_field(me, 3).is_none(), "the state is a letter");
        assert!(family_cpu_ticks(me).unwrap() >= cpu_ticks(me).unwrap());
        assert!(family_cpu_ticks(u32::MAX).is_none());
    }
}
