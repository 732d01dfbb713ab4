//! The driver side of one split virtqueue: descriptor allocation, buffer
//! publication, available buffer notification decisions, used ring
//! processing and used buffer notification (interrupt) suppression.
//!
//! Spec: virtio 1.2 section 2.7 "Split Virtqueues", in particular section
//! 2.7.13 "Supplying Buffers to The Device", section 2.7.14 "Receiving Used
//! Buffers From The Device", section 2.7.7 "Used Buffer Notification
//! Suppression" and section 2.7.10 "Available Buffer Notification
//! Suppression".
//!
//! Ownership of one descriptor chain:
//!
//! ```text
//!         add()             publish()                  device stores used idx
//!  free ---------> added ---------------> available ------------------------> used
//!   ^    (driver owns it;   (avail idx covers it;    (device owns the           |
//!   |     device cannot      device may read the      buffers)                  |
//!   |     see it yet)        chain at any time)                                 |
//!   +------------------ pop_used(): chain freed, token handed back -------------+
//! ```
//!
//! The queue never reads descriptor links or ids back from shared memory. It
//! keeps its own free list and its own record of each outstanding chain, so
//! a device that writes garbage can at most make the queue report an error.

mod allocation;
mod error;
mod inspect;
#[cfg(test)]
mod tests;

pub use error::{AddError, QueueArea, QueueCounters, QueueError, QueueErrorCounters};

use alloc::vec::Vec;

use self::allocation::{allocate_areas, allocate_bookkeeping, free_areas, Area};
use crate::barrier::{BarrierMode, BarrierSite, SiteBarriers};
use crate::dma::Dma;
use crate::ring::{
    AvailRing, Descriptor, DescriptorTable, Le16, Le32, Le64, UsedRing, MAX_QUEUE_SIZE,
    VIRTQ_AVAIL_F_NO_INTERRUPT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, VIRTQ_USED_F_NO_NOTIFY,
};
use crate::QueueAddresses;

/// One buffer of a descriptor chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Buffer {
    /// Device address of the first byte, from [`Dma::device_address`].
    pub address: u64,
    /// Length in bytes.
    pub len: u32,
}

/// Length the device reported for a used chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UsedLength {
    /// Bytes written into the chain's device-writable buffers, at most their
    /// total capacity.
    Valid(u32),
    /// The device reported more bytes than the device-writable buffers hold;
    /// the contents must not be trusted, but the buffers may be reposted.
    ExceedsCapacity {
        /// Length from the used element.
        reported: u32,
        /// Total length of the chain's device-writable buffers.
        capacity_bytes: u64,
    },
}

impl UsedLength {
    /// Returns the written length when it is valid.
    pub fn valid(self) -> Option<u32> {
        match self {
            UsedLength::Valid(len) => Some(len),
            UsedLength::ExceedsCapacity { .. } => None,
        }
    }
}

/// A chain the device has finished with.
#[derive(Debug, PartialEq, Eq)]
pub struct UsedBuffer<T> {
    /// Token passed to [`SplitQueue::add`] for this chain.
    pub token: T,
    /// Descriptor id of the chain head, as returned by [`SplitQueue::add`].
    pub head: u16,
    /// Length the device reported.
    pub length: UsedLength,
}

/// Driver-private record of a chain the device owns.
#[derive(Debug)]
struct Chain<T> {
    token: T,
    tail: u16,
    descriptor_count: u16,
    writable_capacity_bytes: u64,
}

/// The driver side of a split virtqueue whose rings live in memory from `D`.
///
/// `T` is the driver's token for a chain; [`SplitQueue::pop_used`] hands it
/// back when the device returns the chain.
///
/// Dropping the queue frees its rings, so the transport must reset the
/// device, or at least this queue, before the queue is dropped.
#[derive(Debug)]
pub struct SplitQueue<T, D: Dma> {
    dma: D,
    queue_index: u16,
    size: u16,
    event_idx: bool,
    areas: [Area; 3],
    descriptors: DescriptorTable,
    avail: AvailRing,
    used: UsedRing,
    /// Free list links, driver-private so the device cannot corrupt them.
    next_free: Vec<u16>,
    free_head: u16,
    free_count: u16,
    /// Outstanding chains, indexed by head descriptor id.
    chains: Vec<Option<Chain<T>>>,
    outstanding_chains: u16,
    /// Avail idx including added but unpublished chains.
    avail_idx: u16,
    published_avail_idx: u16,
    last_used_idx: u16,
    interrupts_enabled: bool,
    broken: bool,
    barriers: SiteBarriers,
    counters: QueueCounters,
}

