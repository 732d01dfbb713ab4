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
    /// Common configuration, at least [`common::MINIMUM_LENGTH`] bytes.
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
mod tests {
    use super::*;
    use std::vec;
    use std::vec::Vec;

    const BAR_ADDRESS: u64 = 0xfe00_0000;
    const BAR_SIZE: u64 = 0x4000;
    const CAPABILITY_POINTER: usize = 0x34;
    const MSIX_CAPABILITY_ID: u8 = 0x11;

    /// A function's 256-byte configuration header with a capability list.
    /// It serves aligned 32-bit reads, as configuration mechanism #1 does.
    struct FlatConfigSpace {
        bytes: [u8; CONFIG_HEADER_LENGTH],
        capabilities: Vec<pci::Capability>,
        next_offset: usize,
    }

    impl FlatConfigSpace {
        fn new() -> FlatConfigSpace {
            FlatConfigSpace {
                bytes: [0; CONFIG_HEADER_LENGTH],
                capabilities: Vec::new(),
                next_offset: 0x40,
            }
        }

        /// Appends a capability with `id` and `body` (the bytes after the ID
        /// and next pointer), linking it from the previous one.
        fn add(&mut self, id: u8, body: &[u8]) {
            let offset = self.next_offset;
            match self.capabilities.last() {
                Some(previous) => self.bytes[usize::from(previous.offset) + 1] = offset as u8,
                None => self.bytes[CAPABILITY_POINTER] = offset as u8,
            }
            self.bytes[offset] = id;
            self.bytes[offset + 2..offset + 2 + body.len()].copy_from_slice(body);
            self.capabilities.push(pci::Capability {
                id,
                offset: offset as u16,
            });
            self.next_offset = (offset + 2 + body.len()).next_multiple_of(4);
        }

        /// Appends a `struct virtio_pci_cap` (or the notify variant when
        /// `notify_off_multiplier` is given).
        fn add_virtio(
            &mut self,
            cfg_type: u8,
            bar: u8,
            offset: u32,
            length: u32,
            notify_off_multiplier: Option<u32>,
        ) {
            let cap_len = if notify_off_multiplier.is_some() {
                20
            } else {
                16
            };
            let mut body = vec![cap_len, cfg_type, bar, 0, 0, 0];
            body.extend_from_slice(&offset.to_le_bytes());
            body.extend_from_slice(&length.to_le_bytes());
            if let Some(multiplier) = notify_off_multiplier {
                body.extend_from_slice(&multiplier.to_le_bytes());
            }
            self.add(PCI_CAPABILITY_ID_VENDOR, &body);
        }

        /// Adds the four structures in BAR 4 as QEMU 7.2 lays them out.
        fn add_qemu_layout(&mut self) {
            self.add(MSIX_CAPABILITY_ID, &[0; 10]);
            self.add_virtio(1, 4, 0x0000, 0x1000, None);
            self.add_virtio(3, 4, 0x1000, 0x1000, None);
            self.add_virtio(4, 4, 0x2000, 0x1000, None);
            self.add_virtio(2, 4, 0x3000, 0x1000, Some(4));
        }

        fn function(&self) -> Function {
            let mut bars = [None; 6];
            bars[0] = Some(Bar::Io {
                port: 0xc000,
                size: 0x20,
            });
            bars[4] = Some(Bar::Memory {
                address: BAR_ADDRESS,
                size: BAR_SIZE,
                prefetchable: true,
                is_64bit: true,
            });
            Function {
                address: PciAddress::new(0, 0, 3, 0),
                vendor_id: 0x1af4,
                device_id: 0x1000,
                revision: 0,
                class: 0x02,
                subclass: 0x00,
                prog_if: 0x00,
                header_type: 0,
                bars,
                capabilities: self.capabilities.clone(),
                bridge: None,
            }
        }
    }

