//! PCI enumeration: config-space access, the bus walk, BAR sizing and
//! assignment, and capability lists (PCI Local Bus Specification 3.0, chapter 6
//! "Configuration Space"; PCI-to-PCI Bridge Architecture Specification 1.2,
//! chapter 3 "Configuration Space Header"; PCI Express Base Specification,
//! section 7.2.2 "PCI Express Enhanced Configuration Access Mechanism").
//!
//! This crate knows nothing of virtio. It hands each function it finds to the
//! caller as a [`Function`], with BARs already sized (and assigned where the
//! firmware left them at zero) and the capability list read.
//!
//! The layers, bottom up:
//! - [`config`]: the two ways to reach configuration space on x86,
//!   [`PortIoAccess`] (configuration mechanism #1) and [`EcamAccess`] (memory
//!   mapped). Both implement [`ConfigRegionAccess`], and so does the synthetic
//!   space in [`testing`].
//! - `header`: register offsets of the type 0 and type 1 headers, and the
//!   [`read_config_u8`], [`read_config_u16`] and [`read_config_u32`] helpers.
//! - `bar` and `capability`: read one function's BARs (sized with the
//!   all-ones probe) and its capability list.
//! - `enumerate`: the recursive walk through PCI-to-PCI bridges, which numbers
//!   buses the firmware left unnumbered.
//! - `assign`: the [`BarAllocator`], which keeps firmware assignments, places
//!   the BARs left at zero, programs bridge windows and enables decoding.
#![no_std]

extern crate alloc;
#[cfg(any(test, feature = "testing"))]
extern crate std;

mod assign;
mod bar;
mod bridge;
mod capability;
pub mod config;
mod enumerate;
mod error;
mod header;
pub mod msix;
mod region;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

use alloc::vec::Vec;
use core::fmt;

pub use assign::BarAllocator;
pub use config::{EcamAccess, PortIoAccess};
pub use enumerate::enumerate;
pub use error::{AddressSpace, PciError};
pub use header::{read_config_u16, read_config_u32, read_config_u8};
pub use pci_types::{ConfigRegionAccess, PciAddress};

/// A decoded base address register, with its size found by the all-ones probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bar {
    /// A memory BAR. `address` is the bus address (the identity-mapped
    /// physical address on x86); a 64-bit BAR takes two consecutive slots.
    Memory {
        address: u64,
        /// Size in bytes, a power of two.
        size: u64,
        prefetchable: bool,
        is_64bit: bool,
    },
    /// An I/O-space BAR; `size` is in ports, a power of two.
    Io { port: u32, size: u32 },
}

impl Bar {
    /// Returns the base address, or port number for an I/O BAR.
    pub fn address(&self) -> u64 {
        match *self {
            Bar::Memory { address, .. } => address,
            Bar::Io { port, .. } => u64::from(port),
        }
    }

    /// Returns the size in bytes (memory) or ports (I/O).
    pub fn size(&self) -> u64 {
        match *self {
            Bar::Memory { size, .. } => size,
            Bar::Io { size, .. } => u64::from(size),
        }
    }

    /// Returns the address space this BAR decodes.
    pub fn space(&self) -> AddressSpace {
        match self {
            Bar::Memory { .. } => AddressSpace::Memory,
            Bar::Io { .. } => AddressSpace::Io,
        }
    }
}

/// One entry of a function's capability list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capability {
    /// Capability ID (for example 0x09 vendor-specific, 0x11 MSI-X).
    pub id: u8,
    /// Offset of the capability header in config space.
    pub offset: u16,
}

/// Bus numbers of a PCI-to-PCI bridge: the bus it sits on, the bus directly
/// behind it, and the highest bus number behind it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BridgeBuses {
    pub primary: u8,
    pub secondary: u8,
    pub subordinate: u8,
}

/// A PCI function found by enumeration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Function {
    pub address: PciAddress,
    pub vendor_id: u16,
    pub device_id: u16,
    pub revision: u8,
    pub class: u8,
    pub subclass: u8,
    pub prog_if: u8,
    /// Header type without the multi-function bit (0 endpoint, 1 PCI-to-PCI bridge).
    pub header_type: u8,
    /// BARs by slot; the upper slot of a 64-bit BAR is `None`. A bridge has
    /// two BAR slots, so slots 2 to 5 of a bridge are always `None`.
    pub bars: [Option<Bar>; 6],
    pub capabilities: Vec<Capability>,
    /// Bus numbers after enumeration, for a PCI-to-PCI bridge; `None` for
    /// other header types.
    pub bridge: Option<BridgeBuses>,
}

impl Function {
    /// Iterates over the capabilities with ID `id`, in list order.
    pub fn capabilities_with_id(&self, id: u8) -> impl Iterator<Item = &Capability> {
        self.capabilities
            .iter()
            .filter(move |capability| capability.id == id)
    }

    /// Returns whether this function is a PCI-to-PCI bridge (header type 1).
    pub fn is_bridge(&self) -> bool {
        self.header_type == header::HEADER_TYPE_BRIDGE
    }

    /// Iterates over the implemented BARs as `(slot, bar)` pairs.
    pub fn bars(&self) -> impl Iterator<Item = (u8, Bar)> + '_ {
        (0u8..)
            .zip(self.bars.iter())
            .filter_map(|(slot, bar)| bar.map(|bar| (slot, bar)))
    }
}

