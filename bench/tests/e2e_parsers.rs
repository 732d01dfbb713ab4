//! `bench run`'s parsers against real output, captured under TCG from the
//! release kernel and netperf 2.7.0 (files under `tests/data/`):
//!
//! - `netperf_tcp_rr_1x1.txt`, `netperf_udp_rr_1024x1024.txt`: the
//!   harness's own `-o` selectors.
//! - `netperf_tcp_rr_command_line.txt`: other selectors, ending in the
//!   quoted `COMMAND_LINE`, which contains commas.
//! - `netperf_udp_rr_local_cpu.txt`: local and remote CPU and the protocol.
//! - `netperf_no_netserver.txt`: netperf pointed at a port without a
//!   netserver.
//! - `console_stats_weak_boot.txt`: `stats` right after a weak boot.
//! - `console_stats_weak_traffic.txt`: the same guest after a UDP_RR test.
//! - `console_stats_switched_strong.txt`: the same guest after
//!   `barriers strong` (`console_barriers_switch.txt`) and a TCP_RR test.
//! - `console_stats_strong_boot.txt`: another guest booted strong, after
//!   traffic.
//! - `console_barrier_bench.txt`: `barrier-bench 20000`.

use bench::e2e::netperf::parse_output;
use bench::e2e::options::Mode;
use bench::e2e::records::{
    parse_barrier_bench, parse_barrier_modes, DriverPath, GuestStats, RecordError, Record, LOG2_BUCKETS,
    RECEIVE_QUEUE, TRANSMIT_QUEUE,
};
use virtio::barrier::{BarrierKind, BarrierSite};

const TCP_RR: &str = include_str!("data/netperf_tcp_rr_1x1.txt");
const UDP_RR: &str = include_str!("data/netperf_udp_rr_1024x1024.txt");
const WITH_COMMAND_LINE: &str = include_str!("data/netperf_tcp_rr_command_line.txt");
const WITH_LOCAL_CPU: &str = include_str!("data/netperf_udp_rr_local_cpu.txt");
const NO_NETSERVER: &str = include_str!("data/netperf_no_netserver.txt");
const WEAK_BOOT: &str = include_str!("data/console_stats_weak_boot.txt");
const WEAK_TRAFFIC: &str = include_str!("data/console_stats_weak_traffic.txt");
const SWITCHED_STRONG: &str = include_str!("data/console_stats_switched_strong.txt");
const STRONG_BOOT: &str = include_str!("data/console_stats_strong_boot.txt");
const BARRIER_BENCH: &str = include_str!("data/console_barrier_bench.txt");
const BARRIERS_SWITCH: &str = include_str!("data/console_barriers_switch.txt");

fn parse_stats(text: &str) -> GuestStats {
    GuestStats::parse(text).unwrap_or_else(|error| panic!("{error}"))
}

#[test]
fn netperf_tcp_rr_figures() {
    let figures = parse_output(TCP_RR).expect("figures");
    assert_eq!(figures.transaction_rate, 6399.401);
    assert_eq!(figures.throughput, 6399.40);
    assert_eq!(figures.mean_latency_us, 156.11);
    assert_eq!(figures.min_latency_us, 63.0);
    assert_eq!(figures.max_latency_us, 10350.0);
    assert_eq!(figures.p50_latency_us, 137.0);
    assert_eq!(figures.p90_latency_us, 233.0);
    assert_eq!(figures.p99_latency_us, 411.0);
    assert_eq!(figures.stddev_latency_us, 118.22);
    assert_eq!(figures.elapsed_seconds, 2.0);
    assert_eq!(figures.request_bytes, 1.0);
    assert_eq!(figures.response_bytes, 1.0);
    assert_eq!(figures.remote_cpu_percent, 47.29);
    assert!((figures.transactions() - 12_798.802).abs() < 1e-6);
}

#[test]
fn netperf_udp_rr_figures() {
    let figures = parse_output(UDP_RR).expect("figures");
    assert_eq!(figures.transaction_rate, 6538.307);
    assert_eq!(figures.mean_latency_us, 152.86);
    assert_eq!(figures.p99_latency_us, 342.0);
    assert_eq!(figures.request_bytes, 1024.0);
    assert_eq!(figures.response_bytes, 1024.0);
    assert_eq!(figures.remote_cpu_percent, 34.61);
}

#[test]
fn netperf_columns_match_by_title() {
    let figures = parse_output(WITH_COMMAND_LINE).expect("figures");
    assert_eq!(figures.transaction_rate, 5503.604);
    assert_eq!(figures.mean_latency_us, 181.46);
    assert_eq!(figures.p99_latency_us, 3350.0);
    assert_eq!(figures.response_bytes, 1.0);
    assert!(figures.remote_cpu_percent.is_nan(), "no remote CPU column was selected");

    let figures = parse_output(WITH_LOCAL_CPU).expect("figures");
    assert_eq!(figures.transaction_rate, 5889.697);
    assert_eq!(figures.remote_cpu_percent, 22.85);
    assert_eq!(figures.request_bytes, 64.0);
}

