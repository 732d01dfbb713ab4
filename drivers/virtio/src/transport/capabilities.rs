//! Discovery of the virtio structures of a PCI function.
//!
//! This module owns the decoding of `struct virtio_pci_cap` and `struct
//! virtio_pci_notify_cap` from the vendor-specific capabilities of a
//! function, and the checks that each structure lies inside a memory BAR
//! (virtio 1.2 section 4.1.4 "Virtio Structure PCI Capabilities", 4.1.4.4
//! "Notification structure layout"). The result names the device memory
//! the kernel maps for [`super::PciTransport`].

use core::fmt;
use core::mem::offset_of;

use log::warn;
use pci::{read_config_u32, read_config_u8, Bar, Bdf, ConfigRegionAccess, Function, PciAddress};

use super::error::TransportError;
use super::registers::common;

/// PCI capability ID of a vendor-specific capability, which virtio uses for
/// its structures (PCI_CAP_ID_VNDR).
pub const PCI_CAPABILITY_ID_VENDOR: u8 = 0x09;

/// Capabilities must lie inside the 256-byte configuration header; the
/// extended space past it holds only PCI Express extended capabilities.
const CONFIG_HEADER_LENGTH: usize = 0x100;

/// Number of BAR slots in a type 0 header; larger `bar` values are reserved
/// and the driver must ignore such capabilities (section 4.1.4.1).
const BAR_SLOTS: u8 = 6;

/// The virtio structure a capability describes (`cfg_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CapabilityType {
    /// VIRTIO_PCI_CAP_COMMON_CFG (1): common configuration.
    CommonCfg,
    /// VIRTIO_PCI_CAP_NOTIFY_CFG (2): queue notifications.
    NotifyCfg,
    /// VIRTIO_PCI_CAP_ISR_CFG (3): ISR status.
    IsrCfg,
    /// VIRTIO_PCI_CAP_DEVICE_CFG (4): device-specific configuration.
    DeviceCfg,
}

impl CapabilityType {
    /// Returns the type for a `cfg_type` value, or `None` for the types this
    /// driver does not use (PCI configuration access, shared memory, vendor).
    pub const fn from_cfg_type(cfg_type: u8) -> Option<CapabilityType> {
        match cfg_type {
            1 => Some(CapabilityType::CommonCfg),
            2 => Some(CapabilityType::NotifyCfg),
            3 => Some(CapabilityType::IsrCfg),
            4 => Some(CapabilityType::DeviceCfg),
            _ => None,
        }
    }

    /// Returns the spec's `cfg_type` value.
    pub const fn cfg_type(self) -> u8 {
        match self {
            CapabilityType::CommonCfg => 1,
            CapabilityType::NotifyCfg => 2,
            CapabilityType::IsrCfg => 3,
            CapabilityType::DeviceCfg => 4,
        }
    }

    /// Returns the smallest region length in bytes that the transport
    /// accepts for this structure.
    pub const fn minimum_length(self) -> usize {
        match self {
            CapabilityType::CommonCfg => common::MINIMUM_LENGTH,
            // A doorbell is a 16-bit write at offset 0 or above.
            CapabilityType::NotifyCfg => 2,
            CapabilityType::IsrCfg => 1,
            CapabilityType::DeviceCfg => 0,
        }
    }

    fn slot(self) -> usize {
        usize::from(self.cfg_type() - 1)
    }
}

impl fmt::Display for CapabilityType {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            CapabilityType::CommonCfg => "common configuration",
            CapabilityType::NotifyCfg => "notification",
            CapabilityType::IsrCfg => "ISR status",
            CapabilityType::DeviceCfg => "device configuration",
        };
        formatter.write_str(name)
    }
}

/// `struct virtio_pci_cap`, used for its field offsets and size.
#[repr(C)]
#[allow(dead_code, reason = "never constructed; only its layout is used")]
struct VirtioPciCap {
    cap_vndr: u8,
    cap_next: u8,
    cap_len: u8,
    cfg_type: u8,
    bar: u8,
    id: u8,
    padding: [u8; 2],
    offset: u32,
    length: u32,
}