/// Formats one line in the style of `lspci -n`, for example
/// `00:02.0 [1af4:1000] class 02.00.00 rev 00 BAR0 io 0xc000/0x20
/// BAR4 mem64 pref 0xfe000000/0x4000 caps 11,09`.
///
/// Bridges end with `bus 01-02` (secondary and subordinate bus).
impl fmt::Display for Function {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} [{:04x}:{:04x}] class {:02x}.{:02x}.{:02x} rev {:02x}",
            Bdf(self.address),
            self.vendor_id,
            self.device_id,
            self.class,
            self.subclass,
            self.prog_if,
            self.revision
        )?;

        for (slot, bar) in self.bars() {
            write!(f, " BAR{slot} ")?;
            match bar {
                Bar::Io { port, size } => write!(f, "io {port:#x}/{size:#x}")?,
                Bar::Memory {
                    address,
                    size,
                    prefetchable,
                    is_64bit,
                } => {
                    f.write_str(if is_64bit { "mem64 " } else { "mem " })?;
                    if prefetchable {
                        f.write_str("pref ")?;
                    }
                    write!(f, "{address:#x}/{size:#x}")?;
                }
            }
        }

        if let Some(buses) = self.bridge {
            write!(f, " bus {:02x}-{:02x}", buses.secondary, buses.subordinate)?;
        }

        for (index, capability) in self.capabilities.iter().enumerate() {
            f.write_str(if index == 0 { " caps " } else { "," })?;
            write!(f, "{:02x}", capability.id)?;
        }
        Ok(())
    }
}

/// A [`PciAddress`] in `lspci` notation: `bb:dd.f`, prefixed with the
/// segment as `ssss:` when the segment is not 0.
///
/// `PciAddress`'s own `Display` always prints the segment; this crate uses
/// the shorter form in logs, errors and [`Function`]'s line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bdf(pub PciAddress);

impl fmt::Display for Bdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let address = self.0;
        if address.segment() != 0 {
            write!(f, "{:04x}:", address.segment())?;
        }
        write!(
            f,
            "{:02x}:{:02x}.{}",
            address.bus(),
            address.device(),
            address.function()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    fn virtio_net() -> Function {
        let mut bars = [None; 6];
        bars[0] = Some(Bar::Io {
            port: 0xc000,
            size: 0x20,
        });
        bars[1] = Some(Bar::Memory {
            address: 0xfebd_1000,
            size: 0x1000,
            prefetchable: false,
            is_64bit: false,
        });
        bars[4] = Some(Bar::Memory {
            address: 0xfe00_0000,
            size: 0x4000,
            prefetchable: true,
            is_64bit: true,
        });
        let capabilities = [
            (0x11, 0x98),
            (0x09, 0x84),
            (0x09, 0x70),
            (0x09, 0x60),
            (0x09, 0x50),
            (0x09, 0x40),
        ]
        .into_iter()
        .map(|(id, offset)| Capability { id, offset })
        .collect();
        Function {
            address: PciAddress::new(0, 0, 2, 0),
            vendor_id: 0x1af4,
            device_id: 0x1000,
            revision: 0,
            class: 0x02,
            subclass: 0x00,
            prog_if: 0x00,
            header_type: 0,
            bars,
            capabilities,
            bridge: None,
        }
    }

    #[test]
    fn display_endpoint_line() {
        assert_eq!(
            virtio_net().to_string(),
            "00:02.0 [1af4:1000] class 02.00.00 rev 00 BAR0 io 0xc000/0x20 \
             BAR1 mem 0xfebd1000/0x1000 BAR4 mem64 pref 0xfe000000/0x4000 \
             caps 11,09,09,09,09,09"
        );
    }

    #[test]
    fn display_bridge_without_bars_or_caps() {
        let bridge = Function {
            address: PciAddress::new(0, 0, 0x1e, 0),
            vendor_id: 0x8086,
            device_id: 0x244e,
            revision: 0x92,
            class: 0x06,
            subclass: 0x04,
            prog_if: 0x01,
            header_type: 1,
            bars: [None; 6],
            capabilities: vec![],
            bridge: Some(BridgeBuses {
                primary: 0,
                secondary: 1,
                subordinate: 2,
            }),
        };
        assert_eq!(
            bridge.to_string(),
            "00:1e.0 [8086:244e] class 06.04.01 rev 92 bus 01-02"
        );
    }

    #[test]
    fn bdf_prints_segment_only_when_nonzero() {
        assert_eq!(
            Bdf(PciAddress::new(0, 0x12, 0x1f, 7)).to_string(),
            "12:1f.7"
        );
        assert_eq!(Bdf(PciAddress::new(1, 0, 3, 0)).to_string(), "0001:00:03.0");
    }

    #[test]
    fn capabilities_with_id_filters_in_order() {
        let function = virtio_net();
        let offsets: Vec<u16> = function
            .capabilities_with_id(0x09)
            .map(|capability| capability.offset)
            .collect();
        assert_eq!(offsets, vec![0x84, 0x70, 0x60, 0x50, 0x40]);
        assert_eq!(function.capabilities_with_id(0x05).count(), 0);
    }
}
