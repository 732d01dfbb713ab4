//! Host CPU time during a trial, from the `cpu` line of `/proc/stat`: how
//! busy the host was and how much time its hypervisor stole.
//!
//! The line counts clock ticks (`USER_HZ`) of every CPU together, in the
//! order user, nice, system, idle, iowait, irq, softirq, steal (proc(5)).
//! Guest time is already part of user time, so the later fields are not
//! added.

use std::fs;

/// Cumulative CPU ticks of every CPU since the host booted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuTicks {
    /// user + nice + system + irq + softirq.
    pub busy: u64,
    /// idle + iowait.
    pub idle: u64,
    /// Time the hypervisor ran something else while a vCPU of this host
    /// wanted to run.
    pub steal: u64,
}

impl CpuTicks {
    /// Reads `/proc/stat`, or `None` when it is unreadable or malformed.
    pub fn read() -> Option<CpuTicks> {
        CpuTicks::parse(&fs::read_to_string("/proc/stat").ok()?)
    }

    /// Parses the `cpu` line of `/proc/stat` text.
    pub fn parse(text: &str) -> Option<CpuTicks> {
        let line = text.lines().find(|line| line.starts_with("cpu "))?;
        let fields: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .take(8)
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        // Kernels before 2.6.11 print no steal field.
        let field = |index: usize| fields.get(index).copied().unwrap_or(0);
        if fields.len() < 4 {
            return None;
        }
        Some(CpuTicks {
            busy: field(0) + field(1) + field(2) + field(5) + field(6),
            idle: field(3) + field(4),
            steal: field(7),
        })
    }

    /// The use of the interval from `earlier` to `self`.
    pub fn since(&self, earlier: &CpuTicks) -> CpuUse {
        let busy = self.busy.saturating_sub(earlier.busy);
        let idle = self.idle.saturating_sub(earlier.idle);
        let steal = self.steal.saturating_sub(earlier.steal);
        let total = busy + idle + steal;
        let permille = |part: u64| if total == 0 { 0.0 } else { part as f64 * 1000.0 / total as f64 };
        CpuUse {
            steal_ms: steal as f64 * 1000.0 / ticks_per_second(),
            busy_ms: busy as f64 * 1000.0 / ticks_per_second(),
            steal_permille: permille(steal),
            busy_permille: permille(busy),
        }
    }
}

/// Host CPU use over an interval, every CPU together.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CpuUse {
    /// Stolen CPU time in milliseconds.
    pub steal_ms: f64,
    /// Busy CPU time in milliseconds.
    pub busy_ms: f64,
    /// Stolen share of all CPU time, per mille.
    pub steal_permille: f64,
    /// Busy share of all CPU time, per mille.
    pub busy_permille: f64,
}

/// `USER_HZ`, the unit of `/proc/stat`.
fn ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        // USER_HZ is 100 on x86_64.
        100.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_sums_busy_fields() {
        let text = "cpu  100 5 50 1000 20 3 2 40 0 0\ncpu0 50 2 25 500 10 1 1 20 0 0\nintr 1\n";
        let ticks = CpuTicks::parse(text).expect("a cpu line");
        assert_eq!(ticks, CpuTicks { busy: 160, idle: 1020, steal: 40 });
    }

    #[test]
    fn interval_use_is_a_share_of_all_ticks() {
        let before = CpuTicks { busy: 100, idle: 100, steal: 0 };
        let after = CpuTicks { busy: 250, idle: 180, steal: 50 };
        let used = after.since(&before);
        assert_eq!(used.busy_permille, 150.0 * 1000.0 / 280.0);
        assert_eq!(used.steal_permille, 50.0 * 1000.0 / 280.0);
        assert!(used.steal_ms > 0.0);
        assert_eq!(CpuTicks::default().since(&CpuTicks::default()).busy_permille, 0.0);
    }

    #[test]
    fn this_host_reports_ticks() {
        let ticks = CpuTicks::read().expect("/proc/stat is readable");
        assert!(ticks.busy + ticks.idle > 0);
        assert_eq!(CpuTicks::parse("intr 5\n"), None);
    }
}