// SAFETY: `with_start_index` allocates the ring memory behind the raw
// pointers, and only this queue and the device reach it. The device does not
// depend on which CPU drives the queue, so moving the queue to another thread
// moves sole ownership with it. Tokens and the DMA allocator move too, hence
// the `Send` bounds.
unsafe impl<T: Send, D: Dma + Send> Send for SplitQueue<T, D> {}

impl<T, D: Dma> SplitQueue<T, D> {
    /// Allocates the three areas of queue `queue_index` with `size`
    /// descriptors.
    ///
    /// `event_idx` is true when `VIRTIO_F_EVENT_IDX` was negotiated, and
    /// `order_platform` when `VIRTIO_F_ORDER_PLATFORM` was. With
    /// `order_platform` every barrier is strong whatever `mode` is.
    ///
    /// # Errors
    /// [`QueueError::InvalidSize`] unless `size` is a power of two of at most
    /// 32768, and [`QueueError::AllocationFailed`] when memory runs out.
    pub fn new(
        dma: D,
        queue_index: u16,
        size: u16,
        mode: BarrierMode,
        event_idx: bool,
        order_platform: bool,
    ) -> Result<Self, QueueError> {
        Self::with_start_index(dma, queue_index, size, mode, event_idx, order_platform, 0)
    }

    /// Like [`Self::new`], but the avail idx, used idx and both event indices
    /// start at `start_index` instead of 0.
    ///
    /// A virtio device starts its indices at 0 after a reset, so this is for
    /// device models configured with the same start index, to exercise
    /// 16-bit wraparound early. It writes the device area (used idx and
    /// `avail_event`), which is only correct before the transport gives the
    /// queue addresses to the device.
    ///
    /// # Errors
    /// As for [`Self::new`].
    pub fn with_start_index(
        dma: D,
        queue_index: u16,
        size: u16,
        mode: BarrierMode,
        event_idx: bool,
        order_platform: bool,
        start_index: u16,
    ) -> Result<Self, QueueError> {
        if !size.is_power_of_two() || size > MAX_QUEUE_SIZE {
            return Err(QueueError::InvalidSize {
                queue: queue_index,
                size,
            });
        }
        let areas = allocate_areas(&dma, queue_index, size)?;
        let bookkeeping = allocate_bookkeeping(size).ok_or(QueueError::AllocationFailed {
            queue: queue_index,
            area: QueueArea::Bookkeeping,
            size_bytes: usize::from(size) * (size_of::<u16>() + size_of::<Option<Chain<T>>>()),
        });
        let (next_free, chains) = match bookkeeping {
            Ok(bookkeeping) => bookkeeping,
            Err(error) => {
                // SAFETY: the areas were allocated just above, and the
                // device does not have their addresses yet.
                unsafe { free_areas(&dma, &areas) };
                return Err(error);
            }
        };

        // SAFETY: each area was allocated by `allocate_areas` with the spec
        // size for `size` descriptors and at least the spec alignment, and
        // only these views access it until `Drop` frees it.
        let (descriptors, avail, used) = unsafe {
            (
                DescriptorTable::new(areas[0].ptr.cast(), size),
                AvailRing::new(areas[1].ptr, size),
                UsedRing::new(areas[2].ptr, size),
            )
        };
        avail.set_idx(start_index);
        avail.set_used_event(start_index);
        used.set_idx(start_index);
        used.set_avail_event(start_index);

        let queue = SplitQueue {
            dma,
            queue_index,
            size,
            event_idx,
            areas,
            descriptors,
            avail,
            used,
            next_free,
            free_head: 0,
            free_count: size,
            chains,
            outstanding_chains: 0,
            avail_idx: start_index,
            published_avail_idx: start_index,
            last_used_idx: start_index,
            interrupts_enabled: true,
            broken: false,
            barriers: SiteBarriers::new(queue_index, mode, order_platform),
            counters: QueueCounters::default(),
        };
        let addresses = queue.addresses();
        log::info!(
            "virtio queue {queue_index}: {size} descriptors, event idx {event_idx}, \
             {} barriers, descriptor area {:#x}, driver area {:#x}, device area {:#x}",
            queue.barrier_mode(),
            addresses.descriptor_area,
            addresses.driver_area,
            addresses.device_area,
        );
        Ok(queue)
    }

