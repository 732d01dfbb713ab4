//! Register behaviour of the device model: what each register access does
//! to the modelled device state.

use std::collections::VecDeque;
use std::format;
use std::string::String;
use std::vec::Vec;

use super::{
    ModelNotification, ModelQueueSettings, ModelQueueState, ModelRegionKind, ModelSettings,
};
use crate::features::DeviceStatus;
use crate::transport::registers::{access_fits, common, VIRTIO_MSI_NO_VECTOR};
use crate::transport::IsrStatus;

/// The state behind one model device, shared by its four regions.
pub(super) struct ModelState {
    pub(super) settings: ModelSettings,
    pub(super) status: u8,
    pub(super) status_before_reset: u8,
    pub(super) reset_reads_left: u32,
    pub(super) status_writes: Vec<DeviceStatus>,
    pub(super) status_reads: u64,
    pub(super) device_feature_select: u32,
    pub(super) driver_feature_select: u32,
    pub(super) driver_features: u64,
    pub(super) config_msix_vector: u16,
    pub(super) queue_select: u16,
    pub(super) queues: Vec<ModelQueueState>,
    pub(super) config_generation: u8,
    pub(super) device_config: Vec<u8>,
    pub(super) pending_config_updates: VecDeque<(usize, Vec<u8>)>,
    pub(super) isr: u8,
    pub(super) notifications: Vec<ModelNotification>,
    pub(super) violations: Vec<String>,
}

impl ModelState {
    pub(super) fn new(settings: ModelSettings) -> ModelState {
        let queues = settings.queues.iter().map(reset_queue).collect();
        ModelState {
            device_config: settings.device_config.clone(),
            settings,
            status: 0,
            status_before_reset: 0,
            reset_reads_left: 0,
            status_writes: Vec::new(),
            status_reads: 0,
            device_feature_select: 0,
            driver_feature_select: 0,
            driver_features: 0,
            config_msix_vector: VIRTIO_MSI_NO_VECTOR,
            queue_select: 0,
            queues,
            config_generation: 0,
            pending_config_updates: VecDeque::new(),
            isr: 0,
            notifications: Vec::new(),
            violations: Vec::new(),
        }
    }
}

fn reset_queue(settings: &ModelQueueSettings) -> ModelQueueState {
    ModelQueueState {
        size: settings.max_size,
        msix_vector: VIRTIO_MSI_NO_VECTOR,
        enabled: false,
        descriptor_area: 0,
        driver_area: 0,
        device_area: 0,
    }
}

/// Replaces the low (`high == false`) or high half of a 64-bit register.
fn set_half(register: &mut u64, high: bool, value: u32) {
    let shift = if high { 32 } else { 0 };
    *register = *register & !(u64::from(u32::MAX) << shift) | u64::from(value) << shift;
}

/// Returns the width of the common configuration register at `offset`, or `None`
/// for an offset inside a register or past the structure.
fn common_register_width(offset: usize) -> Option<usize> {
    let widths = [
        (common::DEVICE_FEATURE_SELECT, 4),
        (common::DEVICE_FEATURE, 4),
        (common::DRIVER_FEATURE_SELECT, 4),
        (common::DRIVER_FEATURE, 4),
        (common::CONFIG_MSIX_VECTOR, 2),
        (common::NUM_QUEUES, 2),
        (common::DEVICE_STATUS, 1),
        (common::CONFIG_GENERATION, 1),
        (common::QUEUE_SELECT, 2),
        (common::QUEUE_SIZE, 2),
        (common::QUEUE_MSIX_VECTOR, 2),
        (common::QUEUE_ENABLE, 2),
        (common::QUEUE_NOTIFY_OFF, 2),
        (common::QUEUE_DESC, 4),
        (common::QUEUE_DESC + 4, 4),
        (common::QUEUE_DRIVER, 4),
        (common::QUEUE_DRIVER + 4, 4),
        (common::QUEUE_DEVICE, 4),
        (common::QUEUE_DEVICE + 4, 4),
        (common::QUEUE_NOTIFY_DATA, 2),
        (common::QUEUE_RESET, 2),
    ];
    widths
        .iter()
        .find(|(register, _)| *register == offset)
        .map(|(_, width)| *width)
}

