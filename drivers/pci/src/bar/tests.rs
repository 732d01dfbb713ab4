use super::*;
use crate::header::COMMAND_STATUS;
use crate::testing::{ConfigWrite, SyntheticConfigSpace, ROOT_BUS};
use alloc::vec::Vec;

fn address() -> PciAddress {
    PciAddress::new(0, 0, 2, 0)
}

fn memory(address: u64, size: u64, prefetchable: bool, is_64bit: bool) -> Option<Bar> {
    Some(Bar::Memory {
        address,
        size,
        prefetchable,
        is_64bit,
    })
}

#[test]
fn probe_decodes_each_bar_type() {
    let space = SyntheticConfigSpace::new();
    space
        .add_endpoint(ROOT_BUS, 2, 0, 0x1af4, 0x1000)
        .io_bar(0, 0x20)
        .memory_bar(1, 0x1000, false)
        .memory_bar(2, 0x10_0000, true)
        .memory64_bar(4, 0x4000, true)
        .bar_address(0, 0xc000)
        .bar_address(1, 0xfebd_1000)
        .bar_address(4, 0x8_0000_0000);
    let bars = probe_bars(&space, address(), HEADER_TYPE_ENDPOINT, true);
    assert_eq!(
        bars[0],
        Some(Bar::Io {
            port: 0xc000,
            size: 0x20
        })
    );
    assert_eq!(bars[1], memory(0xfebd_1000, 0x1000, false, false));
    assert_eq!(bars[2], memory(0, 0x10_0000, true, false));
    assert_eq!(bars[3], None, "unimplemented slot");
    assert_eq!(bars[4], memory(0x8_0000_0000, 0x4000, true, true));
    assert_eq!(bars[5], None, "upper half of BAR4");
}

#[test]
fn probe_sizes_64bit_bar_above_4gib() {
    let space = SyntheticConfigSpace::new();
    space
        .add_endpoint(ROOT_BUS, 2, 0, 0x1af4, 0x1000)
        .memory64_bar(2, 0x4_0000_0000, true);
    let bars = probe_bars(&space, address(), HEADER_TYPE_ENDPOINT, true);
    assert_eq!(bars[2], memory(0, 0x4_0000_0000, true, true));
    assert_eq!(bars[3], None);
}

#[test]
fn probe_restores_bars_and_command() {
    let space = SyntheticConfigSpace::new();
    let nic = space
        .add_endpoint(ROOT_BUS, 2, 0, 0x1af4, 0x1000)
        .io_bar(0, 0x20)
        .memory64_bar(4, 0x4000, true)
        .bar_address(0, 0xc040)
        .bar_address(4, 0x1_fe00_0000)
        .command(0x0107)
        .handle();
    let before: Vec<u32> = (0..0x40)
        .step_by(4)
        .map(|offset| space.register(nic, offset))
        .collect();
    probe_bars(&space, address(), HEADER_TYPE_ENDPOINT, true);
    let after: Vec<u32> = (0..0x40)
        .step_by(4)
        .map(|offset| space.register(nic, offset))
        .collect();
    assert_eq!(before, after);
}

#[test]
fn probe_disables_decoding_while_bars_hold_all_ones() {
    let space = SyntheticConfigSpace::new();
    space
        .add_endpoint(ROOT_BUS, 2, 0, 0x1af4, 0x1000)
        .io_bar(0, 0x20)
        .memory_bar(1, 0x1000, false)
        .command(0x0003);
    space.take_write_log();
    probe_bars(&space, address(), HEADER_TYPE_ENDPOINT, true);

    let mut command = 0x0003;
    let mut probes = 0;
    for ConfigWrite { offset, value, .. } in space.take_write_log() {
        if offset == COMMAND_STATUS {
            command = value & 0xffff;
        } else if value == u32::MAX {
            probes += 1;
            assert_eq!(
                command & 0x3,
                0,
                "decoding enabled while probing offset {offset:#x}"
            );
        }
    }
    assert_eq!(probes, 6);
    assert_eq!(command, 0x0003, "command restored last");
}

