//! A virtio-pci device model for host tests.
//!
//! [`ModelDevice`] implements the registers of virtio 1.2 section 4.1.4
//! "Virtio Structure PCI Capabilities" the way a device does. It has feature
//! select windows, driver feature latching, and a status register that
//! clears FEATURES_OK when it does not accept the driver's features. It also
//! has per-queue registers behind `queue_select`, MSI-X vector read-back, a
//! doorbell region and a device configuration with `config_generation`. Its knobs
//! ([`ModelSettings`]) produce the misbehaving devices the transport must
//! survive. Accesses the spec forbids are recorded as violations rather than
//! panicking, so that tests of error paths can still check them.
//!
//! Built for tests and, with the crate's `testing` feature, for the tests
//! of other crates; it needs `std` for its lock.

mod state;

use std::string::String;
use std::sync::{Arc, Mutex, MutexGuard};
use std::vec;
use std::vec::Vec;

use pci::PciAddress;

use super::registers::common;
use super::{PciTransport, RegisterBlock, TransportRegisters};
use crate::features::{DeviceStatus, Features, VIRTIO_F_VERSION_1};
use state::ModelState;

/// The function address the model reports to [`PciTransport::new`].
pub const MODEL_FUNCTION: (u16, u8, u8, u8) = (0, 0, 3, 0);

/// Configuration of one model queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelQueueSettings {
    /// Maximum queue size reported in `queue_size`; 0 means the queue does
    /// not exist.
    pub max_size: u16,
    /// The queue's `queue_notify_off`.
    pub notify_off: u16,
}

/// Knobs of a [`ModelDevice`].
#[derive(Clone, Debug)]
pub struct ModelSettings {
    /// Features the device offers in `device_feature`.
    pub offered: Features,
    /// Whether the device clears FEATURES_OK even for an acceptable subset.
    pub rejects_features_ok: bool,
    /// Number of `device_status` reads after a reset that still return the
    /// status from before the reset. A reset of a device whose status is
    /// already 0 completes at once.
    pub reset_reads: u32,
    /// One entry per queue; `num_queues` is the length.
    pub queues: Vec<ModelQueueSettings>,
    /// The notify capability's `notify_off_multiplier`.
    pub notify_off_multiplier: u32,
    /// Length of the notification region in bytes.
    pub notify_length: usize,
    /// Length of the common configuration region in bytes.
    pub common_length: usize,
    /// MSI-X table size: vectors below it are accepted, others read back as
    /// VIRTIO_MSI_NO_VECTOR.
    pub msix_vectors: u16,
    /// Initial device-specific configuration; empty means the device has
    /// none.
    pub device_config: Vec<u8>,
    /// Whether every device configuration read is followed by a
    /// configuration change, so `config_generation` never settles.
    pub config_changes_on_every_read: bool,
}

impl Default for ModelSettings {
    /// Returns a device like QEMU's virtio-net-pci without a control queue: two
    /// queues of 256 entries, `notify_off_multiplier` 4, a 4 KiB notify
    /// region, three MSI-X vectors and 8 bytes of device configuration.
    fn default() -> ModelSettings {
        ModelSettings {
            offered: Features::from_bit(VIRTIO_F_VERSION_1),
            rejects_features_ok: false,
            reset_reads: 0,
            queues: vec![
                ModelQueueSettings {
                    max_size: 256,
                    notify_off: 0,
                },
                ModelQueueSettings {
                    max_size: 256,
                    notify_off: 1,
                },
            ],
            notify_off_multiplier: 4,
            notify_length: 0x1000,
            common_length: common::LENGTH,
            msix_vectors: 3,
            device_config: vec![0; 8],
            config_changes_on_every_read: false,
        }
    }
}

/// The driver-visible state of one model queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelQueueState {
    /// Current `queue_size`.
    pub size: u16,
    /// Current `queue_msix_vector`.
    pub msix_vector: u16,
    /// Whether the driver wrote 1 to `queue_enable`.
    pub enabled: bool,
    /// `queue_desc`.
    pub descriptor_area: u64,
    /// `queue_driver`.
    pub driver_area: u64,
    /// `queue_device`.
    pub device_area: u64,
}

/// One doorbell write in the notification region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelNotification {
    /// Byte offset of the write in the notification region.
    pub offset: usize,
    /// The 16-bit value written (the queue index).
    pub value: u16,
}

/// A virtio-pci device model; clones share one device.
#[derive(Clone)]
pub struct ModelDevice {
    state: Arc<Mutex<ModelState>>,
}

/// The virtio structure that a [`ModelRegion`] exposes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelRegionKind {
    /// Common configuration.
    Common,
    /// Notification region.
    Notify,
    /// ISR status.
    Isr,
    /// Device-specific configuration.
    DeviceConfig,
}

/// A register block of a [`ModelDevice`].
#[derive(Clone)]
pub struct ModelRegion {
    device: ModelDevice,
    kind: ModelRegionKind,
}

