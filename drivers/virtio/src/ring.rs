//! Memory layout of the split virtqueue: one `repr(C)` type per spec
//! structure, the sizes and alignments of the three areas, and volatile views
//! of the areas through which the queue does every shared-memory access.
//!
//! Spec: virtio 1.2 section 2.7 "Split Virtqueues" (the alignment and size
//! table), section 2.7.5 "The Virtqueue Descriptor Table", section 2.7.6 "The
//! Virtqueue Available Ring" and section 2.7.8 "The Virtqueue Used Ring". All
//! fields are little-endian.

use core::fmt;
use core::mem::size_of;
use core::ptr::NonNull;

/// Maximum queue size of a split virtqueue (section 2.7). It is the largest
/// power of two for which a 16-bit index still distinguishes a full ring from
/// an empty one.
pub const MAX_QUEUE_SIZE: u16 = 32768;

/// `VIRTQ_DESC_F_NEXT`: the buffer continues in the descriptor named by
/// `next`.
pub const VIRTQ_DESC_F_NEXT: u16 = 1;
/// `VIRTQ_DESC_F_WRITE`: the buffer is device-writable (otherwise
/// device-readable).
pub const VIRTQ_DESC_F_WRITE: u16 = 2;
/// `VIRTQ_DESC_F_INDIRECT`: the buffer contains a table of descriptors. This
/// crate never sets it because it does not negotiate
/// `VIRTIO_F_INDIRECT_DESC`.
pub const VIRTQ_DESC_F_INDIRECT: u16 = 4;
/// `VIRTQ_AVAIL_F_NO_INTERRUPT`: the driver does not need used buffer
/// notifications. Only meaningful without `VIRTIO_F_EVENT_IDX`.
pub const VIRTQ_AVAIL_F_NO_INTERRUPT: u16 = 1;
/// `VIRTQ_USED_F_NO_NOTIFY`: the device does not need available buffer
/// notifications. Only meaningful without `VIRTIO_F_EVENT_IDX`.
pub const VIRTQ_USED_F_NO_NOTIFY: u16 = 1;

macro_rules! little_endian {
    ($name:ident, $native:ty, $bits:literal) => {
        #[doc = concat!("A ", $bits, "-bit little-endian field as stored in the rings.")]
        #[repr(transparent)]
        #[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
        pub struct $name($native);

        impl $name {
            /// Converts a native value to its stored form.
            pub const fn new(value: $native) -> Self {
                $name(value.to_le())
            }

            /// Converts the stored form to the native value.
            pub const fn get(self) -> $native {
                <$native>::from_le(self.0)
            }

            /// Returns the bits as stored in memory.
            pub const fn to_bits(self) -> $native {
                self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(formatter, "{:#x}", self.get())
            }
        }
    };
}

little_endian!(Le16, u16, "16");
little_endian!(Le32, u32, "32");
little_endian!(Le64, u64, "64");

/// `struct virtq_desc`: one buffer of a descriptor chain (section 2.7.5).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Descriptor {
    /// Device address of the buffer.
    pub addr: Le64,
    /// Length of the buffer in bytes.
    pub len: Le32,
    /// `VIRTQ_DESC_F_*` flags.
    pub flags: Le16,
    /// Id of the next descriptor of the chain when `VIRTQ_DESC_F_NEXT` is set.
    pub next: Le16,
}

/// `flags` and `idx` of `struct virtq_avail`, which the ring entries follow
/// (section 2.7.6).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AvailRingHeader {
    /// `VIRTQ_AVAIL_F_*` flags.
    pub flags: Le16,
    /// Free-running index of the next ring entry the driver will fill.
    pub idx: Le16,
}

/// One avail ring entry: the descriptor id of a chain head (section 2.7.6).
pub type AvailRingEntry = Le16;

/// `struct virtq_used_elem`: one used ring entry (section 2.7.8).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UsedElement {
    /// Descriptor id of the head of the used chain, 32 bits wide for padding.
    pub id: Le32,
    /// Number of bytes the device wrote into the chain's device-writable
    /// buffers.
    pub len: Le32,
}

/// `flags` and `idx` of `struct virtq_used`, which the ring entries follow
/// (section 2.7.8).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UsedRingHeader {
    /// `VIRTQ_USED_F_*` flags.
    pub flags: Le16,
    /// Free-running index of the next ring entry the device will fill.
    pub idx: Le16,
}

