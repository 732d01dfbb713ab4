//! Bad input on the control and data paths: each case gets the reply
//! netperf understands or a closed connection, is counted, and leaves the
//! service able to run a normal `TCP_RR`.

use smoltcp::time::Duration;
use smoltcp::wire::IpEndpoint;

use super::client::Control;
use super::harness::{World, CONTROL_LISTENING_SOCKETS, CONTROL_PORT, SERVER};
use super::messages::{offset, Request};
use super::*;
use crate::netperf::{errno, MESSAGE_BYTES};
use crate::services::netserver::ErrorReason;
use crate::tcp::TcpStream;

/// Runs a normal `TCP_RR` on a new control connection and checks it.
fn assert_tcp_rr_still_works(world: &mut World) {
    let (run, closed) = world.run(
        "TCP_RR after bad input",
        LIMIT,
        single_test(world.client.clone(), TCP_RR_1_1, ONE_SECOND),
    );
    assert_transactions_match(&run, 1, 1);
    assert!(closed);
}

fn error_count(world: &World, reason: ErrorReason) -> u64 {
    world.stats.snapshot().error_count(reason)
}

fn serv_errno(message: &[u8; MESSAGE_BYTES]) -> i32 {
    i32::from_be_bytes(message[4..8].try_into().expect("4 bytes"))
}

