//! Time stamp counter reads and the counter's frequency.
//!
//! Timed regions start with `lfence; rdtsc` and end with `rdtscp; lfence`,
//! the pairing Intel's "How to Benchmark Code Execution Times on Intel IA-32
//! and IA-64 Instruction Set Architectures" recommends: the `lfence` before
//! `rdtsc` waits for earlier instructions to finish, `rdtscp` waits for the
//! timed instructions, and the trailing `lfence` keeps later instructions
//! from starting before the read. None of the asm blocks is `nomem`, so each
//! is also a compiler barrier and the compiler cannot move memory accesses
//! into or out of a timed region.
//!
//! The counter runs at a constant rate on CPUs with `constant_tsc` and
//! `nonstop_tsc` (Linux lists both in `/proc/cpuinfo`), so ticks convert to
//! time with one frequency.

use std::arch::asm;
use std::time::{Duration, Instant};

/// Reads the counter after every earlier instruction has finished.
#[inline(always)]
pub fn start() -> u64 {
    let low: u32;
    let high: u32;
    // SAFETY: `lfence` and `rdtsc` only write eax and edx, which are outputs.
    // Linux lets user space execute rdtsc (CR4.TSD is clear).
    unsafe {
        asm!(
            "lfence",
            "rdtsc",
            out("eax") low,
            out("edx") high,
            options(nostack, preserves_flags),
        )
    };
    (u64::from(high) << 32) | u64::from(low)
}

/// Reads the counter after every earlier instruction has finished, before
/// any later instruction starts.
#[inline(always)]
pub fn stop() -> u64 {
    let low: u32;
    let high: u32;
    // SAFETY: `rdtscp` writes eax, edx and ecx (the processor id, discarded),
    // all declared; `lfence` writes nothing.
    unsafe {
        asm!(
            "rdtscp",
            "lfence",
            out("eax") low,
            out("edx") high,
            out("ecx") _,
            options(nostack, preserves_flags),
        )
    };
    (u64::from(high) << 32) | u64::from(low)
}

/// Reads the counter without waiting for earlier instructions, for deadlines
/// and other coarse timing.
#[inline(always)]
pub fn now() -> u64 {
    let low: u32;
    let high: u32;
    // SAFETY: `rdtsc` only writes eax and edx, which are outputs.
    unsafe {
        asm!(
            "rdtsc",
            out("eax") low,
            out("edx") high,
            options(nostack, preserves_flags),
        )
    };
    (u64::from(high) << 32) | u64::from(low)
}

/// Counter frequency, measured and as the kernel reports it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TscFrequency {
    /// Ticks per second measured against the monotonic clock.
    pub calibrated_hz: f64,
    /// `cpu MHz` of the first processor in `/proc/cpuinfo`, in hertz. On
    /// CPUs with `tsc_known_freq` this is the counter's nominal frequency.
    /// Elsewhere it can be the current core clock.
    pub cpuinfo_hz: Option<f64>,
}

impl TscFrequency {
    /// Measures the frequency: the median of five 20 ms windows of ticks
    /// against `Instant`.
    pub fn measure() -> Self {
        let mut estimates: Vec<f64> = (0..5).map(|_| calibrate_once(Duration::from_millis(20))).collect();
        estimates.sort_by(f64::total_cmp);
        TscFrequency {
            calibrated_hz: estimates[estimates.len() / 2],
            cpuinfo_hz: crate::host::cpuinfo_mhz().map(|megahertz| megahertz * 1e6),
        }
    }

    /// Converts ticks to nanoseconds with the calibrated frequency.
    pub fn ticks_to_ns(&self, ticks: f64) -> f64 {
        ticks * 1e9 / self.calibrated_hz
    }

    /// Converts a duration to ticks with the calibrated frequency.
    pub fn duration_to_ticks(&self, duration: Duration) -> u64 {
        (duration.as_secs_f64() * self.calibrated_hz) as u64
    }
}

fn calibrate_once(window: Duration) -> f64 {
    let started = Instant::now();
    let first_tick = now();
    while started.elapsed() < window {
        std::hint::spin_loop();
    }
    let last_tick = now();
    let elapsed = started.elapsed();
    (last_tick - first_tick) as f64 / elapsed.as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_increases() {
        let first = start();
        let second = stop();
        let third = now();
        assert!(second > first);
        assert!(third >= second);
    }

    #[test]
    fn calibration_is_plausible() {
        let frequency = TscFrequency::measure();
        // Any x86_64 counter since the first constant-rate ones runs between
        // 100 MHz and 10 GHz.
        assert!(frequency.calibrated_hz > 1e8, "{frequency:?}");
        assert!(frequency.calibrated_hz < 1e10, "{frequency:?}");
        assert!((frequency.ticks_to_ns(frequency.calibrated_hz) - 1e9).abs() < 1.0);
    }
}
