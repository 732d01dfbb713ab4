//! The request/response tests (`TCP_RR`, `UDP_RR`, `TCP_CRR`), timed and
//! count-based, as netperf 2.7.0 runs them.

use smoltcp::time::Duration;

use super::harness::{default_data_ports, World, CONTROL_LISTENING_SOCKETS};
use super::*;
use crate::netperf::TestKind;

#[test]
fn tcp_rr_timed_one_byte() {
    let mut world = World::new();
    let (run, closed) = world.run(
        "TCP_RR",
        LIMIT,
        single_test(world.client.clone(), TCP_RR_1_1, ONE_SECOND),
    );
    assert!(
        default_data_ports().contains(&run.response.data_port),
        "port {}",
        run.response.data_port
    );
    assert_eq!(
        run.response.send_size, 1,
        "RR send size is the response size"
    );
    // netperf prints the remote socket sizes on its second line.
    assert_eq!(
        (run.response.send_buf_size, run.response.recv_buf_size),
        (65536, 65536)
    );
    assert!(
        u64::from(run.results.send_calls) >= run.counts.requests,
        "a send call per response at least"
    );
    assert_transactions_match(&run, 1, 1);
    assert!(
        closed,
        "the server must close the control connection at end-of-file"
    );
    // netperf ended the test by end-of-file, well before T + 4 s.
    let server_time = run.results.received_at - run.response.received_at;
    assert!(
        server_time < Duration::from_secs(2),
        "results after {server_time}"
    );

    let stats = world.stats.snapshot();
    assert_eq!(stats.started(TestKind::TcpRr), 1);
    assert_eq!(stats.tests_completed, 1);
    assert_eq!(stats.control_connections, 1);
    assert_no_errors(&world);
    assert_eq!(
        world.settle(),
        CONTROL_LISTENING_SOCKETS,
        "sockets left after the test"
    );
}

#[test]
fn tcp_rr_unequal_sizes() {
    let mut world = World::new();
    for (request_bytes, response_bytes) in [(64, 1024), (512, 16), (6000, 6000)] {
        let phase = Phase::TcpRr {
            request_bytes,
            response_bytes,
            burst: 0,
        };
        let (run, closed) = world.run(
            "TCP_RR",
            LIMIT,
            single_test(world.client.clone(), phase, ONE_SECOND),
        );
        assert_transactions_match(&run, request_bytes as u64, response_bytes as u64);
        assert!(closed);
    }
    assert_no_errors(&world);
}

#[test]
fn tcp_rr_large_messages_count_based() {
    let mut world = World::new();
    let phase = Phase::TcpRr {
        request_bytes: 65536,
        response_bytes: 65536,
        burst: 0,
    };
    let (run, closed) = world.run(
        "TCP_RR",
        LIMIT,
        single_test(world.client.clone(), phase, Length::Transactions(20)),
    );
    assert_eq!(run.counts.transactions, 20);
    assert_eq!(run.results.transactions, 20);
    assert_transactions_match(&run, 65536, 65536);
    assert!(
        run.results.receive_calls > 20,
        "64 KiB requests arrive in pieces"
    );
    assert!(closed);
    assert_no_errors(&world);
}

#[test]
fn tcp_rr_burst_keeps_requests_in_flight() {
    let mut world = World::new();
    let phase = Phase::TcpRr {
        request_bytes: 100,
        response_bytes: 200,
        burst: 4,
    };
    let (run, closed) = world.run(
        "TCP_RR burst",
        LIMIT,
        single_test(world.client.clone(), phase, ONE_SECOND),
    );
    assert_transactions_match(&run, 100, 200);
    assert!(closed);
    assert_no_errors(&world);
}

#[test]
fn tcp_rr_count_based_stops_at_count() {
    let mut world = World::new();
    let (run, closed) = world.run(
        "TCP_RR",
        LIMIT,
        single_test(world.client.clone(), TCP_RR_1_1, Length::Transactions(100)),
    );
    assert_eq!(run.results.transactions, 100);
    assert_transactions_match(&run, 1, 1);
    assert!(closed);
    assert_no_errors(&world);
}

#[test]
fn udp_rr_ends_on_zero_length_datagram() {
    let mut world = World::new();
    let phase = Phase::UdpRr {
        request_bytes: 1,
        response_bytes: 1,
    };
    let (run, closed) = world.run(
        "UDP_RR",
        LIMIT,
        single_test(world.client.clone(), phase, ONE_SECOND),
    );
    assert_transactions_match(&run, 1, 1);
    assert!(closed);
    // The zero-length datagram, not the T + 4 s deadline, ended the test.
    let server_time = run.results.received_at - run.response.received_at;
    assert!(
        server_time < Duration::from_secs(2),
        "results after {server_time}"
    );
    assert_eq!(world.stats.snapshot().started(TestKind::UdpRr), 1);
    assert_no_errors(&world);
}

#[test]
fn udp_rr_count_based_and_unequal_sizes() {
    let mut world = World::new();
    // 1472 bytes fill one datagram in a 1500-byte MTU.
    for (request_bytes, response_bytes) in [(64, 1024), (1472, 1472)] {
        let phase = Phase::UdpRr {
            request_bytes,
            response_bytes,
        };
        let (run, closed) = world.run(
            "UDP_RR",
            LIMIT,
            single_test(world.client.clone(), phase, Length::Transactions(50)),
        );
        assert_eq!(run.results.transactions, 50);
        assert_transactions_match(&run, request_bytes as u64, response_bytes as u64);
        assert!(closed);
    }
    assert_no_errors(&world);
}

#[test]
fn tcp_crr_ends_by_server_deadline() {
    let mut world = World::new();
    let phase = Phase::TcpCrr {
        request_bytes: 1,
        response_bytes: 1,
    };
    let (run, closed) = world.run(
        "TCP_CRR",
        LIMIT,
        single_test(world.client.clone(), phase, ONE_SECOND),
    );
    assert_transactions_match(&run, 1, 1);
    assert!(
        run.counts.transactions > 10,
        "only {} connections",
        run.counts.transactions
    );

    // netperf sends no end-of-test signal, so the results come at T + 4 s.
    let server_time = run.results.received_at - run.response.received_at;
    assert!(
        server_time >= Duration::from_secs(5),
        "results after {server_time}"
    );
    assert!(
        server_time < Duration::from_millis(5100),
        "results after {server_time}"
    );
    assert!(
        (run.results.elapsed_seconds - 1.0).abs() < 0.05,
        "elapsed without the pad: {}",
        run.results.elapsed_seconds
    );

    assert!(closed);
    assert_no_errors(&world);
    assert_eq!(
        world.settle(),
        CONTROL_LISTENING_SOCKETS,
        "connection sockets left behind"
    );
}

#[test]
fn tcp_crr_count_based() {
    let mut world = World::new();
    let phase = Phase::TcpCrr {
        request_bytes: 10,
        response_bytes: 20,
    };
    let (run, _) = world.run(
        "TCP_CRR",
        LIMIT,
        single_test(world.client.clone(), phase, Length::Transactions(30)),
    );
    assert_eq!(run.results.transactions, 30);
    assert_transactions_match(&run, 10, 20);
    assert_no_errors(&world);
}
