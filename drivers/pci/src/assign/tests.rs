use super::*;
use crate::bridge::read_window;
use crate::enumerate;
use crate::testing::{FunctionHandle, SyntheticConfigSpace, ROOT_BUS};
use crate::Bdf;
use pci_types::PciAddress;

const MEMORY_WINDOW: Range<u64> = 0xc000_0000..0xfec0_0000;
const IO_WINDOW: Range<u32> = 0xc000..0x1_0000;

fn allocator() -> BarAllocator {
    BarAllocator::new(MEMORY_WINDOW, IO_WINDOW)
}

fn function_at(functions: &[Function], bus: u8, device: u8, function: u8) -> &Function {
    functions
        .iter()
        .find(|found| found.address == PciAddress::new(0, bus, device, function))
        .unwrap_or_else(|| panic!("no function at {bus:02x}:{device:02x}.{function}"))
}

fn bar_range(function: &Function, slot: usize) -> Range<u64> {
    let bar =
        function.bars[slot].unwrap_or_else(|| panic!("{} has no BAR{slot}", Bdf(function.address)));
    bar.address()..bar.address() + bar.size()
}

fn contains(outer: &Range<u64>, inner: &Range<u64>) -> bool {
    outer.start <= inner.start && inner.end <= outer.end
}

/// Collects every BAR of `functions` in `space` as `(function, slot, range)`.
fn all_bars(functions: &[Function], space: AddressSpace) -> Vec<(PciAddress, u8, Range<u64>)> {
    let mut bars = Vec::new();
    for function in functions {
        for (slot, bar) in function.bars().filter(|(_, bar)| bar.space() == space) {
            bars.push((
                function.address,
                slot,
                bar.address()..bar.address() + bar.size(),
            ));
        }
    }
    bars
}

fn assert_aligned_and_disjoint(bars: &[(PciAddress, u8, Range<u64>)]) {
    for (index, (address, slot, range)) in bars.iter().enumerate() {
        let size = range.end - range.start;
        assert_eq!(
            range.start % size,
            0,
            "{} BAR{slot} at {:#x} not aligned to {size:#x}",
            Bdf(*address),
            range.start
        );
        for (other_address, other_slot, other) in &bars[index + 1..] {
            let overlap = range.start < other.end && other.start < range.end;
            assert!(
                !overlap,
                "{} BAR{slot} overlaps {} BAR{other_slot}",
                Bdf(*address),
                Bdf(*other_address)
            );
        }
    }
}

/// Reads the address programmed in BAR `slot` (both dwords if 64-bit).
fn programmed_address(space: &SyntheticConfigSpace, function: FunctionHandle, slot: u16) -> u64 {
    let low = space.register(function, 0x10 + 4 * slot);
    let address = u64::from(low & !0xf);
    if low & 0b111 == 0b100 {
        address | u64::from(space.register(function, 0x14 + 4 * slot)) << 32
    } else if low & 1 == 1 {
        u64::from(low & !0x3)
    } else {
        address
    }
}