impl ModelState {
    fn violation(&mut self, message: String) {
        self.violations.push(message);
    }

    pub(super) fn region_length(&self, kind: ModelRegionKind) -> usize {
        match kind {
            ModelRegionKind::Common => self.settings.common_length,
            ModelRegionKind::Notify => self.settings.notify_length,
            ModelRegionKind::Isr => 4,
            ModelRegionKind::DeviceConfig => self.device_config.len(),
        }
    }

    fn selected_queue(&mut self) -> Option<&mut ModelQueueState> {
        self.queues.get_mut(usize::from(self.queue_select))
    }

    fn accepts_msix_vector(&self, vector: u16) -> bool {
        vector == VIRTIO_MSI_NO_VECTOR || vector < self.settings.msix_vectors
    }

    pub(super) fn read(&mut self, kind: ModelRegionKind, offset: usize, width: usize) -> u32 {
        if !access_fits(offset, width, self.region_length(kind)) {
            self.violation(format!(
                "{kind:?}: {width}-byte read at {offset:#x} outside region"
            ));
            return u32::MAX;
        }
        match kind {
            ModelRegionKind::Common => self.read_common(offset, width),
            ModelRegionKind::Notify => {
                self.violation(format!("notify: read at {offset:#x}"));
                u32::MAX
            }
            ModelRegionKind::Isr => {
                let isr = if offset == 0 {
                    core::mem::take(&mut self.isr)
                } else {
                    0
                };
                u32::from(isr)
            }
            ModelRegionKind::DeviceConfig => self.read_device_config(offset, width),
        }
    }

    pub(super) fn write(&mut self, kind: ModelRegionKind, offset: usize, width: usize, value: u32) {
        if !access_fits(offset, width, self.region_length(kind)) {
            self.violation(format!(
                "{kind:?}: {width}-byte write at {offset:#x} outside region"
            ));
            return;
        }
        match kind {
            ModelRegionKind::Common => self.write_common(offset, width, value),
            ModelRegionKind::Notify if width == 2 => {
                self.notifications.push(ModelNotification {
                    offset,
                    value: value as u16,
                });
            }
            _ => self.violation(format!("{kind:?}: {width}-byte write at {offset:#x}")),
        }
    }

    fn read_common(&mut self, offset: usize, width: usize) -> u32 {
        if common_register_width(offset) != Some(width) {
            self.violation(format!("common: {width}-byte read at {offset:#x}"));
            return u32::MAX;
        }
        let queue = self.queues.get(usize::from(self.queue_select)).copied();
        let queue_settings = self
            .settings
            .queues
            .get(usize::from(self.queue_select))
            .copied();
        match offset {
            common::DEVICE_FEATURE_SELECT => self.device_feature_select,
            common::DEVICE_FEATURE => match self.device_feature_select {
                0 => self.settings.offered.bits() as u32,
                1 => (self.settings.offered.bits() >> 32) as u32,
                _ => 0,
            },
            common::DRIVER_FEATURE_SELECT => self.driver_feature_select,
            common::DRIVER_FEATURE => match self.driver_feature_select {
                0 => self.driver_features as u32,
                1 => (self.driver_features >> 32) as u32,
                _ => 0,
            },
            common::CONFIG_MSIX_VECTOR => u32::from(self.config_msix_vector),
            common::NUM_QUEUES => self.queues.len() as u32,
            common::DEVICE_STATUS => u32::from(self.read_status()),
            common::CONFIG_GENERATION => u32::from(self.config_generation),
            common::QUEUE_SELECT => u32::from(self.queue_select),
            common::QUEUE_SIZE => queue.map_or(0, |queue| u32::from(queue.size)),
            common::QUEUE_MSIX_VECTOR => queue.map_or(u32::from(VIRTIO_MSI_NO_VECTOR), |queue| {
                u32::from(queue.msix_vector)
            }),
            common::QUEUE_ENABLE => queue.map_or(0, |queue| u32::from(queue.enabled)),
            common::QUEUE_NOTIFY_OFF => {
                queue_settings.map_or(0, |queue| u32::from(queue.notify_off))
            }
            _ => self.read_queue_address(queue, offset),
        }
    }

