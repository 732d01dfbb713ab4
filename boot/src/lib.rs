//! Boot: the PVH entry trampoline and the hand-over to the kernel.
//!
//! QEMU loads the kernel ELF with `-kernel` and enters it through the PVH
//! entry note (see [`entry`]). This crate turns the PVH start info into a
//! [`BootInfo`] (memory map, RSDP address, command line, TSC at entry) and
//! calls the kernel's `kernel_main`, which the kernel binary defines.
#![no_std]

#[cfg(test)]
extern crate std;

pub mod command_line;
#[cfg(target_os = "none")]
mod entry;
#[cfg(target_os = "none")]
mod pvh;

/// `hvm_memmap_table_entry.type` for usable RAM (the e820 type 1).
pub const MEMMAP_TYPE_RAM: u32 = 1;
/// Upper bound on memory-map entries kept; QEMU passes fewer than ten.
pub const MAX_MEMORY_REGIONS: usize = 32;
/// Upper bound on the command-line length kept.
pub const MAX_COMMAND_LINE_BYTES: usize = 1024;

/// One entry of the firmware's memory map.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryRegion {
    pub start: u64,
    pub length: u64,
    /// e820 type: 1 usable RAM, 2 reserved, 3 ACPI reclaimable, 4 ACPI NVS.
    pub kind: u32,
}

impl MemoryRegion {
    /// Returns whether the region is usable RAM.
    pub fn is_usable(&self) -> bool {
        self.kind == MEMMAP_TYPE_RAM
    }

    /// Returns the first address past the region.
    pub fn end(&self) -> u64 {
        self.start.saturating_add(self.length)
    }
}

/// What the boot stage hands to the kernel.
pub struct BootInfo {
    pub(crate) regions: [MemoryRegion; MAX_MEMORY_REGIONS],
    pub(crate) region_count: usize,
    pub(crate) command_line: [u8; MAX_COMMAND_LINE_BYTES],
    pub(crate) command_line_len: usize,
    /// Physical address of the ACPI RSDP, when the loader passed one.
    pub rsdp_address: Option<u64>,
    /// TSC value read by the first instructions of the entry point.
    pub entry_tsc: u64,
    /// First physical address past the kernel image, its stack and page tables.
    pub kernel_end: u64,
    /// Physical address of the PML4 that the trampoline built.
    pub page_table_root: u64,
}

impl BootInfo {
    /// Returns the firmware's memory map.
    pub fn memory_regions(&self) -> &[MemoryRegion] {
        &self.regions[..self.region_count]
    }

    /// Returns the command line passed with `-append` (empty when absent or
    /// not valid UTF-8).
    pub fn command_line(&self) -> &str {
        core::str::from_utf8(&self.command_line[..self.command_line_len]).unwrap_or("")
    }
}
