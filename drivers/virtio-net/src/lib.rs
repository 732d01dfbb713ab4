//! The virtio-net device driver (virtio 1.2 section 5.1 "Network Device"):
//! one receive queue (0) and one transmit queue (1) over the PCI modern
//! transport, with the MAC address and link status from the device
//! configuration.
//!
//! Only what is implemented is negotiated: VIRTIO_F_VERSION_1 (required),
//! VIRTIO_NET_F_MAC, VIRTIO_NET_F_STATUS, VIRTIO_F_EVENT_IDX (unless turned
//! off) and VIRTIO_F_ORDER_PLATFORM (which forces strong barriers). No
//! checksum or segmentation offload, no mergeable receive buffers, so every
//! receive buffer contains a whole frame.
//!
//! Device life cycle as this driver drives it:
//!
//! ```text
//! reset ─► ACKNOWLEDGE ─► DRIVER ─► FEATURES_OK ─► queues set up,
//!          receive buffers posted ─► DRIVER_OK ─► running ─► (drop) reset
//!   any failure ─► reset, error returned
//! ```
#![no_std]

extern crate alloc;
#[cfg(test)]
extern crate std;

mod buffers;
pub mod header;
pub mod histogram;
pub mod rx;
pub mod stats;
pub mod tx;

use core::fmt;

use log::{info, warn};
use virtio::barrier::BarrierMode;
use virtio::dma::Dma;
use virtio::features::{
    Features, VIRTIO_F_EVENT_IDX, VIRTIO_F_ORDER_PLATFORM, VIRTIO_F_VERSION_1, VIRTIO_NET_F_MAC,
    VIRTIO_NET_F_STATUS,
};
use virtio::queue::{QueueError, SplitQueue};
use virtio::transport::{PciTransport, RegisterBlock, TransportError};

use crate::buffers::BufferPool;
use crate::header::{config, HEADER_BYTES, VIRTIO_NET_S_LINK_UP};
pub use crate::rx::{ReceivedFrame, Receiver};
pub use crate::stats::{NetStats, RxStats, TxStats};
pub use crate::tx::Transmitter;

/// Queue index of receiveq1.
pub const RECEIVE_QUEUE: u16 = 0;
/// Queue index of transmitq1.
pub const TRANSMIT_QUEUE: u16 = 1;
/// Buffer size per receive and transmit slot: header plus a 1514-byte
/// Ethernet frame, rounded up so slots stay cache-line aligned.
pub const BUFFER_BYTES: usize = 1536 + 64;
/// The largest queue size the driver requests; QEMU offers 256.
pub const MAX_QUEUE_SIZE: u16 = 256;
/// Locally administered MAC used when the device offers none.
const FALLBACK_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];

/// MSI-X table entries the driver assigns, when MSI-X is in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsixVectors {
    /// Entry for configuration changes (`msix_config`).
    pub config: u16,
    /// Entry for the receive queue.
    pub receive: u16,
    /// Entry for the transmit queue.
    pub transmit: u16,
}

/// Driver settings chosen by the kernel command line.
#[derive(Clone, Copy, Debug)]
pub struct NetOptions {
    pub barrier_mode: BarrierMode,
    /// Offer VIRTIO_F_EVENT_IDX; without it the ring flags suppress
    /// notifications.
    pub event_idx: bool,
    /// MSI-X entries to program, or `None` for the INTx line and the ISR
    /// status register.
    pub msix: Option<MsixVectors>,
}

/// Error of bringing up the NIC.
#[derive(Debug)]
pub enum NetError {
    /// A transport step failed; the device was left reset.
    Transport(TransportError),
    /// A queue could not be created.
    Queue(QueueError),
    /// Packet buffers for `queue` could not be allocated.
    BufferAllocationFailed { queue: u16, bytes: usize },
}

impl fmt::Display for NetError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Transport(error) => write!(formatter, "transport: {error:?}"),
            Self::Queue(error) => write!(formatter, "queue: {error:?}"),
            Self::BufferAllocationFailed { queue, bytes } => {
                write!(formatter, "cannot allocate {bytes} bytes of buffers for queue {queue}")
            }
        }
    }
}

impl From<TransportError> for NetError {
    fn from(error: TransportError) -> Self {
        Self::Transport(error)
    }
}

