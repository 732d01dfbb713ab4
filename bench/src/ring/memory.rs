//! Guest memory of one trial: a `vm-memory` region at a guest-physical base
//! address, and the [`Dma`] allocator through which the driver places its
//! rings and buffers in it.
//!
//! Device addresses are guest-physical addresses, as virtio 1.2 section
//! 2.7.5 "The Virtqueue Descriptor Table" defines `addr`, so both device
//! implementations translate every ring and buffer address the way a VMM
//! does. rust-vmm's `virtio-queue` reads the region through `vm-memory`,
//! and the device model translates with [`GuestRegion::translate`].

use core::alloc::Layout;
use core::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use virtio::dma::Dma;
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

/// Guest-physical address of the region's first byte: 4 GiB, so that guest
/// addresses differ from the host pointers behind them and a pointer passed
/// off as a device address fails translation.
pub const GUEST_BASE: u64 = 0x1_0000_0000;

/// One anonymous `vm-memory` mapping used as guest RAM.
#[derive(Debug)]
pub struct GuestRegion {
    memory: GuestMemoryMmap,
    host_base: NonNull<u8>,
    size_bytes: usize,
    /// Offset of the first unallocated byte.
    next_offset: AtomicUsize,
}

// SAFETY: `host_base` points into the mapping that `memory` owns, which lives
// as long as the region and is reachable from any thread. The region hands
// out disjoint allocations through an atomic bump offset, and every access
// to the mapped bytes is volatile or atomic.
unsafe impl Send for GuestRegion {}
// SAFETY: as for `Send`; shared references only allocate (atomically) and
// translate addresses.
unsafe impl Sync for GuestRegion {}

/// Failure to map the guest memory region.
#[derive(Debug)]
pub struct RegionError {
    /// Requested size.
    pub size_bytes: usize,
    /// Error text `vm-memory` reported.
    pub message: String,
}

impl GuestRegion {
    /// Maps `size_bytes` of zeroed anonymous memory at [`GUEST_BASE`].
    ///
    /// # Errors
    /// [`RegionError`] when `vm-memory` cannot create the mapping.
    pub fn new(size_bytes: usize) -> Result<Arc<Self>, RegionError> {
        let region_error = |message: String| RegionError {
            size_bytes,
            message,
        };
        let memory = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(GUEST_BASE), size_bytes)])
            .map_err(|error| region_error(error.to_string()))?;
        let host_base = memory
            .get_host_address(GuestAddress(GUEST_BASE))
            .map_err(|error| region_error(error.to_string()))?;
        let host_base = NonNull::new(host_base).ok_or_else(|| region_error("null host address".into()))?;
        Ok(Arc::new(GuestRegion {
            memory,
            host_base,
            size_bytes,
            next_offset: AtomicUsize::new(0),
        }))
    }

    /// The `vm-memory` view, for rust-vmm's device.
    pub fn memory(&self) -> &GuestMemoryMmap {
        &self.memory
    }

    /// Translates the guest range `address..address + len` to a host
    /// pointer, or returns `None` when the range leaves the region.
    pub fn translate(&self, address: u64, len: usize) -> Option<NonNull<u8>> {
        let offset = usize::try_from(address.checked_sub(GUEST_BASE)?).ok()?;
        if offset.checked_add(len)? > self.size_bytes {
            return None;
        }
        // SAFETY: `offset + len` is inside the mapping, checked above.
        Some(unsafe { self.host_base.add(offset) })
    }

    /// Guest address of `ptr`, which points into the region.
    pub fn guest_address(&self, ptr: *const u8) -> u64 {
        GUEST_BASE.wrapping_add((ptr as usize).wrapping_sub(self.host_base.as_ptr() as usize) as u64)
    }

    /// Bytes handed out so far, alignment padding included.
    pub fn allocated_bytes(&self) -> usize {
        self.next_offset.load(Ordering::Relaxed)
    }
}

/// [`Dma`] allocator over a [`GuestRegion`]: device addresses are
/// guest-physical addresses.
///
/// It is a bump allocator. [`Dma::dealloc`] returns nothing to the region;
/// the mapping goes away with the last clone, after the trial. That suits a
/// trial, which allocates its rings and buffers once.
#[derive(Clone, Debug)]
pub struct GuestMemoryDma {
    region: Arc<GuestRegion>,
}

