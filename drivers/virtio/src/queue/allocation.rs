//! Memory of the split virtqueue: the three areas from the DMA allocator and
//! the driver-private bookkeeping from the heap.

use alloc::vec::Vec;
use core::alloc::Layout;
use core::ptr::NonNull;

use super::{Chain, QueueArea, QueueError};
use crate::dma::Dma;
use crate::ring;

/// Alignment and size granule of each area allocation: one cache line, so
/// that the driver-written avail ring and the device-written used ring never
/// share a line. The spec's alignments (16, 2 and 4 bytes) are minimums.
const AREA_ALIGN_BYTES: usize = 64;

/// One allocation holding a descriptor, driver or device area.
#[derive(Debug)]
pub(super) struct Area {
    pub(super) ptr: NonNull<u8>,
    pub(super) layout: Layout,
}

/// Allocates the descriptor, driver and device areas for `size` descriptors.
pub(super) fn allocate_areas<D: Dma>(
    dma: &D,
    queue: u16,
    size: u16,
) -> Result<[Area; 3], QueueError> {
    let requests = [
        (
            QueueArea::Descriptor,
            ring::descriptor_table_size_bytes(size),
            ring::DESCRIPTOR_TABLE_ALIGN,
        ),
        (
            QueueArea::Driver,
            ring::avail_ring_size_bytes(size),
            ring::AVAIL_RING_ALIGN,
        ),
        (
            QueueArea::Device,
            ring::used_ring_size_bytes(size),
            ring::USED_RING_ALIGN,
        ),
    ];
    let mut areas = Vec::with_capacity(requests.len());
    for (area, size_bytes, spec_align) in requests {
        let allocated = Layout::from_size_align(size_bytes, spec_align.max(AREA_ALIGN_BYTES))
            .ok()
            .map(|layout| layout.pad_to_align())
            .and_then(|layout| {
                Some(Area {
                    ptr: dma.alloc_zeroed(layout)?,
                    layout,
                })
            });
        match allocated {
            Some(allocated) => areas.push(allocated),
            None => {
                // SAFETY: these areas were allocated above, and the device
                // does not have their addresses yet.
                unsafe { free_areas(dma, &areas) };
                return Err(QueueError::AllocationFailed {
                    queue,
                    area,
                    size_bytes,
                });
            }
        }
    }
    Ok(areas.try_into().expect("one area per request"))
}

/// Frees areas from `allocate_areas`.
///
/// # Safety
/// Each area came from `allocate_areas` with `dma`, is freed once, and the
/// device no longer accesses it.
pub(super) unsafe fn free_areas<D: Dma>(dma: &D, areas: &[Area]) {
    for area in areas {
        // SAFETY: forwarded from this function's contract.
        unsafe { dma.dealloc(area.ptr, area.layout) };
    }
}

/// Free list links and the chain table indexed by head id.
pub(super) type Bookkeeping<T> = (Vec<u16>, Vec<Option<Chain<T>>>);

/// Allocates the free list (each descriptor linked to the next) and the
/// empty chain table, or returns `None` when the heap is exhausted.
pub(super) fn allocate_bookkeeping<T>(size: u16) -> Option<Bookkeeping<T>> {
    let count = usize::from(size);
    let mut next_free = Vec::new();
    next_free.try_reserve_exact(count).ok()?;
    // The last link names `size`, one past the table; `free_count` keeps it
    // from being followed.
    next_free.extend(1..=size);
    let mut chains = Vec::new();
    chains.try_reserve_exact(count).ok()?;
    chains.resize_with(count, || None);
    Some((next_free, chains))
}