#[test]
fn netperf_failures_are_errors() {
    let error = parse_output(NO_NETSERVER).expect_err("no figures");
    assert!(error.to_string().contains("establish control"), "{error}");

    let header_only: String = TCP_RR.lines().take(2).collect::<Vec<_>>().join("\n");
    assert!(parse_output(&header_only).is_err());

    let without_rate = TCP_RR.replace("Transaction Rate Tran/s", "Something Else");
    assert!(parse_output(&without_rate).is_err());

    let short_values = TCP_RR.replace(",47.29", "");
    assert!(parse_output(&short_values).is_err(), "a value line with a missing field must not parse");
}

#[test]
fn stats_after_boot() {
    let stats = parse_stats(WEAK_BOOT);
    assert_eq!(stats.queue_modes.get(&RECEIVE_QUEUE), Some(&Mode::Weak));
    assert_eq!(stats.queue_modes.get(&TRANSMIT_QUEUE), Some(&Mode::Weak));
    let receive = &stats.queues[&RECEIVE_QUEUE];
    assert_eq!(receive.adds, 256);
    assert_eq!(receive.kicks, 1);
    assert_eq!(receive.used, 0);
    assert_eq!(stats.barriers[&(RECEIVE_QUEUE, BarrierSite::AvailPublish, Mode::Weak)], 1);
    assert_eq!(stats.barriers[&(TRANSMIT_QUEUE, BarrierSite::UsedEventStore, Mode::Weak)], 1);
    assert_eq!(stats.barriers.len(), 2 * BarrierSite::COUNT * 2);
    assert_eq!(stats.uptime_us, 7_286_534);
    assert_eq!(stats.cpu_busy_permille, 9);
    assert_eq!(stats.nic.get("rx_frames"), Some(&0));
    assert_eq!(stats.cycles.len(), 2 * 2 * 2);
    assert!(stats.cycles.values().all(|histogram| histogram.count == 0 && histogram.buckets.len() == LOG2_BUCKETS));
}

#[test]
fn stats_after_traffic() {
    let stats = parse_stats(WEAK_TRAFFIC);
    let receive = &stats.queues[&RECEIVE_QUEUE];
    assert_eq!((receive.adds, receive.kicks, receive.kicks_suppressed), (23_360, 1, 23_104));
    assert_eq!((receive.interrupts, receive.used), (20_192, 23_104));
    let transmit = &stats.queues[&TRANSMIT_QUEUE];
    assert_eq!((transmit.adds, transmit.kicks, transmit.used), (22_812, 22_811, 22_812));

    // Each queue record's kind totals equal the sum of its sites' counts.
    assert_eq!(stats.barriers_of_kind(BarrierKind::Read, Mode::Weak), 23_104 + 22_812);
    assert_eq!(stats.barriers_of_kind(BarrierKind::Write, Mode::Weak), 23_105 + 22_812);
    assert_eq!(stats.barriers_of_kind(BarrierKind::Full, Mode::Weak), 77_032 + 76_739);
    for kind in BarrierKind::ALL {
        assert_eq!(stats.barriers_of_kind(kind, Mode::Strong), 0, "{}", kind.name());
    }
    assert_eq!(stats.site_barriers(BarrierSite::UsedEventStore, Mode::Weak), 2 * 53_927);

    let submit = &stats.cycles[&(TRANSMIT_QUEUE, DriverPath::Submit, Mode::Weak)];
    assert_eq!(submit.count, 22_812);
    assert_eq!(submit.total_cycles, 22_812 * 1762);
    assert_eq!(submit.buckets[10], 18_009);
    for ((queue, path, mode), histogram) in &stats.cycles {
        let bucket_sum: u64 = histogram.buckets.iter().sum();
        assert_eq!(bucket_sum, histogram.count, "queue {queue} {} {mode}", path.name());
    }
    assert_eq!(stats.nic.get("tx_frames"), Some(&22_812));
}

