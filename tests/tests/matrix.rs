//! The echo checks across machine types, firmware, barrier modes, poll
//! mode and a NIC without event index. Each case first confirms from the
//! log that the requested configuration took effect.

use std::time::Duration;

use tests::echo_checks::{check_concurrent_tcp, check_tcp_bulk, check_udp_sizes};
use tests::{Firmware, Guest, GuestOptions, Machine, Stream};

/// PCI IDs of the host bridge each machine type has: Intel's Q35 MCH and
/// i440FX.
fn host_bridge_id(machine: Machine) -> &'static str {
    match machine {
        Machine::Q35 => "[8086:29c0]",
        Machine::Pc => "[8086:1237]",
    }
}

/// Boots `options` and checks the host bridge, the firmware in the QEMU
/// command line and the barrier mode the virtio-net driver reports.
fn boot_and_check_configuration(options: GuestOptions) -> Guest {
    let (machine, firmware) = (options.machine, options.firmware);
    let barriers = if options.append.contains("barriers=strong") {
        "strong"
    } else {
        "weak"
    };
    let guest = Guest::boot_to_listening(options);

    guest
        .wait_for_line(host_bridge_id(machine), Duration::ZERO)
        .unwrap_or_else(|error| panic!("no host bridge line for {machine:?}: {error}"));

    let lines = guest.log().lines();
    let qemu_command = lines
        .iter()
        .find(|line| line.stream == Stream::Stderr && line.text.contains("qemu-system-x86_64 "))
        .expect("run.sh prints the QEMU command line on stderr");
    assert_eq!(
        qemu_command.text.contains("qboot.rom"),
        firmware == Firmware::Qboot,
        "firmware {firmware:?} not reflected in: {}",
        qemu_command.text
    );

    let barrier_lines: Vec<&str> = lines
        .iter()
        .filter(|line| {
            line.stream == Stream::Serial
                && line.text.contains("virtio-net")
                && line.text.contains("barriers")
        })
        .map(|line| line.text.as_str())
        .collect();
    assert!(
        !barrier_lines.is_empty(),
        "no virtio-net line names the barrier mode"
    );
    for line in barrier_lines {
        assert!(
            line.to_lowercase()
                .contains(&format!("barriers {barriers}")),
            "expected {barriers} barriers: {line}"
        );
    }
    guest
}

fn check_echo(guest: &mut Guest) {
    check_tcp_bulk(guest, 256 << 10);
    check_concurrent_tcp(guest, 16, 4);
    check_udp_sizes(guest, 40);
}

fn check_case(machine: Machine, firmware: Firmware, barriers: &str) {
    let options = GuestOptions {
        machine,
        firmware,
        append: format!("barriers={barriers}"),
        ..GuestOptions::default()
    };
    let mut guest = boot_and_check_configuration(options);
    check_echo(&mut guest);
}

#[test]
fn q35_qboot_weak() {
    check_case(Machine::Q35, Firmware::Qboot, "weak");
}

#[test]
fn q35_qboot_strong() {
    check_case(Machine::Q35, Firmware::Qboot, "strong");
}

#[test]
fn pc_qboot_weak() {
    check_case(Machine::Pc, Firmware::Qboot, "weak");
}

#[test]
fn pc_qboot_strong() {
    check_case(Machine::Pc, Firmware::Qboot, "strong");
}

#[test]
fn q35_seabios_weak() {
    check_case(Machine::Q35, Firmware::SeaBios, "weak");
}

#[test]
fn pc_seabios_strong() {
    check_case(Machine::Pc, Firmware::SeaBios, "strong");
}

#[test]
fn q35_poll_mode() {
    let options = GuestOptions {
        append: "mode=poll".into(),
        ..GuestOptions::default()
    };
    let mut guest = boot_and_check_configuration(options);
    let listening = guest.wait_for_listening().unwrap();
    assert!(
        listening.text.to_lowercase().contains("mode poll"),
        "listening line does not report poll mode: {}",
        listening.text
    );
    check_echo(&mut guest);
}

#[test]
fn pc_without_event_idx() {
    let options = GuestOptions {
        machine: Machine::Pc,
        nic_options: "event_idx=off".into(),
        ..GuestOptions::default()
    };
    let mut guest = boot_and_check_configuration(options);
    let features = guest
        .wait_for_line("negotiated features", Duration::ZERO)
        .unwrap_or_else(|error| panic!("no negotiated-features line: {error}"));
    assert!(
        !features.text.contains("VIRTIO_F_EVENT_IDX"),
        "event index negotiated although the device does not offer it: {}",
        features.text
    );
    check_echo(&mut guest);
}
