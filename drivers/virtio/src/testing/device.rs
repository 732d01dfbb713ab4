//! The device's half of a split virtqueue, for host tests.
//!
//! Field offsets are computed here from virtio 1.2 section 2.7.5 "The
//! Virtqueue Descriptor Table", section 2.7.6 "The Virtqueue Available Ring"
//! and section 2.7.8 "The Virtqueue Used Ring" rather than taken from
//! `crate::ring`, so that the driver and this device agree only if both
//! follow the spec.

use core::fmt;
use core::ptr::NonNull;
use core::sync::atomic::{fence, AtomicU16, AtomicU32, Ordering};
use std::vec::Vec;

use super::dma::{OffsetDma, TranslationError};
use crate::queue::need_event;
use crate::QueueAddresses;

const DESCRIPTOR_BYTES: usize = 16;
const DESCRIPTOR_LEN_OFFSET: usize = 8;
const DESCRIPTOR_FLAGS_OFFSET: usize = 12;
const DESCRIPTOR_NEXT_OFFSET: usize = 14;
const DESC_F_NEXT: u16 = 1;
const DESC_F_WRITE: u16 = 2;
const DESC_F_INDIRECT: u16 = 4;

const RING_FLAGS_OFFSET: usize = 0;
const RING_IDX_OFFSET: usize = 2;
const RING_ENTRIES_OFFSET: usize = 4;
const AVAIL_ENTRY_BYTES: usize = 2;
const USED_ELEMENT_BYTES: usize = 8;
const USED_ELEMENT_LEN_OFFSET: usize = 4;
const AVAIL_F_NO_INTERRUPT: u16 = 1;
const USED_F_NO_NOTIFY: u16 = 1;

/// A driver mistake the device side detected, or a failure of the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceError {
    /// A ring area is not inside a live allocation.
    AreaNotMapped {
        /// "descriptor area", "driver area" or "device area".
        area: &'static str,
        /// The failed translation.
        source: TranslationError,
    },
    /// A ring area is below the spec's minimum alignment.
    AreaMisaligned {
        /// "descriptor area", "driver area" or "device area".
        area: &'static str,
        /// Device address of the area.
        device_address: u64,
    },
    /// The avail idx ran more than a queue size ahead of the device.
    AvailIdxInvalid {
        /// Avail idx read from the driver area.
        avail_idx: u16,
        /// Returns the index of the device's next avail entry.
        last_avail_idx: u16,
    },
    /// A chain head or `next` names a descriptor past the table.
    DescriptorIdOutOfRange {
        /// Chain head.
        head: u16,
        /// Offending id.
        id: u16,
    },
    /// A chain has more descriptors than the queue size, so it loops.
    ChainLoop {
        /// Chain head.
        head: u16,
    },
    /// A descriptor has `VIRTQ_DESC_F_INDIRECT`, which was not negotiated.
    IndirectDescriptor {
        /// Chain head.
        head: u16,
        /// Offending id.
        id: u16,
    },
    /// A device-readable descriptor follows a device-writable one, which
    /// section 2.7.4 "Message Framing" forbids.
    ReadableAfterWritable {
        /// Chain head.
        head: u16,
        /// Offending id.
        id: u16,
    },
    /// A buffer is not inside a live allocation.
    BufferNotMapped {
        /// Chain head.
        head: u16,
        /// Offending id.
        id: u16,
        /// The failed translation.
        source: TranslationError,
    },
    /// Two buffers of one chain overlap.
    OverlappingBuffers {
        /// Chain head.
        head: u16,
    },
    /// The device model thread panicked.
    ThreadPanicked,
}

impl fmt::Display for DeviceError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            DeviceError::AreaNotMapped { area, source } => write!(formatter, "{area}: {source}"),
            DeviceError::AreaMisaligned { area, device_address } => {
                write!(formatter, "{area} at {device_address:#x} is misaligned")
            }
            DeviceError::AvailIdxInvalid { avail_idx, last_avail_idx } => write!(
                formatter,
                "avail idx {avail_idx:#x} is more than a queue ahead of the device at {last_avail_idx:#x}"
            ),
            DeviceError::DescriptorIdOutOfRange { head, id } => {
                write!(formatter, "chain {head}: descriptor id {id} is outside the table")
            }
            DeviceError::ChainLoop { head } => write!(formatter, "chain {head} is longer than the queue"),
            DeviceError::IndirectDescriptor { head, id } => {
                write!(formatter, "chain {head}: descriptor {id} is indirect")
            }
            DeviceError::ReadableAfterWritable { head, id } => {
                write!(formatter, "chain {head}: readable descriptor {id} follows a writable one")
            }
            DeviceError::BufferNotMapped { head, id, source } => {
                write!(formatter, "chain {head}: descriptor {id}: {source}")
            }
            DeviceError::OverlappingBuffers { head } => write!(formatter, "chain {head}: buffers overlap"),
            DeviceError::ThreadPanicked => formatter.write_str("the device model thread panicked"),
        }
    }
}