/// `struct virtio_pci_notify_cap`: the generic capability followed by
/// `notify_off_multiplier`.
#[repr(C)]
#[allow(dead_code, reason = "never constructed; only its layout is used")]
struct VirtioPciNotifyCap {
    cap: VirtioPciCap,
    notify_off_multiplier: u32,
}

/// A virtio structure inside a memory BAR, checked to fit the BAR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapabilityRegion {
    /// BAR slot (0 to 5) that contains the structure.
    pub bar: u8,
    /// Offset of the structure from the start of the BAR.
    pub offset: u32,
    /// Length of the structure in bytes.
    pub length: u32,
    /// Bus address of the structure: the BAR address plus `offset`.
    pub address: u64,
}

/// The virtio structures of one PCI function, as found by [`parse`](Self::parse).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtioPciCapabilities {
    /// The function the capabilities belong to.
    pub function: PciAddress,
    /// Common configuration, at least 56 bytes (the virtio 1.0 structure).
    pub common: CapabilityRegion,
    /// Notification region, at least 2 bytes.
    pub notify: CapabilityRegion,
    /// Multiplier of `queue_notify_off` that gives a queue's doorbell offset
    /// in the notification region; 0 means all queues share one doorbell.
    pub notify_off_multiplier: u32,
    /// ISR status, at least 1 byte.
    pub isr: CapabilityRegion,
    /// Device-specific configuration, absent for device types without one.
    pub device: Option<CapabilityRegion>,
}

/// A decoded capability before its BAR is checked.
#[derive(Clone, Copy)]
struct RawCapability {
    bar: u8,
    offset: u32,
    length: u32,
    notify_off_multiplier: u32,
}

impl VirtioPciCapabilities {
    /// Finds the common, notification, ISR and device configuration
    /// structures of `function`, reading its capabilities through `access`.
    ///
    /// The first capability of each type is used (section 4.1.4.1 "Driver
    /// Requirements: Virtio Structure PCI Capabilities"); capabilities with a
    /// reserved `bar` value are ignored, as that section requires.
    ///
    /// # Errors
    ///
    /// [`TransportError::MissingCapability`] if the common, notify or ISR
    /// structure is absent; [`TransportError::CapabilityTruncated`],
    /// [`TransportError::BarNotPresent`], [`TransportError::NotMemoryBar`],
    /// [`TransportError::CapabilityOutsideBar`] or
    /// [`TransportError::CapabilityTooShort`] if a structure that is used
    /// does not fit its capability or BAR.
    ///
    pub fn parse(
        function: &Function,
        access: &impl ConfigRegionAccess,
    ) -> Result<VirtioPciCapabilities, TransportError> {
        let mut first: [Option<RawCapability>; 4] = [None; 4];

        for capability in &function.capabilities {
            if capability.id != PCI_CAPABILITY_ID_VENDOR {
                continue;
            }
            let decoded = read_capability(function, access, capability.offset)?;
            let Some((cfg_type, raw)) = decoded else {
                continue;
            };
            first[cfg_type.slot()].get_or_insert(raw);
        }

        let region =
            |cfg_type: CapabilityType| -> Result<Option<(CapabilityRegion, u32)>, TransportError> {
                first[cfg_type.slot()]
                    .map(|raw| {
                        Ok((
                            check_region(function, cfg_type, &raw)?,
                            raw.notify_off_multiplier,
                        ))
                    })
                    .transpose()
            };
        let required = |cfg_type: CapabilityType| {
            region(cfg_type)?.ok_or(TransportError::MissingCapability {
                function: function.address,
                cfg_type,
            })
        };

        let (common, _) = required(CapabilityType::CommonCfg)?;
        let (notify, notify_off_multiplier) = required(CapabilityType::NotifyCfg)?;
        let (isr, _) = required(CapabilityType::IsrCfg)?;
        let device = region(CapabilityType::DeviceCfg)?.map(|(region, _)| region);
        Ok(VirtioPciCapabilities {
            function: function.address,
            common,
            notify,
            notify_off_multiplier,
            isr,
            device,
        })
    }
}

