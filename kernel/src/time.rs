//! The monotonic clock: the TSC, with its frequency from CPUID where the CPU
//! or hypervisor reports it, otherwise calibrated against PIT channel 2.
//!
//! Time zero is the TSC value the PVH entry recorded, so uptimes include the
//! boot trampoline.

use core::arch::x86_64::{__cpuid, _rdtsc};
use core::sync::atomic::{AtomicU64, Ordering};

use x86_64::instructions::port::Port;

/// PIT input clock in Hz (Intel 8254 data sheet, as wired on PCs).
const PIT_FREQUENCY_HZ: u64 = 1_193_182;
/// Length of the PIT calibration window: 1 ms keeps boot fast, and one PIT
/// tick of error is under 0.1%.
const CALIBRATION_PIT_TICKS: u16 = 1193;
/// Port 0x61 (NMI status and control): bit 0 gates PIT channel 2, bit 1
/// enables the speaker, bit 5 reads channel 2's output.
const PORT_SYSTEM_CONTROL: u16 = 0x61;
const PORT_PIT_CHANNEL2: u16 = 0x42;
const PORT_PIT_COMMAND: u16 = 0x43;
/// Channel 2, low byte then high byte, mode 0 (interrupt on terminal count).
const PIT_CHANNEL2_MODE0: u8 = 0b1011_0000;
const HYPERVISOR_TIMING_LEAF: u32 = 0x4000_0010;

static ENTRY_TSC: AtomicU64 = AtomicU64::new(0);
static TSC_HZ: AtomicU64 = AtomicU64::new(0);

/// Source of the TSC frequency, for the boot log.
#[derive(Clone, Copy, Debug)]
pub enum FrequencySource {
    CpuidLeaf15,
    CpuidLeaf16,
    HypervisorLeaf,
    PitCalibration,
}

/// Reads the time-stamp counter.
#[inline(always)]
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC is available on every x86_64 CPU and has no side effects.
    unsafe { _rdtsc() }
}

/// Sets time zero and finds the TSC frequency.
pub fn init(entry_tsc: u64) -> (u64, FrequencySource) {
    ENTRY_TSC.store(entry_tsc, Ordering::Relaxed);
    let (hz, source) = match frequency_from_cpuid() {
        Some(found) => found,
        None => (calibrate_with_pit(), FrequencySource::PitCalibration),
    };
    TSC_HZ.store(hz.max(1), Ordering::Relaxed);
    (hz, source)
}

/// Returns the TSC frequency in Hz, or 0 before [`init`].
pub fn tsc_hz() -> u64 {
    TSC_HZ.load(Ordering::Relaxed)
}

/// Converts a TSC interval to microseconds.
pub fn ticks_to_micros(ticks: u64) -> u64 {
    let hz = TSC_HZ.load(Ordering::Relaxed);
    if hz == 0 {
        return 0;
    }
    ((ticks as u128 * 1_000_000) / hz as u128) as u64
}

/// Returns the TSC ticks since the PVH entry.
pub fn ticks_since_entry() -> u64 {
    rdtsc().wrapping_sub(ENTRY_TSC.load(Ordering::Relaxed))
}

/// Converts microseconds since the PVH entry to an absolute TSC value.
pub fn micros_to_tsc(micros: u64) -> u64 {
    let hz = TSC_HZ.load(Ordering::Relaxed);
    let ticks = (u128::from(micros) * u128::from(hz) / 1_000_000) as u64;
    ENTRY_TSC.load(Ordering::Relaxed).wrapping_add(ticks)
}

/// Returns the microseconds since the PVH entry (0 before [`init`]).
pub fn uptime_micros() -> u64 {
    let ticks = rdtsc().wrapping_sub(ENTRY_TSC.load(Ordering::Relaxed));
    ticks_to_micros(ticks)
}

fn frequency_from_cpuid() -> Option<(u64, FrequencySource)> {
    let max_leaf = __cpuid(0).eax;
    if max_leaf >= 0x15 {
        let leaf = __cpuid(0x15);
        if leaf.eax != 0 && leaf.ebx != 0 && leaf.ecx != 0 {
            let hz = u64::from(leaf.ecx) * u64::from(leaf.ebx) / u64::from(leaf.eax);
            return Some((hz, FrequencySource::CpuidLeaf15));
        }
    }
    if max_leaf >= 0x16 {
        let base_mhz = __cpuid(0x16).eax & 0xffff;
        if base_mhz != 0 {
            return Some((u64::from(base_mhz) * 1_000_000, FrequencySource::CpuidLeaf16));
        }
    }
    // CPUID.1:ECX bit 31 is set when a hypervisor is present.
    let hypervisor = __cpuid(1).ecx & (1 << 31) != 0;
    if hypervisor {
        let max_hypervisor_leaf = __cpuid(0x4000_0000).eax;
        if max_hypervisor_leaf >= HYPERVISOR_TIMING_LEAF {
            let khz = __cpuid(HYPERVISOR_TIMING_LEAF).eax;
            if khz != 0 {
                return Some((u64::from(khz) * 1000, FrequencySource::HypervisorLeaf));
            }
        }
    }
    None
}

/// Counts TSC ticks across a 1 ms one-shot of PIT channel 2.
fn calibrate_with_pit() -> u64 {
    let mut control = Port::<u8>::new(PORT_SYSTEM_CONTROL);
    let mut command = Port::<u8>::new(PORT_PIT_COMMAND);
    let mut channel2 = Port::<u8>::new(PORT_PIT_CHANNEL2);

    // SAFETY: ports 0x42, 0x43 and 0x61 are the PC's PIT and system control
    // ports; channel 2 drives only the speaker, which stays disabled.
    unsafe {
        let value = control.read();
        control.write((value & !0b10) | 0b1);
        command.write(PIT_CHANNEL2_MODE0);
        let [low, high] = CALIBRATION_PIT_TICKS.to_le_bytes();
        channel2.write(low);
        channel2.write(high);
    }

    let start = rdtsc();
    // SAFETY: reading the system control port has no side effects.
    while unsafe { control.read() } & 0b10_0000 == 0 {
        core::hint::spin_loop();
    }
    let elapsed = rdtsc().wrapping_sub(start);
    elapsed * PIT_FREQUENCY_HZ / u64::from(CALIBRATION_PIT_TICKS)
}