impl std::error::Error for DeviceError {}

/// One buffer of a chain, translated for the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Device address from the descriptor.
    pub device_address: u64,
    /// Address of the buffer in this process.
    pub ptr: NonNull<u8>,
    /// Length from the descriptor.
    pub len: u32,
}

/// A chain the device took from the avail ring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceChain {
    /// Descriptor id of the head.
    pub head: u16,
    /// Device-readable buffers, in chain order.
    pub readable: Vec<Segment>,
    /// Device-writable buffers, in chain order.
    pub writable: Vec<Segment>,
}

impl DeviceChain {
    /// Total length of the device-writable buffers.
    pub fn writable_capacity_bytes(&self) -> u64 {
        self.writable
            .iter()
            .map(|segment| u64::from(segment.len))
            .sum()
    }

    /// Calls `handler` with the readable buffers and the writable buffers,
    /// and returns what it returns (the bytes it wrote).
    pub fn serve<F>(&self, handler: &mut F) -> u32
    where
        F: FnMut(&[&[u8]], &mut [&mut [u8]]) -> u32,
    {
        let readable: Vec<&[u8]> = self
            .readable
            .iter()
            .map(|segment| {
                // SAFETY: `DeviceRings::pop_avail` translated the segment into
                // a live allocation and checked that no two segments of the
                // chain overlap. The driver leaves a chain's buffers to the
                // device until the used ring returns them, which happens only
                // after `serve`.
                unsafe { core::slice::from_raw_parts(segment.ptr.as_ptr(), segment.len as usize) }
            })
            .collect();
        let mut writable: Vec<&mut [u8]> = self
            .writable
            .iter()
            .map(|segment| {
                // SAFETY: as for the readable segments; the overlap check also
                // makes each mutable slice the only one covering its bytes.
                unsafe {
                    core::slice::from_raw_parts_mut(segment.ptr.as_ptr(), segment.len as usize)
                }
            })
            .collect();
        handler(&readable, &mut writable)
    }
}

/// The device side of one split virtqueue: it takes chains from the avail
/// ring, returns them through the used ring, and decides on notifications
/// and interrupts as sections 2.7.7 and 2.7.10 require of a device.
#[derive(Debug)]
pub struct DeviceRings {
    dma: OffsetDma,
    size: u16,
    event_idx: bool,
    descriptor_area: NonNull<u8>,
    driver_area: NonNull<u8>,
    device_area: NonNull<u8>,
    last_avail_idx: u16,
    used_idx: u16,
}

// SAFETY: the area pointers stay valid from any thread while `dma`, a clone
// of the driver's allocator, lives. All accesses through them are atomic or
// volatile.
unsafe impl Send for DeviceRings {}