    /// Reads a half of `queue_desc`, `queue_driver` or `queue_device`. The
    /// remaining registers (`queue_notify_data`, `queue_reset`) read 0.
    fn read_queue_address(&self, queue: Option<ModelQueueState>, offset: usize) -> u32 {
        let Some(queue) = queue else {
            return 0;
        };
        let registers = [
            (common::QUEUE_DESC, queue.descriptor_area),
            (common::QUEUE_DRIVER, queue.driver_area),
            (common::QUEUE_DEVICE, queue.device_area),
        ];
        for (register, address) in registers {
            if offset == register {
                return address as u32;
            }
            if offset == register + 4 {
                return (address >> 32) as u32;
            }
        }
        0
    }

    fn read_status(&mut self) -> u8 {
        self.status_reads += 1;
        if self.reset_reads_left > 0 {
            self.reset_reads_left -= 1;
            return self.status_before_reset;
        }
        self.status
    }

    fn write_common(&mut self, offset: usize, width: usize, value: u32) {
        if common_register_width(offset) != Some(width) {
            self.violation(format!("common: {width}-byte write at {offset:#x}"));
            return;
        }
        let is_queue_register = offset >= common::QUEUE_SIZE;
        if is_queue_register && !DeviceStatus(self.status).contains(DeviceStatus::FEATURES_OK) {
            self.violation(format!(
                "queue register {offset:#x} written before FEATURES_OK"
            ));
        }
        if is_queue_register && self.selected_queue().is_some_and(|queue| queue.enabled) {
            self.violation(format!(
                "queue register {offset:#x} written after queue_enable"
            ));
        }
        match offset {
            common::DEVICE_FEATURE_SELECT => self.device_feature_select = value,
            common::DRIVER_FEATURE_SELECT => self.driver_feature_select = value,
            common::DRIVER_FEATURE => self.write_driver_feature(value),
            common::CONFIG_MSIX_VECTOR => {
                let vector = value as u16;
                self.config_msix_vector = if self.accepts_msix_vector(vector) {
                    vector
                } else {
                    VIRTIO_MSI_NO_VECTOR
                };
            }
            common::DEVICE_STATUS => self.write_status(value as u8),
            common::QUEUE_SELECT => self.queue_select = value as u16,
            common::DEVICE_FEATURE | common::NUM_QUEUES | common::CONFIG_GENERATION => {
                self.violation(format!("read-only register {offset:#x} written"));
            }
            _ => self.write_queue_register(offset, value),
        }
    }

    fn write_driver_feature(&mut self, value: u32) {
        if DeviceStatus(self.status).contains(DeviceStatus::FEATURES_OK) {
            self.violation(String::from("driver_feature written after FEATURES_OK"));
            return;
        }
        match self.driver_feature_select {
            0 => set_half(&mut self.driver_features, false, value),
            1 => set_half(&mut self.driver_features, true, value),
            select => self.violation(format!("driver_feature written with select {select}")),
        }
    }

