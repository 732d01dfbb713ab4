//! Facts about the host that a benchmark report records, and thread pinning:
//! the CPU model from `/proc/cpuinfo`, steal time from `/proc/stat`, the
//! kernel release, and `sched_setaffinity` through `core_affinity`.

use std::fs;

/// The CPU as `/proc/cpuinfo` describes its first processor.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CpuModel {
    /// `model name`.
    pub name: String,
    /// `vendor_id`.
    pub vendor: String,
    /// `cpu family`, `model` and `stepping`, as "family/model/stepping".
    pub signature: String,
    /// `microcode`.
    pub microcode: String,
    /// Whether `flags` contains `hypervisor`, meaning the host is itself a
    /// virtual machine.
    pub virtualised: bool,
}

impl CpuModel {
    /// Reads `/proc/cpuinfo`. Fields it lacks stay empty.
    pub fn read() -> Self {
        let text = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let field = |name: &str| cpuinfo_field(&text, name).unwrap_or_default();
        CpuModel {
            name: field("model name"),
            vendor: field("vendor_id"),
            signature: format!(
                "{}/{}/{}",
                field("cpu family"),
                field("model"),
                field("stepping")
            ),
            microcode: field("microcode"),
            virtualised: field("flags").split_whitespace().any(|flag| flag == "hypervisor"),
        }
    }
}

/// `cpu MHz` of the first processor in `/proc/cpuinfo`.
pub fn cpuinfo_mhz() -> Option<f64> {
    let text = fs::read_to_string("/proc/cpuinfo").ok()?;
    cpuinfo_field(&text, "cpu MHz")?.parse().ok()
}

/// Value of the first `name : value` line of `/proc/cpuinfo` text.
fn cpuinfo_field(text: &str, name: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == name).then(|| value.trim().to_string())
    })
}

/// Kernel release from `/proc/sys/kernel/osrelease`.
pub fn kernel_release() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|release| release.trim().to_string())
        .unwrap_or_default()
}

/// Steal time of every CPU together, in milliseconds, from the `cpu` line
/// of `/proc/stat`: time the hypervisor ran something else while this
/// machine's vCPUs wanted to run. `None` when the kernel does not report it.
pub fn steal_ms() -> Option<f64> {
    let text = fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().find(|line| line.starts_with("cpu "))?;
    // Fields after "cpu": user nice system idle iowait irq softirq steal.
    let steal_ticks: u64 = line.split_whitespace().nth(8)?.parse().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks_per_second <= 0 {
        return None;
    }
    Some(steal_ticks as f64 * 1000.0 / ticks_per_second as f64)
}

/// The 1, 5 and 15 minute load averages from `/proc/loadavg`, as written
/// there.
pub fn load_average() -> Option<String> {
    let text = fs::read_to_string("/proc/loadavg").ok()?;
    let fields: Vec<&str> = text.split_whitespace().take(3).collect();
    (fields.len() == 3).then(|| fields.join(" "))
}

/// Times the kernel preempted the calling thread
/// (`nonvoluntary_ctxt_switches` in `/proc/thread-self/status`).
pub fn thread_preemptions() -> Option<u64> {
    let text = fs::read_to_string("/proc/thread-self/status").ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("nonvoluntary_ctxt_switches:"))?
        .trim()
        .parse()
        .ok()
}

/// Ids of the cores this process may run on, in ascending order.
pub fn allowed_cores() -> Vec<usize> {
    let mut cores: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|core| core.id)
        .collect();
    cores.sort_unstable();
    cores
}

/// Pins the calling thread to `core`. Returns false when the kernel rejects
/// it (no such core, or outside the process's allowed set).
pub fn pin_current_thread(core: usize) -> bool {
    core_affinity::set_for_current(core_affinity::CoreId { id: core })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpuinfo_field_takes_first_match() {
        let text = "processor\t: 0\nmodel name\t: Example CPU @ 2.0GHz\ncpu MHz\t\t: 1999.5\n\
                    processor\t: 1\nmodel name\t: Other\n";
        assert_eq!(
            cpuinfo_field(text, "model name").as_deref(),
            Some("Example CPU @ 2.0GHz")
        );
        assert_eq!(cpuinfo_field(text, "cpu MHz").as_deref(), Some("1999.5"));
        assert_eq!(cpuinfo_field(text, "cache size"), None);
    }

    #[test]
    fn host_facts_are_readable() {
        let cpu = CpuModel::read();
        assert!(!cpu.name.is_empty(), "{cpu:?}");
        assert!(!allowed_cores().is_empty());
        assert!(!kernel_release().is_empty());
        assert!(load_average().is_some());
        assert!(thread_preemptions().is_some());
    }
}
