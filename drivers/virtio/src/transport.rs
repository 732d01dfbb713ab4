//! The virtio-pci modern transport (virtio 1.2 section 4.1 "Virtio Over PCI
//! Bus").
//!
//! This module owns device initialization and feature negotiation (section
//! 3.1 "Device Initialization", 4.1.5.1 "Device Initialization"), virtqueue
//! configuration (4.1.5.1.3), queue notification (4.1.5.2 "Available Buffer
//! Notifications"), the ISR status register (4.1.4.5) and device
//! configuration reads guarded by `config_generation` (4.1.4.3.1 and 2.5.1
//! "Driver Requirements: Device Configuration Space").
//!
//! [`VirtioPciCapabilities::parse`] finds the four virtio structures of a
//! PCI function. The kernel maps them and wraps each in a [`RegisterBlock`]
//! (an [`MmioRegion`]), from which [`PciTransport::new`] builds the
//! transport. Tests use the device model in the `testing` module instead
//! (built for tests and with the crate's `testing` feature).

mod capabilities;
mod device_config;
mod error;
mod queues;
mod registers;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[cfg(test)]
mod tests;

use core::fmt;

use log::{error, info, warn};
use pci::{Bdf, PciAddress};

pub use capabilities::{
    CapabilityRegion, CapabilityType, VirtioPciCapabilities, PCI_CAPABILITY_ID_VENDOR,
};
pub use error::TransportError;
pub use registers::{MmioRegion, RegisterBlock, VIRTIO_MSI_NO_VECTOR};

use crate::features::{
    DeviceStatus, Features, VIRTIO_F_NOTIFICATION_DATA, VIRTIO_F_NOTIF_CONFIG_DATA,
    VIRTIO_F_RING_RESET, VIRTIO_F_VERSION_1,
};
use registers::common;

/// Number of `device_status` reads after a reset before
/// [`TransportError::ResetTimeout`].
///
/// The bound is a read count because the transport has no clock. It only
/// stops a device whose reset never completes from hanging boot.
/// NOTE: the count is a guess, not measured on a device that resets slowly.
pub const RESET_POLL_LIMIT: u32 = 100_000;

/// Number of attempts to read device configuration with an unchanged
/// `config_generation` before [`TransportError::ConfigGenerationUnstable`].
pub const CONFIG_READ_ATTEMPTS: u32 = 16;

/// Features this transport cannot drive, removed from every negotiation:
/// notifications carrying data, and single-queue reset.
const TRANSPORT_UNSUPPORTED: Features = Features::from_bit(VIRTIO_F_NOTIFICATION_DATA)
    .with(VIRTIO_F_NOTIF_CONFIG_DATA)
    .with(VIRTIO_F_RING_RESET);

/// The four register blocks of a device, mapped from its
/// [`VirtioPciCapabilities`].
#[derive(Debug)]
pub struct TransportRegisters<R> {
    /// Common configuration structure.
    pub common: R,
    /// Notification region holding the queue doorbells.
    pub notify: R,
    /// The notify capability's `notify_off_multiplier`.
    pub notify_off_multiplier: u32,
    /// ISR status register.
    pub isr: R,
    /// Device-specific configuration, if the device has one.
    pub device: Option<R>,
}

/// Doorbell of one enabled virtqueue, returned by
/// [`PciTransport::setup_queue`] and passed to [`PciTransport::notify`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueNotifier {
    queue: u16,
    doorbell_offset: usize,
}

impl QueueNotifier {
    /// Returns the queue index, which is also the value written to the
    /// doorbell.
    pub fn queue(&self) -> u16 {
        self.queue
    }

    /// Returns the doorbell's byte offset in the notification region:
    /// `queue_notify_off * notify_off_multiplier`.
    pub fn doorbell_offset(&self) -> usize {
        self.doorbell_offset
    }
}

/// Value of the ISR status register (section 4.1.4.5 "ISR status
/// capability").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IsrStatus(pub u8);

impl IsrStatus {
    /// Bit 0: a queue has used buffers to report.
    pub const QUEUE_INTERRUPT: u8 = 1 << 0;
    /// Bit 1: the device configuration changed.
    pub const DEVICE_CONFIGURATION_CHANGE: u8 = 1 << 1;

    /// Returns whether the queue interrupt bit is set.
    pub fn queue_interrupt(self) -> bool {
        self.0 & IsrStatus::QUEUE_INTERRUPT != 0
    }

    /// Returns whether the device configuration change bit is set.
    pub fn device_configuration_change(self) -> bool {
        self.0 & IsrStatus::DEVICE_CONFIGURATION_CHANGE != 0
    }
}

