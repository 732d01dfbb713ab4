//! Physical memory: the heap over the largest usable RAM region of the
//! firmware's memory map.
//!
//! Memory is identity-mapped (virtual address = physical address), so every
//! heap allocation is also a DMA address the device can use.

use boot::BootInfo;
use linked_list_allocator::LockedHeap;

#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();

/// Memory below 1 MiB contains firmware tables and the real-mode area.
const LOW_MEMORY_END: u64 = 0x10_0000;
/// The boot page tables identity-map only the first 4 GiB.
const IDENTITY_MAPPED_END: u64 = 0x1_0000_0000;
const PAGE_BYTES: u64 = 4096;

/// The heap's placement, for the boot log and the console.
#[derive(Clone, Copy, Debug)]
pub struct HeapRegion {
    pub start: u64,
    pub size_bytes: u64,
}

/// Errors that stop boot while setting up memory.
#[derive(Debug)]
pub enum MemoryError {
    /// The memory map has no usable RAM above the kernel image.
    NoUsableMemory { kernel_end: u64 },
}

impl core::fmt::Display for MemoryError {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoUsableMemory { kernel_end } => {
                write!(formatter, "the memory map has no usable RAM above the kernel end {kernel_end:#x}")
            }
        }
    }
}

/// Places the heap in the largest usable region above the kernel image.
pub fn init(info: &BootInfo) -> Result<HeapRegion, MemoryError> {
    let floor = info.kernel_end.max(LOW_MEMORY_END);
    let best = info
        .memory_regions()
        .iter()
        .filter(|region| region.is_usable())
        .map(|region| {
            let start = align_up(region.start.max(floor), PAGE_BYTES);
            let end = region.end().min(IDENTITY_MAPPED_END) & !(PAGE_BYTES - 1);
            (start, end.saturating_sub(start))
        })
        .max_by_key(|&(_, size)| size)
        .filter(|&(_, size)| size > 0)
        .ok_or(MemoryError::NoUsableMemory { kernel_end: info.kernel_end })?;

    // SAFETY: the region is usable RAM per the firmware's memory map, lies
    // above the kernel image, stack and page tables, is identity-mapped by
    // the boot page tables, and is handed to the allocator exactly once.
    unsafe { HEAP.lock().init(best.0 as *mut u8, best.1 as usize) };
    Ok(HeapRegion { start: best.0, size_bytes: best.1 })
}

/// Returns the heap bytes in use.
pub fn heap_used_bytes() -> usize {
    HEAP.lock().used()
}

fn align_up(value: u64, alignment: u64) -> u64 {
    (value + alignment - 1) & !(alignment - 1)
}
