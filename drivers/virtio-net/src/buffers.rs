//! Packet buffers: one DMA allocation cut into equal slots, addressed by
//! index. The index is the token a virtqueue hands back with a used chain,
//! so ownership of each slot is always known: the driver's, or the device's
//! from `add` until the used ring returns it.

use core::alloc::Layout;
use core::ptr::NonNull;

use virtio::dma::Dma;

/// Alignment of the pool: one cache line.
const POOL_ALIGN_BYTES: usize = 64;

/// A fixed set of equal-sized DMA buffers.
pub struct BufferPool<D: Dma> {
    dma: D,
    base: NonNull<u8>,
    layout: Layout,
    slot_bytes: usize,
    count: u16,
}

impl<D: Dma> BufferPool<D> {
    /// Allocates `count` zero-filled slots of `slot_bytes`, or `None` when
    /// memory runs out.
    pub fn new(dma: D, count: u16, slot_bytes: usize) -> Option<Self> {
        let size = slot_bytes.checked_mul(usize::from(count))?;
        let layout = Layout::from_size_align(size, POOL_ALIGN_BYTES).ok()?;
        let base = dma.alloc_zeroed(layout)?;
        Some(Self { dma, base, layout, slot_bytes, count })
    }

    /// Returns the number of slots.
    pub fn count(&self) -> u16 {
        self.count
    }

    /// Returns the size of each slot.
    pub fn slot_bytes(&self) -> usize {
        self.slot_bytes
    }

    /// Returns the device address of slot `index`.
    pub fn device_address(&self, index: u16) -> u64 {
        self.dma.device_address(self.slot_pointer(index))
    }

    fn slot_pointer(&self, index: u16) -> *mut u8 {
        assert!(index < self.count, "buffer index {index} past the pool of {}", self.count);
        // SAFETY: index < count, so the offset stays inside the allocation.
        unsafe { self.base.as_ptr().add(usize::from(index) * self.slot_bytes) }
    }

    /// Returns slot `index` for reading.
    ///
    /// The caller must own the slot (the device does not hold it); the
    /// queue's token bookkeeping guarantees this for slots it returned.
    pub fn slot(&self, index: u16) -> &[u8] {
        // SAFETY: the slot lies inside the allocation (slot_pointer checks the
        // index), and the driver only reads slots the device has returned.
        unsafe { core::slice::from_raw_parts(self.slot_pointer(index), self.slot_bytes) }
    }

    /// Returns slot `index` for writing; the caller must own the slot.
    pub fn slot_mut(&mut self, index: u16) -> &mut [u8] {
        // SAFETY: as in `slot`; `&mut self` keeps other borrows of the pool out.
        unsafe { core::slice::from_raw_parts_mut(self.slot_pointer(index), self.slot_bytes) }
    }
}

impl<D: Dma> Drop for BufferPool<D> {
    fn drop(&mut self) {
        // SAFETY: base and layout come from alloc_zeroed of this allocator; the
        // driver resets the device before dropping its pools, so the device no
        // longer accesses the slots.
        unsafe { self.dma.dealloc(self.base, self.layout) };
    }
}
