//! rust-vmm's `virtio-queue` as the device: an independent split virtqueue
//! implementation, with its own barriers, reading guest memory through
//! `vm-memory`.
//!
//! `virtio-queue` 0.18 decides on interrupts with `used_event` when event
//! idx is on, but without event idx its `needs_notification` always returns
//! true, because it does not read `VIRTQ_AVAIL_F_NO_INTERRUPT` (a comment
//! in its `queue.rs` calls the flag not supported yet). A device must honour the flag (virtio 1.2
//! section 2.7.7), so without event idx this wrapper reads the avail ring
//! flags itself, after the sequentially consistent fence inside
//! `needs_notification` has ordered the used idx store before that load.

use std::sync::atomic::Ordering;

use virtio::QueueAddresses;
use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::device::{reported_len, DeviceFault, DeviceQueue};

/// `VIRTQ_AVAIL_F_NO_INTERRUPT`.
const AVAIL_F_NO_INTERRUPT: u16 = 1;
/// Bytes of the sequence number at the start of request and response.
const SEQUENCE_BYTES: u32 = 8;

/// A `virtio_queue::Queue` attached to the driver's queue.
#[derive(Debug)]
pub struct VmmDevice<'m> {
    memory: &'m GuestMemoryMmap,
    queue: Queue,
    event_idx: bool,
}

impl<'m> VmmDevice<'m> {
    /// Configures a queue with the driver's addresses and size, as a VMM
    /// does when the driver enables the queue.
    ///
    /// # Errors
    /// [`DeviceFault::RustVmm`] when `virtio-queue` rejects the size or an
    /// address, or finds the configuration invalid for `memory`.
    pub fn attach(
        memory: &'m GuestMemoryMmap,
        addresses: QueueAddresses,
        event_idx: bool,
    ) -> Result<Self, DeviceFault> {
        let rejected = |operation: &'static str| {
            move |error: virtio_queue::Error| DeviceFault::RustVmm {
                operation,
                message: error.to_string(),
            }
        };
        let mut queue = Queue::new(addresses.size).map_err(rejected("new"))?;
        queue
            .try_set_size(addresses.size)
            .map_err(rejected("set size"))?;
        queue
            .try_set_desc_table_address(GuestAddress(addresses.descriptor_area))
            .map_err(rejected("set descriptor table address"))?;
        queue
            .try_set_avail_ring_address(GuestAddress(addresses.driver_area))
            .map_err(rejected("set avail ring address"))?;
        queue
            .try_set_used_ring_address(GuestAddress(addresses.device_area))
            .map_err(rejected("set used ring address"))?;
        queue.set_event_idx(event_idx);
        queue.set_ready(true);
        if !queue.is_valid(memory) {
            return Err(DeviceFault::RustVmm {
                operation: "is_valid",
                message: format!("queue at {addresses:x?} is not valid in guest memory"),
            });
        }
        Ok(VmmDevice {
            memory,
            queue,
            event_idx,
        })
    }

    fn vmm_error(operation: &'static str, error: virtio_queue::Error) -> DeviceFault {
        DeviceFault::RustVmm {
            operation,
            message: error.to_string(),
        }
    }

    fn interrupts_suppressed_by_flags(&self) -> Result<bool, DeviceFault> {
        let flags: u16 = self
            .memory
            .load(GuestAddress(self.queue.avail_ring()), Ordering::Relaxed)
            .map_err(|error| DeviceFault::RustVmm {
                operation: "load avail flags",
                message: error.to_string(),
            })?;
        Ok(u16::from_le(flags) & AVAIL_F_NO_INTERRUPT != 0)
    }
}

impl DeviceQueue for VmmDevice<'_> {
    fn disable_notifications(&mut self) -> Result<(), DeviceFault> {
        self.queue
            .disable_notification(self.memory)
            .map_err(|error| Self::vmm_error("disable_notification", error))
    }

    fn enable_notifications(&mut self) -> Result<bool, DeviceFault> {
        self.queue
            .enable_notification(self.memory)
            .map_err(|error| Self::vmm_error("enable_notification", error))
    }

    fn serve_next(&mut self) -> Result<Option<bool>, DeviceFault> {
        let memory = self.memory;
        let chain = self
            .queue
            .iter(memory)
            .map_err(|error| Self::vmm_error("iter", error))?
            .next();
        let Some(chain) = chain else {
            return Ok(None);
        };
        let head = chain.head_index();

        let mut request = None;
        let mut response = None;
        for descriptor in chain {
            if descriptor.is_write_only() {
                response = response.or(Some((descriptor.addr(), descriptor.len())));
            } else {
                request = request.or(Some((descriptor.addr(), descriptor.len())));
            }
        }
        let shape_invalid = DeviceFault::ChainShapeInvalid { head };
        let (request_address, request_len) = request.ok_or(shape_invalid.clone())?;
        let (response_address, capacity) = response.ok_or(shape_invalid.clone())?;
        if request_len < SEQUENCE_BYTES || capacity < SEQUENCE_BYTES {
            return Err(shape_invalid);
        }
        let not_mapped = |address: GuestAddress| DeviceFault::BufferNotMapped {
            head,
            address: address.0,
        };
        let sequence: u64 = memory
            .load(request_address, Ordering::Relaxed)
            .map_err(|_| not_mapped(request_address))?;
        let sequence = u64::from_le(sequence);
        memory
            .store(sequence.to_le(), response_address, Ordering::Relaxed)
            .map_err(|_| not_mapped(response_address))?;

        self.queue
            .add_used(memory, head, reported_len(sequence, capacity))
            .map_err(|error| Self::vmm_error("add_used", error))?;
        let mut interrupt = self
            .queue
            .needs_notification(memory)
            .map_err(|error| Self::vmm_error("needs_notification", error))?;
        if interrupt && !self.event_idx {
            interrupt = !self.interrupts_suppressed_by_flags()?;
        }
        Ok(Some(interrupt))
    }

    fn last_avail_idx(&self) -> u16 {
        self.queue.next_avail()
    }
}
