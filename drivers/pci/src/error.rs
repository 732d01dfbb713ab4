//! Errors of enumeration and BAR assignment.
//!
//! Malformed topology (bus numbers past 255, bridges nested past the depth
//! limit, broken capability lists) is not an error: the walk logs a warning
//! and skips the part it cannot trust. What remains is what the caller must
//! act on: a window too small for the BARs that need an address.

use core::fmt;
use core::ops::Range;

use pci_types::PciAddress;

use crate::Bdf;

/// The two address spaces a BAR or a bridge window can decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressSpace {
    Memory,
    Io,
}

impl fmt::Display for AddressSpace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddressSpace::Memory => "memory",
            AddressSpace::Io => "I/O",
        })
    }
}

/// A PCI enumeration or assignment failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PciError {
    /// No free, aligned range of `size_bytes` was left in `window` for a BAR
    /// the firmware did not assign.
    BarWindowExhausted {
        address: PciAddress,
        /// BAR slot (0 to 5; the lower slot of a 64-bit BAR).
        slot: u8,
        space: AddressSpace,
        size_bytes: u64,
        /// The window searched: the allocator's, or the window of the bridge
        /// the function sits behind.
        window: Range<u64>,
    },
    /// No free range was left in `window` for the window of the bridge at
    /// `address`, which must cover the BARs behind it.
    BridgeWindowExhausted {
        address: PciAddress,
        space: AddressSpace,
        size_bytes: u64,
        /// Required alignment of the bridge window.
        alignment_bytes: u64,
        window: Range<u64>,
    },
}

impl fmt::Display for PciError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PciError::BarWindowExhausted {
                address,
                slot,
                space,
                size_bytes,
                window,
            } => write!(
                f,
                "no free {space} range of {size_bytes:#x} bytes for {} BAR{slot} in window \
                 {:#x}..{:#x}; enlarge the window or remove devices",
                Bdf(*address),
                window.start,
                window.end
            ),
            PciError::BridgeWindowExhausted {
                address,
                space,
                size_bytes,
                alignment_bytes,
                window,
            } => {
                write!(
                    f,
                    "no free {space} range of {size_bytes:#x} bytes (aligned to {alignment_bytes:#x}) \
                     for the window of bridge {} in window {:#x}..{:#x}; enlarge the window or \
                     remove devices behind the bridge",
                    Bdf(*address),
                    window.start,
                    window.end
                )
            }
        }
    }
}

impl core::error::Error for PciError {}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn bar_error_names_function_slot_and_window() {
        let error = PciError::BarWindowExhausted {
            address: PciAddress::new(0, 1, 2, 0),
            slot: 4,
            space: AddressSpace::Memory,
            size_bytes: 0x4000,
            window: 0xfe00_0000..0xfe00_2000,
        };
        assert_eq!(
            error.to_string(),
            "no free memory range of 0x4000 bytes for 01:02.0 BAR4 in window \
             0xfe000000..0xfe002000; enlarge the window or remove devices"
        );
    }
}
