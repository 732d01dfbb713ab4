//! Configuration header layout and the config-space accessors every other
//! module goes through.
//!
//! Offsets follow PCI Local Bus Specification 3.0, section 6.1 "Configuration
//! Space Organization" (type 0 header) and PCI-to-PCI Bridge Architecture
//! Specification 1.2, section 3.2 (type 1 header). [`ConfigRegionAccess`]
//! only moves aligned dwords, so the byte and word helpers here read the
//! enclosing dword and shift.

use pci_types::{CommandRegister, ConfigRegionAccess, PciAddress};

/// Vendor ID (bits 15:0) and device ID (bits 31:16).
pub(crate) const ID: u16 = 0x00;
/// Command (bits 15:0) and status (bits 31:16).
pub(crate) const COMMAND_STATUS: u16 = 0x04;
/// Revision ID (bits 7:0), programming interface, subclass and class code
/// (bits 31:24).
pub(crate) const CLASS_REVISION: u16 = 0x08;
/// Cache line size, latency timer, header type (bits 23:16) and BIST.
pub(crate) const HEADER_TYPE_DWORD: u16 = 0x0c;
/// First base address register; slot `n` is at `BAR0 + 4 * n`.
pub(crate) const BAR0: u16 = 0x10;
/// Capabilities pointer (bits 7:0) in type 0 and type 1 headers.
pub(crate) const CAPABILITY_POINTER: u16 = 0x34;
/// First offset past the predefined header; capabilities live at or above it.
pub(crate) const DEVICE_SPECIFIC_START: u16 = 0x40;

/// Type 1: primary (7:0), secondary (15:8) and subordinate (23:16) bus numbers.
pub(crate) const BRIDGE_BUS_NUMBERS: u16 = 0x18;
/// Type 1: I/O base (7:0) and I/O limit (15:8); secondary status above.
pub(crate) const BRIDGE_IO_BASE_LIMIT: u16 = 0x1c;
/// Type 1: memory base (15:0) and memory limit (31:16).
pub(crate) const BRIDGE_MEMORY_BASE_LIMIT: u16 = 0x20;
/// Type 1: prefetchable memory base (15:0) and limit (31:16).
pub(crate) const BRIDGE_PREFETCHABLE_BASE_LIMIT: u16 = 0x24;
/// Type 1: bits 63:32 of the prefetchable memory base.
pub(crate) const BRIDGE_PREFETCHABLE_BASE_UPPER: u16 = 0x28;
/// Type 1: bits 63:32 of the prefetchable memory limit.
pub(crate) const BRIDGE_PREFETCHABLE_LIMIT_UPPER: u16 = 0x2c;
/// Type 1: bits 31:16 of the I/O base (15:0) and I/O limit (31:16).
pub(crate) const BRIDGE_IO_UPPER: u16 = 0x30;

/// Status register bit 4: the capabilities pointer is valid.
pub(crate) const STATUS_CAPABILITIES_LIST: u16 = 1 << 4;
/// Header type bit 7, set in function 0 of a multi-function device.
pub(crate) const HEADER_TYPE_MULTI_FUNCTION: u8 = 0x80;
/// Header type bits 6:0: the header layout.
pub(crate) const HEADER_TYPE_LAYOUT_MASK: u8 = 0x7f;
pub(crate) const HEADER_TYPE_ENDPOINT: u8 = 0;
pub(crate) const HEADER_TYPE_BRIDGE: u8 = 1;
pub(crate) const HEADER_TYPE_CARDBUS: u8 = 2;

/// The vendor ID an absent function returns (the all-ones of a master abort).
pub(crate) const VENDOR_ID_ABSENT: u16 = 0xffff;

/// Size of a function's configuration space through ECAM; configuration
/// mechanism #1 reaches only the first 256 bytes.
pub(crate) const CONFIG_SPACE_BYTES: u16 = 0x1000;

/// Reads the dword at `offset` rounded down to a multiple of 4.
///
/// Returns all-ones for offsets past the 4 KiB configuration space, as an
/// absent register would.
pub(crate) fn read_dword(
    access: &impl ConfigRegionAccess,
    address: PciAddress,
    offset: u16,
) -> u32 {
    if offset >= CONFIG_SPACE_BYTES {
        return u32::MAX;
    }
    // SAFETY: `ConfigRegionAccess::read` requires an address and offset valid
    // for a config read. The offset is dword aligned and inside the 4 KiB
    // configuration space (checked above); an absent function or register
    // returns all-ones or zero. The registers the PCI specifications define,
    // which are all this crate reads, have no read side effects. The access
    // object's constructor made its caller vouch that it reaches real
    // configuration space.
    unsafe { access.read(address, offset & !3) }
}