#[test]
fn firmware_bars_kept_and_zero_bars_placed() {
    let space = SyntheticConfigSpace::new();
    let firmware = space
        .add_endpoint(ROOT_BUS, 1, 0, 0x1234, 0x1111)
        .memory_bar(0, 0x10_0000, true)
        .memory_bar(2, 0x1000, false)
        .io_bar(4, 0x40)
        .bar_address(0, 0xc000_0000)
        .bar_address(2, 0xc010_1000)
        .bar_address(4, 0xc000)
        .handle();
    let fresh = space
        .add_endpoint(ROOT_BUS, 2, 0, 0x1af4, 0x1000)
        .io_bar(0, 0x100)
        .memory_bar(1, 0x1000, false)
        .memory_bar(2, 0x80, false)
        .memory64_bar(4, 0x10_0000, true)
        .handle();

    let functions = enumerate(&space, 0, &mut allocator()).expect("enumeration succeeds");
    let firmware_function = function_at(&functions, 0, 1, 0);
    assert_eq!(bar_range(firmware_function, 0), 0xc000_0000..0xc010_0000);
    assert_eq!(bar_range(firmware_function, 2), 0xc010_1000..0xc010_2000);
    assert_eq!(bar_range(firmware_function, 4), 0xc000..0xc040);

    let memory = all_bars(&functions, AddressSpace::Memory);
    let io = all_bars(&functions, AddressSpace::Io);
    assert_eq!(memory.len(), 5);
    assert_eq!(io.len(), 2);
    assert_aligned_and_disjoint(&memory);
    assert_aligned_and_disjoint(&io);
    for (_, _, range) in &memory {
        assert!(
            contains(&MEMORY_WINDOW, range),
            "{range:#x?} outside the memory window"
        );
    }
    for (_, _, range) in &io {
        assert!(
            contains(&(0xc000..0x1_0000), range),
            "{range:#x?} outside the I/O window"
        );
    }

    let placed = function_at(&functions, 0, 2, 0);
    for slot in [0u16, 1, 2, 4] {
        let expected = placed.bars[usize::from(slot)].map(|bar| bar.address());
        assert_eq!(
            Some(programmed_address(&space, fresh, slot)),
            expected,
            "BAR{slot}"
        );
        assert_ne!(expected, Some(0), "BAR{slot}");
    }
    assert_eq!(programmed_address(&space, firmware, 0), 0xc000_0000);
}

#[test]
fn firmware_bars_reserved_before_placement() {
    let space = SyntheticConfigSpace::new();
    // The function that needs an address comes first in bus order; the
    // firmware BAR it must avoid sits at the start of the window.
    space
        .add_endpoint(ROOT_BUS, 1, 0, 0x1af4, 0x1000)
        .memory_bar(0, 0x1000, false);
    space
        .add_endpoint(ROOT_BUS, 2, 0, 0x1234, 0x1111)
        .memory_bar(0, 0x1000, false)
        .bar_address(0, 0xc000_0000);

    let functions = enumerate(&space, 0, &mut allocator()).expect("enumeration succeeds");
    assert_eq!(
        bar_range(function_at(&functions, 0, 1, 0), 0),
        0xc000_1000..0xc000_2000
    );
    assert_eq!(
        bar_range(function_at(&functions, 0, 2, 0), 0),
        0xc000_0000..0xc000_1000
    );
}

#[test]
fn overlapping_firmware_bar_is_reassigned() {
    let space = SyntheticConfigSpace::new();
    space
        .add_endpoint(ROOT_BUS, 1, 0, 0x1234, 0x1111)
        .memory_bar(0, 0x2000, false)
        .bar_address(0, 0xc000_0000);
    space
        .add_endpoint(ROOT_BUS, 2, 0, 0x1234, 0x2222)
        .memory_bar(0, 0x1000, false)
        .bar_address(0, 0xc000_1000);

    let functions = enumerate(&space, 0, &mut allocator()).expect("enumeration succeeds");
    assert_eq!(
        bar_range(function_at(&functions, 0, 1, 0), 0),
        0xc000_0000..0xc000_2000
    );
    assert_eq!(
        bar_range(function_at(&functions, 0, 2, 0), 0),
        0xc000_2000..0xc000_3000
    );
}

