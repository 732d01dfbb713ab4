//! smoltcp's `Device` over the virtio-net driver, without copies: a receive
//! token lends smoltcp the driver's receive buffer and reposts it afterwards,
//! and a transmit token lets smoltcp write straight into a transmit buffer
//! behind the virtio-net header.

use alloc::vec;

use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use virtio::dma::Dma;
use virtio::transport::{PciTransport, RegisterBlock};
use virtio_net::{ReceivedFrame, Receiver, Transmitter, VirtioNet};

/// The driver wrapped for smoltcp.
pub struct NicDevice<R: RegisterBlock, D: Dma + Clone> {
    nic: VirtioNet<R, D>,
}

impl<R: RegisterBlock, D: Dma + Clone> NicDevice<R, D> {
    pub fn new(nic: VirtioNet<R, D>) -> Self {
        Self { nic }
    }

    /// Returns the driver.
    pub fn nic(&self) -> &VirtioNet<R, D> {
        &self.nic
    }

    /// Returns the driver for mode switches and interrupt control.
    pub fn nic_mut(&mut self) -> &mut VirtioNet<R, D> {
        &mut self.nic
    }
}

/// Lends smoltcp one received frame.
pub struct NicRxToken<'a, R: RegisterBlock, D: Dma + Clone> {
    receiver: &'a mut Receiver<D>,
    transport: &'a PciTransport<R>,
    frame: ReceivedFrame,
}

/// Lets smoltcp write one frame into a transmit buffer.
pub struct NicTxToken<'a, R: RegisterBlock, D: Dma + Clone> {
    transmitter: &'a mut Transmitter<D>,
    transport: &'a PciTransport<R>,
}

impl<R: RegisterBlock, D: Dma + Clone> phy::RxToken for NicRxToken<'_, R, D> {
    fn consume<T, F: FnOnce(&[u8]) -> T>(self, operation: F) -> T {
        let result = operation(self.receiver.frame(&self.frame));
        self.receiver.recycle(self.frame, self.transport);
        result
    }
}

impl<R: RegisterBlock, D: Dma + Clone> phy::TxToken for NicTxToken<'_, R, D> {
    fn consume<T, F: FnOnce(&mut [u8]) -> T>(self, length: usize, operation: F) -> T {
        // `transmit` checked for a free buffer, but a reply built while
        // handling a received frame may find the ring full or the frame too
        // long: then the driver counts the drop, smoltcp writes into scratch
        // memory, and the frame is lost as on a full NIC queue.
        let mut pending = Some(operation);
        let sent = self.transmitter.send(
            length,
            |buffer| (pending.take().expect("send calls its fill function once"))(buffer),
            self.transport,
        );
        match sent {
            Some(result) => result,
            None => {
                let mut scratch = vec![0u8; length];
                (pending.take().expect("a refused send does not call the fill function"))(&mut scratch)
            }
        }
    }
}

impl<R: RegisterBlock, D: Dma + Clone> Device for NicDevice<R, D> {
    type RxToken<'a> = NicRxToken<'a, R, D> where Self: 'a;
    type TxToken<'a> = NicTxToken<'a, R, D> where Self: 'a;

    fn receive(&mut self, _timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let parts = self.nic.parts();
        let frame = parts.receiver.receive(parts.transport)?;
        Some((
            NicRxToken { receiver: parts.receiver, transport: parts.transport, frame },
            NicTxToken { transmitter: parts.transmitter, transport: parts.transport },
        ))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<Self::TxToken<'_>> {
        let parts = self.nic.parts();
        if !parts.transmitter.has_free_buffer() {
            return None;
        }
        Some(NicTxToken { transmitter: parts.transmitter, transport: parts.transport })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut capabilities = DeviceCapabilities::default();
        capabilities.medium = Medium::Ethernet;
        capabilities.max_transmission_unit = self.nic.max_frame_bytes().min(1514);
        capabilities.max_burst_size = None;
        capabilities
    }
}
