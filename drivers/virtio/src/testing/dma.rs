//! DMA memory whose device addresses are not pointer values.

use core::alloc::Layout;
use core::fmt;
use core::ptr::NonNull;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::dma::Dma;

/// Heap memory whose device address is the pointer value plus a fixed
/// offset, so a driver that hands the device a pointer instead of a device
/// address is caught by [`OffsetDma::translate`].
///
/// Clones share one set of allocations. Freed allocations stay in memory (but
/// no longer translate) until the last clone drops. So a device model thread
/// that still has a pointer into a freed ring reads stale memory instead of
/// freed memory.
#[derive(Clone)]
pub struct OffsetDma {
    shared: Arc<Shared>,
}

struct Shared {
    offset: u64,
    /// Allocations by start address.
    allocations: Mutex<BTreeMap<usize, Allocation>>,
}

struct Allocation {
    layout: Layout,
    freed: bool,
}

/// A device address range that no live allocation covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TranslationError {
    /// First device address of the range.
    pub device_address: u64,
    /// Length of the range in bytes.
    pub len: usize,
}

impl fmt::Display for TranslationError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "device address range {:#x}+{:#x} is not inside a live DMA allocation",
            self.device_address, self.len
        )
    }
}

impl std::error::Error for TranslationError {}

impl OffsetDma {
    /// Offset used by [`OffsetDma::new`]: above every user-space pointer on
    /// x86_64 Linux (which stay below 2^47), so a pointer passed off as a
    /// device address never translates.
    pub const DEFAULT_OFFSET: u64 = 0x1000_0000_0000_0000;

    /// Creates an allocator with [`Self::DEFAULT_OFFSET`].
    pub fn new() -> Self {
        Self::with_offset(Self::DEFAULT_OFFSET)
    }

    /// Creates an allocator whose device addresses are pointers plus `offset`.
    pub fn with_offset(offset: u64) -> Self {
        OffsetDma {
            shared: Arc::new(Shared {
                offset,
                allocations: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    /// Returns the offset between pointers and device addresses.
    pub fn offset(&self) -> u64 {
        self.shared.offset
    }

    /// Number of allocations not yet freed.
    pub fn live_allocations(&self) -> usize {
        self.allocations()
            .values()
            .filter(|allocation| !allocation.freed)
            .count()
    }

    /// Translates the device range `device_address..device_address + len` to
    /// a pointer, as the device side of a DMA access does.
    ///
    /// # Errors
    /// [`TranslationError`] unless the range lies inside one allocation that
    /// has not been freed.
    pub fn translate(
        &self,
        device_address: u64,
        len: usize,
    ) -> Result<NonNull<u8>, TranslationError> {
        let error = TranslationError {
            device_address,
            len,
        };
        let address =
            usize::try_from(device_address.wrapping_sub(self.shared.offset)).map_err(|_| error)?;
        let end = address.checked_add(len).ok_or(error)?;
        let allocations = self.allocations();
        let (&start, allocation) = allocations.range(..=address).next_back().ok_or(error)?;
        if allocation.freed || end > start + allocation.layout.size() {
            return Err(error);
        }
        NonNull::new(address as *mut u8).ok_or(error)
    }

    fn allocations(&self) -> MutexGuard<'_, BTreeMap<usize, Allocation>> {
        // A test that panicked while holding the lock leaves the map intact,
        // so a poisoned lock is still usable.
        self.shared
            .allocations
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Default for OffsetDma {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for OffsetDma {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("OffsetDma")
            .field("offset", &format_args!("{:#x}", self.shared.offset))
            .field("live_allocations", &self.live_allocations())
            .finish()
    }
}

impl Dma for OffsetDma {
    fn alloc_zeroed(&self, layout: Layout) -> Option<NonNull<u8>> {
        if layout.size() == 0 {
            return None;
        }
        // SAFETY: the layout has a non-zero size, checked above.
        let ptr = NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) })?;
        self.allocations().insert(
            ptr.as_ptr() as usize,
            Allocation {
                layout,
                freed: false,
            },
        );
        Some(ptr)
    }

    unsafe fn dealloc(&self, ptr: NonNull<u8>, layout: Layout) {
        let mut allocations = self.allocations();
        let allocation = allocations
            .get_mut(&(ptr.as_ptr() as usize))
            .filter(|allocation| !allocation.freed)
            .unwrap_or_else(|| {
                panic!("dealloc of {ptr:p}, which is not a live OffsetDma allocation")
            });
        assert_eq!(
            allocation.layout, layout,
            "dealloc of {ptr:p} with a layout other than its allocation's"
        );
        // The memory itself is released when the last clone drops.
        allocation.freed = true;
    }

    fn device_address(&self, ptr: *const u8) -> u64 {
        (ptr as usize as u64).wrapping_add(self.shared.offset)
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let allocations = self
            .allocations
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for (&start, allocation) in allocations.iter() {
            // SAFETY: every entry was allocated by `alloc_zeroed` with this
            // layout and is released only here, when no clone (and so no
            // device model holding one) remains.
            unsafe { std::alloc::dealloc(start as *mut u8, allocation.layout) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translate_accepts_ranges_inside_live_allocations() {
        let dma = OffsetDma::with_offset(0x1_0000);
        let layout = Layout::from_size_align(64, 8).expect("valid layout");
        let ptr = dma.alloc_zeroed(layout).expect("heap has 64 bytes");
        let device_address = dma.device_address(ptr.as_ptr());
        assert_eq!(device_address, ptr.as_ptr() as u64 + 0x1_0000);

        assert_eq!(dma.translate(device_address, 64), Ok(ptr));
        assert_eq!(
            dma.translate(device_address + 60, 4).map(NonNull::as_ptr),
            Ok(ptr.as_ptr().wrapping_add(60))
        );
        assert!(dma.translate(device_address + 60, 5).is_err());
        assert!(
            dma.translate(ptr.as_ptr() as u64, 1).is_err(),
            "a pointer is not a device address"
        );
    }

    #[test]
    fn freed_allocations_no_longer_translate() {
        let dma = OffsetDma::new();
        let layout = Layout::from_size_align(16, 16).expect("valid layout");
        let ptr = dma.alloc_zeroed(layout).expect("heap has 16 bytes");
        let device_address = dma.device_address(ptr.as_ptr());
        assert_eq!(dma.live_allocations(), 1);

        // SAFETY: allocated above with this layout; no device uses it.
        unsafe { dma.dealloc(ptr, layout) };
        assert_eq!(dma.live_allocations(), 0);
        assert!(dma.translate(device_address, 1).is_err());
    }

    #[test]
    #[should_panic(expected = "not a live OffsetDma allocation")]
    fn double_free_is_detected() {
        let dma = OffsetDma::new();
        let layout = Layout::from_size_align(16, 16).expect("valid layout");
        let ptr = dma.alloc_zeroed(layout).expect("heap has 16 bytes");
        // SAFETY: allocated above with this layout; the second call is the
        // contract violation under test, which the double detects before
        // touching memory.
        unsafe {
            dma.dealloc(ptr, layout);
            dma.dealloc(ptr, layout);
        }
    }
}
