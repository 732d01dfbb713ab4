//! The local APIC (Intel SDM volume 3, chapter 11 "Advanced Programmable
//! Interrupt Controller"): x2APIC through MSRs when the CPU has it, else
//! xAPIC through its memory-mapped page; end-of-interrupt; and the one-shot
//! timer, in TSC-deadline mode when available.
//!
//! The legacy 8259 PICs are masked so that only the APICs deliver
//! interrupts.

use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use spin::Once;
use x86_64::instructions::port::Port;
use x86_64::registers::model_specific::Msr;

use crate::{paging, time};

const IA32_APIC_BASE: u32 = 0x1b;
const APIC_BASE_ENABLE: u64 = 1 << 11;
const APIC_BASE_X2APIC: u64 = 1 << 10;
const IA32_TSC_DEADLINE: u32 = 0x6e0;
/// x2APIC register MSRs start here; MSR = base + (xAPIC offset >> 4).
const X2APIC_MSR_BASE: u32 = 0x800;

/// Register offsets in the xAPIC page.
const REGISTER_ID: u32 = 0x20;
const REGISTER_TASK_PRIORITY: u32 = 0x80;
const REGISTER_EOI: u32 = 0xb0;
const REGISTER_SPURIOUS: u32 = 0xf0;
const REGISTER_LVT_TIMER: u32 = 0x320;
const REGISTER_LVT_LINT0: u32 = 0x350;
const REGISTER_LVT_LINT1: u32 = 0x360;
const REGISTER_LVT_ERROR: u32 = 0x370;
const REGISTER_TIMER_INITIAL_COUNT: u32 = 0x380;
const REGISTER_TIMER_CURRENT_COUNT: u32 = 0x390;
const REGISTER_TIMER_DIVIDE: u32 = 0x3e0;

/// Spurious-interrupt vector register: bit 8 enables the APIC.
const SPURIOUS_APIC_ENABLE: u32 = 1 << 8;
const LVT_MASKED: u32 = 1 << 16;
const LVT_TIMER_TSC_DEADLINE: u32 = 0b10 << 17;
/// Divide configuration value for divide-by-16.
const TIMER_DIVIDE_BY_16: u32 = 0b0011;

/// Vector the APIC uses for spurious interrupts; its low four bits must be
/// ones on older APICs.
pub const SPURIOUS_VECTOR: u8 = 0xff;
/// Vector of the one-shot timer.
pub const TIMER_VECTOR: u8 = 0x40;

/// Access method of the registers.
enum Access {
    X2Apic,
    XApic { base: u64 },
}

pub struct LocalApic {
    access: Access,
    tsc_deadline: bool,
    /// Timer ticks per TSC tick, times 2^32, for one-shot mode.
    timer_ticks_per_tsc_q32: u64,
}

static LOCAL_APIC: Once<LocalApic> = Once::new();
static APIC_ID: AtomicU8 = AtomicU8::new(0);
/// Last armed TSC deadline, so that re-arming for the same time is free.
static ARMED_DEADLINE: AtomicU64 = AtomicU64::new(u64::MAX);

/// Summary of the local APIC found by [`init`], for the boot log.
#[derive(Debug, Clone, Copy)]
pub struct ApicSummary {
    pub x2apic: bool,
    pub tsc_deadline: bool,
    pub id: u32,
}

/// Error of setting up the local APIC.
#[derive(Debug)]
pub enum ApicError {
    /// The xAPIC page could not be mapped.
    Map(paging::PagingError),
}

impl core::fmt::Display for ApicError {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Map(error) => write!(formatter, "cannot map the xAPIC page: {error}"),
        }
    }
}

impl LocalApic {
    fn read(&self, register: u32) -> u32 {
        match self.access {
            // SAFETY: x2APIC mode is enabled, so MSRs 0x800-0x8ff are the APIC
            // registers; reading one has no side effects for these registers.
            Access::X2Apic => unsafe { Msr::new(X2APIC_MSR_BASE + (register >> 4)).read() as u32 },
            // SAFETY: the page is mapped uncached at `base` by init; the offset
            // is one of the register constants above, inside the page.
            Access::XApic { base } => unsafe { core::ptr::read_volatile((base + u64::from(register)) as *const u32) },
        }
    }

    fn write(&self, register: u32, value: u32) {
        match self.access {
            // SAFETY: as in `read`; the values written follow the SDM layouts.
            Access::X2Apic => unsafe { Msr::new(X2APIC_MSR_BASE + (register >> 4)).write(u64::from(value)) },
            // SAFETY: as in `read`.
            Access::XApic { base } => unsafe {
                core::ptr::write_volatile((base + u64::from(register)) as *mut u32, value)
            },
        }
    }
}

/// Masks both 8259 PICs: every interrupt then comes through the APICs.
fn mask_legacy_pics() {
    // SAFETY: 0x21 and 0xa1 are the PICs' interrupt mask registers; masking
    // all lines has no other effect.
    unsafe {
        Port::<u8>::new(0x21).write(0xff);
        Port::<u8>::new(0xa1).write(0xff);
    }
}

