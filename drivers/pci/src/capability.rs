//! Walking a function's capability list (PCI Local Bus Specification 3.0,
//! section 6.7 "Capabilities List").
//!
//! When status bit 4 is set, the byte at 0x34 points to the first
//! capability. Each capability starts with its ID byte and a next pointer,
//! and a next pointer of 0 ends the list. Pointers have their two reserved
//! low bits masked, as section 6.7 requires, so every entry is dword
//! aligned. The walk stops, with one warning, at the first pointer into the
//! predefined header (below 0x40) or back to an entry already read. There
//! are 48 dword offsets from 0x40 to 0xff, so a list has at most 48 entries.

use alloc::vec::Vec;

use log::warn;
use pci_types::{ConfigRegionAccess, PciAddress};

use crate::header::{
    read_config_u16, read_config_u8, CAPABILITY_POINTER, COMMAND_STATUS, DEVICE_SPECIFIC_START,
    STATUS_CAPABILITIES_LIST,
};
use crate::{Bdf, Capability};

/// Bits 1:0 of a capability pointer are reserved; software masks them
/// before following the pointer (section 6.7).
const POINTER_RESERVED_BITS: u8 = 0b11;

/// Reads the capability list of the function at `address`.
///
/// Returns an empty list when the status register has no capabilities list.
/// A malformed list yields the entries before the fault.
pub(crate) fn read_capabilities(
    access: &impl ConfigRegionAccess,
    address: PciAddress,
) -> Vec<Capability> {
    let mut capabilities = Vec::new();
    let status = read_config_u16(access, address, COMMAND_STATUS + 2);
    if status & STATUS_CAPABILITIES_LIST == 0 {
        return capabilities;
    }

    // Bit n marks the entry at offset 0x40 + 4 * n as visited. Each entry
    // sets a new bit and there are 48 such offsets, so the walk ends after at
    // most 48 entries.
    let mut visited: u64 = 0;
    let mut pointer = read_config_u8(access, address, CAPABILITY_POINTER) & !POINTER_RESERVED_BITS;
    while pointer != 0 {
        let offset = u16::from(pointer);
        if offset < DEVICE_SPECIFIC_START {
            warn!(
                "pci: {} capability list points to {offset:#x}, inside the header; ignoring the rest",
                Bdf(address)
            );
            break;
        }
        let visit_bit = 1u64 << ((offset - DEVICE_SPECIFIC_START) / 4);
        if visited & visit_bit != 0 {
            warn!(
                "pci: {} capability list loops back to {offset:#x}; ignoring the rest",
                Bdf(address)
            );
            break;
        }
        visited |= visit_bit;

        let header = read_config_u16(access, address, offset);
        capabilities.push(Capability {
            id: header as u8,
            offset,
        });
        pointer = (header >> 8) as u8 & !POINTER_RESERVED_BITS;
    }
    capabilities
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{FunctionBuilder, SyntheticConfigSpace, ROOT_BUS};
    use alloc::vec;

    /// 00:03.0, where every test puts its function.
    fn address() -> PciAddress {
        PciAddress::new(0, 0, 3, 0)
    }

    fn add_function(space: &SyntheticConfigSpace) -> FunctionBuilder<'_> {
        space.add_endpoint(ROOT_BUS, 3, 0, 0x1af4, 0x1041)
    }

    fn ids_and_offsets(capabilities: &[Capability]) -> Vec<(u8, u16)> {
        capabilities
            .iter()
            .map(|capability| (capability.id, capability.offset))
            .collect()
    }

    #[test]
    fn list_read_in_order() {
        let space = SyntheticConfigSpace::new();
        add_function(&space)
            .capability(0x11, &[0; 10])
            .capability(0x09, &[0; 14])
            .capability(0x05, &[0; 2]);
        let capabilities = read_capabilities(&space, address());
        assert_eq!(
            ids_and_offsets(&capabilities),
            vec![(0x11, 0x40), (0x09, 0x4c), (0x05, 0x5c)]
        );
    }

    #[test]
    fn status_bit_clear_means_no_list() {
        let space = SyntheticConfigSpace::new();
        add_function(&space)
            .config_bytes(CAPABILITY_POINTER, &[0x40])
            .config_bytes(0x40, &[0x05, 0x00]);
        assert!(read_capabilities(&space, address()).is_empty());
    }

    #[test]
    fn loop_ends_the_walk() {
        let space = SyntheticConfigSpace::new();
        // The second capability's next pointer leads back to the first.
        add_function(&space)
            .capability(0x11, &[0; 10])
            .capability(0x09, &[0; 14])
            .config_bytes(0x4d, &[0x40]);
        let capabilities = read_capabilities(&space, address());
        assert_eq!(
            ids_and_offsets(&capabilities),
            vec![(0x11, 0x40), (0x09, 0x4c)]
        );
    }

    #[test]
    fn self_loop_ends_the_walk() {
        let space = SyntheticConfigSpace::new();
        add_function(&space)
            .capability(0x09, &[0; 2])
            .config_bytes(0x41, &[0x40]);
        assert_eq!(
            ids_and_offsets(&read_capabilities(&space, address())),
            vec![(0x09, 0x40)]
        );
    }

    #[test]
    fn pointer_into_header_ends_the_walk() {
        let space = SyntheticConfigSpace::new();
        let first_in_header = add_function(&space)
            .capability(0x09, &[0; 2])
            .config_bytes(CAPABILITY_POINTER, &[0x20]);
        assert!(read_capabilities(&space, address()).is_empty());

        first_in_header
            .config_bytes(CAPABILITY_POINTER, &[0x40])
            .config_bytes(0x41, &[0x3c]);
        assert_eq!(
            ids_and_offsets(&read_capabilities(&space, address())),
            vec![(0x09, 0x40)]
        );
    }

    #[test]
    fn reserved_pointer_bits_are_masked() {
        let space = SyntheticConfigSpace::new();
        add_function(&space)
            .capability(0x11, &[0; 2])
            .capability(0x09, &[0; 2])
            .config_bytes(CAPABILITY_POINTER, &[0x43])
            .config_bytes(0x41, &[0x46]);
        let capabilities = read_capabilities(&space, address());
        assert_eq!(
            ids_and_offsets(&capabilities),
            vec![(0x11, 0x40), (0x09, 0x44)]
        );
    }

    #[test]
    fn list_capped_at_48_entries() {
        let space = SyntheticConfigSpace::new();
        let mut builder = add_function(&space);
        for index in 0..48u8 {
            builder = builder.capability(index, &[]);
        }
        let capabilities = read_capabilities(&space, address());
        assert_eq!(capabilities.len(), 48);
        assert_eq!(
            capabilities[47],
            Capability {
                id: 47,
                offset: 0xfc
            }
        );

        builder.config_bytes(0xfd, &[0x80]);
        let capabilities = read_capabilities(&space, address());
        assert_eq!(capabilities.len(), 48);
    }

    #[test]
    fn all_ones_function_walk_ends() {
        let space = SyntheticConfigSpace::new();
        // The all-ones status of an absent function has bit 4 set, and the
        // all-ones pointer and entries loop at 0xfc.
        let capabilities = read_capabilities(&space, address());
        assert_eq!(ids_and_offsets(&capabilities), vec![(0xff, 0xfc)]);
    }
}