/// Writes `value` to the dword at `offset` rounded down to a multiple of 4.
///
/// Callers write only registers whose meaning the header layout fixes:
/// command, BARs, and bridge bus numbers and windows. Offsets past the 4 KiB
/// configuration space are ignored.
pub(crate) fn write_dword(
    access: &impl ConfigRegionAccess,
    address: PciAddress,
    offset: u16,
    value: u32,
) {
    if offset >= CONFIG_SPACE_BYTES {
        return;
    }
    // SAFETY: the offset is a dword-aligned header register (see the doc
    // comment) of a function the walk found present. Changing BARs, bus
    // numbers and windows moves what devices decode. The access object's
    // constructor made its caller guarantee that nothing depends on the old
    // layout while enumeration runs.
    unsafe { access.write(address, offset & !3, value) }
}

/// Reads the command register.
pub(crate) fn read_command(
    access: &impl ConfigRegionAccess,
    address: PciAddress,
) -> CommandRegister {
    CommandRegister::from_bits_retain(read_config_u16(access, address, COMMAND_STATUS))
}

/// Writes the command register. The status register above it is written
/// with zero, which leaves its write-one-to-clear error bits untouched.
pub(crate) fn write_command(
    access: &impl ConfigRegionAccess,
    address: PciAddress,
    command: CommandRegister,
) {
    write_dword(access, address, COMMAND_STATUS, u32::from(command.bits()));
}

/// Reads one byte of configuration space. Offsets past 0xfff read as 0xff.
pub fn read_config_u8(access: &impl ConfigRegionAccess, address: PciAddress, offset: u16) -> u8 {
    let dword = read_dword(access, address, offset);
    (dword >> ((offset & 3) * 8)) as u8
}

/// Reads a little-endian 16-bit field of configuration space.
///
/// A field that straddles a dword boundary is assembled from two reads.
pub fn read_config_u16(access: &impl ConfigRegionAccess, address: PciAddress, offset: u16) -> u16 {
    if offset & 3 == 3 {
        let low = read_config_u8(access, address, offset);
        let high = read_config_u8(access, address, offset.saturating_add(1));
        return u16::from_le_bytes([low, high]);
    }
    let dword = read_dword(access, address, offset);
    (dword >> ((offset & 3) * 8)) as u16
}

/// Reads a little-endian 32-bit field of configuration space.
///
/// An unaligned field is assembled from the two dwords it spans.
pub fn read_config_u32(access: &impl ConfigRegionAccess, address: PciAddress, offset: u16) -> u32 {
    let shift = u32::from(offset & 3) * 8;
    let low = read_dword(access, address, offset);
    if shift == 0 {
        return low;
    }
    let high = read_dword(access, address, offset.saturating_add(4));
    (low >> shift) | (high << (32 - shift))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{SyntheticConfigSpace, ROOT_BUS};

    #[test]
    fn sub_dword_reads_pick_the_right_bytes() {
        let space = SyntheticConfigSpace::new();
        let nic = space.add_endpoint(ROOT_BUS, 3, 0, 0x1af4, 0x1041).handle();
        space.set_config_bytes(nic, 0x40, &[0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88]);
        let address = PciAddress::new(0, 0, 3, 0);

        assert_eq!(read_config_u8(&space, address, 0x40), 0x11);
        assert_eq!(read_config_u8(&space, address, 0x43), 0x44);
        assert_eq!(read_config_u16(&space, address, 0x00), 0x1af4);
        assert_eq!(read_config_u16(&space, address, 0x02), 0x1041);
        assert_eq!(read_config_u16(&space, address, 0x42), 0x4433);
        assert_eq!(read_config_u32(&space, address, 0x40), 0x4433_2211);
    }

    #[test]
    fn unaligned_reads_straddle_dwords() {
        let space = SyntheticConfigSpace::new();
        let nic = space.add_endpoint(ROOT_BUS, 3, 0, 0x1af4, 0x1041).handle();
        space.set_config_bytes(nic, 0x40, &[0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88]);
        let address = PciAddress::new(0, 0, 3, 0);

        assert_eq!(read_config_u16(&space, address, 0x43), 0x5544);
        assert_eq!(read_config_u32(&space, address, 0x41), 0x5544_3322);
        assert_eq!(read_config_u32(&space, address, 0x43), 0x7766_5544);
    }

    #[test]
    fn reads_past_config_space_are_all_ones() {
        let space = SyntheticConfigSpace::new();
        space.add_endpoint(ROOT_BUS, 3, 0, 0x1af4, 0x1041);
        let address = PciAddress::new(0, 0, 3, 0);

        assert_eq!(read_config_u32(&space, address, 0x1000), u32::MAX);
        assert_eq!(read_config_u16(&space, address, 0xffff), u16::MAX);
        assert_eq!(read_config_u8(&space, address, 0x1003), u8::MAX);
    }

    #[test]
    fn absent_function_reads_all_ones() {
        let space = SyntheticConfigSpace::new();
        let address = PciAddress::new(0, 0, 5, 0);
        assert_eq!(read_config_u16(&space, address, ID), VENDOR_ID_ABSENT);
        assert_eq!(read_config_u32(&space, address, BAR0), u32::MAX);
    }
}
