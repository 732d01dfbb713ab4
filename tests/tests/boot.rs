//! Boot and exit paths: the kernel finds the virtio-net function and
//! starts echo, and it exits with the documented status when the NIC is
//! missing or the command line is invalid.

use std::time::Duration;

use tests::{exit_code, Guest, GuestOptions, LISTENING_LINE};

/// Generous bound for a guest that should exit on its own during boot.
const EXIT_TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn boot_reaches_listening_and_lists_nic() {
    let mut guest = Guest::boot_to_listening(GuestOptions::default());

    // QEMU 7.2's virtio-net-pci is transitional by default: device ID
    // 0x1000, class 02.00.00 (Ethernet controller).
    let nic = guest
        .wait_for_line("[1af4:1000]", Duration::ZERO)
        .unwrap_or_else(|error| panic!("no PCI line for the virtio-net function: {error}"));
    assert!(
        nic.text.contains("class 02.00.00"),
        "NIC line lacks its class code: {}",
        nic.text
    );

    let listening = guest.wait_for_line(LISTENING_LINE, Duration::ZERO).unwrap();
    assert!(
        nic.index < listening.index,
        "the NIC must be listed before echo starts"
    );
    assert!(
        listening.text.contains("boot took"),
        "listening line lacks the boot time: {}",
        listening.text
    );
    guest.check_running().unwrap();
}

#[test]
fn missing_nic_exits_69() {
    let mut guest = Guest::boot(GuestOptions {
        no_nic: true,
        ..GuestOptions::default()
    })
    .unwrap();
    let status = guest.wait_exit(EXIT_TIMEOUT).unwrap();
    let message = guest.wait_for_line("no usable NIC found", Duration::ZERO);
    if status != exit_code::NO_USABLE_NIC || message.is_err() {
        guest.print_log();
    }
    assert_eq!(status, exit_code::NO_USABLE_NIC);
    message.unwrap();
    assert_eq!(guest.log().kernel_fault(), None);
}

/// Boots with `append` and checks for exit status 64 and a message that
/// contains every one of `expected_parts`.
fn check_invalid_command_line(append: &str, expected_parts: &[&str]) {
    let options = GuestOptions {
        append: append.to_owned(),
        ..GuestOptions::default()
    };
    let mut guest = Guest::boot(options).unwrap();
    let status = guest.wait_exit(EXIT_TIMEOUT).unwrap();
    let message = guest.wait_for_line("boot: invalid command line:", Duration::ZERO);
    let message_ok = message.as_ref().is_ok_and(|message| {
        expected_parts
            .iter()
            .all(|part| message.text.contains(part))
    });
    if status != exit_code::INVALID_COMMAND_LINE || !message_ok {
        guest.print_log();
    }
    assert_eq!(
        status,
        exit_code::INVALID_COMMAND_LINE,
        "exit status for --append '{append}'"
    );
    let message = message.unwrap();
    for part in expected_parts {
        assert!(
            message.text.contains(part),
            "message lacks {part:?}: {}",
            message.text
        );
    }
    assert!(guest
        .log()
        .lines()
        .iter()
        .all(|line| !line.text.contains(LISTENING_LINE)));
}

#[test]
fn unknown_option_exits_64() {
    check_invalid_command_line("bogus=1", &["unknown option 'bogus'"]);
}

#[test]
fn malformed_barriers_exits_64() {
    check_invalid_command_line("barriers=medium", &["'medium'", "'barriers'"]);
}

/// Also checks the harness's console input: the line reaches COM1 through
/// run.sh's stdin.
#[test]
fn console_exit_sets_status() {
    let mut guest = Guest::boot_to_listening(GuestOptions::default());
    guest.send_console_line("exit 3").unwrap();
    let status = guest.wait_exit(EXIT_TIMEOUT).unwrap();
    if status != 3 {
        guest.print_log();
    }
    assert_eq!(status, 3, "status after the console command 'exit 3'");
    assert_eq!(guest.log().kernel_fault(), None);
}
