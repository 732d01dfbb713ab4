//! PCI-to-PCI bridge registers: bus numbers and the three forwarding
//! windows (PCI-to-PCI Bridge Architecture Specification 1.2, sections
//! 3.2.5.2 "Bus Number Registers" and 3.2.5.6 to 3.2.5.10, the I/O, memory
//! and prefetchable memory base and limit registers).
//!
//! A bridge forwards config transactions for buses `secondary..=subordinate`
//! downstream, and memory or I/O transactions whose address falls in a
//! window. The memory windows have 1 MiB granularity and the I/O window 4
//! KiB: base registers hold the upper address bits of the first byte, limit
//! registers those of the last, and a window whose base is above its limit
//! forwards nothing.

use core::ops::Range;

use pci_types::{ConfigRegionAccess, PciAddress};

use crate::header::{
    read_config_u16, read_dword, write_dword, BRIDGE_BUS_NUMBERS, BRIDGE_IO_BASE_LIMIT,
    BRIDGE_IO_UPPER, BRIDGE_MEMORY_BASE_LIMIT, BRIDGE_PREFETCHABLE_BASE_LIMIT,
    BRIDGE_PREFETCHABLE_BASE_UPPER, BRIDGE_PREFETCHABLE_LIMIT_UPPER,
};
use crate::BridgeBuses;

/// Granularity and minimum alignment of the memory windows.
pub(crate) const MEMORY_WINDOW_GRANULARITY: u64 = 1 << 20;
/// Granularity and minimum alignment of the I/O window.
pub(crate) const IO_WINDOW_GRANULARITY: u64 = 1 << 12;

/// Low nibble of the I/O base and limit registers: 1 if the bridge decodes
/// 32-bit I/O addresses (upper 16 bits at 0x30), 0 for 16-bit only.
const IO_ADDRESSING_MASK: u16 = 0x0f;
/// Low nibble of the prefetchable base and limit: 1 if 64-bit capable.
const PREFETCHABLE_ADDRESSING_MASK: u32 = 0x0f;
const ADDRESSING_32BIT_IO: u16 = 0x01;
const ADDRESSING_64BIT_PREFETCHABLE: u32 = 0x01;

/// Bits of each 16-bit memory base or limit register that hold address
/// bits 31:20.
const MEMORY_WINDOW_ADDRESS_MASK: u32 = 0xfff0;

/// One of a bridge's forwarding windows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WindowKind {
    Io,
    Memory,
    Prefetchable,
}

/// Reads a bridge's primary, secondary and subordinate bus numbers.
pub(crate) fn read_bus_numbers(
    access: &impl ConfigRegionAccess,
    address: PciAddress,
) -> BridgeBuses {
    let [primary, secondary, subordinate, _] =
        read_dword(access, address, BRIDGE_BUS_NUMBERS).to_le_bytes();
    BridgeBuses {
        primary,
        secondary,
        subordinate,
    }
}

/// Writes a bridge's bus numbers, keeping its secondary latency timer.
pub(crate) fn write_bus_numbers(
    access: &impl ConfigRegionAccess,
    address: PciAddress,
    buses: BridgeBuses,
) {
    let latency_timer = read_dword(access, address, BRIDGE_BUS_NUMBERS) >> 24;
    let value = u32::from_le_bytes([
        buses.primary,
        buses.secondary,
        buses.subordinate,
        latency_timer as u8,
    ]);
    write_dword(access, address, BRIDGE_BUS_NUMBERS, value);
}

