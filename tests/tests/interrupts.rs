//! Interrupt-driven and busy-poll operation:
//! - echo and netperf TCP_RR in both modes, with MSI-X and with INTx,
//!   without event-idx, in both barrier modes;
//! - an idle guest in irq mode leaves the host CPU alone;
//! - smoltcp's timers fire with no traffic at all, so a connection whose
//!   peer goes silent is reset.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tests::echo_checks::{check_tcp_bulk, check_udp_sizes};
use tests::netperf::run_netperf;
use tests::{Guest, GuestOptions};

const IDLE_SECONDS: u64 = 5;
const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);

/// Boots with `append` and `nic_options`, checks echo and a 2-second
/// netperf TCP_RR through the netperf service, and returns the guest.
fn check_echo_and_netperf(append: &str, nic_options: &str, expected_log: &str) -> Guest {
    let mut guest = Guest::boot_to_listening(GuestOptions {
        append: append.into(),
        nic_options: nic_options.into(),
        ..GuestOptions::default()
    });
    guest
        .wait_for_line(expected_log, Duration::ZERO)
        .unwrap_or_else(|error| panic!("'{expected_log}' not logged with {append} {nic_options}: {error}"));
    check_tcp_bulk(&mut guest, 128 * 1024);
    check_udp_sizes(&mut guest, 20);

    let arguments: Vec<String> = ["-H", "127.0.0.1", "-p"]
        .into_iter()
        .map(String::from)
        .chain([guest.ports().netperf_control.to_string()])
        .chain(["-t", "TCP_RR", "-l", "2"].into_iter().map(String::from))
        .collect();
    let run = run_netperf(&arguments, Duration::from_secs(60)).unwrap();
    assert!(run.status.success(), "netperf failed with {append} {nic_options}:\n{}{}", run.stdout, run.stderr);
    let rate = run.transaction_rate().unwrap_or(0.0);
    assert!(rate > 0.0, "no transactions with {append} {nic_options}:\n{}", run.stdout);
    guest
}

#[test]
fn irq_mode_with_msix() {
    check_echo_and_netperf("mode=irq", "", "MSI-X: table");
}

#[test]
fn poll_mode() {
    check_echo_and_netperf("mode=poll", "", "mode Poll");
}

#[test]
fn irq_mode_with_intx() {
    check_echo_and_netperf("mode=irq", "vectors=0", "INTx: GSIs");
}

#[test]
fn irq_mode_with_intx_on_pc() {
    let mut guest = Guest::boot_to_listening(GuestOptions {
        machine: tests::Machine::Pc,
        nic_options: "vectors=0".into(),
        ..GuestOptions::default()
    });
    guest.wait_for_line("INTx: GSIs", Duration::ZERO).expect("INTx is used without MSI-X");
    check_tcp_bulk(&mut guest, 128 * 1024);
}

#[test]
fn irq_mode_without_event_idx_strong_barriers() {
    check_echo_and_netperf("mode=irq barriers=strong", "event_idx=off", "barriers Strong");
}

#[test]
fn poll_mode_strong_barriers() {
    check_echo_and_netperf("mode=poll barriers=strong", "", "barriers Strong");
}

/// Returns the user plus system CPU time of `pid` in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("QEMU's /proc stat is readable");
    let fields: Vec<&str> = stat.rsplit_once(')').expect("stat has a command name").1.split_whitespace().collect();
    // After the name: state is field 0, utime field 11, stime field 12.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Returns the share of one core QEMU used over `IDLE_SECONDS` of no traffic.
fn idle_cpu_share(guest: &Guest) -> f64 {
    // Let boot-time work settle first.
    std::thread::sleep(Duration::from_secs(1));
    let pid = guest.qemu_pid().expect("QEMU runs as run.sh's child");
    // /proc/PID/stat counts CPU time in USER_HZ ticks, 100 per second on
    // Linux x86.
    let ticks_per_second = 100.0;
    let before = cpu_ticks(pid);
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(IDLE_SECONDS));
    let used = (cpu_ticks(pid) - before) as f64 / ticks_per_second;
    used / start.elapsed().as_secs_f64()
}

#[test]
fn idle_guest_in_irq_mode_uses_little_cpu() {
    let guest = Guest::boot_to_listening(GuestOptions { append: "mode=irq".into(), ..GuestOptions::default() });
    let share = idle_cpu_share(&guest);
    assert!(share < 0.20, "an idle guest in irq mode used {:.0}% of a core", share * 100.0);

    // The same measurement detects a spinning guest, so it can fail.
    let spinning = Guest::boot_to_listening(GuestOptions { append: "mode=poll".into(), ..GuestOptions::default() });
    let share = idle_cpu_share(&spinning);
    assert!(share > 0.5, "a guest in poll mode used only {:.0}% of a core", share * 100.0);
}

/// Returns a path for a QEMU monitor socket, for `set_link`.
fn monitor_path() -> PathBuf {
    std::env::temp_dir().join(format!("vb-monitor-{}.sock", std::process::id()))
}

fn monitor_command(path: &PathBuf, command: &str) {
    let mut monitor = UnixStream::connect(path).expect("monitor socket accepts");
    monitor.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    monitor.write_all(format!("{command}\n").as_bytes()).unwrap();
    let mut buffer = [0u8; 4096];
    // Read the banner and the command's echo; the reply content is not needed.
    let _ = monitor.read(&mut buffer);
    std::thread::sleep(Duration::from_millis(200));
    let _ = monitor.read(&mut buffer);
}

#[test]
fn unanswered_connection_is_reset_by_timers() {
    let path = monitor_path();
    let _ = std::fs::remove_file(&path);
    let guest = Guest::boot_to_listening(GuestOptions {
        append: "log=debug".into(),
        extra_qemu_args: vec!["-monitor".into(), format!("unix:{},server=on,wait=off", path.display())],
        ..GuestOptions::default()
    });

    // chargen sends without pause, so the guest always has data awaiting
    // acknowledgement.
    let chargen = std::net::SocketAddr::from(([127, 0, 0, 1], guest.ports().chargen));
    let mut connection = std::net::TcpStream::connect_timeout(&chargen, COMMAND_TIMEOUT).unwrap();
    connection.set_read_timeout(Some(COMMAND_TIMEOUT)).unwrap();
    let mut buffer = [0u8; 4096];
    assert!(connection.read(&mut buffer).unwrap() > 0, "chargen sent nothing");

    // With the link down nothing the guest sends is acknowledged; smoltcp
    // retransmits on its timers and resets the connection at its timeout.
    monitor_command(&path, "set_link net0 off");
    let ended = guest
        .wait_for_line("chargen: connection", Duration::from_secs(60))
        .unwrap_or_else(|error| panic!("the unanswered chargen connection was not ended: {error}"));
    // A FIN from the peer would end it with Ok(()); the timeout ends it with
    // an error because the socket can no longer send.
    assert!(ended.text.contains("Err("), "the connection ended without a reset: {}", ended.text);
    monitor_command(&path, "set_link net0 on");
    let _ = std::fs::remove_file(&path);
}