#[test]
fn bar_placement_respects_4gib_limit() {
    let space = SyntheticConfigSpace::new();
    // The firmware filled the part of the window below 4 GiB.
    space
        .add_endpoint(ROOT_BUS, 1, 0, 0x1234, 0x1111)
        .memory_bar(0, 0x10_0000, false)
        .bar_address(0, 0xfff0_0000);
    space
        .add_endpoint(ROOT_BUS, 2, 0, 0x1af4, 0x1000)
        .memory64_bar(0, 0x4000, false);
    let mut straddling = BarAllocator::new(0xfff0_0000..0x1_0010_0000, 0..0);

    let functions = enumerate(&space, 0, &mut straddling).expect("enumeration succeeds");
    assert_eq!(
        bar_range(function_at(&functions, 0, 2, 0), 0),
        0x1_0000_0000..0x1_0000_4000
    );

    let space = SyntheticConfigSpace::new();
    space
        .add_endpoint(ROOT_BUS, 1, 0, 0x1234, 0x1111)
        .memory_bar(0, 0x10_0000, false)
        .bar_address(0, 0xfff0_0000);
    space
        .add_endpoint(ROOT_BUS, 2, 0, 0x1af4, 0x1000)
        .memory_bar(1, 0x4000, false);
    let mut straddling = BarAllocator::new(0xfff0_0000..0x1_0010_0000, 0..0);
    let error = enumerate(&space, 0, &mut straddling).expect_err("no room below 4 GiB");
    assert!(
        matches!(error, PciError::BarWindowExhausted { slot: 1, .. }),
        "{error:?}"
    );
}

#[test]
fn bar_64bit_placed_in_32bit_window() {
    let space = SyntheticConfigSpace::new();
    let nic = space
        .add_endpoint(ROOT_BUS, 3, 0, 0x1af4, 0x1041)
        .memory64_bar(4, 0x4000, true)
        .handle();
    let functions = enumerate(&space, 0, &mut allocator()).expect("enumeration succeeds");
    assert_eq!(
        bar_range(function_at(&functions, 0, 3, 0), 4),
        0xc000_0000..0xc000_4000
    );
    assert_eq!(space.register(nic, 0x20), 0xc000_000c);
    assert_eq!(space.register(nic, 0x24), 0);
}

/// Builds a qboot-like tree: nothing numbered, nothing assigned, windows at reset.
/// 00:01.0 bridge -> 01:00.0 NIC, 01:01.0 bridge -> 02:00.0 disk; and a
/// device on bus 0.
fn unassigned_tree(space: &SyntheticConfigSpace) -> (FunctionHandle, FunctionHandle) {
    space
        .add_endpoint(ROOT_BUS, 2, 0, 0x1234, 0x1111)
        .memory_bar(0, 0x1000, false);
    let outer = space.add_bridge(ROOT_BUS, 1, 0, 0x1b36, 0x0001).handle();
    space
        .add_endpoint(space.secondary_bus(outer), 0, 0, 0x1af4, 0x1041)
        .io_bar(0, 0x20)
        .memory_bar(1, 0x1000, false)
        .memory64_bar(4, 0x4000, true);
    let inner = space
        .add_bridge(space.secondary_bus(outer), 1, 0, 0x1b36, 0x0001)
        .handle();
    space
        .add_endpoint(space.secondary_bus(inner), 0, 0, 0x1af4, 0x1042)
        .memory_bar(0, 0x20_0000, false);
    (outer, inner)
}

#[test]
fn bridge_windows_cover_devices_behind() {
    let space = SyntheticConfigSpace::new();
    let (_, inner) = unassigned_tree(&space);
    let functions = enumerate(&space, 0, &mut allocator()).expect("enumeration succeeds");
    let outer_address = PciAddress::new(0, 0, 1, 0);
    let inner_address = PciAddress::new(0, 1, 1, 0);
    assert_eq!(space.address_of(inner), Some(inner_address));

    let outer_memory =
        read_window(&space, outer_address, WindowKind::Memory).expect("outer memory window open");
    let inner_memory =
        read_window(&space, inner_address, WindowKind::Memory).expect("inner memory window open");
    let outer_io =
        read_window(&space, outer_address, WindowKind::Io).expect("outer I/O window open");
    assert_eq!(outer_memory.start % MEMORY_WINDOW_GRANULARITY, 0);
    assert_eq!(outer_io.start % IO_WINDOW_GRANULARITY, 0);
    assert!(contains(&MEMORY_WINDOW, &outer_memory));
    assert!(contains(&outer_memory, &inner_memory));

    let nic = function_at(&functions, 1, 0, 0);
    let disk = function_at(&functions, 2, 0, 0);
    assert!(contains(&outer_memory, &bar_range(nic, 1)));
    assert!(contains(&outer_memory, &bar_range(nic, 4)));
    assert!(contains(&outer_io, &bar_range(nic, 0)));
    assert!(contains(&inner_memory, &bar_range(disk, 0)));
    assert!(!contains(&inner_memory, &bar_range(nic, 1)));

    let on_root = bar_range(function_at(&functions, 0, 2, 0), 0);
    assert!(on_root.end <= outer_memory.start || outer_memory.end <= on_root.start);
    assert_aligned_and_disjoint(&all_bars(&functions, AddressSpace::Memory));

    for bridge in [outer_address, inner_address] {
        assert_eq!(read_window(&space, bridge, WindowKind::Prefetchable), None);
    }
    assert_eq!(
        read_window(&space, inner_address, WindowKind::Io),
        None,
        "nothing behind uses I/O"
    );
}

