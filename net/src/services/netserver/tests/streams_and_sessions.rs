//! The stream tests (`TCP_STREAM`, `TCP_MAERTS`), several tests per
//! connection and at once, requested data ports and CPU utilisation.

use smoltcp::time::Duration;

use super::harness::World;
use super::messages::Request;
use super::*;
use crate::services::netserver::CpuCounters;

/// Runs one timed test with 4 KiB server buffers (netperf `-s 4K -S 4K`),
/// which keeps the bytes a host test moves small.
fn small_buffer_test(world: &mut World, phase: Phase) -> (TestRun, bool) {
    let side = world.client.clone();
    world.run("stream test", LIMIT, async move {
        let mut control = Control::connect(&side).await;
        let request = phase.request(ONE_SECOND).buffers(4096);
        let run = run_test(&mut control, &side, phase, request, ONE_SECOND).await;
        (run, control.finish().await)
    })
}

#[test]
fn tcp_stream_counts_every_byte() {
    let mut world = World::new();
    let (run, closed) = small_buffer_test(&mut world, Phase::TcpStream { send_bytes: 16384 });
    assert_eq!(run.results.serv_errno, 0);
    assert!(run.counts.bytes_sent > 0);
    assert_eq!(run.results.bytes_received, run.counts.bytes_sent);
    assert_eq!(run.results.bytes_sent, 0);
    assert!(run.results.receive_calls > 0);
    assert_eq!(
        run.response.recv_buf_size, 4096,
        "netperf prints the remote receive buffer"
    );
    // netperf ended the test by end-of-file, well before T + 4 s.
    let server_time = run.results.received_at - run.response.received_at;
    assert!(
        server_time < Duration::from_secs(2),
        "results after {server_time}"
    );
    assert!(closed);
    assert_no_errors(&world);
}

#[test]
fn tcp_stream_count_based() {
    let mut world = World::new();
    let phase = Phase::TcpStream { send_bytes: 1000 };
    let (run, _) = world.run(
        "TCP_STREAM",
        LIMIT,
        single_test(world.client.clone(), phase, Length::Bytes(100_000)),
    );
    assert_eq!(run.counts.bytes_sent, 100_000);
    assert_eq!(run.results.bytes_received, 100_000);
    assert_no_errors(&world);
}

#[test]
fn tcp_maerts_stops_at_test_length() {
    let mut world = World::new();
    let (run, closed) = small_buffer_test(&mut world, Phase::TcpMaerts);
    assert_eq!(run.results.serv_errno, 0);
    assert!(run.counts.bytes_received > 0);
    assert_eq!(
        run.results.bytes_sent, run.counts.bytes_received,
        "server bytes sent against client bytes read"
    );
    assert_eq!(run.results.bytes_received, 0);
    assert!(run.results.send_calls > 0);
    assert_eq!(
        run.response.send_size, 16384,
        "the server's chosen send size"
    );

    // The server stops T after the response (no pad), and the queued data then
    // drains within a few milliseconds.
    let end_of_file =
        run.counts.end_of_file_at.expect("the server closed") - run.response.received_at;
    assert!(
        end_of_file >= Duration::from_millis(990),
        "end-of-file after {end_of_file}"
    );
    assert!(
        end_of_file <= Duration::from_millis(1100),
        "end-of-file after {end_of_file}"
    );
    assert!(
        (run.results.elapsed_seconds - 1.0).abs() < 0.05,
        "elapsed {}",
        run.results.elapsed_seconds
    );

    assert!(closed);
    assert_no_errors(&world);
}

#[test]
fn tcp_maerts_count_based_sends_exact_bytes() {
    let mut world = World::new();
    let (run, _) = world.run(
        "TCP_MAERTS",
        LIMIT,
        single_test(
            world.client.clone(),
            Phase::TcpMaerts,
            Length::Bytes(50_000),
        ),
    );
    assert_eq!(run.counts.bytes_received, 50_000);
    assert_eq!(run.results.bytes_sent, 50_000);
    assert_no_errors(&world);
}