/// A running virtio-net device.
pub struct VirtioNet<R: RegisterBlock, D: Dma + Clone> {
    transport: PciTransport<R>,
    receiver: Receiver<D>,
    transmitter: Transmitter<D>,
    features: Features,
    mac_address: [u8; 6],
}

impl<R: RegisterBlock, D: Dma + Clone> VirtioNet<R, D> {
    /// Negotiates features, sets up both queues, posts the receive buffers
    /// and sets DRIVER_OK. On failure the device is left reset.
    pub fn new(mut transport: PciTransport<R>, dma: D, options: NetOptions) -> Result<Self, NetError> {
        let mut supported = Features::from_bit(VIRTIO_F_VERSION_1)
            .with(VIRTIO_NET_F_MAC)
            .with(VIRTIO_NET_F_STATUS)
            .with(VIRTIO_F_ORDER_PLATFORM);
        if options.event_idx {
            supported = supported.with(VIRTIO_F_EVENT_IDX);
        }
        let required = Features::from_bit(VIRTIO_F_VERSION_1);
        let features = transport.initialize(supported, required)?;
        info!("virtio-net {}: negotiated features: {features}", transport.function());

        match Self::bring_up(&mut transport, dma, options, features) {
            Ok((receiver, transmitter)) => {
                let mac_address = read_mac(&transport, features);
                let mut device = Self {
                    transport,
                    receiver,
                    transmitter,
                    features,
                    mac_address,
                };
                device.transport.driver_ok();
                device.log_ready();
                Ok(device)
            }
            Err(error) => {
                if let Err(reset_error) = transport.reset() {
                    warn!("virtio-net: reset after failed setup also failed: {reset_error:?}");
                }
                Err(error)
            }
        }
    }

    fn bring_up(
        transport: &mut PciTransport<R>,
        dma: D,
        options: NetOptions,
        features: Features,
    ) -> Result<(Receiver<D>, Transmitter<D>), NetError> {
        let event_idx = features.has(VIRTIO_F_EVENT_IDX);
        let order_platform = features.has(VIRTIO_F_ORDER_PLATFORM);

        if let Some(vectors) = options.msix {
            transport.set_config_msix_vector(Some(vectors.config))?;
        }
        let mut make_queue = |index: u16, vector: Option<u16>| -> Result<_, NetError> {
            let size = transport.max_queue_size(index)?.min(MAX_QUEUE_SIZE);
            let queue = SplitQueue::new(dma.clone(), index, size, options.barrier_mode, event_idx, order_platform)
                .map_err(NetError::Queue)?;
            let notifier = transport.setup_queue(index, &queue.addresses(), vector)?;
            let buffers = BufferPool::new(dma.clone(), size, BUFFER_BYTES).ok_or(
                NetError::BufferAllocationFailed { queue: index, bytes: usize::from(size) * BUFFER_BYTES },
            )?;
            Ok((queue, notifier, buffers))
        };
        let (queue, notifier, buffers) = make_queue(RECEIVE_QUEUE, options.msix.map(|vectors| vectors.receive))?;
        let mut receiver = Receiver::new(queue, notifier, buffers);
        let (queue, notifier, buffers) = make_queue(TRANSMIT_QUEUE, options.msix.map(|vectors| vectors.transmit))?;
        let transmitter = Transmitter::new(queue, notifier, buffers);

        receiver.post_all(transport);
        Ok((receiver, transmitter))
    }

    fn log_ready(&self) {
        let mac = self.mac_address;
        info!(
            "virtio-net {}: MAC {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}, link {}, queues {}+{} \
             descriptors, barriers {:?}{}",
            self.transport.function(),
            mac[0], mac[1], mac[2], mac[3], mac[4], mac[5],
            match self.link_up() {
                Some(true) => "up",
                Some(false) => "down",
                None => "status not offered",
            },
            self.receiver.queue().size(),
            self.transmitter.queue().size(),
            self.receiver.queue().barrier_mode(),
            if self.receiver.queue().order_platform() { " (forced by VIRTIO_F_ORDER_PLATFORM)" } else { "" },
        );
    }

    /// Returns the MAC address.
    pub fn mac_address(&self) -> [u8; 6] {
        self.mac_address
    }

    /// Returns the negotiated features.
    pub fn features(&self) -> Features {
        self.features
    }

