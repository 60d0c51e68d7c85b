//! CPU accounting, from /proc.

use std::collections::HashMap;

/// CPU time a task has run, in nanoseconds: the first field of its `schedstat`, the
/// kernel's `sum_exec_runtime`, which is what `getrusage` scales utime and stime from
/// (and finer than /proc's 10 ms ticks). `task` is `<pid>` or `<pid>/task/<tid>`.
fn cpu_ns(task: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{task}/schedstat"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The parent of a process.
pub(crate) fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses; the fields after the last ')'
    // are fixed: state, ppid, ...
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// This process's CPU time: the sum over its threads (a process's own `schedstat` is
/// its main thread's alone).
fn own_cpu_ns() -> u64 {
    std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| cpu_ns(&format!("self/task/{}", entry.file_name().to_str()?)))
        .sum()
}

/// CPU time of this process and of every server process at one moment.
pub(crate) struct CpuSnapshot {
    own: u64,
    server: HashMap<u32, u64>,
}

impl CpuSnapshot {
    pub(crate) fn take(postmaster: u32) -> CpuSnapshot {
        let own = own_cpu_ns();
        let mut server = HashMap::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            // Server processes are single-threaded: the process's schedstat is all of it.
            if (pid == postmaster || parent(pid) == Some(postmaster))
                && let Some(ns) = cpu_ns(&pid.to_string())
            {
                server.insert(pid, ns);
            }
        }
        CpuSnapshot { own, server }
    }
}

/// CPU seconds between two snapshots.
pub(crate) struct CpuUse {
    pub(crate) consumer: f64,
    pub(crate) decoder_backend: f64,
    pub(crate) writer_backend: f64,
    pub(crate) server_total: f64,
}

impl CpuUse {
    pub(crate) fn between(
        before: &CpuSnapshot,
        after: &CpuSnapshot,
        decoder: u32,
        writer: u32,
    ) -> CpuUse {
        // A process born inside the window counts from zero.
        let delta = |pid: &u32| {
            let end = after.server.get(pid).copied().unwrap_or(0);
            end.saturating_sub(before.server.get(pid).copied().unwrap_or(0)) as f64 / 1e9
        };
        CpuUse {
            consumer: after.own.saturating_sub(before.own) as f64 / 1e9,
            decoder_backend: delta(&decoder),
            writer_backend: delta(&writer),
            server_total: after.server.keys().map(delta).sum(),
        }
    }
}