#[test]
fn switch_moves_only_strong_counters() {
    let (receive, transmit) = parse_barrier_modes(BARRIERS_SWITCH).expect("a barriers record");
    assert_eq!((receive, transmit), (Mode::Strong, Mode::Strong));

    let before = parse_stats(WEAK_TRAFFIC);
    let after = parse_stats(SWITCHED_STRONG);
    assert_eq!(after.queue_modes.get(&RECEIVE_QUEUE), Some(&Mode::Strong));
    let delta = after.since(&before);
    for kind in BarrierKind::ALL {
        assert_eq!(delta.barriers_of_kind(kind, Mode::Weak), 0, "weak {} moved", kind.name());
        assert!(delta.barriers_of_kind(kind, Mode::Strong) > 0, "strong {} did not move", kind.name());
    }
    assert_eq!(delta.barriers_of_kind(BarrierKind::Read, Mode::Strong), 16_310 + 16_032);
    assert_eq!(delta.receive.adds, 39_670 - 23_360);
    assert_eq!(delta.transmit.kicks, 38_842 - 22_811);
    // The receive queue's kicks stayed at 1; the other three moved.
    assert_eq!(delta.notifications(), 16_031 + (35_828 - 20_192) + (34_299 - 18_680));

    // The weak histograms did not change; the strong ones are new.
    let weak_submit = delta.histogram(TRANSMIT_QUEUE, DriverPath::Submit, Mode::Weak);
    assert_eq!(weak_submit.count, 0);
    assert!(weak_submit.buckets.iter().all(|&count| count == 0));
    let strong_submit = delta.histogram(TRANSMIT_QUEUE, DriverPath::Submit, Mode::Strong);
    assert_eq!(strong_submit.count, 16_032);
    assert_eq!(strong_submit.mean_cycles(), Some(2197.0));
    assert_eq!(delta.rx_frames, after.nic["rx_frames"] - before.nic["rx_frames"]);
    assert!(delta.interval_us > 0);
    let busy = delta.cpu_busy_permille.expect("uptime moved");
    assert!((0.0..=1000.0).contains(&busy), "{busy}");
}

#[test]
fn strong_boot_counts_no_weak_barriers() {
    let stats = parse_stats(STRONG_BOOT);
    for kind in BarrierKind::ALL {
        assert_eq!(stats.barriers_of_kind(kind, Mode::Weak), 0, "{}", kind.name());
        assert!(stats.barriers_of_kind(kind, Mode::Strong) > 0, "{}", kind.name());
    }
    assert_eq!(stats.site_barriers(BarrierSite::InterruptEnable, Mode::Strong), 0);
}

#[test]
fn barrier_bench_lines() {
    let lines = parse_barrier_bench(BARRIER_BENCH).expect("barrier_bench records");
    assert_eq!(lines.len(), 6);
    assert!(lines.iter().all(|line| line.accelerator == "tcg" && line.iterations == 20_000));
    let figure = |mode: Mode, kind: &str| {
        lines
            .iter()
            .find(|line| line.mode == mode && line.kind == kind)
            .map(|line| line.cycles_per_barrier)
    };
    assert_eq!(figure(Mode::Weak, "read"), Some(1.12));
    assert_eq!(figure(Mode::Weak, "full"), Some(28.15));
    assert_eq!(figure(Mode::Strong, "write"), Some(7.87));
    assert_eq!(figure(Mode::Strong, "full"), Some(19.18));
    assert!(parse_barrier_bench(WEAK_BOOT).expect("no records is not an error").is_empty());
}

#[test]
fn malformed_stats_are_rejected() {
    let without_system: String = WEAK_TRAFFIC.lines().filter(|line| !line.starts_with("system ")).collect::<Vec<_>>().join("\n");
    assert_eq!(
        GuestStats::parse(&without_system),
        Err(RecordError::MissingRecord { record: "system".to_string() })
    );

    let without_transmit: String = WEAK_TRAFFIC
        .lines()
        .filter(|line| !line.starts_with("queue index=1"))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(matches!(GuestStats::parse(&without_transmit), Err(RecordError::MissingRecord { .. })));

    let bad_count = WEAK_TRAFFIC.replacen("adds=23360", "adds=many", 1);
    let error = GuestStats::parse(&bad_count).expect_err("adds is not a number");
    assert!(error.to_string().contains("adds"), "{error}");

    let bad_mode = WEAK_TRAFFIC.replacen("barrier_mode=weak", "barrier_mode=medium", 1);
    assert!(GuestStats::parse(&bad_mode).is_err());

    let short_histogram = WEAK_TRAFFIC.replacen("log2_buckets=0,", "log2_buckets=", 1);
    assert!(GuestStats::parse(&short_histogram).is_err(), "a histogram needs 33 buckets");

    let unknown_site = WEAK_TRAFFIC.replacen("site=notify-check", "site=notify-later", 1);
    assert!(GuestStats::parse(&unknown_site).is_err());
}

#[test]
fn prompt_and_echo_lines_are_not_records() {
    let first_lines: Vec<&str> = WEAK_TRAFFIC.lines().take(1).collect();
    assert_eq!(first_lines, ["stats"]);
    assert_eq!(Record::parse("stats"), None);
    assert_eq!(Record::parse(WEAK_TRAFFIC.lines().last().expect("a prompt line")), None);
}
