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
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; the fields we want come after its ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name, state is field 3, so utime (14) and stime (15) are at 11 and 12.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
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
}