    /// Device addresses of the three areas, for the transport to write.
    pub fn addresses(&self) -> QueueAddresses {
        QueueAddresses {
            descriptor_area: self.dma.device_address(self.areas[0].ptr.as_ptr()),
            driver_area: self.dma.device_address(self.areas[1].ptr.as_ptr()),
            device_area: self.dma.device_address(self.areas[2].ptr.as_ptr()),
            size: self.size,
        }
    }

    /// Chains `readable` then `writable` buffers into free descriptors and
    /// writes the chain head into the next avail ring entry. The chain is
    /// visible to the device only after [`Self::publish`], so several adds
    /// can share one publication. Returns the head descriptor id.
    ///
    /// # Errors
    /// Returns the token inside [`AddError`] with [`QueueError::Broken`],
    /// [`QueueError::EmptyChain`], [`QueueError::ChainTooLong`] (more buffers
    /// than the queue size) or [`QueueError::QueueFull`] (not enough free
    /// descriptors now; retry after [`Self::pop_used`]).
    pub fn add(
        &mut self,
        readable: &[Buffer],
        writable: &[Buffer],
        token: T,
    ) -> Result<u16, AddError<T>> {
        let needed = readable.len() + writable.len();
        if let Err(error) = self.check_room(needed) {
            return Err(AddError { error, token });
        }
        let descriptor_count =
            u16::try_from(needed).expect("check_room bounds the chain by the u16 queue size");

        let head = self.free_head;
        let mut id = head;
        let mut tail = head;
        let buffers = readable
            .iter()
            .map(|buffer| (buffer, 0))
            .chain(writable.iter().map(|buffer| (buffer, VIRTQ_DESC_F_WRITE)));
        for (position, (buffer, write_flag)) in buffers.enumerate() {
            let next = self.next_free[usize::from(id)];
            let last = position + 1 == needed;
            // Section 2.7.13.1: every descriptor but the last has
            // VIRTQ_DESC_F_NEXT and names its successor in `next`.
            self.descriptors.write(
                id,
                Descriptor {
                    addr: Le64::new(buffer.address),
                    len: Le32::new(buffer.len),
                    flags: Le16::new(if last {
                        write_flag
                    } else {
                        write_flag | VIRTQ_DESC_F_NEXT
                    }),
                    next: Le16::new(if last { 0 } else { next }),
                },
            );
            tail = id;
            id = next;
        }
        self.free_head = id;
        self.free_count -= descriptor_count;

        let writable_capacity_bytes = writable.iter().map(|buffer| u64::from(buffer.len)).sum();
        self.chains[usize::from(head)] = Some(Chain {
            token,
            tail,
            descriptor_count,
            writable_capacity_bytes,
        });
        self.outstanding_chains += 1;
        self.avail.set_entry(self.avail_idx, head);
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.counters.adds += 1;
        Ok(head)
    }

    /// Makes every chain added since the last publication visible to the
    /// device, then decides whether the device wants an available buffer
    /// notification. Returns true when the caller must notify the device
    /// through the transport; returns false when nothing was added or the
    /// queue is broken.
    pub fn publish(&mut self) -> bool {
        if self.broken || self.avail_idx == self.published_avail_idx {
            return false;
        }
        let old_idx = self.published_avail_idx;
        let new_idx = self.avail_idx;

        // Descriptor table and avail ring entries before the avail idx store
        // (section 2.7.13.3: the device may read the chains as soon as the
        // new idx is visible).
        self.barriers.fence(BarrierSite::AvailPublish);
        self.avail.set_idx(new_idx);
        self.published_avail_idx = new_idx;

        // Avail idx store before the avail_event or used flags load (section
        // 2.7.13.4). Otherwise the load may see a device that is about to
        // sleep while the device does not yet see the new entries, and no one
        // acts on them.
        self.barriers.fence(BarrierSite::NotifyCheck);
        let notify = if self.event_idx {
            need_event(self.used.avail_event(), new_idx, old_idx)
        } else {
            self.used.flags() & VIRTQ_USED_F_NO_NOTIFY == 0
        };

        if notify {
            self.counters.kicks += 1;
        } else {
            self.counters.kicks_suppressed += 1;
        }
        notify
    }

