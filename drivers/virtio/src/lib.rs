//! Virtio 1.2 for the unikernel: the PCI modern transport (section 4.1
//! "Virtio Over PCI Bus"), feature negotiation (section 3.1 "Device
//! Initialization"), the split virtqueue (section 2.7 "Split Virtqueues") and
//! the barrier module that every ordering point of the queue goes through.
//!
//! Hardware sits behind seams so that the logic is tested on the host: DMA
//! memory ([`dma::Dma`]), device register blocks, and queue notification.
#![no_std]

extern crate alloc;
#[cfg(any(test, feature = "testing"))]
extern crate std;

pub mod barrier;
pub mod dma;
pub mod features;
pub mod queue;
pub mod ring;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod transport;

/// Device addresses of one split virtqueue's three areas, as the transport
/// writes them to the device (virtio 1.2 section 4.1.4.3, `queue_desc`,
/// `queue_driver`, `queue_device`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueAddresses {
    /// Device address of the descriptor table.
    pub descriptor_area: u64,
    /// Device address of the avail ring (the driver area).
    pub driver_area: u64,
    /// Device address of the used ring (the device area).
    pub device_area: u64,
    /// Number of descriptors; a power of two for split queues.
    pub size: u16,
}