impl DeviceRings {
    /// Attaches to the queue at `addresses`, as a device does when the driver
    /// enables the queue. Both device indices start at `start_index`, which is
    /// 0 for a real device.
    ///
    /// # Errors
    /// [`DeviceError::AreaNotMapped`] or [`DeviceError::AreaMisaligned`] when
    /// an area is not live memory of `dma` with the spec's size and alignment.
    pub fn new(
        dma: OffsetDma,
        addresses: QueueAddresses,
        event_idx: bool,
        start_index: u16,
    ) -> Result<Self, DeviceError> {
        let size = usize::from(addresses.size);
        let map = |area: &'static str, device_address: u64, len: usize, align: u64| {
            if device_address.wrapping_sub(dma.offset()) & (align - 1) != 0 {
                return Err(DeviceError::AreaMisaligned {
                    area,
                    device_address,
                });
            }
            dma.translate(device_address, len)
                .map_err(|source| DeviceError::AreaNotMapped { area, source })
        };
        // Sizes and alignments from the table in section 2.7.
        let descriptor_area = map("descriptor area", addresses.descriptor_area, 16 * size, 16)?;
        let driver_area = map("driver area", addresses.driver_area, 6 + 2 * size, 2)?;
        let device_area = map("device area", addresses.device_area, 6 + 8 * size, 4)?;
        Ok(DeviceRings {
            dma,
            size: addresses.size,
            event_idx,
            descriptor_area,
            driver_area,
            device_area,
            last_avail_idx: start_index,
            used_idx: start_index,
        })
    }

    /// Loads the avail idx with acquire ordering, so that the entries and
    /// descriptors it covers are visible.
    pub fn avail_idx(&self) -> u16 {
        u16::from_le(self.driver_u16(RING_IDX_OFFSET).load(Ordering::Acquire))
    }

    /// Loads the avail ring `flags`.
    pub fn avail_flags(&self) -> u16 {
        u16::from_le(self.driver_u16(RING_FLAGS_OFFSET).load(Ordering::Relaxed))
    }

    /// Loads `used_event` from the driver area.
    pub fn used_event(&self) -> u16 {
        u16::from_le(
            self.driver_u16(self.used_event_offset())
                .load(Ordering::Relaxed),
        )
    }

    /// Loads `avail_event` as this device last wrote it.
    pub fn avail_event(&self) -> u16 {
        u16::from_le(
            self.device_u16(self.avail_event_offset())
                .load(Ordering::Relaxed),
        )
    }

    /// Returns the index of the device's next avail entry.
    pub fn last_avail_idx(&self) -> u16 {
        self.last_avail_idx
    }

    /// Returns the used idx as this device last wrote it.
    pub fn used_idx(&self) -> u16 {
        self.used_idx
    }

    /// Returns the number of avail entries published and not yet taken.
    pub fn pending(&self) -> u16 {
        self.avail_idx().wrapping_sub(self.last_avail_idx)
    }

    /// Takes the next published chain and translates its buffers, or returns
    /// `Ok(None)` when the driver has published nothing new.
    ///
    /// # Errors
    /// A [`DeviceError`] naming the driver mistake: an avail idx too far
    /// ahead, a bad descriptor id, a loop, an indirect descriptor, a readable
    /// buffer after a writable one, an unmapped or overlapping buffer.
    pub fn pop_avail(&mut self) -> Result<Option<DeviceChain>, DeviceError> {
        let avail_idx = self.avail_idx();
        if avail_idx == self.last_avail_idx {
            return Ok(None);
        }
        if avail_idx.wrapping_sub(self.last_avail_idx) > self.size {
            return Err(DeviceError::AvailIdxInvalid {
                avail_idx,
                last_avail_idx: self.last_avail_idx,
            });
        }
        let slot = usize::from(self.last_avail_idx & (self.size - 1));
        // SAFETY: the slot is below the queue size, so the entry lies inside
        // the driver area mapped in `new`, at an even offset.
        let head = u16::from_le(unsafe {
            self.driver_area
                .as_ptr()
                .add(RING_ENTRIES_OFFSET + AVAIL_ENTRY_BYTES * slot)
                .cast::<u16>()
                .read_volatile()
        });
        self.last_avail_idx = self.last_avail_idx.wrapping_add(1);
        let chain = self.walk_chain(head)?;
        check_no_overlap(&chain)?;
        Ok(Some(chain))
    }

    /// Writes a used element for `id` with `len` and advances the used idx by
    /// one. Returns whether the driver asked for an interrupt.
    pub fn push_used(&mut self, id: u32, len: u32) -> bool {
        self.push_used_advancing(id, len, 1)
    }

    /// Like [`Self::push_used`] but advances the used idx by `advance`. A
    /// correct device always advances by 1, so this is for hostile-device
    /// tests.
    pub fn push_used_advancing(&mut self, id: u32, len: u32, advance: u16) -> bool {
        let old_idx = self.used_idx;
        let element =
            RING_ENTRIES_OFFSET + USED_ELEMENT_BYTES * usize::from(old_idx & (self.size - 1));
        self.device_u32(element)
            .store(id.to_le(), Ordering::Relaxed);
        self.device_u32(element + USED_ELEMENT_LEN_OFFSET)
            .store(len.to_le(), Ordering::Relaxed);

        // Release: the element and the buffer contents before the idx
        // (section 2.7.8: len and data before idx).
        self.used_idx = old_idx.wrapping_add(advance);
        self.device_u16(RING_IDX_OFFSET)
            .store(self.used_idx.to_le(), Ordering::Release);

        // SeqCst fence: the idx store before the used_event or flags load,
        // the device's half of the suppression race.
        fence(Ordering::SeqCst);
        if self.event_idx {
            need_event(self.used_event(), self.used_idx, old_idx)
        } else {
            self.avail_flags() & AVAIL_F_NO_INTERRUPT == 0
        }
    }

    /// Asks the driver not to send available buffer notifications.
    pub fn disable_notifications(&mut self) {
        if self.event_idx {
            // The entry before the next one comes round only after 65535
            // more entries, which a queue of at most 32768 never reaches.
            self.store_avail_event(self.last_avail_idx.wrapping_sub(1));
        } else {
            self.device_u16(RING_FLAGS_OFFSET)
                .store(USED_F_NO_NOTIFY.to_le(), Ordering::Relaxed);
        }
    }

    /// Asks the driver to notify for the next entry, then re-reads the avail
    /// idx. Returns true when entries are already pending, for which no
    /// notification may come.
    pub fn enable_notifications(&mut self) -> bool {
        if self.event_idx {
            self.store_avail_event(self.last_avail_idx);
        } else {
            self.device_u16(RING_FLAGS_OFFSET)
                .store(0, Ordering::Relaxed);
        }
        // SeqCst fence: the flags or avail_event store before the avail idx
        // load, the device's half of the notification race.
        fence(Ordering::SeqCst);
        self.pending() != 0
    }

    fn walk_chain(&self, head: u16) -> Result<DeviceChain, DeviceError> {
        let mut chain = DeviceChain {
            head,
            readable: Vec::new(),
            writable: Vec::new(),
        };
        let mut id = head;
        for _ in 0..self.size {
            if id >= self.size {
                return Err(DeviceError::DescriptorIdOutOfRange { head, id });
            }
            let (address, len, flags, next) = self.read_descriptor(id);
            if flags & DESC_F_INDIRECT != 0 {
                return Err(DeviceError::IndirectDescriptor { head, id });
            }
            let ptr = self
                .dma
                .translate(address, len as usize)
                .map_err(|source| DeviceError::BufferNotMapped { head, id, source })?;
            let segment = Segment {
                device_address: address,
                ptr,
                len,
            };
            if flags & DESC_F_WRITE != 0 {
                chain.writable.push(segment);
            } else if chain.writable.is_empty() {
                chain.readable.push(segment);
            } else {
                return Err(DeviceError::ReadableAfterWritable { head, id });
            }
            if flags & DESC_F_NEXT == 0 {
                return Ok(chain);
            }
            id = next;
        }
        Err(DeviceError::ChainLoop { head })
    }

    fn read_descriptor(&self, id: u16) -> (u64, u32, u16, u16) {
        // SAFETY: the caller checked that `id` is below the queue size, so the
        // 16-byte descriptor lies inside the 16-aligned descriptor area that
        // `new` mapped. Each field is at its natural alignment.
        unsafe {
            let descriptor = self
                .descriptor_area
                .as_ptr()
                .add(DESCRIPTOR_BYTES * usize::from(id));
            (
                u64::from_le(descriptor.cast::<u64>().read_volatile()),
                u32::from_le(
                    descriptor
                        .add(DESCRIPTOR_LEN_OFFSET)
                        .cast::<u32>()
                        .read_volatile(),
                ),
                u16::from_le(
                    descriptor
                        .add(DESCRIPTOR_FLAGS_OFFSET)
                        .cast::<u16>()
                        .read_volatile(),
                ),
                u16::from_le(
                    descriptor
                        .add(DESCRIPTOR_NEXT_OFFSET)
                        .cast::<u16>()
                        .read_volatile(),
                ),
            )
        }
    }

    fn store_avail_event(&self, avail_event: u16) {
        self.device_u16(self.avail_event_offset())
            .store(avail_event.to_le(), Ordering::Relaxed);
    }

    fn used_event_offset(&self) -> usize {
        RING_ENTRIES_OFFSET + AVAIL_ENTRY_BYTES * usize::from(self.size)
    }

    fn avail_event_offset(&self) -> usize {
        RING_ENTRIES_OFFSET + USED_ELEMENT_BYTES * usize::from(self.size)
    }

    fn driver_u16(&self, offset: usize) -> &AtomicU16 {
        // SAFETY: callers pass offsets of 2-byte fields inside the driver
        // area, which `new` mapped with its full spec size and 2-byte
        // alignment. `self.dma` keeps the memory allocated while `self`
        // lives.
        unsafe { AtomicU16::from_ptr(self.driver_area.as_ptr().add(offset).cast()) }
    }

    fn device_u16(&self, offset: usize) -> &AtomicU16 {
        // SAFETY: as in `driver_u16`, for the device area (4-byte aligned).
        unsafe { AtomicU16::from_ptr(self.device_area.as_ptr().add(offset).cast()) }
    }

    fn device_u32(&self, offset: usize) -> &AtomicU32 {
        // SAFETY: callers pass offsets of used element fields, which are
        // 4-byte aligned inside the device area mapped in `new`.
        unsafe { AtomicU32::from_ptr(self.device_area.as_ptr().add(offset).cast()) }
    }
}

fn check_no_overlap(chain: &DeviceChain) -> Result<(), DeviceError> {
    let mut ranges: Vec<(usize, usize)> = chain
        .readable
        .iter()
        .chain(&chain.writable)
        .filter(|segment| segment.len > 0)
        .map(|segment| {
            (
                segment.ptr.as_ptr() as usize,
                segment.ptr.as_ptr() as usize + segment.len as usize,
            )
        })
        .collect();
    ranges.sort_unstable();
    if ranges.windows(2).any(|pair| pair[1].0 < pair[0].1) {
        return Err(DeviceError::OverlappingBuffers { head: chain.head });
    }
    Ok(())
}