#[test]
fn firmware_bridge_window_kept_and_filled() {
    let space = SyntheticConfigSpace::new();
    let bridge = space
        .add_bridge(ROOT_BUS, 1, 0, 0x1b36, 0x0001)
        .bus_numbers(0, 1, 1)
        .memory_window(0xfe00_0000..0xfe20_0000)
        .handle();
    space
        .add_endpoint(space.secondary_bus(bridge), 0, 0, 0x1af4, 0x1041)
        .memory_bar(1, 0x1000, false)
        .memory64_bar(4, 0x4000, true)
        .bar_address(4, 0xfe00_0000);
    // Outside the bridge window: reassigned into it.
    space
        .add_endpoint(space.secondary_bus(bridge), 1, 0, 0x1af4, 0x1042)
        .memory_bar(0, 0x1000, false)
        .bar_address(0, 0xd000_0000);
    space
        .add_endpoint(ROOT_BUS, 2, 0, 0x1234, 0x1111)
        .memory_bar(0, 0x10_0000, false);
    let mut allocator = BarAllocator::new(0xfe00_0000..0xfec0_0000, 0xc000..0x1_0000);

    let functions = enumerate(&space, 0, &mut allocator).expect("enumeration succeeds");
    let window = 0xfe00_0000..0xfe20_0000;
    let address = PciAddress::new(0, 0, 1, 0);
    assert_eq!(
        read_window(&space, address, WindowKind::Memory),
        Some(window.clone())
    );
    let nic = function_at(&functions, 1, 0, 0);
    assert_eq!(bar_range(nic, 4), 0xfe00_0000..0xfe00_4000);
    assert_eq!(bar_range(nic, 1), 0xfe00_4000..0xfe00_5000);
    assert_eq!(
        bar_range(function_at(&functions, 1, 1, 0), 0),
        0xfe00_5000..0xfe00_6000
    );
    assert_eq!(
        bar_range(function_at(&functions, 0, 2, 0), 0),
        0xfe20_0000..0xfe30_0000
    );
}

#[test]
fn firmware_bar_behind_closed_bridge_is_reassigned() {
    let space = SyntheticConfigSpace::new();
    let bridge = space
        .add_bridge(ROOT_BUS, 1, 0, 0x1b36, 0x0001)
        .bus_numbers(0, 1, 1)
        .handle();
    space
        .add_endpoint(space.secondary_bus(bridge), 0, 0, 0x1af4, 0x1041)
        .memory_bar(1, 0x1000, false)
        .bar_address(1, 0xfebd_1000);

    let functions = enumerate(&space, 0, &mut allocator()).expect("enumeration succeeds");
    let window = read_window(&space, PciAddress::new(0, 0, 1, 0), WindowKind::Memory)
        .expect("window programmed");
    assert_eq!(window, 0xc000_0000..0xc010_0000);
    assert_eq!(
        bar_range(function_at(&functions, 1, 0, 0), 1),
        0xc000_0000..0xc000_1000
    );
}