/// A virtio device reached through the PCI modern transport.
///
/// Methods that select a queue (`queue_select`, then per-queue registers)
/// take `&mut self` so that no other access changes the selection in
/// between; [`notify`](Self::notify) and configuration reads take `&self`.
pub struct PciTransport<R: RegisterBlock> {
    function: PciAddress,
    common: R,
    notify: R,
    notify_off_multiplier: u32,
    isr: R,
    device: Option<R>,
}

impl<R: RegisterBlock> fmt::Debug for PciTransport<R> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("PciTransport")
            .field("function", &self.function)
            .field("notify_off_multiplier", &self.notify_off_multiplier)
            .finish_non_exhaustive()
    }
}

impl<R: RegisterBlock> PciTransport<R> {
    /// Builds a transport for `function` from its mapped register blocks.
    ///
    /// # Errors
    ///
    /// [`TransportError::CapabilityTooShort`] if the common configuration,
    /// notification or ISR block is shorter than its structure.
    pub fn new(
        function: PciAddress,
        registers: TransportRegisters<R>,
    ) -> Result<PciTransport<R>, TransportError> {
        let blocks = [
            (CapabilityType::CommonCfg, registers.common.len()),
            (CapabilityType::NotifyCfg, registers.notify.len()),
            (CapabilityType::IsrCfg, registers.isr.len()),
        ];
        for (cfg_type, length) in blocks {
            let minimum_length = cfg_type.minimum_length();
            if length < minimum_length {
                return Err(TransportError::CapabilityTooShort {
                    function,
                    cfg_type,
                    length,
                    minimum_length,
                });
            }
        }
        Ok(PciTransport {
            function,
            common: registers.common,
            notify: registers.notify,
            notify_off_multiplier: registers.notify_off_multiplier,
            isr: registers.isr,
            device: registers.device,
        })
    }

    /// Returns the PCI function of the device.
    pub fn function(&self) -> PciAddress {
        self.function
    }

    /// Resets the device and negotiates features, leaving the status at
    /// ACKNOWLEDGE | DRIVER | FEATURES_OK (section 3.1.1 steps 1 to 6).
    ///
    /// The negotiated set is `offered & (supported | required)`, without the
    /// notification-data and queue-reset features this transport cannot
    /// drive. VIRTIO_F_VERSION_1 is always required. The caller inspects the
    /// result for features that change its behaviour, such as
    /// VIRTIO_F_ORDER_PLATFORM, then sets up queues and calls
    /// [`driver_ok`](Self::driver_ok).
    ///
    /// # Errors
    ///
    /// [`TransportError::ResetTimeout`], [`TransportError::MissingFeatures`]
    /// (a required feature is not offered) or
    /// [`TransportError::FeaturesRejected`] (FEATURES_OK did not stick). On
    /// any error the device is marked FAILED and reset, and the error is
    /// logged once.
    pub fn initialize(
        &mut self,
        supported: Features,
        required: Features,
    ) -> Result<Features, TransportError> {
        let result = self.negotiate(supported, required);
        match result {
            Ok(negotiated) => info!(
                "virtio-pci {}: negotiated features {negotiated}",
                Bdf(self.function)
            ),
            Err(error) => {
                error!(
                    "virtio-pci {}: initialization failed: {error}",
                    Bdf(self.function)
                );
                self.abandon();
            }
        }
        result
    }

    fn negotiate(
        &mut self,
        supported: Features,
        required: Features,
    ) -> Result<Features, TransportError> {
        let required = required.with(VIRTIO_F_VERSION_1);
        debug_assert!(
            (required & TRANSPORT_UNSUPPORTED).is_empty(),
            "required features {required} include ones this transport cannot drive"
        );

        self.reset()?;
        self.add_status(DeviceStatus::ACKNOWLEDGE);
        self.add_status(DeviceStatus::DRIVER);

        let offered = self.read_device_features();
        let missing = required - offered;
        if !missing.is_empty() {
            return Err(TransportError::MissingFeatures { offered, missing });
        }
        let acceptable = supported.union(required).difference(TRANSPORT_UNSUPPORTED);
        let requested = offered.intersection(acceptable);
        self.write_driver_features(requested);

        // Section 3.1.1 step 6: the device clears FEATURES_OK if it does not
        // accept the written subset, so the driver re-reads the status.
        self.add_status(DeviceStatus::FEATURES_OK);
        if !self.status().contains(DeviceStatus::FEATURES_OK) {
            return Err(TransportError::FeaturesRejected { offered, requested });
        }
        Ok(requested)
    }

