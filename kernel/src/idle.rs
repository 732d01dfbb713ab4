//! The idle path: halt until an interrupt, with the timer armed for the
//! earliest deadline, and count the halted TSC ticks. Halted time over
//! elapsed time is the kernel's CPU utilisation.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::{apic, time};

static HALTED_TICKS: AtomicU64 = AtomicU64::new(0);
static HALTS: AtomicU64 = AtomicU64::new(0);

/// Halted and elapsed TSC ticks since boot.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuTicks {
    pub halted: u64,
    pub total: u64,
}

/// Returns halted and total TSC ticks since the PVH entry.
pub fn cpu_ticks() -> CpuTicks {
    CpuTicks {
        halted: HALTED_TICKS.load(Ordering::Relaxed),
        total: time::ticks_since_entry(),
    }
}

/// Returns how often the CPU halted.
pub fn halt_count() -> u64 {
    HALTS.load(Ordering::Relaxed)
}

/// Halts until the next interrupt, with the one-shot timer armed for TSC
/// value `deadline` (or disarmed). Called with interrupts disabled; returns
/// with interrupts disabled, after the interrupt's handler has run.
pub fn halt(deadline: Option<u64>) {
    match deadline {
        Some(deadline) => apic::arm_timer(deadline),
        None => apic::disarm_timer(),
    }
    let start = time::rdtsc();
    // SAFETY: STI enables interrupts only after the next instruction, so an
    // interrupt that became pending before this point wakes the HLT instead
    // of being taken between the check the caller made and the halt. The
    // handler runs after HLT; CLI then restores the caller's state.
    unsafe { core::arch::asm!("sti", "hlt", "cli", options(nomem, nostack)) };
    HALTED_TICKS.fetch_add(time::rdtsc().wrapping_sub(start), Ordering::Relaxed);
    HALTS.fetch_add(1, Ordering::Relaxed);
}
