//! The echo service on the default machine (q35, qboot, weak barriers):
//! bulk TCP, many concurrent TCP connections, and UDP datagrams of every
//! size class.

use tests::echo_checks::{check_concurrent_tcp, check_tcp_bulk, check_udp_sizes};
use tests::{Guest, GuestOptions};

#[test]
fn tcp_echo_1_mib() {
    let mut guest = Guest::boot_to_listening(GuestOptions::default());
    check_tcp_bulk(&mut guest, 1 << 20);
}

#[test]
fn tcp_echo_16_concurrent_connections() {
    let mut guest = Guest::boot_to_listening(GuestOptions::default());
    check_concurrent_tcp(&mut guest, 16, 8);
}

#[test]
fn udp_echo_100_datagrams() {
    let mut guest = Guest::boot_to_listening(GuestOptions::default());
    check_udp_sizes(&mut guest, 100);
}
