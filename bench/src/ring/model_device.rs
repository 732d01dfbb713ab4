//! The benchmark's own device model: the device's half of a split
//! virtqueue in guest memory, accessed with atomics from another core.
//!
//! Field offsets come from virtio 1.2 section 2.7.5 "The Virtqueue
//! Descriptor Table", section 2.7.6 "The Virtqueue Available Ring" and
//! section 2.7.8 "The Virtqueue Used Ring", written out here rather than
//! taken from the driver crate so that both sides agree only if both follow
//! the spec.
//!
//! Ordering on the device side is fixed whatever the driver's barrier mode:
//! acquire loads of the avail idx, a release store of the used idx, and a
//! sequentially consistent fence (`mfence` on x86_64) between a store that
//! changes the suppression state and the load that re-checks the other
//! side, as rust-vmm's queue does too.
//!
//! NOTE: the driver accesses the rings with volatile accesses and the
//! barrier module, this device with atomics. Rust's memory model does not
//! define volatile accesses racing with atomic ones, so the benchmark shows
//! behaviour on x86_64 hardware, where both compile to plain loads and
//! stores.

use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicU16, AtomicU32, AtomicU64, Ordering};

use virtio::QueueAddresses;

use super::device::{event_idx_passed, reported_len, DeviceFault, DeviceQueue};
use super::memory::GuestRegion;

const DESCRIPTOR_BYTES: usize = 16;
const DESCRIPTOR_LEN_OFFSET: usize = 8;
const DESCRIPTOR_FLAGS_OFFSET: usize = 12;
const DESCRIPTOR_NEXT_OFFSET: usize = 14;
const DESC_F_NEXT: u16 = 1;
const DESC_F_WRITE: u16 = 2;

const RING_FLAGS_OFFSET: usize = 0;
const RING_IDX_OFFSET: usize = 2;
const RING_ENTRIES_OFFSET: usize = 4;
const AVAIL_ENTRY_BYTES: usize = 2;
const USED_ELEMENT_BYTES: usize = 8;
const USED_ELEMENT_LEN_OFFSET: usize = 4;
/// `VIRTQ_AVAIL_F_NO_INTERRUPT`.
const AVAIL_F_NO_INTERRUPT: u16 = 1;
/// `VIRTQ_USED_F_NO_NOTIFY`.
const USED_F_NO_NOTIFY: u16 = 1;
/// Bytes of the sequence number at the start of request and response.
const SEQUENCE_BYTES: usize = 8;

/// The device model attached to one queue.
#[derive(Debug)]
pub struct ModelDevice<'r> {
    region: &'r GuestRegion,
    size: u16,
    event_idx: bool,
    descriptor_area: NonNull<u8>,
    driver_area: NonNull<u8>,
    device_area: NonNull<u8>,
    last_avail_idx: u16,
    used_idx: u16,
}

