//! Tests of capability parsing on functions enumerated by the `pci` crate
//! from its synthetic configuration space.

use std::vec;
use std::vec::Vec;

use pci::testing::{SyntheticConfigSpace, ROOT_BUS};
use pci::BarAllocator;

use super::*;

const BAR_SIZE: u64 = 0x4000;
const MSIX_CAPABILITY_ID: u8 = 0x11;
const MEMORY_WINDOW: core::ops::Range<u64> = 0xfe00_0000..0xff00_0000;
const IO_WINDOW: core::ops::Range<u32> = 0xc000..0x1_0000;

const COMMON: u8 = 1;
const NOTIFY: u8 = 2;
const ISR: u8 = 3;
const DEVICE: u8 = 4;

/// Returns the bytes of a `struct virtio_pci_cap` after the capability ID
/// and next pointer, or of the notify variant when `notify_off_multiplier`
/// is given.
fn virtio_capability(
    cfg_type: u8,
    bar: u8,
    offset: u32,
    length: u32,
    notify_off_multiplier: Option<u32>,
) -> Vec<u8> {
    let cap_len = match notify_off_multiplier {
        Some(_) => size_of::<VirtioPciNotifyCap>(),
        None => size_of::<VirtioPciCap>(),
    };
    let mut body = vec![cap_len as u8, cfg_type, bar, 0, 0, 0];
    body.extend_from_slice(&offset.to_le_bytes());
    body.extend_from_slice(&length.to_le_bytes());
    if let Some(multiplier) = notify_off_multiplier {
        body.extend_from_slice(&multiplier.to_le_bytes());
    }
    body
}

/// Returns the four structures in BAR 4 as QEMU 7.2 lays them out.
fn qemu_layout() -> Vec<Vec<u8>> {
    vec![
        virtio_capability(COMMON, 4, 0x0000, 0x1000, None),
        virtio_capability(ISR, 4, 0x1000, 0x1000, None),
        virtio_capability(DEVICE, 4, 0x2000, 0x1000, None),
        virtio_capability(NOTIFY, 4, 0x3000, 0x1000, Some(4)),
    ]
}

/// Builds a transitional virtio-net function (an I/O BAR 0, a 64-bit
/// memory BAR 4, MSI-X, then `capabilities` as vendor-specific
/// capabilities), enumerates it and returns the space and the function.
fn enumerate_nic(capabilities: &[Vec<u8>]) -> (SyntheticConfigSpace, Function) {
    let space = SyntheticConfigSpace::new();
    let mut builder = space
        .add_endpoint(ROOT_BUS, 3, 0, 0x1af4, 0x1000)
        .class(0x02, 0x00, 0x00)
        .io_bar(0, 0x20)
        .memory64_bar(4, BAR_SIZE, true)
        .capability(MSIX_CAPABILITY_ID, &[0; 10]);
    for body in capabilities {
        builder = builder.capability(PCI_CAPABILITY_ID_VENDOR, body);
    }

    let mut allocator = BarAllocator::new(MEMORY_WINDOW, IO_WINDOW);
    let functions = pci::enumerate(&space, 0, &mut allocator).expect("the windows fit the BARs");
    let function = functions
        .into_iter()
        .find(|function| function.vendor_id == 0x1af4)
        .expect("enumeration finds the NIC");
    (space, function)
}

fn bar_4_address(function: &Function) -> u64 {
    match function.bars[4] {
        Some(Bar::Memory { address, .. }) => address,
        other => panic!("BAR 4 is {other:?}"),
    }
}

fn region(function: &Function, offset: u32, length: u32) -> CapabilityRegion {
    let address = bar_4_address(function) + u64::from(offset);
    CapabilityRegion {
        bar: 4,
        offset,
        length,
        address,
    }
}

#[test]
fn capability_layouts_match_spec() {
    assert_eq!(size_of::<VirtioPciCap>(), 16);
    assert_eq!(size_of::<VirtioPciNotifyCap>(), 20);
    assert_eq!(offset_of!(VirtioPciCap, cap_len), 2);
    assert_eq!(offset_of!(VirtioPciCap, cfg_type), 3);
    assert_eq!(offset_of!(VirtioPciCap, bar), 4);
    assert_eq!(offset_of!(VirtioPciCap, offset), 8);
    assert_eq!(offset_of!(VirtioPciCap, length), 12);
    assert_eq!(offset_of!(VirtioPciNotifyCap, notify_off_multiplier), 16);
}

#[test]
fn parse_finds_all_four_structures() {
    let (space, function) = enumerate_nic(&qemu_layout());

    let capabilities = VirtioPciCapabilities::parse(&function, &space);

    assert!(
        MEMORY_WINDOW.contains(&bar_4_address(&function)),
        "BAR 4 was assigned"
    );
    let expected = VirtioPciCapabilities {
        function: function.address,
        common: region(&function, 0x0000, 0x1000),
        notify: region(&function, 0x3000, 0x1000),
        notify_off_multiplier: 4,
        isr: region(&function, 0x1000, 0x1000),
        device: Some(region(&function, 0x2000, 0x1000)),
    };
    assert_eq!(capabilities, Ok(expected));
}

#[test]
fn parse_uses_first_capability_of_each_type() {
    let mut layout = qemu_layout();
    layout.push(virtio_capability(COMMON, 4, 0x3800, 0x100, None));
    layout.push(virtio_capability(NOTIFY, 4, 0x3c00, 0x100, Some(0)));
    let (space, function) = enumerate_nic(&layout);

    let capabilities = VirtioPciCapabilities::parse(&function, &space).expect("valid layout");

    assert_eq!(capabilities.common, region(&function, 0x0000, 0x1000));
    assert_eq!(capabilities.notify, region(&function, 0x3000, 0x1000));
    assert_eq!(capabilities.notify_off_multiplier, 4);
}