    /// Takes the next chain from the used ring, frees its descriptors and
    /// returns its token, or returns `Ok(None)` when the device has not used
    /// another chain.
    ///
    /// A length above the chain's writable capacity is counted and returned
    /// as [`UsedLength::ExceedsCapacity`] with the token.
    ///
    /// # Errors
    /// A used idx that runs ahead of the outstanding chains, or a used id that
    /// is out of range or names no outstanding chain, marks the queue broken:
    /// that call returns the diagnosis and every later call
    /// [`QueueError::Broken`]. The device must then be reset;
    /// [`Self::take_outstanding`] recovers the remaining tokens.
    pub fn pop_used(&mut self) -> Result<Option<UsedBuffer<T>>, QueueError> {
        if self.broken {
            return Err(QueueError::Broken {
                queue: self.queue_index,
            });
        }
        let used_idx = self.used.idx();
        if used_idx == self.last_used_idx {
            return Ok(None);
        }
        // Only published chains can come back, because chains that are
        // only added still belong to the driver.
        let published_chains =
            self.outstanding_chains - self.avail_idx.wrapping_sub(self.published_avail_idx);
        if used_idx.wrapping_sub(self.last_used_idx) > published_chains {
            self.counters.errors.used_idx_invalid += 1;
            return Err(self.mark_broken(QueueError::UsedIdxInvalid {
                queue: self.queue_index,
                used_idx,
                last_used_idx: self.last_used_idx,
                published_chains,
            }));
        }

        // Used idx load before the used element and buffer content loads
        // (section 2.7.14; the device wrote both before it stored idx,
        // section 2.7.8).
        self.barriers.fence(BarrierSite::UsedRead);
        let element = self.used.element(self.last_used_idx);
        self.last_used_idx = self.last_used_idx.wrapping_add(1);

        let (head, chain) = match self.take_chain(element.id.get()) {
            Ok(found) => found,
            Err(error) => {
                self.counters.errors.used_id_invalid += 1;
                return Err(self.mark_broken(error));
            }
        };
        self.free_chain(head, chain.tail, chain.descriptor_count);
        self.counters.used_processed += 1;

        let reported = element.len.get();
        let length = if u64::from(reported) <= chain.writable_capacity_bytes {
            UsedLength::Valid(reported)
        } else {
            self.count_length_error(head, reported, chain.writable_capacity_bytes);
            UsedLength::ExceedsCapacity {
                reported,
                capacity_bytes: chain.writable_capacity_bytes,
            }
        };
        Ok(Some(UsedBuffer {
            token: chain.token,
            head,
            length,
        }))
    }

    /// Asks the device not to send used buffer notifications. The request is
    /// a hint (section 2.7.7), so an interrupt may still arrive.
    pub fn disable_interrupts(&mut self) {
        if self.event_idx {
            // The device interrupts when it writes the used entry at index
            // `used_event`. The entry one before the last one seen comes round
            // again only after 65535 more entries, and at most `size` (32768
            // or fewer) chains are outstanding, so the device never reaches
            // it. Section 2.7.7.1 requires flags 0 with event idx.
            self.avail
                .set_used_event(self.last_used_idx.wrapping_sub(1));
        } else {
            self.avail.set_flags(VIRTQ_AVAIL_F_NO_INTERRUPT);
        }
        self.interrupts_enabled = false;
    }

    /// Asks the device for a used buffer notification for the next chain it
    /// uses, then re-reads the used idx. Returns true when used chains are
    /// already pending: no notification may come for them, so the caller must
    /// poll again. Returns false for a broken queue.
    ///
    /// With event idx the request covers only the entry after the last one
    /// popped, so a driver calls this after each polling round, not once.
    pub fn enable_interrupts(&mut self) -> bool {
        if self.broken {
            return false;
        }
        self.interrupts_enabled = true;

        // The suppression race. The device stores its used idx, then loads
        // flags or used_event to decide on an interrupt. The driver stores
        // flags or used_event here, then loads the used idx. x86_64 lets a
        // load pass an older store to another address, so without a full
        // barrier on each side both loads can return the old values. The
        // device then finds interrupts disabled, the driver finds no new
        // entry, and the completion waits with nobody to process it. The full
        // barrier between this store and the re-read makes at least one side
        // observe the other's store.
        if self.event_idx {
            let used_event = Le16::new(self.last_used_idx).to_bits();
            // Section 2.7.7: used_event store before the used idx re-read.
            // SAFETY: the pointer is the `used_event` field of the avail ring,
            // which `with_start_index` allocated with 2-byte alignment for
            // this queue alone. No Rust reference covers ring memory.
            unsafe {
                self.barriers.store_then_fence(
                    BarrierSite::UsedEventStore,
                    self.avail.used_event_ptr(),
                    used_event,
                )
            };
        } else {
            self.avail.set_flags(0);
            // Section 2.7.7: flags store before the used idx re-read.
            self.barriers.fence(BarrierSite::InterruptEnable);
        }
        self.used.idx() != self.last_used_idx
    }