impl<'r> ModelDevice<'r> {
    /// Attaches to the queue at `addresses` in `region`, with both device
    /// indices at 0 as after a device reset.
    ///
    /// # Errors
    /// [`DeviceFault::AreaNotMapped`] when an area with its spec size is not
    /// inside the region, or lacks the spec alignment.
    pub fn attach(
        region: &'r GuestRegion,
        addresses: QueueAddresses,
        event_idx: bool,
    ) -> Result<Self, DeviceFault> {
        let size = usize::from(addresses.size);
        let map = |area: &'static str, address: u64, len: usize, align: u64| {
            region
                .translate(address, len)
                .filter(|_| address.is_multiple_of(align))
                .ok_or(DeviceFault::AreaNotMapped { area, address })
        };
        // Sizes and alignments from the table in section 2.7.
        Ok(ModelDevice {
            region,
            size: addresses.size,
            event_idx,
            descriptor_area: map("descriptor area", addresses.descriptor_area, 16 * size, 16)?,
            driver_area: map("driver area", addresses.driver_area, 6 + 2 * size, 2)?,
            device_area: map("device area", addresses.device_area, 6 + 8 * size, 4)?,
            last_avail_idx: 0,
            used_idx: 0,
        })
    }

    fn avail_idx(&self) -> u16 {
        // Acquire: the avail entries and descriptors the idx covers are
        // visible after it (section 2.7.13).
        u16::from_le(self.driver_u16(RING_IDX_OFFSET).load(Ordering::Acquire))
    }

    /// Walks chain `head` and returns the sequence number from its request
    /// buffer, the response buffer and the response capacity.
    fn walk_chain(&self, head: u16) -> Result<(u64, &AtomicU64, u32), DeviceFault> {
        let mut request = None;
        let mut response = None;
        let mut id = head;
        for _ in 0..self.size {
            if id >= self.size {
                return Err(DeviceFault::DescriptorIdOutOfRange { head, id });
            }
            let (address, len, flags, next) = self.read_descriptor(id);
            if flags & DESC_F_WRITE != 0 {
                response = response.or(Some((address, len)));
            } else {
                request = request.or(Some((address, len)));
            }
            if flags & DESC_F_NEXT == 0 {
                let (request_address, _) = request.ok_or(DeviceFault::ChainShapeInvalid { head })?;
                let (response_address, capacity) =
                    response.ok_or(DeviceFault::ChainShapeInvalid { head })?;
                let sequence = u64::from_le(self.sequence_word(head, request_address, u32::MAX)?.load(Ordering::Relaxed));
                let response_word = self.sequence_word(head, response_address, capacity)?;
                return Ok((sequence, response_word, capacity));
            }
            id = next;
        }
        Err(DeviceFault::ChainLoop { head })
    }

    /// The 8-byte sequence number at the start of the buffer at `address`.
    fn sequence_word(&self, head: u16, address: u64, len: u32) -> Result<&AtomicU64, DeviceFault> {
        if (len as usize) < SEQUENCE_BYTES || !address.is_multiple_of(SEQUENCE_BYTES as u64) {
            return Err(DeviceFault::ChainShapeInvalid { head });
        }
        let ptr = self
            .region
            .translate(address, SEQUENCE_BYTES)
            .ok_or(DeviceFault::BufferNotMapped { head, address })?;
        // SAFETY: the 8 bytes at `ptr` are inside the region (translated
        // above) and 8-byte aligned (the guest base is page-aligned and
        // `address` is a multiple of 8). The region outlives `self`.
        Ok(unsafe { AtomicU64::from_ptr(ptr.as_ptr().cast()) })
    }

    fn read_descriptor(&self, id: u16) -> (u64, u32, u16, u16) {
        // SAFETY: `id` is below the queue size (checked by the caller), so
        // the 16-byte descriptor lies inside the 16-aligned descriptor area
        // mapped in `attach`, and each field is at its natural alignment.
        unsafe {
            let descriptor = self
                .descriptor_area
                .as_ptr()
                .add(DESCRIPTOR_BYTES * usize::from(id));
            (
                u64::from_le(descriptor.cast::<u64>().read_volatile()),
                u32::from_le(descriptor.add(DESCRIPTOR_LEN_OFFSET).cast::<u32>().read_volatile()),
                u16::from_le(descriptor.add(DESCRIPTOR_FLAGS_OFFSET).cast::<u16>().read_volatile()),
                u16::from_le(descriptor.add(DESCRIPTOR_NEXT_OFFSET).cast::<u16>().read_volatile()),
            )
        }
    }

    /// Writes a used element and publishes it. Returns whether the driver
    /// requested an interrupt.
    fn push_used(&mut self, head: u16, len: u32) -> bool {
        let old_idx = self.used_idx;
        let element = RING_ENTRIES_OFFSET + USED_ELEMENT_BYTES * usize::from(old_idx & (self.size - 1));
        self.device_u32(element)
            .store(u32::from(head).to_le(), Ordering::Relaxed);
        self.device_u32(element + USED_ELEMENT_LEN_OFFSET)
            .store(len.to_le(), Ordering::Relaxed);

        // Release: the element and the response before the idx (section
        // 2.7.8: len and data before idx).
        self.used_idx = old_idx.wrapping_add(1);
        self.device_u16(RING_IDX_OFFSET)
            .store(self.used_idx.to_le(), Ordering::Release);

        // The device's half of the interrupt suppression race (section
        // 2.7.7): the idx store before the used_event or flags load.
        fence(Ordering::SeqCst);
        if self.event_idx {
            let used_event = u16::from_le(self.driver_u16(self.used_event_offset()).load(Ordering::Relaxed));
            event_idx_passed(used_event, self.used_idx, old_idx)
        } else {
            let flags = u16::from_le(self.driver_u16(RING_FLAGS_OFFSET).load(Ordering::Relaxed));
            flags & AVAIL_F_NO_INTERRUPT == 0
        }
    }

    fn used_event_offset(&self) -> usize {
        RING_ENTRIES_OFFSET + AVAIL_ENTRY_BYTES * usize::from(self.size)
    }

    fn avail_event_offset(&self) -> usize {
        RING_ENTRIES_OFFSET + USED_ELEMENT_BYTES * usize::from(self.size)
    }

    fn driver_u16(&self, offset: usize) -> &AtomicU16 {
        // SAFETY: callers pass offsets of 2-byte fields inside the driver
        // area, which `attach` mapped with its spec size and 2-byte
        // alignment. The region outlives `self`.
        unsafe { AtomicU16::from_ptr(self.driver_area.as_ptr().add(offset).cast()) }
    }

    fn device_u16(&self, offset: usize) -> &AtomicU16 {
        // SAFETY: as in `driver_u16`, for the device area (4-byte aligned).
        unsafe { AtomicU16::from_ptr(self.device_area.as_ptr().add(offset).cast()) }
    }

    fn device_u32(&self, offset: usize) -> &AtomicU32 {
        // SAFETY: callers pass offsets of used element fields, which are
        // 4-byte aligned inside the device area mapped in `attach`.
        unsafe { AtomicU32::from_ptr(self.device_area.as_ptr().add(offset).cast()) }
    }
}

