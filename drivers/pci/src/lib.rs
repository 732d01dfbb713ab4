//! PCI enumeration: config-space access, the bus walk, BAR sizing and
//! assignment, and capability lists (PCI Local Bus Specification 3.0, chapter 6
//! "Configuration Space"; PCI Express Base Specification, "Enhanced
//! Configuration Access Mechanism").
//!
//! This crate knows nothing of virtio. It hands each function it finds to the
//! caller as a [`Function`], with BARs already sized (and assigned where the
//! firmware left them at zero) and the capability list read.
#![no_std]

extern crate alloc;
#[cfg(test)]
extern crate std;

use alloc::vec::Vec;

pub use pci_types::{ConfigRegionAccess, PciAddress};

/// A decoded base address register, with its size found by the all-ones probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bar {
    /// A memory BAR. `address` is the bus address (the identity-mapped
    /// physical address on x86); a 64-bit BAR takes two consecutive slots.
    Memory {
        address: u64,
        size: u64,
        prefetchable: bool,
        is_64bit: bool,
    },
    /// An I/O-space BAR.
    Io { port: u32, size: u32 },
}

/// One entry of a function's capability list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capability {
    /// Capability ID (for example 0x09 vendor-specific, 0x11 MSI-X).
    pub id: u8,
    /// Offset of the capability header in config space.
    pub offset: u16,
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
    /// BARs by slot; the upper slot of a 64-bit BAR is `None`.
    pub bars: [Option<Bar>; 6],
    pub capabilities: Vec<Capability>,
}
