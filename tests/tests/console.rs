//! The serial console on a Unix socket. Every command replies, counters move
//! with traffic, barrier and log switches take effect while echo keeps
//! working, bad input gets an error and the usage, and `exit` ends QEMU with
//! the code given.

use std::time::Duration;

use tests::console::field;
use tests::echo_checks::check_tcp_bulk;
use tests::Stream;
use tests::{Guest, GuestOptions};

const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);

fn console_guest() -> Guest {
    Guest::boot_to_listening(GuestOptions { console_socket: true, ..GuestOptions::default() })
}

#[test]
fn console_commands_answer_and_switch() {
    let mut guest = console_guest();
    let mut console = guest.console(COMMAND_TIMEOUT).expect("console socket accepts");

    let help = console.command("help", COMMAND_TIMEOUT).unwrap();
    for name in ["stats", "pci", "virtio", "net", "barriers", "mode", "log", "barrier-bench", "exit"] {
        assert!(help.lines().any(|line| line.starts_with(name)), "help lacks {name}: {help}");
    }

    let before = console.command("stats", COMMAND_TIMEOUT).unwrap();
    let frames_before = field(&before, "nic", &[], "rx_frames").expect("stats has rx_frames");
    check_tcp_bulk(&mut guest, 64 * 1024);
    let after = console.command("stats", COMMAND_TIMEOUT).unwrap();
    let frames_after = field(&after, "nic", &[], "rx_frames").unwrap();
    assert!(frames_after > frames_before, "rx_frames did not move: {frames_before} -> {frames_after}");
    let adds = field(&after, "queue", &["name=transmit"], "adds").unwrap();
    assert!(adds > 0, "transmit queue adds did not move: {after}");
    let weak_publishes = field(&after, "barrier", &["queue=1", "site=avail-publish"], "weak").unwrap();
    assert!(weak_publishes > 0, "weak avail-publish barriers not counted: {after}");

    let pci = console.command("pci", COMMAND_TIMEOUT).unwrap();
    assert!(pci.contains("[1af4:1000]"), "pci lacks the NIC: {pci}");
    let virtio = console.command("virtio", COMMAND_TIMEOUT).unwrap();
    assert!(virtio.contains("VIRTIO_F_VERSION_1"), "virtio lacks the features: {virtio}");
    assert!(virtio.contains("name=receive size=256"), "virtio lacks the receive queue: {virtio}");
    let net = console.command("net", COMMAND_TIMEOUT).unwrap();
    assert!(net.contains("address=10.0.2.15/24"), "net lacks the address: {net}");
    assert!(net.contains("local_port=7 state=LISTEN"), "net lacks the echo listener: {net}");

    let switched = console.command("barriers strong", COMMAND_TIMEOUT).unwrap();
    assert!(switched.contains("receive=strong transmit=strong"), "{switched}");
    let reported = console.command("barriers", COMMAND_TIMEOUT).unwrap();
    assert!(reported.contains("receive=strong transmit=strong"), "{reported}");
    check_tcp_bulk(&mut guest, 64 * 1024);
    let strong_stats = console.command("stats", COMMAND_TIMEOUT).unwrap();
    let strong_publishes = field(&strong_stats, "barrier", &["queue=1", "site=avail-publish"], "strong").unwrap();
    assert!(strong_publishes > 0, "strong avail-publish barriers not counted: {strong_stats}");

    let mode = console.command("mode poll", COMMAND_TIMEOUT).unwrap();
    assert!(mode.contains("mode poll"), "{mode}");
    check_tcp_bulk(&mut guest, 16 * 1024);
    console.command("mode irq", COMMAND_TIMEOUT).unwrap();

    let log = console.command("log debug", COMMAND_TIMEOUT).unwrap();
    assert!(log.contains("log debug"), "{log}");
    let debug_lines = |guest: &Guest| {
        guest.log().lines().iter().filter(|line| line.stream == Stream::Serial && line.text.contains(" DEBUG ")).count()
    };
    let debug_lines_before = debug_lines(&guest);
    check_tcp_bulk(&mut guest, 1024);
    guest
        .wait_for_line(" DEBUG ", Duration::from_secs(10))
        .expect("a debug line appears after log debug");
    assert!(debug_lines(&guest) > debug_lines_before, "no new debug lines");

    let unknown = console.command("frobnicate", COMMAND_TIMEOUT).unwrap();
    assert!(unknown.contains("error: unknown command 'frobnicate'"), "{unknown}");
    let bad_argument = console.command("barriers medium", COMMAND_TIMEOUT).unwrap();
    assert!(bad_argument.contains("error:") && bad_argument.contains("usage: barriers [weak|strong]"), "{bad_argument}");

    let bench = console.command("barrier-bench 1000", COMMAND_TIMEOUT).unwrap();
    assert_eq!(bench.lines().filter(|line| line.starts_with("barrier_bench ")).count(), 6, "{bench}");

    console.send("exit 3").unwrap();
    assert_eq!(guest.wait_exit(COMMAND_TIMEOUT).unwrap(), 3);
}