/// Enables the local APIC of this CPU, masks the PICs and calibrates the
/// timer. `madt_address` is the xAPIC page from the MADT.
pub fn init(madt_address: u64) -> Result<ApicSummary, ApicError> {
    mask_legacy_pics();

    let features = core::arch::x86_64::__cpuid(1);
    let x2apic = features.ecx & (1 << 21) != 0;
    let tsc_deadline = features.ecx & (1 << 24) != 0;

    let mut base_msr = Msr::new(IA32_APIC_BASE);
    // SAFETY: IA32_APIC_BASE exists on every x86_64 CPU.
    let base_value = unsafe { base_msr.read() };
    let access = if x2apic {
        // SAFETY: the CPU reports x2APIC support; enabling it (with the global
        // enable bit) is the documented transition from xAPIC mode.
        unsafe { base_msr.write(base_value | APIC_BASE_ENABLE | APIC_BASE_X2APIC) };
        Access::X2Apic
    } else {
        let base = if madt_address != 0 { madt_address } else { base_value & 0xffff_f000 };
        paging::map_device_memory(base, 4096).map_err(ApicError::Map)?;
        // SAFETY: sets the global enable bit, keeping the base address.
        unsafe { base_msr.write(base_value | APIC_BASE_ENABLE) };
        Access::XApic { base }
    };
    let mut apic = LocalApic { access, tsc_deadline, timer_ticks_per_tsc_q32: 0 };

    apic.write(REGISTER_TASK_PRIORITY, 0);
    apic.write(REGISTER_LVT_LINT0, LVT_MASKED);
    apic.write(REGISTER_LVT_LINT1, LVT_MASKED);
    apic.write(REGISTER_LVT_ERROR, LVT_MASKED);
    apic.write(REGISTER_SPURIOUS, SPURIOUS_APIC_ENABLE | u32::from(SPURIOUS_VECTOR));

    if tsc_deadline {
        apic.write(REGISTER_LVT_TIMER, LVT_TIMER_TSC_DEADLINE | u32::from(TIMER_VECTOR));
    } else {
        apic.timer_ticks_per_tsc_q32 = calibrate_timer(&apic);
        apic.write(REGISTER_LVT_TIMER, u32::from(TIMER_VECTOR));
    }

    let id = match apic.access {
        Access::X2Apic => apic.read(REGISTER_ID),
        Access::XApic { .. } => apic.read(REGISTER_ID) >> 24,
    };
    APIC_ID.store(id as u8, Ordering::Relaxed);
    LOCAL_APIC.call_once(|| apic);
    Ok(ApicSummary { x2apic, tsc_deadline, id })
}

/// Measures the one-shot timer's rate against the TSC over about 1 ms.
fn calibrate_timer(apic: &LocalApic) -> u64 {
    apic.write(REGISTER_TIMER_DIVIDE, TIMER_DIVIDE_BY_16);
    apic.write(REGISTER_LVT_TIMER, LVT_MASKED | u32::from(TIMER_VECTOR));
    apic.write(REGISTER_TIMER_INITIAL_COUNT, u32::MAX);
    let start = time::rdtsc();
    let window = (time::tsc_hz() / 1000).max(1);
    while time::rdtsc().wrapping_sub(start) < window {
        core::hint::spin_loop();
    }
    let elapsed_tsc = time::rdtsc().wrapping_sub(start);
    let elapsed_timer = u64::from(u32::MAX - apic.read(REGISTER_TIMER_CURRENT_COUNT));
    apic.write(REGISTER_TIMER_INITIAL_COUNT, 0);
    ((u128::from(elapsed_timer) << 32) / u128::from(elapsed_tsc.max(1))) as u64
}

/// Returns this CPU's APIC ID (the MSI-X destination).
pub fn id() -> u8 {
    APIC_ID.load(Ordering::Relaxed)
}

/// Signals end of interrupt to the local APIC.
pub fn end_of_interrupt() {
    if let Some(apic) = LOCAL_APIC.get() {
        apic.write(REGISTER_EOI, 0);
    }
}

/// Arms the one-shot timer to fire at TSC value `deadline` (at once if it
/// has passed). One timer exists: arming replaces the previous deadline.
pub fn arm_timer(deadline: u64) {
    let Some(apic) = LOCAL_APIC.get() else { return };
    if ARMED_DEADLINE.swap(deadline, Ordering::Relaxed) == deadline {
        return;
    }
    if apic.tsc_deadline {
        // SAFETY: the LVT timer is in TSC-deadline mode, so this MSR arms it.
        unsafe { Msr::new(IA32_TSC_DEADLINE).write(deadline.max(1)) };
    } else {
        let remaining = deadline.saturating_sub(time::rdtsc()).max(1);
        let count = (u128::from(remaining) * u128::from(apic.timer_ticks_per_tsc_q32)) >> 32;
        apic.write(REGISTER_TIMER_INITIAL_COUNT, count.clamp(1, u128::from(u32::MAX)) as u32);
    }
}

/// Stops the one-shot timer.
pub fn disarm_timer() {
    let Some(apic) = LOCAL_APIC.get() else { return };
    if ARMED_DEADLINE.swap(u64::MAX, Ordering::Relaxed) == u64::MAX {
        return;
    }
    if apic.tsc_deadline {
        // SAFETY: writing 0 to IA32_TSC_DEADLINE disarms the timer.
        unsafe { Msr::new(IA32_TSC_DEADLINE).write(0) };
    } else {
        apic.write(REGISTER_TIMER_INITIAL_COUNT, 0);
    }
}

/// Forgets the armed deadline after the timer fired, so that the next
/// arm for any time programs the hardware.
pub fn timer_fired() {
    ARMED_DEADLINE.store(u64::MAX, Ordering::Relaxed);
}
