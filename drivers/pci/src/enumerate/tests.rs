use super::*;
use crate::header::BRIDGE_BUS_NUMBERS;
use crate::testing::{FunctionHandle, SyntheticConfigSpace, ROOT_BUS};
use alloc::string::ToString;
use alloc::vec;

fn allocator() -> BarAllocator {
    BarAllocator::new(0xc000_0000..0xfec0_0000, 0xc000..0x1_0000)
}

fn addresses(functions: &[Function]) -> Vec<(u8, u8, u8)> {
    functions
        .iter()
        .map(|function| {
            (
                function.address.bus(),
                function.address.device(),
                function.address.function(),
            )
        })
        .collect()
}

fn buses(primary: u8, secondary: u8, subordinate: u8) -> Option<BridgeBuses> {
    Some(BridgeBuses {
        primary,
        secondary,
        subordinate,
    })
}

fn function_at(functions: &[Function], bus: u8, device: u8, function: u8) -> &Function {
    functions
        .iter()
        .find(|found| found.address == PciAddress::new(0, bus, device, function))
        .unwrap_or_else(|| panic!("no function at {bus:02x}:{device:02x}.{function}"))
}

/// Reads the bus-number register of `bridge` from the synthetic hardware.
fn bus_register(space: &SyntheticConfigSpace, bridge: FunctionHandle) -> [u8; 3] {
    let [primary, secondary, subordinate, _] =
        space.register(bridge, BRIDGE_BUS_NUMBERS).to_le_bytes();
    [primary, secondary, subordinate]
}

#[test]
fn bridge_with_firmware_bus_numbers() {
    let space = SyntheticConfigSpace::new();
    space
        .add_endpoint(ROOT_BUS, 0, 0, 0x8086, 0x29c0)
        .class(0x06, 0x00, 0x00);
    let bridge = space
        .add_bridge(ROOT_BUS, 0x1e, 0, 0x8086, 0x244e)
        .bus_numbers(0, 1, 1)
        .handle();
    space
        .add_endpoint(space.secondary_bus(bridge), 0, 0, 0x1af4, 0x1041)
        .class(0x02, 0x00, 0x00);

    let functions = enumerate(&space, 0, &mut allocator()).expect("enumeration succeeds");
    assert_eq!(
        addresses(&functions),
        vec![(0, 0, 0), (0, 0x1e, 0), (1, 0, 0)]
    );
    assert_eq!(function_at(&functions, 0, 0x1e, 0).bridge, buses(0, 1, 1));
    assert_eq!(function_at(&functions, 1, 0, 0).device_id, 0x1041);
    assert_eq!(bus_register(&space, bridge), [0, 1, 1]);
}

#[test]
fn unnumbered_bridges_numbered_depth_first() {
    let space = SyntheticConfigSpace::new();
    let outer = space.add_bridge(ROOT_BUS, 1, 0, 0x1b36, 0x0001).handle();
    let inner = space
        .add_bridge(space.secondary_bus(outer), 0, 0, 0x1b36, 0x0001)
        .handle();
    space.add_endpoint(space.secondary_bus(inner), 0, 0, 0x1af4, 0x1041);
    space.add_endpoint(space.secondary_bus(outer), 1, 0, 0x1af4, 0x1042);
    let sibling = space.add_bridge(ROOT_BUS, 2, 0, 0x1b36, 0x0001).handle();
    let nic = space
        .add_endpoint(space.secondary_bus(sibling), 0, 0, 0x1af4, 0x1041)
        .handle();

    let functions = enumerate(&space, 0, &mut allocator()).expect("enumeration succeeds");
    assert_eq!(
        addresses(&functions),
        vec![
            (0, 1, 0),
            (0, 2, 0),
            (1, 0, 0),
            (1, 1, 0),
            (2, 0, 0),
            (3, 0, 0)
        ]
    );
    assert_eq!(function_at(&functions, 0, 1, 0).bridge, buses(0, 1, 2));
    assert_eq!(function_at(&functions, 1, 0, 0).bridge, buses(1, 2, 2));
    assert_eq!(function_at(&functions, 0, 2, 0).bridge, buses(0, 3, 3));
    assert_eq!(bus_register(&space, outer), [0, 1, 2]);
    assert_eq!(bus_register(&space, inner), [1, 2, 2]);
    assert_eq!(bus_register(&space, sibling), [0, 3, 3]);
    assert_eq!(space.address_of(nic), Some(PciAddress::new(0, 3, 0, 0)));
}