#[test]
fn bridge_probes_only_two_slots() {
    let space = SyntheticConfigSpace::new();
    let bridge = space
        .add_bridge(ROOT_BUS, 2, 0, 0x1b36, 0x0001)
        .memory_bar(0, 0x100, false)
        .bus_numbers(0, 1, 1)
        .handle();
    space.take_write_log();
    let bars = probe_bars(&space, address(), HEADER_TYPE_BRIDGE, true);
    assert_eq!(bars[0], memory(0, 0x100, false, false));
    assert_eq!(bars[1..], [None; 5]);
    assert!(
        space
            .take_write_log()
            .iter()
            .all(|write| write.offset < 0x18),
        "bus numbers untouched"
    );
    assert_eq!(space.register(bridge, 0x18), 0x0001_0100);
}

#[test]
fn malformed_bars_are_skipped() {
    let space = SyntheticConfigSpace::new();
    space
        .add_endpoint(ROOT_BUS, 2, 0, 0x1af4, 0x1000)
        .memory_bar(0, 0x1000, false)
        // Slot 1: reserved memory type 11b.
        .config_bytes(0x14, &[0x06, 0, 0, 0])
        // Slot 5: 64-bit type with no slot above it.
        .config_bytes(0x24, &[0x04, 0, 0, 0]);
    let bars = probe_bars(&space, address(), HEADER_TYPE_ENDPOINT, true);
    assert_eq!(bars[0], memory(0, 0x1000, false, false));
    assert_eq!(bars[1], None);
    assert_eq!(bars[5], None);
}

#[test]
fn unknown_header_layout_has_no_bars() {
    let space = SyntheticConfigSpace::new();
    let function = space
        .add_endpoint(ROOT_BUS, 2, 0, 0x1af4, 0x1000)
        .memory_bar(0, 0x1000, false)
        .handle();
    space.take_write_log();
    assert_eq!(probe_bars(&space, address(), 0x7f, true), [None; 6]);
    assert!(space.take_write_log().is_empty());
    assert_eq!(space.register(function, 0x10), 0);
}

#[test]
fn write_bar_pauses_decoding() {
    let space = SyntheticConfigSpace::new();
    let nic = space
        .add_endpoint(ROOT_BUS, 2, 0, 0x1af4, 0x1000)
        .io_bar(0, 0x20)
        .memory64_bar(4, 0x4000, true)
        .command(0x0007)
        .handle();
    write_bar_address(
        &space,
        address(),
        4,
        &memory(0x1_fe00_4000, 0x4000, true, true).unwrap(),
        true,
    );
    write_bar_address(
        &space,
        address(),
        0,
        &Bar::Io {
            port: 0xc0e0,
            size: 0x20,
        },
        true,
    );

    assert_eq!(space.register(nic, 0x20), 0xfe00_400c);
    assert_eq!(space.register(nic, 0x24), 0x1);
    assert_eq!(space.register(nic, 0x10), 0xc0e1);
    assert_eq!(
        space.register(nic, 0x04) & 0x7,
        0x4,
        "decoding off, bus mastering kept"
    );
}

#[test]
fn host_bridge_keeps_decoding() {
    assert!(!pauses_decoding(0x06, 0x00));
    assert!(pauses_decoding(0x06, 0x04));
    assert!(pauses_decoding(0x02, 0x00));

    let space = SyntheticConfigSpace::new();
    let host = space
        .add_endpoint(ROOT_BUS, 2, 0, 0x8086, 0x29c0)
        .class(0x06, 0x00, 0x00)
        .memory_bar(0, 0x1000, false)
        .command(0x0006)
        .handle();
    space.take_write_log();
    let bars = probe_bars(&space, address(), HEADER_TYPE_ENDPOINT, false);
    write_bar_address(
        &space,
        address(),
        0,
        &memory(0xfed0_0000, 0x1000, false, false).unwrap(),
        false,
    );

    assert_eq!(bars[0], memory(0, 0x1000, false, false));
    let log = space.take_write_log();
    assert!(
        log.iter().all(|write| write.offset != COMMAND_STATUS),
        "{log:?}"
    );
    assert_eq!(space.register(host, 0x04) & 0x7, 0x6);
    assert_eq!(space.register(host, 0x10), 0xfed0_0000);
}