/// Decodes the vendor-specific capability at `config_offset`. Returns
/// `None` for a structure type this driver does not use or a reserved BAR.
fn read_capability(
    function: &Function,
    access: &impl ConfigRegionAccess,
    config_offset: u16,
) -> Result<Option<(CapabilityType, RawCapability)>, TransportError> {
    let address = function.address;
    let field_u8 = |field: usize| read_config_u8(access, address, config_offset + field as u16);
    let field_u32 = |field: usize| read_config_u32(access, address, config_offset + field as u16);

    let Some(cfg_type) =
        CapabilityType::from_cfg_type(field_u8(offset_of!(VirtioPciCap, cfg_type)))
    else {
        return Ok(None);
    };
    let required_length = match cfg_type {
        CapabilityType::NotifyCfg => size_of::<VirtioPciNotifyCap>(),
        _ => size_of::<VirtioPciCap>(),
    };
    let cap_len = field_u8(offset_of!(VirtioPciCap, cap_len));
    let end = usize::from(config_offset) + required_length;
    if usize::from(cap_len) < required_length || end > CONFIG_HEADER_LENGTH {
        return Err(TransportError::CapabilityTruncated {
            function: address,
            cfg_type,
            config_offset,
            cap_len,
            required_length: required_length as u8,
        });
    }

    let bar = field_u8(offset_of!(VirtioPciCap, bar));
    if bar >= BAR_SLOTS {
        warn!(
            "{}: ignoring virtio {cfg_type} capability at {config_offset:#x}: reserved BAR \
             value {bar}",
            Bdf(address)
        );
        return Ok(None);
    }
    let notify_off_multiplier = match cfg_type {
        CapabilityType::NotifyCfg => {
            field_u32(offset_of!(VirtioPciNotifyCap, notify_off_multiplier))
        }
        _ => 0,
    };
    let raw = RawCapability {
        bar,
        offset: field_u32(offset_of!(VirtioPciCap, offset)),
        length: field_u32(offset_of!(VirtioPciCap, length)),
        notify_off_multiplier,
    };
    Ok(Some((cfg_type, raw)))
}

/// Checks that the capability's structure lies inside a memory BAR and is
/// long enough for its type.
fn check_region(
    function: &Function,
    cfg_type: CapabilityType,
    raw: &RawCapability,
) -> Result<CapabilityRegion, TransportError> {
    let address = function.address;
    let bar = raw.bar;
    let (bar_address, bar_size) = match function.bars[usize::from(bar)] {
        Some(Bar::Memory { address, size, .. }) => (address, size),
        Some(Bar::Io { .. }) => {
            return Err(TransportError::NotMemoryBar {
                function: address,
                cfg_type,
                bar,
            })
        }
        None => {
            return Err(TransportError::BarNotPresent {
                function: address,
                cfg_type,
                bar,
            })
        }
    };

    let outside_bar = || TransportError::CapabilityOutsideBar {
        function: address,
        cfg_type,
        bar,
        offset: raw.offset,
        length: raw.length,
        bar_size,
    };
    if u64::from(raw.offset) + u64::from(raw.length) > bar_size {
        return Err(outside_bar());
    }
    let region_address = bar_address
        .checked_add(u64::from(raw.offset))
        .ok_or_else(outside_bar)?;

    let length = raw.length as usize;
    if length < cfg_type.minimum_length() {
        return Err(TransportError::CapabilityTooShort {
            function: address,
            cfg_type,
            length,
            minimum_length: cfg_type.minimum_length(),
        });
    }
    Ok(CapabilityRegion {
        bar,
        offset: raw.offset,
        length: raw.length,
        address: region_address,
    })
}

#[cfg(test)]
mod tests;
