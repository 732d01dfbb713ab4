//! The I/O APIC (Intel 82093AA data sheet): redirection entries that route
//! legacy and PCI INTx lines (global system interrupts) to vectors on this
//! CPU.

use alloc::vec::Vec;

use spin::Mutex;

use crate::paging;
use crate::platform::IoApicInfo;

const REGISTER_SELECT: u64 = 0x00;
const REGISTER_WINDOW: u64 = 0x10;
const REGISTER_VERSION: u32 = 0x01;
const REDIRECTION_TABLE_BASE: u32 = 0x10;
const ENTRY_MASKED: u64 = 1 << 16;
const ENTRY_LEVEL_TRIGGERED: u64 = 1 << 15;
const ENTRY_ACTIVE_LOW: u64 = 1 << 13;

/// The I/O APICs; the lock serialises the select/window register pairs.
static IO_APICS: Mutex<Vec<IoApic>> = Mutex::new(Vec::new());

pub struct IoApic {
    base: u64,
    gsi_base: u32,
    entries: u32,
}

/// Trigger mode and polarity of a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineMode {
    pub level_triggered: bool,
    pub active_low: bool,
}

impl LineMode {
    /// ISA default: edge triggered, active high.
    pub const EDGE_HIGH: Self = Self { level_triggered: false, active_low: false };
    /// PCI INTx as QEMU models it in APIC mode: level triggered, active high.
    pub const LEVEL_HIGH: Self = Self { level_triggered: true, active_low: false };

    /// Decodes MPS INTI flags (polarity bits 0-1, trigger bits 2-3), with
    /// "conforming" meaning the ISA default.
    pub fn from_inti_flags(flags: u16, default: Self) -> Self {
        let active_low = match flags & 0b11 {
            0b01 => false,
            0b11 => true,
            _ => default.active_low,
        };
        let level_triggered = match (flags >> 2) & 0b11 {
            0b01 => false,
            0b11 => true,
            _ => default.level_triggered,
        };
        Self { level_triggered, active_low }
    }
}

impl IoApic {
    fn read(&self, register: u32) -> u32 {
        // SAFETY: base is the I/O APIC's page, mapped uncached by `add`; the
        // select/window pair is serialised by the IO_APICS lock.
        unsafe {
            core::ptr::write_volatile((self.base + REGISTER_SELECT) as *mut u32, register);
            core::ptr::read_volatile((self.base + REGISTER_WINDOW) as *const u32)
        }
    }

    fn write(&self, register: u32, value: u32) {
        // SAFETY: as in `read`.
        unsafe {
            core::ptr::write_volatile((self.base + REGISTER_SELECT) as *mut u32, register);
            core::ptr::write_volatile((self.base + REGISTER_WINDOW) as *mut u32, value);
        }
    }

    fn write_entry(&self, index: u32, entry: u64) {
        self.write(REDIRECTION_TABLE_BASE + index * 2 + 1, (entry >> 32) as u32);
        self.write(REDIRECTION_TABLE_BASE + index * 2, entry as u32);
    }
}

/// Maps an I/O APIC from the MADT and masks all its lines.
pub fn add(info: &IoApicInfo) -> Result<u32, paging::PagingError> {
    paging::map_device_memory(info.address, 4096)?;
    let mut io_apic = IoApic { base: info.address, gsi_base: info.gsi_base, entries: 0 };
    io_apic.entries = ((io_apic.read(REGISTER_VERSION) >> 16) & 0xff) + 1;
    for index in 0..io_apic.entries {
        io_apic.write_entry(index, ENTRY_MASKED);
    }
    let entries = io_apic.entries;
    IO_APICS.lock().push(io_apic);
    Ok(entries)
}

/// Routes `gsi` to `vector` on the CPU with APIC ID `destination`. Returns
/// false when no I/O APIC serves the GSI.
pub fn route(gsi: u32, vector: u8, mode: LineMode, destination: u8) -> bool {
    let io_apics = IO_APICS.lock();
    let Some(io_apic) = io_apics
        .iter()
        .find(|io_apic| gsi >= io_apic.gsi_base && gsi < io_apic.gsi_base + io_apic.entries)
    else {
        return false;
    };
    let mut entry = u64::from(vector) | (u64::from(destination) << 56);
    if mode.level_triggered {
        entry |= ENTRY_LEVEL_TRIGGERED;
    }
    if mode.active_low {
        entry |= ENTRY_ACTIVE_LOW;
    }
    io_apic.write_entry(gsi - io_apic.gsi_base, entry);
    true
}