    fn write_status(&mut self, value: u8) {
        self.status_writes.push(DeviceStatus(value));
        if self.reset_reads_left > 0 {
            self.violation(format!(
                "status {value:#04x} written before the reset completed"
            ));
        }
        if value == 0 {
            self.reset();
            return;
        }

        let old = DeviceStatus(self.status);
        let mut new = DeviceStatus(value);
        if old.bits() & !new.bits() != 0 {
            self.violation(format!("status write {new} clears bits of {old}"));
        }
        let sets = |flag: DeviceStatus| new.contains(flag) && !old.contains(flag);
        let sets_features_ok = sets(DeviceStatus::FEATURES_OK);
        let sets_driver_ok = sets(DeviceStatus::DRIVER_OK);
        if sets_features_ok {
            let acceptable = self.driver_features & !self.settings.offered.bits() == 0;
            if self.settings.rejects_features_ok || !acceptable {
                new = DeviceStatus(new.bits() & !DeviceStatus::FEATURES_OK.bits());
            }
        }
        if sets_driver_ok && !new.contains(DeviceStatus::FEATURES_OK) {
            self.violation(String::from("DRIVER_OK set without FEATURES_OK"));
        }
        self.status = new.bits();
    }

    fn reset(&mut self) {
        self.status_before_reset = self.status;
        self.reset_reads_left = if self.status == 0 {
            0
        } else {
            self.settings.reset_reads
        };
        self.status = 0;
        self.device_feature_select = 0;
        self.driver_feature_select = 0;
        self.driver_features = 0;
        self.config_msix_vector = VIRTIO_MSI_NO_VECTOR;
        self.queue_select = 0;
        self.queues = self.settings.queues.iter().map(reset_queue).collect();
        self.isr = 0;
    }

    fn write_queue_register(&mut self, offset: usize, value: u32) {
        let queue_select = self.queue_select;
        let maximum = self
            .settings
            .queues
            .get(usize::from(queue_select))
            .map(|queue| queue.max_size);
        let vector_accepted = self.accepts_msix_vector(value as u16);
        let Some(queue) = self.selected_queue() else {
            self.violation(format!(
                "register {offset:#x} written for missing queue {queue_select}"
            ));
            return;
        };
        let mut violation = None;
        match offset {
            common::QUEUE_SIZE => {
                queue.size = value as u16;
                if maximum.is_some_and(|maximum| queue.size > maximum) {
                    violation = Some(format!("queue {queue_select}: size {value} above maximum"));
                }
            }
            common::QUEUE_MSIX_VECTOR => {
                queue.msix_vector = if vector_accepted {
                    value as u16
                } else {
                    VIRTIO_MSI_NO_VECTOR
                };
            }
            common::QUEUE_ENABLE => match value {
                1 => queue.enabled = true,
                _ => {
                    violation = Some(format!(
                        "queue {queue_select}: queue_enable written {value}"
                    ))
                }
            },
            common::QUEUE_DESC => set_half(&mut queue.descriptor_area, false, value),
            _ if offset == common::QUEUE_DESC + 4 => {
                set_half(&mut queue.descriptor_area, true, value)
            }
            common::QUEUE_DRIVER => set_half(&mut queue.driver_area, false, value),
            _ if offset == common::QUEUE_DRIVER + 4 => {
                set_half(&mut queue.driver_area, true, value)
            }
            common::QUEUE_DEVICE => set_half(&mut queue.device_area, false, value),
            _ if offset == common::QUEUE_DEVICE + 4 => {
                set_half(&mut queue.device_area, true, value)
            }
            _ => violation = Some(format!("read-only register {offset:#x} written")),
        }
        if let Some(message) = violation {
            self.violation(message);
        }
    }

    fn read_device_config(&mut self, offset: usize, width: usize) -> u32 {
        let mut bytes = [0; 4];
        bytes[..width].copy_from_slice(&self.device_config[offset..offset + width]);

        if self.settings.config_changes_on_every_read {
            self.config_generation = self.config_generation.wrapping_add(1);
        } else if let Some((update_offset, update)) = self.pending_config_updates.pop_front() {
            self.apply_config_update(update_offset, &update);
        }
        u32::from_le_bytes(bytes)
    }

    pub(super) fn apply_config_update(&mut self, offset: usize, bytes: &[u8]) {
        self.device_config[offset..offset + bytes.len()].copy_from_slice(bytes);
        self.config_generation = self.config_generation.wrapping_add(1);
        self.isr |= IsrStatus::DEVICE_CONFIGURATION_CHANGE;
    }
}