/// Minimum alignment of the descriptor table in bytes (section 2.7).
pub const DESCRIPTOR_TABLE_ALIGN: usize = 16;
/// Minimum alignment of the avail ring in bytes (section 2.7).
pub const AVAIL_RING_ALIGN: usize = 2;
/// Minimum alignment of the used ring in bytes (section 2.7).
pub const USED_RING_ALIGN: usize = 4;

/// Offset of `idx` in both rings.
pub const RING_IDX_OFFSET: usize = 2;
/// Offset of the first entry in both rings.
pub const RING_ENTRIES_OFFSET: usize = size_of::<AvailRingHeader>();

/// Size in bytes of the descriptor table of a queue of `queue_size`.
pub const fn descriptor_table_size_bytes(queue_size: u16) -> usize {
    size_of::<Descriptor>() * queue_size as usize
}

/// Size in bytes of the avail ring, `used_event` included.
pub const fn avail_ring_size_bytes(queue_size: u16) -> usize {
    used_event_offset(queue_size) + size_of::<Le16>()
}

/// Size in bytes of the used ring, `avail_event` included.
pub const fn used_ring_size_bytes(queue_size: u16) -> usize {
    avail_event_offset(queue_size) + size_of::<Le16>()
}

/// Offset of `used_event` in the avail ring.
pub const fn used_event_offset(queue_size: u16) -> usize {
    RING_ENTRIES_OFFSET + size_of::<AvailRingEntry>() * queue_size as usize
}

/// Offset of `avail_event` in the used ring.
pub const fn avail_event_offset(queue_size: u16) -> usize {
    size_of::<UsedRingHeader>() + size_of::<UsedElement>() * queue_size as usize
}

/// Volatile view of a descriptor table, written by the driver.
#[derive(Debug)]
pub struct DescriptorTable {
    base: NonNull<Descriptor>,
    size: u16,
}

impl DescriptorTable {
    /// Creates a view of `size` descriptors at `base`.
    ///
    /// # Safety
    /// `base` is aligned to [`DESCRIPTOR_TABLE_ALIGN`] and valid for reads and
    /// writes of [`descriptor_table_size_bytes`]`(size)` bytes for as long as
    /// the view is used, and no Rust reference covers that memory meanwhile.
    pub unsafe fn new(base: NonNull<Descriptor>, size: u16) -> Self {
        DescriptorTable { base, size }
    }

    /// Writes descriptor `id`.
    ///
    /// # Panics
    /// Panics if `id` is not below the table size; the queue only writes ids
    /// from its own free list.
    pub fn write(&self, id: u16, descriptor: Descriptor) {
        assert!(
            id < self.size,
            "descriptor id {id} outside a table of {}",
            self.size
        );
        // SAFETY: `id` is inside the table (checked above), whose memory is
        // valid and unaliased per the contract of `new`.
        unsafe {
            self.base
                .as_ptr()
                .add(usize::from(id))
                .write_volatile(descriptor)
        }
    }

    /// Reads descriptor `id`.
    ///
    /// # Panics
    /// Panics if `id` is not below the table size.
    pub fn read(&self, id: u16) -> Descriptor {
        assert!(
            id < self.size,
            "descriptor id {id} outside a table of {}",
            self.size
        );
        // SAFETY: as in `write`.
        unsafe { self.base.as_ptr().add(usize::from(id)).read_volatile() }
    }
}

/// Volatile view of an avail ring (the driver area), written by the driver.
#[derive(Debug)]
pub struct AvailRing {
    base: NonNull<u8>,
    size: u16,
}

impl AvailRing {
    /// Creates a view of the avail ring of a queue of `size` at `base`.
    ///
    /// # Safety
    /// `size` is a power of two, `base` is aligned to [`AVAIL_RING_ALIGN`]
    /// and valid for reads and writes of [`avail_ring_size_bytes`]`(size)`
    /// bytes for as long as the view is used, and no Rust reference covers
    /// that memory meanwhile.
    pub unsafe fn new(base: NonNull<u8>, size: u16) -> Self {
        AvailRing { base, size }
    }

    /// Reads `flags`.
    pub fn flags(&self) -> u16 {
        self.read(0)
    }

    /// Writes `flags`.
    pub fn set_flags(&self, flags: u16) {
        self.write(0, flags);
    }

    /// Reads `idx`.
    pub fn idx(&self) -> u16 {
        self.read(RING_IDX_OFFSET)
    }

    /// Writes `idx`.
    pub fn set_idx(&self, idx: u16) {
        self.write(RING_IDX_OFFSET, idx);
    }