impl ModelDevice {
    /// Creates a device in the reset state.
    pub fn new(settings: ModelSettings) -> ModelDevice {
        ModelDevice {
            state: Arc::new(Mutex::new(ModelState::new(settings))),
        }
    }

    fn lock(&self) -> MutexGuard<'_, ModelState> {
        self.state
            .lock()
            .expect("a test panicked while holding the model lock")
    }

    /// Returns a register block for one structure of this device.
    pub fn region(&self, kind: ModelRegionKind) -> ModelRegion {
        ModelRegion {
            device: self.clone(),
            kind,
        }
    }

    /// Returns the four register blocks, as the kernel builds them from the
    /// capabilities.
    pub fn registers(&self) -> TransportRegisters<ModelRegion> {
        let has_device_config = !self.lock().device_config.is_empty();
        TransportRegisters {
            common: self.region(ModelRegionKind::Common),
            notify: self.region(ModelRegionKind::Notify),
            notify_off_multiplier: self.lock().settings.notify_off_multiplier,
            isr: self.region(ModelRegionKind::Isr),
            device: has_device_config.then(|| self.region(ModelRegionKind::DeviceConfig)),
        }
    }

    /// Returns a transport over this device.
    ///
    /// # Panics
    ///
    /// Panics if the settings make a region shorter than the transport
    /// accepts; use [`PciTransport::new`] with [`registers`](Self::registers)
    /// to test that case.
    pub fn transport(&self) -> PciTransport<ModelRegion> {
        let (segment, bus, device, function) = MODEL_FUNCTION;
        let address = PciAddress::new(segment, bus, device, function);
        PciTransport::new(address, self.registers())
            .expect("model regions meet the minimum lengths")
    }

    /// Returns the status stored in the device. During a reset that is
    /// still in progress this is already 0, while driver reads see the old
    /// value.
    pub fn status(&self) -> DeviceStatus {
        DeviceStatus(self.lock().status)
    }

    /// Returns every value the driver wrote to `device_status`, in order.
    pub fn status_writes(&self) -> Vec<DeviceStatus> {
        self.lock().status_writes.clone()
    }

    /// Returns how many times the driver read `device_status`.
    pub fn status_reads(&self) -> u64 {
        self.lock().status_reads
    }

    /// Returns the features the driver wrote through `driver_feature`.
    pub fn driver_features(&self) -> Features {
        Features(self.lock().driver_features)
    }

    /// Returns the state of queue `index`.
    ///
    /// # Panics
    ///
    /// Panics if the model has no such queue.
    pub fn queue(&self, index: u16) -> ModelQueueState {
        self.lock().queues[usize::from(index)]
    }

    /// Returns the current `config_msix_vector`.
    pub fn config_msix_vector(&self) -> u16 {
        self.lock().config_msix_vector
    }

    /// Returns the doorbell writes so far, in order.
    pub fn notifications(&self) -> Vec<ModelNotification> {
        self.lock().notifications.clone()
    }

    /// Sets bits in the ISR status, as the device does before an interrupt.
    pub fn raise_isr(&self, bits: u8) {
        self.lock().isr |= bits;
    }

    /// Changes the device configuration now: writes `bytes` at `offset`,
    /// increments `config_generation` and sets the configuration change ISR
    /// bit.
    pub fn update_device_config(&self, offset: usize, bytes: &[u8]) {
        self.lock().apply_config_update(offset, bytes);
    }

    /// Queues a configuration change that the device applies right after the
    /// next device configuration read, racing the driver.
    pub fn schedule_device_config_update(&self, offset: usize, bytes: &[u8]) {
        self.lock()
            .pending_config_updates
            .push_back((offset, bytes.to_vec()));
    }

    /// Returns the number of scheduled configuration changes not yet applied.
    pub fn pending_device_config_updates(&self) -> usize {
        self.lock().pending_config_updates.len()
    }

    /// Returns the current `config_generation`.
    pub fn config_generation(&self) -> u8 {
        self.lock().config_generation
    }

    /// Returns the accesses so far that the spec forbids the driver to make.
    pub fn violations(&self) -> Vec<String> {
        self.lock().violations.clone()
    }
}

impl RegisterBlock for ModelRegion {
    fn read8(&self, offset: usize) -> u8 {
        self.device.lock().read(self.kind, offset, 1) as u8
    }

    fn read16(&self, offset: usize) -> u16 {
        self.device.lock().read(self.kind, offset, 2) as u16
    }

    fn read32(&self, offset: usize) -> u32 {
        self.device.lock().read(self.kind, offset, 4)
    }

    fn write8(&self, offset: usize, value: u8) {
        self.device
            .lock()
            .write(self.kind, offset, 1, u32::from(value));
    }

    fn write16(&self, offset: usize, value: u16) {
        self.device
            .lock()
            .write(self.kind, offset, 2, u32::from(value));
    }

    fn write32(&self, offset: usize, value: u32) {
        self.device.lock().write(self.kind, offset, 4, value);
    }

    fn len(&self) -> usize {
        self.device.lock().region_length(self.kind)
    }
}