#[test]
fn capability_past_end_of_bar_is_rejected() {
    let (space, function) = enumerate_nic(&[
        virtio_capability(COMMON, 4, 0x0000, 0x1000, None),
        virtio_capability(ISR, 4, 0x1000, 0x1000, None),
        virtio_capability(NOTIFY, 4, 0x3000, 0x1001, Some(4)),
    ]);

    let result = VirtioPciCapabilities::parse(&function, &space);

    let expected = TransportError::CapabilityOutsideBar {
        function: function.address,
        cfg_type: CapabilityType::NotifyCfg,
        bar: 4,
        offset: 0x3000,
        length: 0x1001,
        bar_size: BAR_SIZE,
    };
    assert_eq!(result, Err(expected));
}

#[test]
fn capability_offset_near_u32_max_is_rejected() {
    let (space, function) = enumerate_nic(&[
        virtio_capability(COMMON, 4, u32::MAX, 0x100, None),
        virtio_capability(NOTIFY, 4, 0x3000, 0x1000, Some(4)),
        virtio_capability(ISR, 4, 0x1000, 0x1000, None),
    ]);

    let result = VirtioPciCapabilities::parse(&function, &space);

    assert!(
        matches!(result, Err(TransportError::CapabilityOutsideBar { .. })),
        "{result:?}"
    );
}

#[test]
fn missing_common_capability_is_an_error() {
    let (space, function) = enumerate_nic(&[
        virtio_capability(ISR, 4, 0x1000, 0x1000, None),
        virtio_capability(NOTIFY, 4, 0x3000, 0x1000, Some(4)),
    ]);

    let result = VirtioPciCapabilities::parse(&function, &space);

    let expected = TransportError::MissingCapability {
        function: function.address,
        cfg_type: CapabilityType::CommonCfg,
    };
    assert_eq!(result, Err(expected));
}

#[test]
fn capability_with_reserved_bar_is_ignored() {
    let (space, function) = enumerate_nic(&[
        virtio_capability(COMMON, 7, 0x0000, 0x1000, None),
        virtio_capability(ISR, 4, 0x1000, 0x1000, None),
        virtio_capability(NOTIFY, 4, 0x3000, 0x1000, Some(4)),
    ]);

    let result = VirtioPciCapabilities::parse(&function, &space);

    assert!(
        matches!(result, Err(TransportError::MissingCapability { .. })),
        "{result:?}"
    );
}

#[test]
fn capability_in_io_or_absent_bar_is_rejected() {
    // BAR 0 is an I/O BAR; slot 5 is the upper half of the 64-bit BAR 4.
    for bar in [0, 5] {
        let (space, function) = enumerate_nic(&[
            virtio_capability(COMMON, bar, 0x0000, 0x10, None),
            virtio_capability(ISR, 4, 0x1000, 0x1000, None),
            virtio_capability(NOTIFY, 4, 0x3000, 0x1000, Some(4)),
        ]);

        let result = VirtioPciCapabilities::parse(&function, &space);

        let function = function.address;
        let cfg_type = CapabilityType::CommonCfg;
        let expected = match bar {
            0 => TransportError::NotMemoryBar {
                function,
                cfg_type,
                bar,
            },
            _ => TransportError::BarNotPresent {
                function,
                cfg_type,
                bar,
            },
        };
        assert_eq!(result, Err(expected));
    }
}

#[test]
fn short_common_configuration_is_rejected() {
    let (space, function) = enumerate_nic(&[
        virtio_capability(COMMON, 4, 0x0000, 0x30, None),
        virtio_capability(ISR, 4, 0x1000, 0x1000, None),
        virtio_capability(NOTIFY, 4, 0x3000, 0x1000, Some(4)),
    ]);

    let result = VirtioPciCapabilities::parse(&function, &space);

    let expected = TransportError::CapabilityTooShort {
        function: function.address,
        cfg_type: CapabilityType::CommonCfg,
        length: 0x30,
        minimum_length: 56,
    };
    assert_eq!(result, Err(expected));
}

#[test]
fn notify_capability_without_multiplier_is_truncated() {
    let (space, function) = enumerate_nic(&[
        virtio_capability(COMMON, 4, 0x0000, 0x1000, None),
        virtio_capability(ISR, 4, 0x1000, 0x1000, None),
        virtio_capability(NOTIFY, 4, 0x3000, 0x1000, None),
    ]);
    let notify_offset = function
        .capabilities_with_id(PCI_CAPABILITY_ID_VENDOR)
        .nth(2)
        .expect("three vendor capabilities")
        .offset;

    let result = VirtioPciCapabilities::parse(&function, &space);

    let expected = TransportError::CapabilityTruncated {
        function: function.address,
        cfg_type: CapabilityType::NotifyCfg,
        config_offset: notify_offset,
        cap_len: 16,
        required_length: 20,
    };
    assert_eq!(result, Err(expected));
}

#[test]
fn device_configuration_is_optional() {
    let (space, function) = enumerate_nic(&[
        virtio_capability(COMMON, 4, 0x0000, 0x1000, None),
        virtio_capability(ISR, 4, 0x1000, 0x1000, None),
        virtio_capability(NOTIFY, 4, 0x3000, 0x1000, Some(0)),
    ]);

    let capabilities = VirtioPciCapabilities::parse(&function, &space).expect("valid layout");

    assert_eq!(capabilities.device, None);
    assert_eq!(capabilities.notify_off_multiplier, 0);
}

#[test]
fn parse_makes_no_config_writes() {
    let (space, function) = enumerate_nic(&qemu_layout());
    space.take_write_log();

    VirtioPciCapabilities::parse(&function, &space).expect("valid layout");

    assert_eq!(space.take_write_log(), []);
}