    /// Returns the link state, or `None` when VIRTIO_NET_F_STATUS was not
    /// negotiated.
    pub fn link_up(&self) -> Option<bool> {
        if !self.features.has(VIRTIO_NET_F_STATUS) {
            return None;
        }
        let status = self.transport.read_device_config_u16(config::STATUS).ok()?;
        Some(status & VIRTIO_NET_S_LINK_UP != 0)
    }

    /// Returns the largest Ethernet frame the driver sends or receives.
    pub fn max_frame_bytes(&self) -> usize {
        BUFFER_BYTES - HEADER_BYTES
    }

    /// Returns the counters.
    pub fn stats(&self) -> NetStats {
        NetStats { rx: *self.receiver.stats(), tx: *self.transmitter.stats() }
    }

    /// Returns the transport, for the console and interrupt set-up.
    pub fn transport(&self) -> &PciTransport<R> {
        &self.transport
    }

    /// Returns the receive side.
    pub fn receiver(&self) -> &Receiver<D> {
        &self.receiver
    }

    /// Returns the transmit side.
    pub fn transmitter(&self) -> &Transmitter<D> {
        &self.transmitter
    }

    /// Sets the barrier mode of both queues; returns false when a queue
    /// refused because VIRTIO_F_ORDER_PLATFORM forces strong barriers.
    pub fn set_barrier_mode(&mut self, mode: BarrierMode) -> bool {
        let receive = self.receiver.queue_mut().set_barrier_mode(mode);
        let transmit = self.transmitter.queue_mut().set_barrier_mode(mode);
        receive && transmit
    }

    /// Suppresses used-buffer notifications (interrupts) on both queues,
    /// while the driver processes the rings.
    pub fn disable_interrupts(&mut self) {
        self.receiver.queue_mut().disable_interrupts();
        self.transmitter.queue_mut().disable_interrupts();
    }

    /// Takes back every transmit buffer the device has finished with.
    /// Transmit chains are otherwise reclaimed only when the free list runs
    /// empty, and a used ring left non-empty would make
    /// [`enable_interrupts`](Self::enable_interrupts) report pending work
    /// forever.
    pub fn reclaim_transmitted(&mut self) {
        self.transmitter.reclaim();
    }

    /// Re-enables used-buffer notifications on both queues. Returns true
    /// when used buffers arrived meanwhile, so the caller must process the
    /// rings again instead of waiting for an interrupt that may not come.
    pub fn enable_interrupts(&mut self) -> bool {
        let receive_pending = self.receiver.queue_mut().enable_interrupts();
        let transmit_pending = self.transmitter.queue_mut().enable_interrupts();
        receive_pending || transmit_pending
    }

    /// Returns whether either queue has used buffers waiting.
    pub fn has_used_buffers(&self) -> bool {
        self.receiver.queue().used_idx() != self.receiver.queue().last_used_idx()
            || self.transmitter.queue().used_idx() != self.transmitter.queue().last_used_idx()
    }

    /// Splits the device into its parts, so that a received frame and a
    /// transmission can be handled at the same time.
    pub fn parts(&mut self) -> Parts<'_, R, D> {
        Parts {
            receiver: &mut self.receiver,
            transmitter: &mut self.transmitter,
            transport: &self.transport,
        }
    }
}

/// Disjoint borrows of a [`VirtioNet`].
pub struct Parts<'a, R: RegisterBlock, D: Dma + Clone> {
    pub receiver: &'a mut Receiver<D>,
    pub transmitter: &'a mut Transmitter<D>,
    pub transport: &'a PciTransport<R>,
}

impl<R: RegisterBlock, D: Dma + Clone> Drop for VirtioNet<R, D> {
    fn drop(&mut self) {
        // The queues and buffers are freed after this, so the device must
        // stop using them first.
        if let Err(error) = self.transport.reset() {
            warn!("virtio-net: reset on drop failed: {error:?}");
        }
    }
}

fn read_mac<R: RegisterBlock>(transport: &PciTransport<R>, features: Features) -> [u8; 6] {
    if !features.has(VIRTIO_NET_F_MAC) {
        return FALLBACK_MAC;
    }
    let mut mac = [0u8; 6];
    for (offset, byte) in mac.iter_mut().enumerate() {
        match transport.read_device_config_u8(config::MAC + offset) {
            Ok(value) => *byte = value,
            Err(error) => {
                warn!("virtio-net: MAC unreadable ({error:?}), using {FALLBACK_MAC:02x?}");
                return FALLBACK_MAC;
            }
        }
    }
    mac
}
