//! Virtqueue configuration, MSI-X vector assignment and queue notification
//! (virtio 1.2 section 4.1.5.1.3 "Virtqueue Configuration", 4.1.4.4
//! "Notification structure layout", 4.1.5.2 "Available Buffer
//! Notifications").

use log::info;
use pci::Bdf;

use super::registers::{common, VIRTIO_MSI_NO_VECTOR};
use super::{PciTransport, QueueNotifier, RegisterBlock, TransportError};
use crate::QueueAddresses;

/// Width of a doorbell write without VIRTIO_F_NOTIFICATION_DATA: the 16-bit
/// queue index.
const DOORBELL_WIDTH: usize = size_of::<u16>();

impl<R: RegisterBlock> PciTransport<R> {
    /// Configures queue `queue` with the areas in `addresses` and enables it,
    /// following section 4.1.5.1.3: select the queue, check its size, write
    /// the size and the three area addresses, assign the MSI-X vector
    /// (`None` for no interrupt) and set `queue_enable`.
    ///
    /// # Errors
    ///
    /// [`TransportError::QueueUnavailable`],
    /// [`TransportError::QueueSizeNotPowerOfTwo`],
    /// [`TransportError::QueueSizeTooLarge`],
    /// [`TransportError::NotifyOffsetOutOfRange`] (checked before any queue
    /// register is written) or [`TransportError::MsixVectorRejected`]. On
    /// error the queue is left disabled.
    pub fn setup_queue(
        &mut self,
        queue: u16,
        addresses: &QueueAddresses,
        msix_vector: Option<u16>,
    ) -> Result<QueueNotifier, TransportError> {
        let maximum = self.max_queue_size(queue)?;
        let size = addresses.size;
        if !size.is_power_of_two() {
            return Err(TransportError::QueueSizeNotPowerOfTwo { queue, size });
        }
        if size > maximum {
            return Err(TransportError::QueueSizeTooLarge {
                queue,
                requested: size,
                maximum,
            });
        }
        let notifier = self.selected_queue_notifier(queue)?;

        self.common.write16(common::QUEUE_SIZE, size);
        self.write_queue_address(common::QUEUE_DESC, addresses.descriptor_area);
        self.write_queue_address(common::QUEUE_DRIVER, addresses.driver_area);
        self.write_queue_address(common::QUEUE_DEVICE, addresses.device_area);
        self.write_msix_vector(common::QUEUE_MSIX_VECTOR, Some(queue), msix_vector)?;

        // Section 4.1.4.3.2: the driver configures every other queue field
        // before it writes 1 to queue_enable, and never writes 0.
        self.common.write16(common::QUEUE_ENABLE, 1);
        info!(
            "virtio-pci {}: queue {queue} enabled: size {size}, descriptor area {:#x}, driver \
             area {:#x}, device area {:#x}, MSI-X vector {msix_vector:?}, doorbell offset {:#x}",
            Bdf(self.function),
            addresses.descriptor_area,
            addresses.driver_area,
            addresses.device_area,
            notifier.doorbell_offset,
        );
        Ok(notifier)
    }

    /// Reads `queue_notify_off` of the selected queue and checks that its
    /// doorbell lies inside the notification region (section 4.1.4.4.1:
    /// without VIRTIO_F_NOTIFICATION_DATA the region must hold
    /// `queue_notify_off * notify_off_multiplier + 2` bytes) and is 2-byte
    /// aligned for the 16-bit write.
    fn selected_queue_notifier(&self, queue: u16) -> Result<QueueNotifier, TransportError> {
        let queue_notify_off = self.common.read16(common::QUEUE_NOTIFY_OFF);
        let offset = u64::from(queue_notify_off) * u64::from(self.notify_off_multiplier);
        let notify_length = self.notify.len();
        let doorbell_offset = usize::try_from(offset)
            .ok()
            .filter(|&offset| {
                offset
                    .checked_add(DOORBELL_WIDTH)
                    .is_some_and(|end| end <= notify_length)
            })
            .filter(|offset| offset.is_multiple_of(DOORBELL_WIDTH));
        match doorbell_offset {
            Some(doorbell_offset) => Ok(QueueNotifier {
                queue,
                doorbell_offset,
            }),
            None => Err(TransportError::NotifyOffsetOutOfRange {
                queue,
                queue_notify_off,
                notify_off_multiplier: self.notify_off_multiplier,
                notify_length,
            }),
        }
    }

    /// Writes a 64-bit queue address as two 32-bit halves, low then high.
    fn write_queue_address(&self, offset: usize, address: u64) {
        self.common.write32(offset, address as u32);
        self.common.write32(offset + 4, (address >> 32) as u32);
    }

    /// Writes an MSI-X vector register and reads it back; the device
    /// returns VIRTIO_MSI_NO_VECTOR when it cannot map the vector (section
    /// 4.1.5.1.2.1).
    fn write_msix_vector(
        &self,
        register: usize,
        queue: Option<u16>,
        vector: Option<u16>,
    ) -> Result<(), TransportError> {
        let requested = vector.unwrap_or(VIRTIO_MSI_NO_VECTOR);
        self.common.write16(register, requested);
        let read_back = self.common.read16(register);
        if read_back != requested {
            return Err(TransportError::MsixVectorRejected {
                queue,
                requested,
                read_back,
            });
        }
        Ok(())
    }

    /// Assigns the MSI-X vector for configuration change interrupts (`None`
    /// for no interrupt).
    ///
    /// # Errors
    ///
    /// [`TransportError::MsixVectorRejected`] if the vector does not read
    /// back.
    pub fn set_config_msix_vector(&mut self, vector: Option<u16>) -> Result<(), TransportError> {
        self.write_msix_vector(common::CONFIG_MSIX_VECTOR, None, vector)
    }

    /// Rings the doorbell of the queue behind `notifier`: writes the queue
    /// index as a 16-bit little-endian value (section 4.1.5.2, without
    /// VIRTIO_F_NOTIFICATION_DATA, which [`initialize`](Self::initialize)
    /// never negotiates).
    ///
    /// This issues no barrier. The caller publishes the avail index and
    /// orders that store before this write through the barrier module.
    pub fn notify(&self, notifier: QueueNotifier) {
        self.notify
            .write16(notifier.doorbell_offset, notifier.queue);
    }
}
