//! The ISR status register and reads of the device-specific configuration
//! (virtio 1.2 section 4.1.4.5 "ISR status capability", 4.1.4.6 "Device-
//! specific configuration", 2.5.1 "Driver Requirements: Device
//! Configuration Space").

use super::registers::common;
use super::{IsrStatus, PciTransport, RegisterBlock, TransportError, CONFIG_READ_ATTEMPTS};

impl<R: RegisterBlock> PciTransport<R> {
    /// Reads the ISR status. The read also clears it and deasserts a legacy
    /// INTx interrupt (section 4.1.4.5).
    pub fn read_isr(&self) -> IsrStatus {
        IsrStatus(self.isr.read8(0))
    }

    /// Returns `config_generation`, which the device changes whenever the
    /// device configuration changes.
    pub fn config_generation(&self) -> u8 {
        self.common.read8(common::CONFIG_GENERATION)
    }

    /// Returns the length of the device-specific configuration in bytes; 0
    /// when the device has none.
    pub fn device_config_length(&self) -> usize {
        self.device.as_ref().map_or(0, R::len)
    }

    /// Reads the 8-bit device configuration field at `offset`.
    ///
    /// # Errors
    ///
    /// As [`read_device_config`](Self::read_device_config).
    pub fn read_device_config_u8(&self, offset: usize) -> Result<u8, TransportError> {
        self.read_consistent(offset, 1, 1, |device| device.read8(offset))
    }

    /// Reads the 16-bit device configuration field at `offset`, which must be
    /// 2-byte aligned.
    ///
    /// # Errors
    ///
    /// As [`read_device_config`](Self::read_device_config).
    pub fn read_device_config_u16(&self, offset: usize) -> Result<u16, TransportError> {
        self.read_consistent(offset, 2, 2, |device| device.read16(offset))
    }

    /// Reads the 32-bit device configuration field at `offset`, which must be
    /// 4-byte aligned.
    ///
    /// # Errors
    ///
    /// As [`read_device_config`](Self::read_device_config).
    pub fn read_device_config_u32(&self, offset: usize) -> Result<u32, TransportError> {
        self.read_consistent(offset, 4, 4, |device| device.read32(offset))
    }

    /// Fills `buffer` from the device configuration at `offset` with byte
    /// reads, for byte-array fields such as a MAC address; all bytes come
    /// from one `config_generation`.
    ///
    /// # Errors
    ///
    /// [`TransportError::InvalidDeviceConfigAccess`] if the range is outside
    /// the device configuration (or the device has none), or
    /// [`TransportError::ConfigGenerationUnstable`] if the configuration
    /// changed during each of [`CONFIG_READ_ATTEMPTS`] reads.
    pub fn read_device_config(
        &self,
        offset: usize,
        buffer: &mut [u8],
    ) -> Result<(), TransportError> {
        self.read_consistent(offset, buffer.len(), 1, |device| {
            for (index, byte) in buffer.iter_mut().enumerate() {
                *byte = device.read8(offset + index);
            }
        })
    }

    /// Runs `read` until `config_generation` is the same before and after
    /// it (section 2.5.1), after checking that `width` bytes at `offset` lie
    /// inside the device configuration and are aligned to `alignment`.
    fn read_consistent<T>(
        &self,
        offset: usize,
        width: usize,
        alignment: usize,
        mut read: impl FnMut(&R) -> T,
    ) -> Result<T, TransportError> {
        let length = self.device_config_length();
        let in_bounds = offset.checked_add(width).is_some_and(|end| end <= length);
        let device = match &self.device {
            Some(device) if in_bounds && offset.is_multiple_of(alignment) => device,
            _ => {
                return Err(TransportError::InvalidDeviceConfigAccess {
                    offset,
                    width,
                    length,
                })
            }
        };

        for _ in 0..CONFIG_READ_ATTEMPTS {
            let generation_before = self.config_generation();
            let value = read(device);
            if self.config_generation() == generation_before {
                return Ok(value);
            }
        }
        Err(TransportError::ConfigGenerationUnstable {
            attempts: CONFIG_READ_ATTEMPTS,
        })
    }
}