#[test]
fn unnumbered_bridge_avoids_firmware_numbers() {
    let space = SyntheticConfigSpace::new();
    let unnumbered = space.add_bridge(ROOT_BUS, 1, 0, 0x1b36, 0x0001).handle();
    space.add_endpoint(space.secondary_bus(unnumbered), 0, 0, 0x1af4, 0x1041);
    let numbered = space
        .add_bridge(ROOT_BUS, 2, 0, 0x1b36, 0x0001)
        .bus_numbers(0, 1, 1)
        .handle();
    space.add_endpoint(space.secondary_bus(numbered), 0, 0, 0x1af4, 0x1042);

    let functions = enumerate(&space, 0, &mut allocator()).expect("enumeration succeeds");
    assert_eq!(bus_register(&space, numbered), [0, 1, 1]);
    assert_eq!(bus_register(&space, unnumbered), [0, 2, 2]);
    assert_eq!(function_at(&functions, 1, 0, 0).device_id, 0x1042);
    assert_eq!(function_at(&functions, 2, 0, 0).device_id, 0x1041);
}

#[test]
fn conflicting_firmware_numbers_are_replaced() {
    let space = SyntheticConfigSpace::new();
    let first = space
        .add_bridge(ROOT_BUS, 1, 0, 0x1b36, 0x0001)
        .bus_numbers(0, 1, 1)
        .handle();
    space.add_endpoint(space.secondary_bus(first), 0, 0, 0x1af4, 0x1041);
    // Claims bus 1 too, and a bridge pointing at its own bus.
    let second = space
        .add_bridge(ROOT_BUS, 2, 0, 0x1b36, 0x0001)
        .bus_numbers(0, 1, 1)
        .handle();
    space.add_endpoint(space.secondary_bus(second), 0, 0, 0x1af4, 0x1042);
    let looping = space
        .add_bridge(ROOT_BUS, 3, 0, 0x1b36, 0x0001)
        .bus_numbers(0, 0, 5)
        .handle();
    space.add_endpoint(space.secondary_bus(looping), 0, 0, 0x1af4, 0x1043);

    let functions = enumerate(&space, 0, &mut allocator()).expect("enumeration succeeds");
    assert_eq!(bus_register(&space, first), [0, 1, 1]);
    assert_eq!(bus_register(&space, second), [0, 2, 2]);
    assert_eq!(bus_register(&space, looping), [0, 3, 3]);
    let device_ids: Vec<u16> = functions
        .iter()
        .map(|function| function.device_id)
        .collect();
    assert_eq!(
        device_ids,
        vec![0x0001, 0x0001, 0x0001, 0x1041, 0x1042, 0x1043]
    );
}

#[test]
fn unnumbered_bridge_inside_firmware_range() {
    let space = SyntheticConfigSpace::new();
    let numbered = space
        .add_bridge(ROOT_BUS, 1, 0, 0x1b36, 0x0001)
        .bus_numbers(0, 1, 3)
        .handle();
    let inner = space
        .add_bridge(space.secondary_bus(numbered), 0, 0, 0x1b36, 0x0001)
        .handle();
    space.add_endpoint(space.secondary_bus(inner), 0, 0, 0x1af4, 0x1041);
    let sibling = space.add_bridge(ROOT_BUS, 2, 0, 0x1b36, 0x0001).handle();
    space.add_endpoint(space.secondary_bus(sibling), 0, 0, 0x1af4, 0x1042);

    let functions = enumerate(&space, 0, &mut allocator()).expect("enumeration succeeds");
    assert_eq!(bus_register(&space, numbered), [0, 1, 3]);
    assert_eq!(bus_register(&space, inner), [1, 2, 2]);
    assert_eq!(bus_register(&space, sibling), [0, 4, 4]);
    assert_eq!(function_at(&functions, 2, 0, 0).device_id, 0x1041);
    assert_eq!(function_at(&functions, 4, 0, 0).device_id, 0x1042);
}

#[test]
fn no_bus_number_left_inside_firmware_range() {
    let space = SyntheticConfigSpace::new();
    let numbered = space
        .add_bridge(ROOT_BUS, 1, 0, 0x1b36, 0x0001)
        .bus_numbers(0, 1, 1)
        .handle();
    let inner = space
        .add_bridge(space.secondary_bus(numbered), 0, 0, 0x1b36, 0x0001)
        .handle();
    space.add_endpoint(space.secondary_bus(inner), 0, 0, 0x1af4, 0x1041);

    let functions = enumerate(&space, 0, &mut allocator()).expect("enumeration succeeds");
    assert_eq!(addresses(&functions), vec![(0, 1, 0), (1, 0, 0)]);
    assert_eq!(bus_register(&space, inner), [0, 0, 0]);
}