impl DeviceQueue for ModelDevice<'_> {
    fn disable_notifications(&mut self) -> Result<(), DeviceFault> {
        if self.event_idx {
            // The entry before the next one comes round again only after
            // 65535 more entries, which a queue of at most 32768 never
            // reaches while the device works.
            self.device_u16(self.avail_event_offset())
                .store(self.last_avail_idx.wrapping_sub(1).to_le(), Ordering::Relaxed);
        } else {
            self.device_u16(RING_FLAGS_OFFSET)
                .store(USED_F_NO_NOTIFY.to_le(), Ordering::Relaxed);
        }
        Ok(())
    }

    fn enable_notifications(&mut self) -> Result<bool, DeviceFault> {
        if self.event_idx {
            self.device_u16(self.avail_event_offset())
                .store(self.last_avail_idx.to_le(), Ordering::Relaxed);
        } else {
            self.device_u16(RING_FLAGS_OFFSET).store(0, Ordering::Relaxed);
        }
        // The device's half of the notification suppression race (section
        // 2.7.10): the flags or avail_event store before the avail idx load.
        fence(Ordering::SeqCst);
        Ok(self.avail_idx() != self.last_avail_idx)
    }

    fn serve_next(&mut self) -> Result<Option<bool>, DeviceFault> {
        let avail_idx = self.avail_idx();
        if avail_idx == self.last_avail_idx {
            return Ok(None);
        }
        if avail_idx.wrapping_sub(self.last_avail_idx) > self.size {
            return Err(DeviceFault::AvailIdxInvalid {
                avail_idx,
                last_avail_idx: self.last_avail_idx,
            });
        }
        let slot = usize::from(self.last_avail_idx & (self.size - 1));
        let head = u16::from_le(
            self.driver_u16(RING_ENTRIES_OFFSET + AVAIL_ENTRY_BYTES * slot)
                .load(Ordering::Relaxed),
        );
        self.last_avail_idx = self.last_avail_idx.wrapping_add(1);

        let (sequence, response, capacity) = self.walk_chain(head)?;
        response.store(sequence.to_le(), Ordering::Relaxed);
        Ok(Some(self.push_used(head, reported_len(sequence, capacity))))
    }

    fn last_avail_idx(&self) -> u16 {
        self.last_avail_idx
    }
}
