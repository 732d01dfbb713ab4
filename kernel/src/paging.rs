//! Identity mappings for device memory.
//!
//! The boot trampoline maps the first 4 GiB write-back with 2 MiB pages.
//! Device registers (ECAM, BARs) must be uncached, so [`map_device_memory`]
//! marks the 2 MiB pages that cover a region as uncached, and maps them
//! first when they lie above 4 GiB (where firmware may place 64-bit BARs).
//! Page tables for new mappings come from the heap, which is identity-mapped.

use core::alloc::Layout;

use spin::Mutex;
use x86_64::registers::control::Cr3;
use x86_64::structures::paging::mapper::{MapToError, Mapper, TranslateResult};
use x86_64::structures::paging::{
    FrameAllocator, OffsetPageTable, Page, PageTable, PageTableFlags, PhysFrame, Size2MiB,
    Size4KiB, Translate,
};
use x86_64::{PhysAddr, VirtAddr};

const HUGE_PAGE_BYTES: u64 = 2 * 1024 * 1024;
/// Above this the CPU's 4-level paging cannot reach (canonical lower half).
const MAX_MAPPABLE_ADDRESS: u64 = 1 << 47;

/// Serialises page-table edits.
static PAGE_TABLE_LOCK: Mutex<()> = Mutex::new(());

/// Error of mapping a device region.
#[derive(Debug)]
pub enum PagingError {
    /// The region is empty, wraps around, or lies beyond the canonical range.
    InvalidRegion { start: u64, length: u64 },
    /// No memory for a new page table.
    OutOfMemory { address: u64 },
    /// The address is mapped with 4 KiB pages, which this module never creates.
    UnexpectedMapping { address: u64 },
}

impl core::fmt::Display for PagingError {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::InvalidRegion { start, length } => {
                write!(formatter, "invalid region {start:#x}+{length:#x}")
            }
            Self::OutOfMemory { address } => {
                write!(formatter, "no memory for a page table to map {address:#x}")
            }
            Self::UnexpectedMapping { address } => {
                write!(formatter, "{address:#x} is mapped with 4 KiB pages, which this module never creates")
            }
        }
    }
}

/// Page-table frames taken from the identity-mapped heap.
struct HeapFrames;

// SAFETY: every frame returned is a fresh, 4 KiB-aligned heap allocation
// that is never freed, so it is unused and stays valid as a page table.
unsafe impl FrameAllocator<Size4KiB> for HeapFrames {
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        let layout = Layout::from_size_align(4096, 4096).ok()?;
        // SAFETY: the layout has a non-zero size.
        let pointer = unsafe { alloc::alloc::alloc_zeroed(layout) };
        if pointer.is_null() {
            return None;
        }
        PhysFrame::from_start_address(PhysAddr::new(pointer as u64)).ok()
    }
}

/// Maps `[start, start + length)` identity, uncached and writable, and
/// returns the pointer to `start`.
pub fn map_device_memory(start: u64, length: u64) -> Result<*mut u8, PagingError> {
    let end = start.checked_add(length).filter(|&end| length > 0 && end <= MAX_MAPPABLE_ADDRESS);
    let Some(end) = end else {
        return Err(PagingError::InvalidRegion { start, length });
    };

    let _guard = PAGE_TABLE_LOCK.lock();
    let (root, _) = Cr3::read();
    // SAFETY: CR3 holds the identity-mapped root table the trampoline built;
    // edits are serialised by PAGE_TABLE_LOCK and nothing else holds a
    // reference to the tables.
    let root_table = unsafe { &mut *(root.start_address().as_u64() as *mut PageTable) };
    // SAFETY: all physical memory the tables live in is identity-mapped, so
    // the physical-to-virtual offset is zero.
    let mut mapper = unsafe { OffsetPageTable::new(root_table, VirtAddr::new(0)) };

    let flags = PageTableFlags::PRESENT
        | PageTableFlags::WRITABLE
        | PageTableFlags::NO_CACHE
        | PageTableFlags::WRITE_THROUGH
        | PageTableFlags::HUGE_PAGE;
    let mut page_start = start & !(HUGE_PAGE_BYTES - 1);
    while page_start < end {
        map_one(&mut mapper, page_start, flags)?;
        page_start += HUGE_PAGE_BYTES;
    }
    Ok(start as *mut u8)
}

fn map_one(mapper: &mut OffsetPageTable, address: u64, flags: PageTableFlags) -> Result<(), PagingError> {
    let page = Page::<Size2MiB>::containing_address(VirtAddr::new(address));
    match mapper.translate(page.start_address()) {
        TranslateResult::Mapped { flags: current, .. } if current.contains(PageTableFlags::HUGE_PAGE) => {
            if current == flags {
                return Ok(());
            }
            // SAFETY: the page stays mapped to the same frame; only its
            // caching attributes change, for a device range that contains no RAM.
            let flush = unsafe { mapper.update_flags(page, flags) }
                .map_err(|_| PagingError::UnexpectedMapping { address })?;
            flush.flush();
            Ok(())
        }
        TranslateResult::Mapped { .. } => Err(PagingError::UnexpectedMapping { address }),
        _ => {
            let frame = PhysFrame::<Size2MiB>::containing_address(PhysAddr::new(address));
            let table_flags = PageTableFlags::PRESENT | PageTableFlags::WRITABLE;
            // SAFETY: identity mapping of a device range that was not mapped
            // before, so no existing reference aliases it.
            let flush = unsafe {
                mapper.map_to_with_table_flags(page, frame, flags, table_flags, &mut HeapFrames)
            }
            .map_err(|error| match error {
                MapToError::FrameAllocationFailed => PagingError::OutOfMemory { address },
                _ => PagingError::UnexpectedMapping { address },
            })?;
            flush.flush();
            Ok(())
        }
    }
}