#[test]
fn two_tests_on_one_control_connection() {
    let mut world = World::new();
    let side = world.client.clone();
    let (first, second, closed) = world.run("two tests", LIMIT, async move {
        let mut control = Control::connect(&side).await;
        let first = run_test(
            &mut control,
            &side,
            TCP_RR_1_1,
            TCP_RR_1_1.request(ONE_SECOND),
            ONE_SECOND,
        )
        .await;
        let stream = Phase::TcpStream { send_bytes: 4096 };
        let request = stream.request(ONE_SECOND).buffers(4096);
        let second = run_test(&mut control, &side, stream, request, ONE_SECOND).await;
        (first, second, control.finish().await)
    });
    assert_transactions_match(&first, 1, 1);
    assert_eq!(second.results.bytes_received, second.counts.bytes_sent);
    assert_ne!(
        first.response.data_port, second.response.data_port,
        "consecutive tests rotate through the range"
    );
    assert!(closed);
    assert_eq!(world.stats.snapshot().tests_completed, 2);
    assert_eq!(world.stats.snapshot().control_connections, 1);
    assert_no_errors(&world);
}

#[test]
fn two_control_connections_at_once() {
    let mut world = World::new();
    let first = world.spawn(single_test(world.client.clone(), TCP_RR_1_1, ONE_SECOND));
    let udp = Phase::UdpRr {
        request_bytes: 1,
        response_bytes: 1,
    };
    let second = world.spawn(single_test(world.client.clone(), udp, ONE_SECOND));
    assert!(world.run_until(LIMIT, || first.borrow().is_some()
        && second.borrow().is_some()));
    let (first, first_closed) = first.borrow_mut().take().expect("finished");
    let (second, second_closed) = second.borrow_mut().take().expect("finished");
    assert_transactions_match(&first, 1, 1);
    assert_transactions_match(&second, 1, 1);
    assert_ne!(first.response.data_port, second.response.data_port);
    assert!(first_closed, "first control connection left open");
    assert!(second_closed, "second control connection left open");
    assert_eq!(world.stats.snapshot().control_connections, 2);
    assert_no_errors(&world);
}

#[test]
fn requested_data_port_is_used() {
    let mut world = World::new();
    let side = world.client.clone();
    let run = world.run("TCP_RR on port 5001", LIMIT, async move {
        let mut control = Control::connect(&side).await;
        let request = TCP_RR_1_1.request(ONE_SECOND).data_port(5001);
        run_test(&mut control, &side, TCP_RR_1_1, request, ONE_SECOND).await
    });
    assert_eq!(run.response.data_port, 5001);
    assert_transactions_match(&run, 1, 1);
}

std::thread_local! {
    static CPU_READINGS: core::cell::Cell<u64> = const { core::cell::Cell::new(0) };
}

/// Returns the CPU counters of a kernel busy a quarter of the time: each
/// reading advances them by 400 ticks, 100 of them busy.
fn quarter_busy_cpu() -> CpuCounters {
    let reading = CPU_READINGS.with(|readings| {
        readings.set(readings.get() + 1);
        readings.get()
    });
    CpuCounters {
        busy_ticks: reading * 100,
        total_ticks: reading * 400,
    }
}

#[test]
fn cpu_utilisation_reported_when_measured() {
    const MEASURE_CPU: u32 = 0x8;
    let mut world = World::with_config(|config| config.cpu = Some(quarter_busy_cpu));
    let side = world.client.clone();
    let run = world.run("TCP_RR -C", LIMIT, async move {
        let mut control = Control::connect(&side).await;
        let request = TCP_RR_1_1.request(ONE_SECOND).flags(MEASURE_CPU);
        run_test(&mut control, &side, TCP_RR_1_1, request, ONE_SECOND).await
    });
    assert_eq!(run.response.flags & MEASURE_CPU, MEASURE_CPU);
    assert_eq!(run.results.cpu_util, 25.0);
    assert_eq!(run.results.cpu_method, 4, "method L");
    assert_eq!(run.results.num_cpus, 1);
}

#[test]
fn cpu_flag_cleared_when_not_measured() {
    const MEASURE_CPU: u32 = 0x8;
    let mut world = World::new();
    let side = world.client.clone();
    let run = world.run("TCP_RR -C", LIMIT, async move {
        let mut control = Control::connect(&side).await;
        let request = Request::captured(Capture::TcpRr)
            .length(1)
            .flags(MEASURE_CPU);
        run_test(&mut control, &side, TCP_RR_1_1, request, ONE_SECOND).await
    });
    assert_eq!(run.response.flags & MEASURE_CPU, 0);
    assert_eq!(run.results.cpu_method, 0);
    assert_transactions_match(&run, 1, 1);
}