/// Reads the window of `kind`, or `None` if it is closed.
///
/// Base and limit registers both zero is the reset value. It would forward
/// the first 1 MiB of memory (or I/O ports 0 to 0xfff), where RAM and legacy
/// ISA devices sit, so firmware has no reason to program it. It counts as
/// closed here, and the window is rewritten if anything behind the bridge
/// needs it.
pub(crate) fn read_window(
    access: &impl ConfigRegionAccess,
    address: PciAddress,
    kind: WindowKind,
) -> Option<Range<u64>> {
    let (base, limit) = match kind {
        WindowKind::Io => {
            let base_limit = read_config_u16(access, address, BRIDGE_IO_BASE_LIMIT);
            let (base_register, limit_register) = (base_limit & 0xff, base_limit >> 8);
            let upper = if base_register & IO_ADDRESSING_MASK == ADDRESSING_32BIT_IO {
                read_dword(access, address, BRIDGE_IO_UPPER)
            } else {
                0
            };
            let base = u64::from(base_register & 0xf0) << 8 | u64::from(upper & 0xffff) << 16;
            let limit =
                u64::from(limit_register & 0xf0) << 8 | u64::from(upper >> 16) << 16 | 0xfff;
            (base, limit)
        }
        WindowKind::Memory => {
            let base_limit = read_dword(access, address, BRIDGE_MEMORY_BASE_LIMIT);
            let base = u64::from(base_limit & MEMORY_WINDOW_ADDRESS_MASK) << 16;
            let limit = u64::from(base_limit >> 16 & MEMORY_WINDOW_ADDRESS_MASK) << 16 | 0xf_ffff;
            (base, limit)
        }
        WindowKind::Prefetchable => {
            let base_limit = read_dword(access, address, BRIDGE_PREFETCHABLE_BASE_LIMIT);
            let (base_upper, limit_upper) =
                if base_limit & PREFETCHABLE_ADDRESSING_MASK == ADDRESSING_64BIT_PREFETCHABLE {
                    (
                        read_dword(access, address, BRIDGE_PREFETCHABLE_BASE_UPPER),
                        read_dword(access, address, BRIDGE_PREFETCHABLE_LIMIT_UPPER),
                    )
                } else {
                    (0, 0)
                };
            let base = u64::from(base_limit & MEMORY_WINDOW_ADDRESS_MASK) << 16
                | u64::from(base_upper) << 32;
            let limit = u64::from(base_limit >> 16 & MEMORY_WINDOW_ADDRESS_MASK) << 16
                | u64::from(limit_upper) << 32
                | 0xf_ffff;
            (base, limit)
        }
    };

    let granularity = match kind {
        WindowKind::Io => IO_WINDOW_GRANULARITY,
        WindowKind::Memory | WindowKind::Prefetchable => MEMORY_WINDOW_GRANULARITY,
    };
    let reset_value = base == 0 && limit == granularity - 1;
    (base <= limit && !reset_value).then(|| base..limit + 1)
}