    impl ConfigRegionAccess for FlatConfigSpace {
        unsafe fn read(&self, address: PciAddress, offset: u16) -> u32 {
            assert_eq!(
                address,
                PciAddress::new(0, 0, 3, 0),
                "read of another function"
            );
            assert_eq!(offset % 4, 0, "unaligned config read at {offset:#x}");
            let start = usize::from(offset);
            match self.bytes.get(start..start + 4) {
                Some(dword) => u32::from_le_bytes([dword[0], dword[1], dword[2], dword[3]]),
                None => u32::MAX,
            }
        }

        unsafe fn write(&self, _address: PciAddress, offset: u16, _value: u32) {
            panic!("capability parsing wrote config offset {offset:#x}");
        }
    }

    fn region(offset: u32, length: u32) -> CapabilityRegion {
        CapabilityRegion {
            bar: 4,
            offset,
            length,
            address: BAR_ADDRESS + u64::from(offset),
        }
    }

    #[test]
    fn capability_layouts_match_spec() {
        assert_eq!(size_of::<VirtioPciCap>(), 16);
        assert_eq!(size_of::<VirtioPciNotifyCap>(), 20);
        assert_eq!(offset_of!(VirtioPciCap, cap_len), 2);
        assert_eq!(offset_of!(VirtioPciCap, cfg_type), 3);
        assert_eq!(offset_of!(VirtioPciCap, bar), 4);
        assert_eq!(offset_of!(VirtioPciCap, offset), 8);
        assert_eq!(offset_of!(VirtioPciCap, length), 12);
        assert_eq!(offset_of!(VirtioPciNotifyCap, notify_off_multiplier), 16);
    }

    #[test]
    fn parse_finds_all_four_structures() {
        let mut space = FlatConfigSpace::new();
        space.add_qemu_layout();

        let capabilities = VirtioPciCapabilities::parse(&space.function(), &space);

        let expected = VirtioPciCapabilities {
            function: PciAddress::new(0, 0, 3, 0),
            common: region(0x0000, 0x1000),
            notify: region(0x3000, 0x1000),
            notify_off_multiplier: 4,
            isr: region(0x1000, 0x1000),
            device: Some(region(0x2000, 0x1000)),
        };
        assert_eq!(capabilities, Ok(expected));
    }

    #[test]
    fn parse_uses_first_capability_of_each_type() {
        let mut space = FlatConfigSpace::new();
        space.add_qemu_layout();
        space.add_virtio(1, 4, 0x3800, 0x100, None);
        space.add_virtio(2, 4, 0x3c00, 0x100, Some(0));

        let capabilities = VirtioPciCapabilities::parse(&space.function(), &space).expect("valid");

        assert_eq!(capabilities.common, region(0x0000, 0x1000));
        assert_eq!(capabilities.notify, region(0x3000, 0x1000));
        assert_eq!(capabilities.notify_off_multiplier, 4);
    }

    #[test]
    fn capability_past_end_of_bar_is_rejected() {
        let mut space = FlatConfigSpace::new();
        space.add_virtio(1, 4, 0x0000, 0x1000, None);
        space.add_virtio(3, 4, 0x1000, 0x1000, None);
        space.add_virtio(2, 4, 0x3000, 0x1001, Some(4));

        let result = VirtioPciCapabilities::parse(&space.function(), &space);

        let expected = TransportError::CapabilityOutsideBar {
            function: PciAddress::new(0, 0, 3, 0),
            cfg_type: CapabilityType::NotifyCfg,
            bar: 4,
            offset: 0x3000,
            length: 0x1001,
            bar_size: BAR_SIZE,
        };
        assert_eq!(result, Err(expected));
    }

    #[test]
    fn capability_offset_near_u32_max_is_rejected() {
        let mut space = FlatConfigSpace::new();
        space.add_virtio(1, 4, u32::MAX, 0x100, None);
        space.add_virtio(2, 4, 0x3000, 0x1000, Some(4));
        space.add_virtio(3, 4, 0x1000, 0x1000, None);

        let result = VirtioPciCapabilities::parse(&space.function(), &space);

        assert!(
            matches!(result, Err(TransportError::CapabilityOutsideBar { .. })),
            "{result:?}"
        );
    }

