//! Echo checks shared by the integration tests: bulk TCP, many concurrent
//! TCP connections, and UDP datagrams of assorted sizes. A failing check
//! panics with the payload seed and the failing case. A passing one also
//! checks that the kernel printed no fault line.

use std::sync::Barrier;
use std::thread;
use std::time::Duration;

use crate::echo::{tcp_echo, TcpEchoSession, UdpEchoClient, MAX_UDP_PAYLOAD_BYTES};
use crate::guest::Guest;
use crate::payload::{assert_echoed, pseudo_random_bytes, seed_from_clock};

/// Bound on one exchange: far above what the echo service needs under TCG
/// even with another guest busy on the second core.
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on a bulk TCP transfer of a few MiB.
pub const BULK_TIMEOUT: Duration = Duration::from_secs(120);

/// Sends `length_bytes` of random data over one TCP connection and checks
/// the echo byte for byte.
///
/// # Panics
/// On a transfer error, any differing byte, or a kernel fault.
pub fn check_tcp_bulk(guest: &mut Guest, length_bytes: usize) {
    let seed = seed_from_clock();
    let payload = pseudo_random_bytes(seed, length_bytes);
    let received = tcp_echo(guest.echo_address(), &payload, BULK_TIMEOUT).unwrap_or_else(|error| {
        panic!("TCP echo of {length_bytes} bytes (seed {seed:#x}) failed: {error}")
    });
    assert_echoed(
        &payload,
        &received,
        &format!("TCP echo of {length_bytes} bytes (seed {seed:#x})"),
    );
    check_no_fault(guest);
}

/// Opens `connections` TCP connections, then exchanges `messages` messages
/// of different sizes on each while all of them are open, each from its own
/// thread.
///
/// # Panics
/// On a connection or exchange error, a wrong echo, or a kernel fault.
pub fn check_concurrent_tcp(guest: &mut Guest, connections: usize, messages: usize) {
    let address = guest.echo_address();
    let seed = seed_from_clock();
    let all_open = Barrier::new(connections);
    let all_done = Barrier::new(connections);

    thread::scope(|scope| {
        let workers: Vec<_> = (0..connections)
            .map(|connection| {
                let (all_open, all_done) = (&all_open, &all_done);
                scope.spawn(move || -> Result<(), String> {
                    let context =
                        |what: String| format!("connection {connection} (seed {seed:#x}): {what}");
                    let session = TcpEchoSession::connect(address, EXCHANGE_TIMEOUT);
                    // Every thread reaches both barriers, even after an
                    // error, so no other thread waits forever.
                    all_open.wait();
                    let result = session
                        .map_err(|error| context(format!("connect failed: {error}")))
                        .and_then(|mut session| {
                            exchange_messages(&mut session, connection, messages, seed)
                                .map_err(context)?;
                            Ok(session)
                        });
                    all_done.wait();
                    result?
                        .close()
                        .map_err(|error| context(format!("close failed: {error}")))
                })
            })
            .collect();

        let failures: Vec<String> = workers
            .into_iter()
            .filter_map(|worker| worker.join().expect("workers return their errors").err())
            .collect();
        assert!(
            failures.is_empty(),
            "{} of {connections} connections failed:\n{}",
            failures.len(),
            failures.join("\n")
        );
    });
    check_no_fault(guest);
}

/// Exchanges `messages` messages, 1 to about 3 KiB long and different for
/// every connection, so that a reply delivered to the wrong connection
/// fails the comparison.
fn exchange_messages(
    session: &mut TcpEchoSession,
    connection: usize,
    messages: usize,
    seed: u64,
) -> Result<(), String> {
    for message_index in 0..messages {
        let length = 1 + (connection * 131 + message_index * 977) % 3000;
        let message_seed = seed ^ ((connection as u64) << 32 | message_index as u64);
        let message = pseudo_random_bytes(message_seed, length);
        let received = session
            .exchange(&message)
            .map_err(|error| format!("message {message_index} ({length} bytes): {error}"))?;
        if received != message {
            return Err(format!(
                "message {message_index} ({length} bytes) came back different"
            ));
        }
    }
    Ok(())
}

/// Returns `count` datagram sizes from 1 to [`MAX_UDP_PAYLOAD_BYTES`]: both
/// ends first, then sizes around common boundaries, then a spread of the
/// rest.
pub fn udp_datagram_sizes(count: usize) -> Vec<usize> {
    let edges = [
        1,
        MAX_UDP_PAYLOAD_BYTES,
        2,
        1471,
        7,
        8,
        64,
        127,
        128,
        255,
        256,
        512,
        536,
        576,
        1024,
        1400,
    ];
    let mut sizes: Vec<usize> = edges.into_iter().take(count).collect();
    let mut step = 0;
    while sizes.len() < count {
        // 389 is coprime to 1472, so no size repeats within 1472 steps.
        sizes.push(1 + (step * 389) % MAX_UDP_PAYLOAD_BYTES);
        step += 1;
    }
    sizes
}

/// Sends `count` datagrams of the sizes [`udp_datagram_sizes`] gives, one
/// at a time, and checks that each echo equals its datagram.
///
/// # Panics
/// On a missing or different echo, or a kernel fault.
pub fn check_udp_sizes(guest: &mut Guest, count: usize) {
    let seed = seed_from_clock();
    let client = UdpEchoClient::connect(guest.echo_address(), EXCHANGE_TIMEOUT)
        .unwrap_or_else(|error| panic!("UDP socket setup failed: {error}"));
    for (index, size) in udp_datagram_sizes(count).into_iter().enumerate() {
        let datagram = pseudo_random_bytes(seed.wrapping_add(index as u64), size);
        let context = format!("UDP datagram {index} of {count} ({size} bytes, seed {seed:#x})");
        let received = client
            .exchange(&datagram)
            .unwrap_or_else(|error| panic!("{context}: {error}"));
        assert_echoed(&datagram, &received, &context);
    }
    check_no_fault(guest);
}

/// Panics if the kernel printed a fault line or the guest exited.
pub fn check_no_fault(guest: &mut Guest) {
    if let Err(error) = guest.check_running() {
        panic!("guest failed during the check: {error}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_sizes_cover_range() {
        let sizes = udp_datagram_sizes(100);
        assert_eq!(sizes.len(), 100);
        assert!(sizes.contains(&1));
        assert!(sizes.contains(&MAX_UDP_PAYLOAD_BYTES));
        assert!(sizes
            .iter()
            .all(|size| (1..=MAX_UDP_PAYLOAD_BYTES).contains(size)));
        let distinct: std::collections::BTreeSet<_> = sizes.iter().collect();
        assert!(
            distinct.len() >= 90,
            "only {} distinct sizes",
            distinct.len()
        );
    }

    #[test]
    fn short_size_list_keeps_both_ends_first() {
        assert_eq!(udp_datagram_sizes(2), [1, MAX_UDP_PAYLOAD_BYTES]);
    }
}