#[test]
fn bar_window_exhaustion_names_function_and_slot() {
    let space = SyntheticConfigSpace::new();
    space
        .add_endpoint(ROOT_BUS, 3, 0, 0x1af4, 0x1041)
        .memory_bar(0, 0x1000, false)
        .memory_bar(1, 0x4000, false);
    let mut small = BarAllocator::new(0xfe00_0000..0xfe00_2000, 0xc000..0x1_0000);

    let error = enumerate(&space, 0, &mut small).expect_err("window too small");
    assert_eq!(
        error,
        PciError::BarWindowExhausted {
            address: PciAddress::new(0, 0, 3, 0),
            slot: 1,
            space: AddressSpace::Memory,
            size_bytes: 0x4000,
            window: 0xfe00_0000..0xfe00_2000,
        }
    );
}

#[test]
fn io_window_exhaustion() {
    let space = SyntheticConfigSpace::new();
    space
        .add_endpoint(ROOT_BUS, 3, 0, 0x1af4, 0x1000)
        .io_bar(0, 0x40)
        .io_bar(2, 0x40);
    let mut small = BarAllocator::new(MEMORY_WINDOW, 0xc000..0xc040);
    let error = enumerate(&space, 0, &mut small).expect_err("one I/O BAR too many");
    assert!(
        matches!(
            error,
            PciError::BarWindowExhausted {
                slot: 0 | 2,
                space: AddressSpace::Io,
                ..
            }
        ),
        "{error:?}"
    );
}

#[test]
fn bridge_window_exhaustion() {
    let space = SyntheticConfigSpace::new();
    unassigned_tree(&space);
    let mut small = BarAllocator::new(0xc000_0000..0xc008_0000, 0xc000..0x1_0000);
    let error = enumerate(&space, 0, &mut small).expect_err("no room for a 1 MiB-aligned window");
    assert_eq!(
        error,
        PciError::BridgeWindowExhausted {
            address: PciAddress::new(0, 0, 1, 0),
            space: AddressSpace::Memory,
            size_bytes: 0x30_0000,
            alignment_bytes: 0x20_0000,
            window: 0xc000_0000..0xc008_0000,
        }
    );
}

#[test]
fn command_bits_enabled_after_assignment() {
    let space = SyntheticConfigSpace::new();
    let both = space
        .add_endpoint(ROOT_BUS, 7, 0, 0x1af4, 0x1000)
        .io_bar(0, 0x20)
        .memory_bar(1, 0x1000, false)
        .command(0x0100)
        .handle();
    let memory_only = space
        .add_endpoint(ROOT_BUS, 6, 0, 0x1af4, 0x1041)
        .memory64_bar(4, 0x4000, true)
        .handle();
    let io_only = space
        .add_endpoint(ROOT_BUS, 3, 0, 0x8086, 0x7010)
        .io_bar(4, 0x10)
        .handle();
    let no_bars = space.add_endpoint(ROOT_BUS, 4, 0, 0x8086, 0x7000).handle();
    let (outer, inner) = unassigned_tree(&space);
    let empty_bridge = space.add_bridge(ROOT_BUS, 5, 0, 0x1b36, 0x0001).handle();

    enumerate(&space, 0, &mut allocator()).expect("enumeration succeeds");
    let command = |function| space.register(function, 0x04) & 0xffff;
    // Bit 0 I/O space, bit 1 memory space, bit 2 bus master; bit 8 (SERR#)
    // was set by the firmware and stays.
    assert_eq!(command(both), 0x0107);
    assert_eq!(command(memory_only), 0x0006);
    assert_eq!(command(io_only), 0x0005);
    assert_eq!(command(no_bars), 0x0000);
    assert_eq!(command(outer), 0x0007);
    assert_eq!(command(inner), 0x0006);
    assert_eq!(command(empty_bridge), 0x0004);
}