    #[test]
    fn missing_common_capability_is_an_error() {
        let mut space = FlatConfigSpace::new();
        space.add_virtio(3, 4, 0x1000, 0x1000, None);
        space.add_virtio(2, 4, 0x3000, 0x1000, Some(4));

        let result = VirtioPciCapabilities::parse(&space.function(), &space);

        let expected = TransportError::MissingCapability {
            function: PciAddress::new(0, 0, 3, 0),
            cfg_type: CapabilityType::CommonCfg,
        };
        assert_eq!(result, Err(expected));
    }

    #[test]
    fn capability_with_reserved_bar_is_ignored() {
        let mut space = FlatConfigSpace::new();
        space.add_virtio(1, 7, 0x0000, 0x1000, None);
        space.add_virtio(3, 4, 0x1000, 0x1000, None);
        space.add_virtio(2, 4, 0x3000, 0x1000, Some(4));

        let result = VirtioPciCapabilities::parse(&space.function(), &space);

        assert!(
            matches!(result, Err(TransportError::MissingCapability { .. })),
            "{result:?}"
        );
    }

    #[test]
    fn capability_in_io_or_absent_bar_is_rejected() {
        let cases = [
            (
                0,
                TransportError::NotMemoryBar {
                    function: PciAddress::new(0, 0, 3, 0),
                    cfg_type: CapabilityType::CommonCfg,
                    bar: 0,
                },
            ),
            (
                5,
                TransportError::BarNotPresent {
                    function: PciAddress::new(0, 0, 3, 0),
                    cfg_type: CapabilityType::CommonCfg,
                    bar: 5,
                },
            ),
        ];
        for (bar, expected) in cases {
            let mut space = FlatConfigSpace::new();
            space.add_virtio(1, bar, 0x0000, 0x40, None);
            space.add_virtio(3, 4, 0x1000, 0x1000, None);
            space.add_virtio(2, 4, 0x3000, 0x1000, Some(4));

            let result = VirtioPciCapabilities::parse(&space.function(), &space);

            assert_eq!(result, Err(expected));
        }
    }

    #[test]
    fn short_common_configuration_is_rejected() {
        let mut space = FlatConfigSpace::new();
        space.add_virtio(1, 4, 0x0000, 0x30, None);
        space.add_virtio(3, 4, 0x1000, 0x1000, None);
        space.add_virtio(2, 4, 0x3000, 0x1000, Some(4));

        let result = VirtioPciCapabilities::parse(&space.function(), &space);

        let expected = TransportError::CapabilityTooShort {
            function: PciAddress::new(0, 0, 3, 0),
            cfg_type: CapabilityType::CommonCfg,
            length: 0x30,
            minimum_length: 56,
        };
        assert_eq!(result, Err(expected));
    }

    #[test]
    fn notify_capability_without_multiplier_is_truncated() {
        let mut space = FlatConfigSpace::new();
        space.add_virtio(1, 4, 0x0000, 0x1000, None);
        space.add_virtio(3, 4, 0x1000, 0x1000, None);
        space.add_virtio(2, 4, 0x3000, 0x1000, None);
        let notify_offset = space.capabilities[2].offset;

        let result = VirtioPciCapabilities::parse(&space.function(), &space);

        let expected = TransportError::CapabilityTruncated {
            function: PciAddress::new(0, 0, 3, 0),
            cfg_type: CapabilityType::NotifyCfg,
            config_offset: notify_offset,
            cap_len: 16,
            required_length: 20,
        };
        assert_eq!(result, Err(expected));
    }

    #[test]
    fn device_configuration_is_optional() {
        let mut space = FlatConfigSpace::new();
        space.add_virtio(1, 4, 0x0000, 0x1000, None);
        space.add_virtio(3, 4, 0x1000, 0x1000, None);
        space.add_virtio(2, 4, 0x3000, 0x1000, Some(0));

        let capabilities = VirtioPciCapabilities::parse(&space.function(), &space).expect("valid");

        assert_eq!(capabilities.device, None);
        assert_eq!(capabilities.notify_off_multiplier, 0);
    }
}
