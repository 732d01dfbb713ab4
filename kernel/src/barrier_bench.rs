//! The in-guest barrier microbenchmark: cycles per read, write and full
//! barrier in each mode, timed with serialised TSC reads (`lfence; rdtsc`
//! before, `rdtscp; lfence` after, Intel's recommended pattern) around a
//! loop of barriers, minus the same loop without them.
//!
//! Under TCG these figures describe QEMU's translation of the instructions,
//! not the CPU's; each line names the accelerator the kernel saw.

use virtio::barrier::{full_barrier, read_barrier, write_barrier, BarrierMode};

use crate::println;

/// Barriers per timed run.
pub const DEFAULT_ITERATIONS: u32 = 100_000;
/// Timed runs per figure; the smallest is reported, as the least disturbed.
const REPEATS: u32 = 5;

#[inline(always)]
fn serialised_start() -> u64 {
    let low: u32;
    let high: u32;
    // SAFETY: LFENCE and RDTSC only read the time-stamp counter.
    unsafe { core::arch::asm!("lfence", "rdtsc", out("eax") low, out("edx") high, options(nomem, nostack)) };
    (u64::from(high) << 32) | u64::from(low)
}

#[inline(always)]
fn serialised_end() -> u64 {
    let low: u32;
    let high: u32;
    // SAFETY: RDTSCP waits for earlier instructions and reads the counter;
    // the LFENCE keeps later instructions from starting before it.
    unsafe {
        core::arch::asm!("rdtscp", "lfence", out("eax") low, out("edx") high, out("ecx") _, options(nomem, nostack))
    };
    (u64::from(high) << 32) | u64::from(low)
}

/// Returns the fewest cycles `iterations` calls of `body` took.
fn time_loop(iterations: u32, body: impl Fn()) -> u64 {
    (0..REPEATS)
        .map(|_| {
            let start = serialised_start();
            for _ in 0..iterations {
                body();
            }
            serialised_end().wrapping_sub(start)
        })
        .min()
        .unwrap_or(0)
}

/// Runs the microbenchmark and prints one line per mode and kind:
/// `barrier_bench accel=A mode=M kind=K iterations=N cycles_per_barrier=C`,
/// with C in hundredths-precision decimal.
pub fn run(iterations: u32, accelerator: &str) {
    let iterations = iterations.max(1);
    // The empty loop keeps a compiler barrier so that it is not optimised
    // away and its counter stays in a register, like the timed loops.
    let baseline = time_loop(iterations, || core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst));
    for mode in [BarrierMode::Weak, BarrierMode::Strong] {
        let kinds: [(&str, u64); 3] = [
            ("read", time_loop(iterations, || read_barrier(mode))),
            ("write", time_loop(iterations, || write_barrier(mode))),
            ("full", time_loop(iterations, || full_barrier(mode))),
        ];
        for (kind, cycles) in kinds {
            let hundredths = cycles.saturating_sub(baseline) * 100 / u64::from(iterations);
            println!(
                "barrier_bench accel={accelerator} mode={} kind={kind} iterations={iterations} \
                 cycles_per_barrier={}.{:02}",
                match mode {
                    BarrierMode::Weak => "weak",
                    BarrierMode::Strong => "strong",
                },
                hundredths / 100,
                hundredths % 100
            );
        }
    }
}

/// Returns "kvm", "tcg" or "unknown" from the hypervisor CPUID signature.
pub fn accelerator() -> &'static str {
    let hypervisor = core::arch::x86_64::__cpuid(1).ecx & (1 << 31) != 0;
    if !hypervisor {
        return "none";
    }
    let leaf = core::arch::x86_64::__cpuid(0x4000_0000);
    let mut signature = [0u8; 12];
    signature[0..4].copy_from_slice(&leaf.ebx.to_le_bytes());
    signature[4..8].copy_from_slice(&leaf.ecx.to_le_bytes());
    signature[8..12].copy_from_slice(&leaf.edx.to_le_bytes());
    match &signature {
        b"KVMKVMKVM\0\0\0" => "kvm",
        b"TCGTCGTCGTCG" => "tcg",
        _ => "unknown",
    }
}