/// Deterministic noise (xorshift64).
fn noise(length: usize, mut state: u64) -> std::vec::Vec<u8> {
    (0..length)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

#[test]
fn random_bytes_get_998_then_close() {
    let mut world = World::new();
    let side = world.client.clone();
    let (reply, closed) = world.run("random bytes", LIMIT, async move {
        let mut control = Control::connect(&side).await;
        let mut bytes = noise(1000, 0x1234_5678);
        // A type word that is neither PASSPHRASE (6) nor DO_OMNI (97).
        bytes[..4].copy_from_slice(&0x7a5b_3c1du32.to_be_bytes());
        control.send_bytes(&bytes).await;
        let reply = control
            .receive()
            .await
            .expect("a reply to the first 656 bytes");
        (reply, control.finish().await)
    });
    assert_eq!(serv_errno(&reply), errno::UNKNOWN_REQUEST_TYPE);
    assert!(
        closed,
        "the trailing 344 bytes must not be answered, and end-of-file closes"
    );
    assert_eq!(error_count(&world, ErrorReason::UnknownRequestType), 1);
    assert_eq!(error_count(&world, ErrorReason::TruncatedMessage), 1);
    assert_tcp_rr_still_works(&mut world);
}

#[test]
fn random_do_omni_requests_are_answered() {
    let mut world = World::new();
    let side = world.client.clone();
    let replies = world.run("noise requests", LIMIT, async move {
        let mut control = Control::connect(&side).await;
        let mut replies = std::vec::Vec::new();
        for seed in 1..=20u64 {
            let mut bytes = noise(MESSAGE_BYTES, seed * 0x9e37_79b9);
            bytes[..4].copy_from_slice(&97u32.to_be_bytes());
            control.send_bytes(&bytes).await;
            replies.push(control.receive().await.expect("a response"));
        }
        assert!(control.finish().await);
        replies
    });
    for reply in &replies {
        assert_ne!(serv_errno(reply), 0, "a random request must be rejected");
    }
    assert_eq!(error_count(&world, ErrorReason::UnsupportedRequest), 20);
    assert_tcp_rr_still_works(&mut world);
}

#[test]
fn truncated_message_then_end_of_file_closes() {
    let mut world = World::new();
    let side = world.client.clone();
    let closed = world.run("truncated request", LIMIT, async move {
        let mut control = Control::connect(&side).await;
        control
            .send_bytes(&Request::captured(Capture::TcpRr).0[..300])
            .await;
        control.finish().await
    });
    assert!(closed, "the server must close without replying");
    assert_eq!(error_count(&world, ErrorReason::TruncatedMessage), 1);
    assert_tcp_rr_still_works(&mut world);
}

#[test]
fn unknown_type_and_passphrase_keep_the_connection() {
    let mut world = World::new();
    let side = world.client.clone();
    let (reply, run) = world.run("unknown type", LIMIT, async move {
        let mut control = Control::connect(&side).await;
        // Type 13 is netperf's classic TCP_RR request, never sent by 2.7.0.
        control
            .send_bytes(&Request([0; MESSAGE_BYTES]).word(0, 13).0)
            .await;
        let reply = control.receive().await.expect("a 998 reply");
        // A PASSPHRASE gets no reply, and the request after it gets its response.
        let mut passphrase = [0u8; MESSAGE_BYTES];
        passphrase[..4].copy_from_slice(&6u32.to_be_bytes());
        passphrase[8..14].copy_from_slice(b"secret");
        control.send_bytes(&passphrase).await;
        let run = run_test(
            &mut control,
            &side,
            TCP_RR_1_1,
            TCP_RR_1_1.request(ONE_SECOND),
            ONE_SECOND,
        )
        .await;
        assert!(control.finish().await);
        (reply, run)
    });
    assert_eq!(serv_errno(&reply), errno::UNKNOWN_REQUEST_TYPE);
    assert!(reply[8..].iter().all(|&byte| byte == 0));
    assert_transactions_match(&run, 1, 1);
    assert_eq!(error_count(&world, ErrorReason::UnknownRequestType), 1);
}

#[test]
fn unsupported_tests_get_errno_and_connection_continues() {
    let mut world = World::new();
    let side = world.client.clone();
    let tcp_rr = || Request::captured(Capture::TcpRr).length(1);
    let cases = [
        (tcp_rr().word(offset::IPFAMILY, 6), errno::EAFNOSUPPORT),
        (tcp_rr().word(offset::PROTOCOL, 132), errno::EPROTONOSUPPORT),
        // TCP_CC (direction 0 with CONNECT_TEST) is valid but not served.
        (
            tcp_rr().word(offset::DIRECTION, 0).flags(0x4),
            errno::EOPNOTSUPP,
        ),
        // UDP_STREAM: UDP, the server receives.
        (
            tcp_rr()
                .word(offset::PROTOCOL, 17)
                .word(offset::SOCKET_TYPE, 2)
                .word(offset::DIRECTION, 4),
            errno::EOPNOTSUPP,
        ),
        // UDP_RR beyond one unfragmented datagram (1472 bytes).
        (
            Request::captured(Capture::UdpRr).length(1).sizes(1473, 1),
            errno::EMSGSIZE,
        ),
    ];
    let expected: std::vec::Vec<i32> = cases.iter().map(|&(_, serv_errno)| serv_errno).collect();
    let (errnos, run) = world.run("unsupported tests", LIMIT, async move {
        let mut control = Control::connect(&side).await;
        let mut errnos = std::vec::Vec::new();
        for (request, _) in &cases {
            errnos.push(control.request(request).await.serv_errno);
        }
        let run = run_test(
            &mut control,
            &side,
            TCP_RR_1_1,
            TCP_RR_1_1.request(ONE_SECOND),
            ONE_SECOND,
        )
        .await;
        assert!(control.finish().await);
        (errnos, run)
    });
    assert_eq!(errnos, expected);
    assert_transactions_match(&run, 1, 1);
    assert_eq!(error_count(&world, ErrorReason::UnsupportedRequest), 2);
    assert_eq!(error_count(&world, ErrorReason::UnsupportedTest), 3);
}

#[test]
fn control_closing_mid_test_aborts_and_frees_port() {
    let mut world = World::new();
    let side = world.client.clone();
    let data_closed = world.run("control reset mid-test", LIMIT, async move {
        let control_side = side.clone();
        let mut control = Control::connect(&control_side).await;
        let response = control
            .request(&TCP_RR_1_1.request(ONE_SECOND).data_port(5001))
            .await;
        assert_eq!(response.data_port, 5001);
        let remote = IpEndpoint::new(SERVER.into(), 5001);
        let mut data = TcpStream::connect(&side.stack, remote, side.ports.next())
            .await
            .expect("data connects");
        let mut byte = [0u8; 1];
        for _ in 0..10 {
            data.write_all(b"n").await.expect("request");
            assert!(data.read_exact(&mut byte).await.expect("response"));
        }
        // netperf is killed, so its control connection is reset. The server
        // must drop the test and close the data connection.
        control.abort();
        matches!(data.read(&mut byte).await, Ok(0) | Err(_))
    });
    assert!(data_closed);
    let stats = world.stats.snapshot();
    assert_eq!(stats.tests_aborted, 1);
    assert_eq!(stats.tests_completed, 0);
    assert_eq!(error_count(&world, ErrorReason::ControlClosedDuringTest), 1);
    assert_eq!(
        world.settle(),
        CONTROL_LISTENING_SOCKETS,
        "the aborted test's sockets must be freed"
    );

    // Port 5001 is free again.
    let side = world.client.clone();
    let run = world.run("TCP_RR on port 5001", LIMIT, async move {
        let mut control = Control::connect(&side).await;
        run_test(
            &mut control,
            &side,
            TCP_RR_1_1,
            TCP_RR_1_1.request(ONE_SECOND).data_port(5001),
            ONE_SECOND,
        )
        .await
    });
    assert_eq!(run.response.data_port, 5001);
    assert_transactions_match(&run, 1, 1);
}

#[test]
fn message_during_test_aborts_and_closes() {
    let mut world = World::new();
    let side = world.client.clone();
    let closed = world.run("message mid-test", LIMIT, async move {
        let mut control = Control::connect(&side).await;
        let response = control.request(&TCP_RR_1_1.request(ONE_SECOND)).await;
        assert_eq!(response.serv_errno, 0);
        control.send_bytes(&TCP_RR_1_1.request(ONE_SECOND).0).await;
        control.receive().await.is_none()
    });
    assert!(closed, "the server must close without results");
    assert_eq!(error_count(&world, ErrorReason::MessageDuringTest), 1);
    assert_eq!(world.stats.snapshot().tests_aborted, 1);
    assert_tcp_rr_still_works(&mut world);
}

#[test]
fn missing_data_connection_ends_at_deadline() {
    let mut world = World::new();
    let side = world.client.clone();
    let (response, results, run) = world.run("no data connection", LIMIT, async move {
        let mut control = Control::connect(&side).await;
        let response = control.request(&TCP_RR_1_1.request(ONE_SECOND)).await;
        // netperf never connects, so the server's T + 4 s deadline ends it.
        let results = control.results().await;
        let run = run_test(
            &mut control,
            &side,
            TCP_RR_1_1,
            TCP_RR_1_1.request(ONE_SECOND),
            ONE_SECOND,
        )
        .await;
        assert!(control.finish().await);
        (response, results, run)
    });
    assert_eq!(results.serv_errno, 0);
    assert_eq!(
        (
            results.transactions,
            results.bytes_received,
            results.bytes_sent
        ),
        (0, 0, 0)
    );
    let server_time = results.received_at - response.received_at;
    assert!(
        server_time >= Duration::from_secs(5),
        "results after {server_time}"
    );
    assert_eq!(error_count(&world, ErrorReason::DataConnectionMissing), 1);
    assert_transactions_match(&run, 1, 1);
}

#[test]
fn taken_data_ports_get_eaddrinuse() {
    // A range of one port, so that a second concurrent test finds none.
    let mut world = World::with_config(|config| config.data_ports = (12866, 12866));
    let side = world.client.clone();
    let errnos = world.run("taken ports", LIMIT, async move {
        let mut first = Control::connect(&side).await;
        let first_response = first.request(&TCP_RR_1_1.request(ONE_SECOND)).await;
        assert_eq!(first_response.data_port, 12866);
        let mut second = Control::connect(&side).await;
        let range_exhausted = second
            .request(&TCP_RR_1_1.request(ONE_SECOND))
            .await
            .serv_errno;
        let same_port = second
            .request(&TCP_RR_1_1.request(ONE_SECOND).data_port(12866))
            .await
            .serv_errno;
        let control_port = second
            .request(&TCP_RR_1_1.request(ONE_SECOND).data_port(CONTROL_PORT))
            .await
            .serv_errno;
        // UDP on the same number is another port.
        let udp = Phase::UdpRr {
            request_bytes: 1,
            response_bytes: 1,
        };
        let udp_errno = second
            .request(&udp.request(ONE_SECOND).data_port(12866))
            .await
            .serv_errno;
        (range_exhausted, same_port, control_port, udp_errno)
    });
    assert_eq!(
        errnos,
        (errno::EADDRINUSE, errno::EADDRINUSE, errno::EADDRINUSE, 0)
    );
    assert_eq!(error_count(&world, ErrorReason::DataPortUnavailable), 3);
}

#[test]
fn data_reset_mid_stream_reports_econnreset() {
    let mut world = World::new();
    let side = world.client.clone();
    let results = world.run("data reset", LIMIT, async move {
        let mut control = Control::connect(&side).await;
        let response = control
            .request(&Phase::TcpStream { send_bytes: 1000 }.request(ONE_SECOND))
            .await;
        let remote = IpEndpoint::new(SERVER.into(), response.data_port);
        let mut data = TcpStream::connect(&side.stack, remote, side.ports.next())
            .await
            .expect("data connects");
        data.write_all(&[b'n'; 5000]).await.expect("data write");
        data.flush().await.expect("acknowledged");
        data.abort();
        let results = control.results().await;
        assert!(control.finish().await);
        results
    });
    assert_eq!(results.serv_errno, errno::ECONNRESET);
    assert_eq!(results.bytes_received, 5000);
    assert_eq!(error_count(&world, ErrorReason::DataConnectionReset), 1);
    assert_tcp_rr_still_works(&mut world);
}

#[test]
fn idle_control_connection_times_out() {
    let mut world = World::new();
    let side = world.client.clone();
    let outcome = world.spawn(async move {
        let remote = IpEndpoint::new(SERVER.into(), CONTROL_PORT);
        let mut stream = TcpStream::connect(&side.stack, remote, side.ports.next())
            .await
            .expect("connects");
        let mut byte = [0u8; 1];
        stream.read(&mut byte).await
    });
    assert!(
        world.run_until(Duration::from_secs(700), || outcome.borrow().is_some()),
        "never closed"
    );
    assert_eq!(*outcome.borrow(), Some(Ok(0)));
    assert_eq!(error_count(&world, ErrorReason::ControlIdleTimeout), 1);
    assert_tcp_rr_still_works(&mut world);
}