    /// Sets FAILED (section 3.1.1: the driver gives up on the device), then
    /// resets the device so that it does not use half-configured state.
    fn abandon(&mut self) {
        self.add_status(DeviceStatus::FAILED);
        if let Err(error) = self.reset() {
            warn!(
                "virtio-pci {}: reset after failed initialization: {error}",
                Bdf(self.function)
            );
        }
    }

    /// Returns the 64 feature bits the device offers, read through the two
    /// `device_feature_select` windows.
    fn read_device_features(&self) -> Features {
        self.common.write32(common::DEVICE_FEATURE_SELECT, 0);
        let low = self.common.read32(common::DEVICE_FEATURE);
        self.common.write32(common::DEVICE_FEATURE_SELECT, 1);
        let high = self.common.read32(common::DEVICE_FEATURE);
        Features(u64::from(high) << 32 | u64::from(low))
    }

    fn write_driver_features(&self, features: Features) {
        self.common.write32(common::DRIVER_FEATURE_SELECT, 0);
        self.common
            .write32(common::DRIVER_FEATURE, features.bits() as u32);
        self.common.write32(common::DRIVER_FEATURE_SELECT, 1);
        self.common
            .write32(common::DRIVER_FEATURE, (features.bits() >> 32) as u32);
    }

    /// Sets DRIVER_OK: the device is live (section 3.1.1 step 8). Call after
    /// [`initialize`](Self::initialize) and the queue setup.
    ///
    /// Logs a warning if the status read back lacks FEATURES_OK or DRIVER_OK,
    /// or has DEVICE_NEEDS_RESET set; [`status`](Self::status) shows it.
    pub fn driver_ok(&mut self) {
        self.add_status(DeviceStatus::DRIVER_OK);

        let status = self.status();
        let live = DeviceStatus::FEATURES_OK | DeviceStatus::DRIVER_OK;
        if status.contains(live) && !status.contains(DeviceStatus::DEVICE_NEEDS_RESET) {
            info!("virtio-pci {}: device status {status}", Bdf(self.function));
        } else {
            warn!(
                "virtio-pci {}: device status {status} after DRIVER_OK",
                Bdf(self.function)
            );
        }
    }

    /// Returns the current device status.
    pub fn status(&self) -> DeviceStatus {
        DeviceStatus(self.common.read8(common::DEVICE_STATUS))
    }

    /// Ors `bits` into the device status. The driver never clears status
    /// bits except by reset (section 2.1.1).
    fn add_status(&self, bits: DeviceStatus) {
        let status = self.status() | bits;
        self.common.write8(common::DEVICE_STATUS, status.bits());
    }

    /// Resets the device: writes 0 to `device_status`, then waits until it
    /// reads 0, as section 4.1.4.3.2 requires before reinitializing.
    ///
    /// # Errors
    ///
    /// [`TransportError::ResetTimeout`] after [`RESET_POLL_LIMIT`] reads.
    pub fn reset(&mut self) -> Result<(), TransportError> {
        self.common
            .write8(common::DEVICE_STATUS, DeviceStatus::RESET.bits());
        for _ in 0..RESET_POLL_LIMIT {
            if self.status() == DeviceStatus::RESET {
                return Ok(());
            }
            core::hint::spin_loop();
        }
        Err(TransportError::ResetTimeout {
            status: self.status(),
            polls: RESET_POLL_LIMIT,
        })
    }

    /// Returns the number of virtqueues the device supports (`num_queues`).
    pub fn num_queues(&self) -> u16 {
        self.common.read16(common::NUM_QUEUES)
    }

    /// Returns the maximum size of queue `queue`, read from `queue_size`.
    /// The register reads the maximum after a reset and the configured size
    /// once [`setup_queue`](Self::setup_queue) wrote one.
    ///
    /// # Errors
    ///
    /// [`TransportError::QueueUnavailable`] if the index is at or past
    /// `num_queues` or the queue's size reads 0.
    pub fn max_queue_size(&mut self, queue: u16) -> Result<u16, TransportError> {
        let num_queues = self.num_queues();
        if queue >= num_queues {
            return Err(TransportError::QueueUnavailable { queue, num_queues });
        }
        self.common.write16(common::QUEUE_SELECT, queue);
        match self.common.read16(common::QUEUE_SIZE) {
            0 => Err(TransportError::QueueUnavailable { queue, num_queues }),
            maximum => Ok(maximum),
        }
    }
}
