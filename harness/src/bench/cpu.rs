//! CPU time of a process tree, read from `/proc`: the benchmark's primary figure. On a machine
//! shared with other work, requests per second move with whatever else runs; the CPU time the
//! proxy itself spends per request (user + system, every thread, every worker process) barely
//! does. Figures are `utime + stime` in clock ticks, so a run must last long enough for a few
//! hundred ticks (one second of one busy core is 100).

use std::collections::HashSet;

/// `USER_HZ`: the unit of `utime`/`stime` in `/proc/<pid>/stat`. Linux fixes it at 100 for
/// user space on every architecture it runs the benchmark's tools on.
const TICKS_PER_SECOND: f64 = 100.0;

/// `utime + stime` of one process (all its threads), in ticks.
fn process_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count fields after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// The process and its descendants (nginx's master and its workers).
fn tree(pid: u32) -> Vec<u32> {
    let mut seen = HashSet::new();
    let mut todo = vec![pid];
    while let Some(pid) = todo.pop() {
        if !seen.insert(pid) {
            continue;
        }
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { continue };
        for task in tasks.flatten() {
            let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            todo.extend(children.split_whitespace().filter_map(|c| c.parse::<u32>().ok()));
        }
    }
    seen.into_iter().collect()
}

/// CPU seconds spent so far by `pid` and its descendants.
pub fn tree_seconds(pid: u32) -> Option<f64> {
    let ticks: u64 = tree(pid).into_iter().filter_map(process_ticks).sum();
    (ticks > 0 || process_ticks(pid).is_some()).then_some(ticks as f64 / TICKS_PER_SECOND)
}

#[cfg(test)]
mod tests {
    /// A fixed amount of work (at least ~0.1 s of CPU, however loaded the machine) must show up
    /// in this process's own figure.
    #[test]
    fn counts_this_process_cpu_time() {
        let me = std::process::id();
        let before = super::tree_seconds(me).expect("own stat");
        let mut x = 0u64;
        for _ in 0..100_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let spent = super::tree_seconds(me).expect("own stat") - before;
        assert!(spent >= 0.1, "10^8 steps of work counted as {spent} s of CPU");
    }
}