    /// Reads the entry for free-running index `index`.
    pub fn entry(&self, index: u16) -> u16 {
        self.read(self.entry_offset(index))
    }

    /// Writes `head` into the entry for free-running index `index`.
    pub fn set_entry(&self, index: u16, head: u16) {
        self.write(self.entry_offset(index), head);
    }

    /// Reads `used_event`.
    pub fn used_event(&self) -> u16 {
        self.read(used_event_offset(self.size))
    }

    /// Writes `used_event` without a barrier.
    pub fn set_used_event(&self, used_event: u16) {
        self.write(used_event_offset(self.size), used_event);
    }

    /// Raw pointer to `used_event`, for the barrier module's fused
    /// store-then-full barrier. The stored bits must be little-endian.
    pub fn used_event_ptr(&self) -> *mut u16 {
        // SAFETY: the offset is inside the ring per the contract of `new`.
        unsafe { self.base.as_ptr().add(used_event_offset(self.size)).cast() }
    }

    fn entry_offset(&self, index: u16) -> usize {
        RING_ENTRIES_OFFSET + size_of::<AvailRingEntry>() * usize::from(index & (self.size - 1))
    }

    fn read(&self, offset: usize) -> u16 {
        // SAFETY: every caller passes an offset of a 2-aligned field inside
        // the ring; memory validity and alignment come from `new`.
        unsafe {
            self.base
                .as_ptr()
                .add(offset)
                .cast::<Le16>()
                .read_volatile()
        }
        .get()
    }

    fn write(&self, offset: usize, value: u16) {
        // SAFETY: as in `read`.
        unsafe {
            self.base
                .as_ptr()
                .add(offset)
                .cast::<Le16>()
                .write_volatile(Le16::new(value))
        }
    }
}

/// Volatile view of a used ring (the device area), written by the device and
/// read by the driver.
#[derive(Debug)]
pub struct UsedRing {
    base: NonNull<u8>,
    size: u16,
}

impl UsedRing {
    /// Creates a view of the used ring of a queue of `size` at `base`.
    ///
    /// # Safety
    /// `size` is a power of two, `base` is aligned to [`USED_RING_ALIGN`] and
    /// valid for reads and writes of [`used_ring_size_bytes`]`(size)` bytes
    /// for as long as the view is used, and no Rust reference covers that
    /// memory meanwhile.
    pub unsafe fn new(base: NonNull<u8>, size: u16) -> Self {
        UsedRing { base, size }
    }

    /// Reads `flags`.
    pub fn flags(&self) -> u16 {
        self.read_u16(0)
    }

    /// Reads `idx`.
    pub fn idx(&self) -> u16 {
        self.read_u16(RING_IDX_OFFSET)
    }

    /// Writes `idx`. Once the device has the queue addresses only the device
    /// writes it, so the driver uses this only to set the start index before
    /// that.
    pub fn set_idx(&self, idx: u16) {
        self.write_u16(RING_IDX_OFFSET, idx);
    }

    /// Reads the element for free-running index `index`.
    pub fn element(&self, index: u16) -> UsedElement {
        let slot = usize::from(index & (self.size - 1));
        let offset = size_of::<UsedRingHeader>() + size_of::<UsedElement>() * slot;
        // SAFETY: the slot is below the queue size, so the element lies inside
        // the ring. The ring is 4-aligned and the element offset is a multiple
        // of 4. Validity comes from the contract of `new`.
        unsafe {
            self.base
                .as_ptr()
                .add(offset)
                .cast::<UsedElement>()
                .read_volatile()
        }
    }

    /// Reads `avail_event`.
    pub fn avail_event(&self) -> u16 {
        self.read_u16(avail_event_offset(self.size))
    }

    /// Writes `avail_event`. As with [`Self::set_idx`], the driver uses this
    /// only before the device has the queue addresses.
    pub fn set_avail_event(&self, avail_event: u16) {
        self.write_u16(avail_event_offset(self.size), avail_event);
    }

    fn read_u16(&self, offset: usize) -> u16 {
        // SAFETY: every caller passes an offset of a 2-aligned field inside
        // the ring; memory validity and alignment come from `new`.
        unsafe {
            self.base
                .as_ptr()
                .add(offset)
                .cast::<Le16>()
                .read_volatile()
        }
        .get()
    }