/// Programs the window of `kind` to forward `window`, or closes it (base
/// above limit) for `None`.
///
/// `window` must be aligned to the window's granularity at both ends, below
/// 4 GiB for [`WindowKind::Memory`] and below 64 KiB for [`WindowKind::Io`];
/// the allocator guarantees both.
pub(crate) fn write_window(
    access: &impl ConfigRegionAccess,
    address: PciAddress,
    kind: WindowKind,
    window: Option<Range<u64>>,
) {
    match kind {
        WindowKind::Io => {
            // A closed window: base 0xf000 above limit 0x0fff.
            let (base, limit) = window.map_or((0xf000, 0), |window| (window.start, window.end - 1));
            let base_limit = (base >> 8 & 0xf0) | (limit >> 8 & 0xf0) << 8;
            write_dword(access, address, BRIDGE_IO_BASE_LIMIT, base_limit as u32);
            write_dword(
                access,
                address,
                BRIDGE_IO_UPPER,
                (base >> 16 | (limit >> 16) << 16) as u32,
            );
        }
        WindowKind::Memory => {
            let (base, limit) =
                window.map_or((0xfff0_0000, 0), |window| (window.start, window.end - 1));
            let value = (base >> 16) as u32 & MEMORY_WINDOW_ADDRESS_MASK
                | ((limit >> 16) as u32 & MEMORY_WINDOW_ADDRESS_MASK) << 16;
            write_dword(access, address, BRIDGE_MEMORY_BASE_LIMIT, value);
        }
        WindowKind::Prefetchable => {
            let (base, limit) =
                window.map_or((0xfff0_0000, 0), |window| (window.start, window.end - 1));
            let value = (base >> 16) as u32 & MEMORY_WINDOW_ADDRESS_MASK
                | ((limit >> 16) as u32 & MEMORY_WINDOW_ADDRESS_MASK) << 16;
            write_dword(access, address, BRIDGE_PREFETCHABLE_BASE_LIMIT, value);
            write_dword(
                access,
                address,
                BRIDGE_PREFETCHABLE_BASE_UPPER,
                (base >> 32) as u32,
            );
            write_dword(
                access,
                address,
                BRIDGE_PREFETCHABLE_LIMIT_UPPER,
                (limit >> 32) as u32,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{SyntheticConfigSpace, ROOT_BUS};

    fn address() -> PciAddress {
        PciAddress::new(0, 0, 1, 0)
    }

    #[test]
    fn reset_windows_read_closed() {
        let space = SyntheticConfigSpace::new();
        space.add_bridge(ROOT_BUS, 1, 0, 0x1b36, 0x0001);
        for kind in [WindowKind::Io, WindowKind::Memory, WindowKind::Prefetchable] {
            assert_eq!(read_window(&space, address(), kind), None, "{kind:?}");
        }
    }

    #[test]
    fn firmware_windows_decode() {
        let space = SyntheticConfigSpace::new();
        space
            .add_bridge(ROOT_BUS, 1, 0, 0x1b36, 0x0001)
            .io_window(0x1_d000..0x1_f000)
            .memory_window(0xfe00_0000..0xfe20_0000)
            .prefetchable_window(0x8_0000_0000..0x8_0010_0000);
        assert_eq!(
            read_window(&space, address(), WindowKind::Io),
            Some(0x1_d000..0x1_f000)
        );
        assert_eq!(
            read_window(&space, address(), WindowKind::Memory),
            Some(0xfe00_0000..0xfe20_0000)
        );
        assert_eq!(
            read_window(&space, address(), WindowKind::Prefetchable),
            Some(0x8_0000_0000..0x8_0010_0000)
        );
    }

    #[test]
    fn written_windows_read_back() {
        let space = SyntheticConfigSpace::new();
        space.add_bridge(ROOT_BUS, 1, 0, 0x1b36, 0x0001);
        let cases = [
            (WindowKind::Io, 0xc000..0xe000),
            (WindowKind::Memory, 0xc010_0000..0xc030_0000),
            (WindowKind::Prefetchable, 0x1_0000_0000..0x1_0010_0000),
        ];
        for (kind, window) in cases {
            write_window(&space, address(), kind, Some(window.clone()));
            assert_eq!(
                read_window(&space, address(), kind),
                Some(window),
                "{kind:?}"
            );
            write_window(&space, address(), kind, None);
            assert_eq!(
                read_window(&space, address(), kind),
                None,
                "{kind:?} closed"
            );
        }
    }

    #[test]
    fn zero_window_counts_as_reset() {
        let space = SyntheticConfigSpace::new();
        space
            .add_bridge(ROOT_BUS, 1, 0, 0x1b36, 0x0001)
            .memory_window(0..0x10_0000);
        assert_eq!(read_window(&space, address(), WindowKind::Memory), None);
    }

    #[test]
    fn bus_numbers_round_trip_and_keep_latency_timer() {
        let space = SyntheticConfigSpace::new();
        let bridge = space
            .add_bridge(ROOT_BUS, 1, 0, 0x1b36, 0x0001)
            .config_bytes(0x1b, &[0x40])
            .handle();
        write_bus_numbers(
            &space,
            address(),
            BridgeBuses {
                primary: 0,
                secondary: 1,
                subordinate: 4,
            },
        );
        assert_eq!(
            read_bus_numbers(&space, address()),
            BridgeBuses {
                primary: 0,
                secondary: 1,
                subordinate: 4
            }
        );
        assert_eq!(space.register(bridge, BRIDGE_BUS_NUMBERS) >> 24, 0x40);
    }
}
