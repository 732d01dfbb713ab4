//! Checks that the synthetic space behaves like hardware, since the other
//! tests rely on it.

use super::*;

fn read(space: &SyntheticConfigSpace, address: PciAddress, offset: u16) -> u32 {
    // SAFETY: a synthetic space accepts any address and offset.
    unsafe { space.read(address, offset) }
}

fn write(space: &SyntheticConfigSpace, address: PciAddress, offset: u16, value: u32) {
    // SAFETY: a synthetic space accepts any address and offset.
    unsafe { space.write(address, offset, value) }
}

#[test]
fn bar_probe_reads_size_mask_with_type_bits() {
    let space = SyntheticConfigSpace::new();
    space
        .add_endpoint(ROOT_BUS, 2, 0, 0x1af4, 0x1000)
        .io_bar(0, 0x20)
        .memory_bar(1, 0x1000, false)
        .memory64_bar(4, 0x4000, true);
    let address = PciAddress::new(0, 0, 2, 0);
    for offset in [0x10, 0x14, 0x18, 0x20, 0x24] {
        write(&space, address, offset, u32::MAX);
    }
    assert_eq!(read(&space, address, 0x10), 0xffff_ffe1);
    assert_eq!(read(&space, address, 0x14), 0xffff_f000);
    assert_eq!(read(&space, address, 0x18), 0, "unimplemented BAR");
    assert_eq!(read(&space, address, 0x20), 0xffff_c00c);
    assert_eq!(read(&space, address, 0x24), 0xffff_ffff);
}

#[test]
fn bar_over_4gib_masks_low_dword() {
    let space = SyntheticConfigSpace::new();
    space
        .add_endpoint(ROOT_BUS, 2, 0, 0x1af4, 0x1000)
        .memory64_bar(0, 0x2_0000_0000, false);
    let address = PciAddress::new(0, 0, 2, 0);
    write(&space, address, 0x10, u32::MAX);
    write(&space, address, 0x14, u32::MAX);
    assert_eq!(read(&space, address, 0x10), 0x4);
    assert_eq!(read(&space, address, 0x14), 0xffff_fffe);
}

#[test]
fn firmware_bar_address_is_masked_to_size() {
    let space = SyntheticConfigSpace::new();
    let nic = space
        .add_endpoint(ROOT_BUS, 2, 0, 0x1af4, 0x1000)
        .memory_bar(1, 0x1000, false)
        .bar_address(1, 0xfebd_1234)
        .handle();
    assert_eq!(space.register(nic, 0x14), 0xfebd_1000);
}

#[test]
fn read_only_registers_ignore_writes() {
    let space = SyntheticConfigSpace::new();
    space
        .add_endpoint(ROOT_BUS, 2, 0, 0x1af4, 0x1000)
        .class(0x02, 0x00, 0x00)
        .capability(0x09, &[1, 2]);
    let address = PciAddress::new(0, 0, 2, 0);
    for offset in [0x00, 0x08, 0x34, 0x40] {
        let before = read(&space, address, offset);
        write(&space, address, offset, 0x5a5a_5a5a);
        assert_eq!(read(&space, address, offset), before, "offset {offset:#x}");
    }
}

#[test]
fn command_register_keeps_only_writable_bits() {
    let space = SyntheticConfigSpace::new();
    space
        .add_endpoint(ROOT_BUS, 2, 0, 0x1af4, 0x1000)
        .capability(0x09, &[]);
    let address = PciAddress::new(0, 0, 2, 0);
    write(&space, address, 0x04, 0xffff_ffff);
    // Status keeps only its capabilities-list bit; command its writable bits.
    assert_eq!(read(&space, address, 0x04), 0x0010_0547);
}

#[test]
fn absent_function_reads_all_ones_and_ignores_writes() {
    let space = SyntheticConfigSpace::new();
    space.add_endpoint(ROOT_BUS, 2, 0, 0x1af4, 0x1000);
    for address in [
        PciAddress::new(0, 0, 3, 0),
        PciAddress::new(0, 0, 2, 1),
        PciAddress::new(1, 0, 2, 0),
    ] {
        write(&space, address, 0x04, 0x7);
        assert_eq!(read(&space, address, 0x00), u32::MAX);
    }
    assert!(space.take_write_log().is_empty());
}

#[test]
fn bridge_routes_only_its_bus_range() {
    let space = SyntheticConfigSpace::new();
    let bridge = space.add_bridge(ROOT_BUS, 1, 0, 0x1b36, 0x0001).handle();
    let inner = space
        .add_bridge(space.secondary_bus(bridge), 0, 0, 0x1b36, 0x0001)
        .handle();
    let nic = space
        .add_endpoint(space.secondary_bus(inner), 0, 0, 0x1af4, 0x1041)
        .handle();
    assert_eq!(space.address_of(nic), None);

    // Bus 1 is reachable once the outer bridge forwards it; bus 2 only when
    // the outer range covers it and the inner bridge claims it.
    write(&space, PciAddress::new(0, 0, 1, 0), 0x18, 0x00_01_01_00);
    assert_eq!(
        read(&space, PciAddress::new(0, 1, 0, 0), 0) & 0xffff,
        0x1b36
    );
    write(&space, PciAddress::new(0, 1, 0, 0), 0x18, 0x00_02_02_01);
    assert_eq!(space.address_of(nic), None);
    write(&space, PciAddress::new(0, 0, 1, 0), 0x18, 0x00_02_01_00);
    assert_eq!(space.address_of(nic), Some(PciAddress::new(0, 2, 0, 0)));
    assert_eq!(read(&space, PciAddress::new(0, 2, 0, 0), 0), 0x1041_1af4);
}

#[test]
fn bridge_window_registers_keep_addressing_bits() {
    let space = SyntheticConfigSpace::new();
    let bridge = space.add_bridge(ROOT_BUS, 1, 0, 0x1b36, 0x0001).handle();
    let address = PciAddress::new(0, 0, 1, 0);
    write(&space, address, 0x1c, u32::MAX);
    write(&space, address, 0x24, u32::MAX);
    assert_eq!(space.register(bridge, 0x1c), 0x0000_f1f1);
    assert_eq!(space.register(bridge, 0x24), 0xfff1_fff1);
}

#[test]
fn write_log_records_writes_in_order() {
    let space = SyntheticConfigSpace::new();
    let nic = space.add_endpoint(ROOT_BUS, 2, 0, 0x1af4, 0x1000).handle();
    let address = PciAddress::new(0, 0, 2, 0);
    write(&space, address, 0x06, 0x2);
    write(&space, address, 0x10, u32::MAX);
    let log = space.take_write_log();
    assert_eq!(
        log,
        vec![
            ConfigWrite {
                function: nic,
                offset: 0x04,
                value: 0x2
            },
            ConfigWrite {
                function: nic,
                offset: 0x10,
                value: u32::MAX
            },
        ]
    );
    assert!(space.take_write_log().is_empty());
}