    /// Hands back the tokens of every chain the device still owns and marks
    /// the queue broken. Call it only after resetting the device: before
    /// that, the device may still write into the buffers the tokens name.
    pub fn take_outstanding(&mut self) -> Vec<T> {
        self.broken = true;
        self.outstanding_chains = 0;
        self.chains
            .iter_mut()
            .filter_map(Option::take)
            .map(|chain| chain.token)
            .collect()
    }

    fn check_room(&mut self, needed: usize) -> Result<(), QueueError> {
        let queue = self.queue_index;
        if self.broken {
            return Err(QueueError::Broken { queue });
        }
        if needed == 0 {
            return Err(QueueError::EmptyChain { queue });
        }
        if needed > usize::from(self.size) {
            return Err(QueueError::ChainTooLong {
                queue,
                needed,
                size: self.size,
            });
        }
        if needed > usize::from(self.free_count) {
            self.counters.errors.queue_full += 1;
            return Err(QueueError::QueueFull {
                queue,
                needed,
                free: self.free_count,
            });
        }
        Ok(())
    }

    /// Removes the outstanding chain whose head is the device-supplied `id`.
    fn take_chain(&mut self, id: u32) -> Result<(u16, Chain<T>), QueueError> {
        let queue = self.queue_index;
        let head = u16::try_from(id)
            .ok()
            .filter(|&head| head < self.size)
            .ok_or(QueueError::UsedIdOutOfRange {
                queue,
                id,
                size: self.size,
            })?;
        let chain = self.chains[usize::from(head)]
            .take()
            .ok_or(QueueError::UsedIdNotOutstanding { queue, id: head })?;
        self.outstanding_chains -= 1;
        Ok((head, chain))
    }

    fn free_chain(&mut self, head: u16, tail: u16, descriptor_count: u16) {
        self.next_free[usize::from(tail)] = self.free_head;
        self.free_head = head;
        self.free_count += descriptor_count;
    }

    fn count_length_error(&mut self, head: u16, reported: u32, capacity_bytes: u64) {
        self.counters.errors.used_length_invalid += 1;
        let count = self.counters.errors.used_length_invalid;
        // Rate limit: a device that keeps doing this logs at counts 1, 2, 4,
        // 8 and so on.
        if count.is_power_of_two() {
            log::warn!(
                "virtio queue {}: used length {reported:#x} of chain {head} exceeds its \
                 writable capacity {capacity_bytes:#x} ({count} such entries so far)",
                self.queue_index
            );
        }
    }

    fn mark_broken(&mut self, error: QueueError) -> QueueError {
        self.broken = true;
        log::error!("virtio {error}; the queue stops until the device is reset");
        error
    }
}

impl<T, D: Dma> Drop for SplitQueue<T, D> {
    fn drop(&mut self) {
        // SAFETY: the areas came from `allocate_areas` with these layouts and
        // are freed only here. The type's documentation requires the device
        // to be reset before the queue is dropped.
        unsafe { free_areas(&self.dma, &self.areas) };
    }
}

/// Returns whether the other side asked for a notification when its index
/// moved from `old_idx` to `new_idx`: true when the entry at `event_idx` is
/// among the entries `old_idx..new_idx`, in 16-bit wrapping arithmetic.
///
/// This is the event index test of section 2.7.7 and section 2.7.10: the
/// side that wrote `event_idx` wants a notification once the index passes
/// it.
pub fn need_event(event_idx: u16, new_idx: u16, old_idx: u16) -> bool {
    // Distance from the event entry to the last new entry, against the number
    // of new entries; both wrap, so the window may span 65535 -> 0.
    new_idx.wrapping_sub(event_idx).wrapping_sub(1) < new_idx.wrapping_sub(old_idx)
}