#[test]
fn multi_function_device() {
    let space = SyntheticConfigSpace::new();
    space
        .add_endpoint(ROOT_BUS, 1, 0, 0x8086, 0x7000)
        .class(0x06, 0x01, 0x00)
        .multi_function();
    space
        .add_endpoint(ROOT_BUS, 1, 1, 0x8086, 0x7010)
        .class(0x01, 0x01, 0x80);
    space
        .add_endpoint(ROOT_BUS, 1, 3, 0x8086, 0x7113)
        .class(0x06, 0x80, 0x00);
    // Without the multi-function bit on function 0, function 2 is not
    // scanned.
    space.add_endpoint(ROOT_BUS, 2, 0, 0x1234, 0x1111);
    space.add_endpoint(ROOT_BUS, 2, 2, 0x1234, 0x2222);

    let functions = enumerate(&space, 0, &mut allocator()).expect("enumeration succeeds");
    assert_eq!(
        addresses(&functions),
        vec![(0, 1, 0), (0, 1, 1), (0, 1, 3), (0, 2, 0)]
    );
    assert_eq!(function_at(&functions, 0, 1, 1).prog_if, 0x80);
}

#[test]
fn absent_function_zero_hides_device() {
    let space = SyntheticConfigSpace::new();
    // Vendor ID 0xffff is what an absent function returns.
    space
        .add_endpoint(ROOT_BUS, 3, 0, 0xffff, 0xffff)
        .multi_function();
    space.add_endpoint(ROOT_BUS, 3, 1, 0x1af4, 0x1041);
    space.add_endpoint(ROOT_BUS, 4, 0, 0x1af4, 0x1042);

    let functions = enumerate(&space, 0, &mut allocator()).expect("enumeration succeeds");
    assert_eq!(addresses(&functions), vec![(0, 4, 0)]);
}

#[test]
fn empty_segment_has_no_functions() {
    let space = SyntheticConfigSpace::new();
    space.add_endpoint(ROOT_BUS, 3, 0, 0x1af4, 0x1041);
    assert_eq!(enumerate(&space, 1, &mut allocator()), Ok(vec![]));
    assert_eq!(
        enumerate(&space, 0, &mut allocator()).map(|functions| functions.len()),
        Ok(1)
    );
}

#[test]
fn bridges_deeper_than_limit_are_skipped() {
    let space = SyntheticConfigSpace::new();
    let mut bus = ROOT_BUS;
    let mut chain = Vec::new();
    for _ in 0..40 {
        let bridge = space.add_bridge(bus, 0, 0, 0x1b36, 0x0001).handle();
        chain.push(bridge);
        bus = space.secondary_bus(bridge);
    }
    let nic = space
        .add_endpoint(bus, 0, 0, 0x1af4, 0x1041)
        .memory_bar(1, 0x1000, false)
        .handle();

    let depth = MAX_BRIDGE_DEPTH as usize;
    let functions = enumerate(&space, 0, &mut allocator()).expect("enumeration succeeds");
    assert_eq!(functions.len(), depth + 1);
    assert_eq!(bus_register(&space, chain[depth - 1]), [31, 32, 32]);
    assert_eq!(
        bus_register(&space, chain[depth]),
        [0, 0, 0],
        "skipped bridge keeps its reset numbers"
    );
    assert_eq!(space.address_of(nic), None);
    assert_eq!(
        functions.last().map(|function| function.bridge),
        Some(buses(0, 0, 0))
    );
}

#[test]
fn bus_numbers_run_out_at_255() {
    let space = SyntheticConfigSpace::new();
    for device in 0..32 {
        for function in 0..8 {
            let bridge = space.add_bridge(ROOT_BUS, device, function, 0x1b36, 0x0001);
            let bridge = if function == 0 {
                bridge.multi_function()
            } else {
                bridge
            };
            space.add_endpoint(bridge.secondary_bus(), 0, 0, 0x1af4, 0x1041);
        }
    }

    let functions = enumerate(&space, 0, &mut allocator()).expect("enumeration succeeds");
    // 256 bridges, of which 255 get a bus with one endpoint behind it.
    assert_eq!(functions.len(), 256 + 255);
    assert_eq!(function_at(&functions, 0, 31, 6).bridge, buses(0, 255, 255));
    assert_eq!(function_at(&functions, 0, 31, 7).bridge, buses(0, 0, 0));
}

#[test]
fn virtio_net_line_end_to_end() {
    let space = SyntheticConfigSpace::new();
    space
        .add_endpoint(ROOT_BUS, 2, 0, 0x1af4, 0x1000)
        .class(0x02, 0x00, 0x00)
        .io_bar(0, 0x20)
        .memory_bar(1, 0x1000, false)
        .memory64_bar(4, 0x4000, true)
        .capability(0x11, &[0; 10])
        .capability(0x09, &[0; 14]);

    let functions = enumerate(&space, 0, &mut allocator()).expect("enumeration succeeds");
    let lines: Vec<_> = functions
        .iter()
        .map(|function| function.to_string())
        .collect();
    assert_eq!(
        lines,
        vec![
            "00:02.0 [1af4:1000] class 02.00.00 rev 00 BAR0 io 0xc000/0x20 BAR1 mem 0xc0004000/0x1000 \
             BAR4 mem64 pref 0xc0000000/0x4000 caps 11,09"
        ]
    );
}
