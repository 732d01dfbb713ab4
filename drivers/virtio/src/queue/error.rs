//! Errors and counters of the split virtqueue.

use core::fmt;

/// Allocation of a queue that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueArea {
    /// The descriptor area (descriptor table).
    Descriptor,
    /// The driver area (avail ring).
    Driver,
    /// The device area (used ring).
    Device,
    /// The driver-private free list and chain table.
    Bookkeeping,
}

impl fmt::Display for QueueArea {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            QueueArea::Descriptor => "descriptor area",
            QueueArea::Driver => "driver area",
            QueueArea::Device => "device area",
            QueueArea::Bookkeeping => "free list and chain table",
        })
    }
}

/// Failure of a split virtqueue operation. Every variant names the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueError {
    /// The queue size is not a power of two between 1 and 32768.
    InvalidSize {
        /// Queue index.
        queue: u16,
        /// Requested number of descriptors.
        size: u16,
    },
    /// Memory for one of the queue's allocations ran out.
    AllocationFailed {
        /// Queue index.
        queue: u16,
        /// The allocation that failed.
        area: QueueArea,
        /// Requested size before padding.
        size_bytes: usize,
    },
    /// A chain needs at least one buffer.
    EmptyChain {
        /// Queue index.
        queue: u16,
    },
    /// A chain has more buffers than the queue has descriptors, so it can
    /// never fit.
    ChainTooLong {
        /// Queue index.
        queue: u16,
        /// Buffers in the chain.
        needed: usize,
        /// Descriptors in the queue.
        size: u16,
    },
    /// Not enough free descriptors now; the chain fits once the device
    /// returns others.
    QueueFull {
        /// Queue index.
        queue: u16,
        /// Buffers in the chain.
        needed: usize,
        /// Free descriptors.
        free: u16,
    },
    /// The device's used idx is further ahead of the driver's than the number
    /// of published chains the device has not returned.
    UsedIdxInvalid {
        /// Queue index.
        queue: u16,
        /// Used idx read from the device area.
        used_idx: u16,
        /// Index of the next used entry the driver expected.
        last_used_idx: u16,
        /// Published chains the device had not returned.
        published_chains: u16,
    },
    /// A used element names a descriptor id at or past the queue size.
    UsedIdOutOfRange {
        /// Queue index.
        queue: u16,
        /// Id from the used element.
        id: u32,
        /// Descriptors in the queue.
        size: u16,
    },
    /// A used element names a descriptor that heads no chain the device owns:
    /// a free descriptor, one inside a chain, or a chain already returned.
    UsedIdNotOutstanding {
        /// Queue index.
        queue: u16,
        /// Id from the used element.
        id: u16,
    },
    /// An earlier device error stopped the queue; reset the device.
    Broken {
        /// Queue index.
        queue: u16,
    },
}

impl fmt::Display for QueueError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            QueueError::InvalidSize { queue, size } => {
                write!(formatter, "queue {queue}: size {size} is not a power of two between 1 and 32768")
            }
            QueueError::AllocationFailed { queue, area, size_bytes } => {
                write!(formatter, "queue {queue}: allocating the {area} ({size_bytes:#x} bytes) failed")
            }
            QueueError::EmptyChain { queue } => {
                write!(formatter, "queue {queue}: a chain needs at least one buffer")
            }
            QueueError::ChainTooLong { queue, needed, size } => write!(
                formatter,
                "queue {queue}: a chain of {needed} buffers exceeds the queue size {size}"
            ),
            QueueError::QueueFull { queue, needed, free } => write!(
                formatter,
                "queue {queue}: full, a chain needs {needed} descriptors and {free} are free"
            ),
            QueueError::UsedIdxInvalid { queue, used_idx, last_used_idx, published_chains } => write!(
                formatter,
                "queue {queue}: invalid used idx {used_idx:#x}, the driver is at {last_used_idx:#x} \
                 with {published_chains} published chains outstanding"
            ),
            QueueError::UsedIdOutOfRange { queue, id, size } => write!(
                formatter,
                "queue {queue}: used descriptor id {id:#x} is outside the table of {size} descriptors"
            ),
            QueueError::UsedIdNotOutstanding { queue, id } => write!(
                formatter,
                "queue {queue}: used descriptor id {id:#x} heads no chain owned by the device"
            ),
            QueueError::Broken { queue } => {
                write!(formatter, "queue {queue}: broken by an earlier device error, reset the device")
            }
        }
    }
}

impl core::error::Error for QueueError {}

/// A rejected [`super::SplitQueue::add`], with the token handed back.
#[derive(Debug, PartialEq, Eq)]
pub struct AddError<T> {
    /// Reason the chain was not added.
    pub error: QueueError,
    /// The token passed to `add`.
    pub token: T,
}

impl<T> AddError<T> {
    /// Returns the token, dropping the diagnosis.
    pub fn into_token(self) -> T {
        self.token
    }
}

impl<T> fmt::Display for AddError<T> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(formatter)
    }
}

impl<T: fmt::Debug> core::error::Error for AddError<T> {}

/// Counts of queue operations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueCounters {
    /// Chains added.
    pub adds: u64,
    /// Publications after which the device wanted a notification.
    pub kicks: u64,
    /// Publications after which the device did not want one.
    pub kicks_suppressed: u64,
    /// Used entries popped with a valid id, whatever their length.
    pub used_processed: u64,
    /// Errors by kind.
    pub errors: QueueErrorCounters,
}

/// Counts of queue errors by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueErrorCounters {
    /// Adds rejected for lack of free descriptors.
    pub queue_full: u64,
    /// Used idx values ahead of the outstanding chains.
    pub used_idx_invalid: u64,
    /// Used ids out of range or naming no outstanding chain.
    pub used_id_invalid: u64,
    /// Used lengths above the chain's writable capacity.
    pub used_length_invalid: u64,
}
