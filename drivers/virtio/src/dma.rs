//! Memory that a device reads and writes by DMA: the seam between the driver
//! and the machine's address translation.
//!
//! A virtio device addresses driver memory with the addresses the driver
//! writes into the descriptor table and the queue address registers (virtio
//! 1.2 section 2.7.5 "The Virtqueue Descriptor Table", where `addr` is a
//! guest-physical address). The queue allocates its three areas through
//! [`Dma`], and the virtio-net driver allocates its packet buffers through the
//! same trait, so that host tests can run both with addresses that are not
//! pointer values.

use core::alloc::Layout;
use core::ptr::NonNull;

/// Allocator of memory that a device can reach, and translator of pointers
/// into that memory to the addresses the device uses.
///
/// Contract for implementers:
/// - [`Dma::alloc_zeroed`] returns memory that is zero-filled, aligned to
///   `layout.align()`, valid for reads and writes of `layout.size()` bytes
///   until it is passed to [`Dma::dealloc`], and contiguous in the device's
///   address space.
/// - [`Dma::device_address`] is linear inside one allocation: for a pointer
///   `p` returned by `alloc_zeroed` and an offset `k` below the allocation's
///   size, `device_address(p + k) == device_address(p) + k`.
/// - The device and the CPU see the same bytes without cache maintenance
///   (virtio-pci devices are cache-coherent).
pub trait Dma {
    /// Allocates zero-filled device-reachable memory for `layout`, or returns
    /// `None` when memory is exhausted or `layout.size()` is zero.
    fn alloc_zeroed(&self, layout: Layout) -> Option<NonNull<u8>>;

    /// Frees memory from [`Dma::alloc_zeroed`].
    ///
    /// # Safety
    /// `ptr` was returned by `alloc_zeroed` of this same allocator with this
    /// same `layout` and was not freed since, and the device no longer
    /// accesses the memory (its buffers came back through the used ring, or
    /// the device was reset).
    unsafe fn dealloc(&self, ptr: NonNull<u8>, layout: Layout);

    /// Returns the address the device uses for `ptr`, which points into
    /// memory from [`Dma::alloc_zeroed`]. For other pointers the result is
    /// unspecified but the call is still safe.
    fn device_address(&self, ptr: *const u8) -> u64;
}

/// Heap memory from the global allocator, whose device address is the
/// pointer value.
///
/// This is correct in the kernel because it identity-maps physical memory, so
/// a heap pointer is also the physical address that the device uses. On a
/// host the addresses are virtual and mean nothing to a device; tests use
/// `testing::OffsetDma` there.
#[derive(Clone, Copy, Debug, Default)]
pub struct IdentityDma;

impl Dma for IdentityDma {
    fn alloc_zeroed(&self, layout: Layout) -> Option<NonNull<u8>> {
        if layout.size() == 0 {
            return None;
        }
        // SAFETY: the layout has a non-zero size, checked above.
        NonNull::new(unsafe { alloc::alloc::alloc_zeroed(layout) })
    }

    unsafe fn dealloc(&self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: the caller guarantees that `ptr` came from `alloc_zeroed`
        // above, which used the global allocator with this `layout`.
        unsafe { alloc::alloc::dealloc(ptr.as_ptr(), layout) }
    }

    fn device_address(&self, ptr: *const u8) -> u64 {
        ptr as usize as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_dma_returns_zeroed_aligned_memory() {
        let layout = Layout::from_size_align(100, 64).expect("valid layout");
        let ptr = IdentityDma
            .alloc_zeroed(layout)
            .expect("heap has 100 bytes");
        assert_eq!(ptr.as_ptr() as usize % 64, 0);
        // SAFETY: `ptr` is valid for `layout.size()` bytes until the dealloc
        // below.
        let bytes = unsafe { core::slice::from_raw_parts(ptr.as_ptr(), layout.size()) };
        assert!(bytes.iter().all(|&byte| byte == 0));
        assert_eq!(
            IdentityDma.device_address(ptr.as_ptr()),
            ptr.as_ptr() as u64
        );
        // SAFETY: allocated above with this layout, and no device exists.
        unsafe { IdentityDma.dealloc(ptr, layout) };
    }

    #[test]
    fn identity_dma_rejects_zero_size() {
        let layout = Layout::from_size_align(0, 8).expect("valid layout");
        assert!(IdentityDma.alloc_zeroed(layout).is_none());
    }
}