    fn write_u16(&self, offset: usize, value: u16) {
        // SAFETY: as in `read_u16`.
        unsafe {
            self.base
                .as_ptr()
                .add(offset)
                .cast::<Le16>()
                .write_volatile(Le16::new(value))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{align_of, offset_of};

    #[test]
    fn descriptor_layout_matches_spec() {
        assert_eq!(size_of::<Descriptor>(), 16);
        assert_eq!(offset_of!(Descriptor, addr), 0);
        assert_eq!(offset_of!(Descriptor, len), 8);
        assert_eq!(offset_of!(Descriptor, flags), 12);
        assert_eq!(offset_of!(Descriptor, next), 14);
        assert_eq!(align_of::<Descriptor>(), 8);
    }

    #[test]
    fn ring_headers_match_spec() {
        assert_eq!(size_of::<AvailRingHeader>(), 4);
        assert_eq!(offset_of!(AvailRingHeader, flags), 0);
        assert_eq!(offset_of!(AvailRingHeader, idx), RING_IDX_OFFSET);
        assert_eq!(size_of::<UsedRingHeader>(), 4);
        assert_eq!(offset_of!(UsedRingHeader, idx), RING_IDX_OFFSET);
        assert_eq!(size_of::<UsedElement>(), 8);
        assert_eq!(offset_of!(UsedElement, id), 0);
        assert_eq!(offset_of!(UsedElement, len), 4);
        assert_eq!(size_of::<AvailRingEntry>(), 2);
    }

    #[test]
    fn area_sizes_match_spec_table() {
        for size in [1u16, 2, 256, MAX_QUEUE_SIZE] {
            let n = usize::from(size);
            assert_eq!(descriptor_table_size_bytes(size), 16 * n);
            assert_eq!(avail_ring_size_bytes(size), 6 + 2 * n);
            assert_eq!(used_ring_size_bytes(size), 6 + 8 * n);
            assert_eq!(used_event_offset(size), 4 + 2 * n);
            assert_eq!(avail_event_offset(size), 4 + 8 * n);
        }
        assert_eq!(
            (DESCRIPTOR_TABLE_ALIGN, AVAIL_RING_ALIGN, USED_RING_ALIGN),
            (16, 2, 4)
        );
    }

    #[test]
    fn little_endian_wrappers_store_little_endian_bytes() {
        assert_eq!(Le16::new(0x1234).to_bits().to_ne_bytes(), [0x34, 0x12]);
        assert_eq!(
            Le32::new(0x1234_5678).to_bits().to_ne_bytes(),
            [0x78, 0x56, 0x34, 0x12]
        );
        assert_eq!(
            Le64::new(0x0102_0304_0506_0708).get(),
            0x0102_0304_0506_0708
        );
    }

    #[test]
    fn views_write_at_spec_offsets() {
        const SIZE: u16 = 4;
        let mut avail_memory = [0u16; 3 + SIZE as usize];
        let mut used_memory = [0u32; 2 + 2 * SIZE as usize];
        let avail_base = NonNull::new(avail_memory.as_mut_ptr().cast::<u8>()).expect("array");
        let used_base = NonNull::new(used_memory.as_mut_ptr().cast::<u8>()).expect("array");
        // SAFETY: both arrays are large enough for a queue of SIZE (checked by
        // the size tests), aligned as the rings need, and only accessed
        // through the views until the views are no longer used.
        let (avail, used) = unsafe {
            (
                AvailRing::new(avail_base, SIZE),
                UsedRing::new(used_base, SIZE),
            )
        };

        avail.set_flags(VIRTQ_AVAIL_F_NO_INTERRUPT);
        avail.set_idx(0xfffe);
        avail.set_entry(5, 3);
        avail.set_used_event(0xabcd);
        used.set_idx(7);
        used.set_avail_event(0x4321);

        assert_eq!(avail.entry(1), 3);
        assert_eq!(avail.used_event(), 0xabcd);
        assert_eq!(used.idx(), 7);
        assert_eq!(used.avail_event(), 0x4321);

        let avail_bytes: alloc::vec::Vec<u8> = avail_memory
            .iter()
            .flat_map(|word| word.to_ne_bytes())
            .collect();
        assert_eq!(avail_bytes.len(), avail_ring_size_bytes(SIZE));
        assert_eq!(&avail_bytes[0..4], &[1, 0, 0xfe, 0xff]);
        // Free-running index 5 lands in slot 5 & 3 = 1, at offset 4 + 2.
        assert_eq!(&avail_bytes[6..8], &[3, 0]);
        assert_eq!(&avail_bytes[12..14], &[0xcd, 0xab]);
        assert_eq!(used_memory[0], 7 << 16);
        assert_eq!(used_memory[(4 + 8 * 4) / 4] & 0xffff, 0x4321);
    }
}