impl GuestMemoryDma {
    /// Creates an allocator over `region`.
    pub fn new(region: Arc<GuestRegion>) -> Self {
        GuestMemoryDma { region }
    }

    /// The region allocations come from.
    pub fn region(&self) -> &Arc<GuestRegion> {
        &self.region
    }
}

impl Dma for GuestMemoryDma {
    fn alloc_zeroed(&self, layout: Layout) -> Option<NonNull<u8>> {
        if layout.size() == 0 {
            return None;
        }
        let region = &*self.region;
        let base = region.host_base.as_ptr() as usize;
        let mut start = 0;
        region
            .next_offset
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |offset| {
                // Align the host address. The guest base is page-aligned, so
                // the guest address gets the same alignment.
                let aligned = (base + offset).checked_next_multiple_of(layout.align())? - base;
                let end = aligned.checked_add(layout.size())?;
                start = aligned;
                (end <= region.size_bytes).then_some(end)
            })
            .ok()?;
        // SAFETY: `start..start + layout.size()` lies inside the mapping
        // (checked in the update above) and no other allocation covers it,
        // because the bump offset only grows.
        let ptr = unsafe { region.host_base.add(start) };
        // SAFETY: as above; the bytes belong to this allocation alone.
        unsafe { ptr.as_ptr().write_bytes(0, layout.size()) };
        Some(ptr)
    }

    unsafe fn dealloc(&self, _ptr: NonNull<u8>, _layout: Layout) {
        // The bump allocator never reuses memory. The mapping is unmapped
        // when the region drops.
    }

    fn device_address(&self, ptr: *const u8) -> u64 {
        self.region.guest_address(ptr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::Bytes;

    #[test]
    fn allocations_are_aligned_zeroed_and_disjoint() {
        let region = GuestRegion::new(1 << 16).expect("mapping");
        let dma = GuestMemoryDma::new(Arc::clone(&region));
        let small = Layout::from_size_align(10, 2).expect("layout");
        let line = Layout::from_size_align(64, 64).expect("layout");

        let first = dma.alloc_zeroed(small).expect("room");
        let second = dma.alloc_zeroed(line).expect("room");
        assert_eq!(second.as_ptr() as usize % 64, 0);
        assert!(second.as_ptr() as usize >= first.as_ptr() as usize + 10);
        // SAFETY: `second` is a live 64-byte allocation.
        let bytes = unsafe { core::slice::from_raw_parts(second.as_ptr(), 64) };
        assert!(bytes.iter().all(|&byte| byte == 0));
        assert!(dma.alloc_zeroed(Layout::from_size_align(0, 1).expect("layout")).is_none());
        assert!(dma.alloc_zeroed(Layout::from_size_align(1 << 17, 8).expect("layout")).is_none());
    }

    #[test]
    fn device_addresses_are_guest_physical() {
        let region = GuestRegion::new(1 << 16).expect("mapping");
        let dma = GuestMemoryDma::new(Arc::clone(&region));
        let layout = Layout::from_size_align(8, 8).expect("layout");
        let ptr = dma.alloc_zeroed(layout).expect("room");
        let address = dma.device_address(ptr.as_ptr());
        assert!((GUEST_BASE..GUEST_BASE + (1 << 16)).contains(&address));
        assert_eq!(region.translate(address, 8), Some(ptr));
        assert_eq!(region.translate(ptr.as_ptr() as u64, 8), None, "a host pointer is no guest address");
        assert_eq!(region.translate(GUEST_BASE + (1 << 16) - 4, 8), None);

        // vm-memory reads the same bytes at the same guest address.
        // SAFETY: `ptr` is a live 8-byte allocation aligned to 8.
        unsafe { ptr.as_ptr().cast::<u64>().write_volatile(0x1122_3344) };
        let read: u64 = region.memory().read_obj(GuestAddress(address)).expect("mapped");
        assert_eq!(read, 0x1122_3344);
    }
}
