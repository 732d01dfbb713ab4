//! One guest of a run: `./run.sh --no-build` with its console on a Unix
//! socket, QEMU's user network forwarded from free ports on 127.0.0.1 or a
//! tap device in the run's namespace, and its process group ended on drop.
//!
//! ```text
//!  boot() ──listening line──> running ──console commands, netperf──> drop
//!    │                                                                │
//!    └─ host port taken: new ports, up to 5 attempts     SIGTERM to the group,
//!                                                        SIGKILL after 5 s
//! ```

use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use ::tests::console::ConsoleSocket;
use ::tests::guest::{kernel_image, repository_root};
use ::tests::{SerialLog, Stream, BOOT_TIMEOUT, LISTENING_LINE};

use super::cleanup;
use super::network::TapNetwork;
use super::options::{Accelerator, Mode};
use super::records::{parse_barrier_bench, parse_barrier_modes, BarrierBenchLine, GuestStats};
use super::E2eError;

/// Time a console command may take. `barrier-bench` runs 35 timed loops of
/// the requested iterations, and a loaded host slows it further.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
/// Time for QEMU to create the console socket once the kernel listens.
const CONSOLE_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time between SIGTERM and SIGKILL when ending a guest.
const TERMINATE_GRACE: Duration = Duration::from_secs(5);
/// QEMU's message when a forwarded host port is already taken.
const HOST_FORWARDING_FAILURE: &str = "Could not set up host forwarding rule";
const MAX_BOOT_ATTEMPTS: u32 = 5;
/// Echo, discard, chargen and the netperf control port come first.
const SERVICE_PORTS: u16 = 4;
/// Netperf data ports. One test runs at a time; the spares cover a data
/// port the guest has not yet released from the previous test.
const DATA_PORTS: u16 = 4;
/// The guest's netperf control port, reached directly on the tap network.
const NETPERF_CONTROL_PORT: u16 = 12865;

/// Network path from the host to a guest.
#[derive(Clone, Copy, Debug)]
pub enum GuestNetwork<'a> {
    /// User-mode networking, forwarded from free ports on 127.0.0.1.
    User,
    /// The run's tap device.
    Tap(&'a TapNetwork),
}

/// Boot settings of one guest.
#[derive(Clone, Debug)]
pub struct GuestSetup<'a> {
    /// Kernel command line (`--append`), such as `barriers=weak mode=irq`.
    pub append: String,
    /// `run.sh --accel`, or `None` for run.sh's own choice.
    pub accelerator: Option<Accelerator>,
    /// Network.
    pub network: GuestNetwork<'a>,
}

/// A booted guest whose kernel listens.
pub struct TrialGuest {
    child: Child,
    group: i32,
    log: Arc<SerialLog>,
    console: ConsoleSocket,
    socket_path: PathBuf,
    netperf_host: String,
    netperf_control_port: u16,
    command_prefix: Vec<String>,
    accelerator: String,
    boot_us: Option<u64>,
}

impl TrialGuest {
    /// Boots a guest and waits for the listening line and the console.
    ///
    /// # Errors
    /// [`E2eError::KernelImageMissing`], [`E2eError::Boot`] with the tail of
    /// the guest's output when it exits, faults or does not listen within
    /// [`BOOT_TIMEOUT`], or when every attempt found a host port taken.
    pub fn boot(setup: &GuestSetup<'_>) -> Result<TrialGuest, E2eError> {
        let image = kernel_image();
        if !image.is_file() {
            return Err(E2eError::KernelImageMissing { path: image });
        }
        let mut last_output = String::new();
        for _ in 0..MAX_BOOT_ATTEMPTS {
            let ports = match setup.network {
                GuestNetwork::User => Some(free_port_run(SERVICE_PORTS + DATA_PORTS)?),
                GuestNetwork::Tap(_) => None,
            };
            match boot_once(setup, ports)? {
                BootOutcome::Ready(guest) => return Ok(guest),
                BootOutcome::PortTaken(output) => last_output = output,
            }
        }
        Err(E2eError::Boot {
            problem: format!("QEMU found a forwarded host port taken on each of {MAX_BOOT_ATTEMPTS} attempts"),
            output: last_output,
        })
    }

    /// Address and control port that netperf connects to.
    pub fn netperf_target(&self) -> (&str, u16) {
        (&self.netperf_host, self.netperf_control_port)
    }

    /// The prefix that runs a host program where it reaches the guest
    /// (inside the tap network's namespace), empty for user networking.
    pub fn command_prefix(&self) -> &[String] {
        &self.command_prefix
    }

    /// Accelerator as `run.sh` reported it (`kvm` or `tcg`).
    pub fn accelerator(&self) -> &str {
        &self.accelerator
    }

    /// Microseconds from kernel entry to the listening line, as the kernel
    /// logged them.
    pub fn boot_us(&self) -> Option<u64> {
        self.boot_us
    }

    /// Runs a console command and returns its output.
    ///
    /// # Errors
    /// [`E2eError::Console`] when the socket fails or no prompt follows.
    pub fn command(&mut self, line: &str) -> Result<String, E2eError> {
        self.console.command(line, COMMAND_TIMEOUT).map_err(|error| E2eError::Console {
            command: line.to_string(),
            message: error.to_string(),
        })
    }

    /// Reads the counters with `stats`.
    ///
    /// # Errors
    /// [`E2eError::Console`] or [`E2eError::Record`].
    pub fn stats(&mut self) -> Result<GuestStats, E2eError> {
        let output = self.command("stats")?;
        GuestStats::parse(&output).map_err(|source| E2eError::Record { command: "stats", source })
    }

    /// Switches every queue to `mode` with `barriers MODE` and checks the
    /// answer.
    ///
    /// # Errors
    /// [`E2eError::Console`], [`E2eError::Record`], or
    /// [`E2eError::ModeNotApplied`] when a queue reports another mode (the
    /// device negotiated `VIRTIO_F_ORDER_PLATFORM`).
    pub fn switch_barriers(&mut self, mode: Mode) -> Result<(), E2eError> {
        let output = self.command(&format!("barriers {mode}"))?;
        let (receive, transmit) =
            parse_barrier_modes(&output).map_err(|source| E2eError::Record { command: "barriers", source })?;
        if receive != mode || transmit != mode {
            return Err(E2eError::ModeNotApplied { requested: mode, receive, transmit });
        }
        Ok(())
    }

    /// Runs the in-guest barrier microbenchmark.
    ///
    /// # Errors
    /// [`E2eError::Console`] or [`E2eError::Record`].
    pub fn barrier_bench(&mut self, iterations: u32) -> Result<Vec<BarrierBenchLine>, E2eError> {
        let output = self.command(&format!("barrier-bench {iterations}"))?;
        parse_barrier_bench(&output).map_err(|source| E2eError::Record { command: "barrier-bench", source })
    }

    /// Returns an error when the kernel printed a fault line or QEMU exited.
    ///
    /// # Errors
    /// [`E2eError::Boot`] with the guest's output.
    pub fn check_running(&mut self) -> Result<(), E2eError> {
        if let Some(line) = self.log.kernel_fault() {
            return Err(self.failure(format!("the kernel failed: {line}")));
        }
        if let Ok(Some(status)) = self.child.try_wait() {
            return Err(self.failure(format!("run.sh exited with {status}")));
        }
        Ok(())
    }

    fn failure(&self, problem: String) -> E2eError {
        E2eError::Boot {
            problem,
            output: output_tail(&self.log),
        }
    }
}

impl Drop for TrialGuest {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            cleanup::signal_process_group(self.group, libc::SIGTERM);
            let deadline = Instant::now() + TERMINATE_GRACE;
            while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
                thread::sleep(Duration::from_millis(20));
            }
            if matches!(self.child.try_wait(), Ok(None)) {
                cleanup::signal_process_group(self.group, libc::SIGKILL);
                let _ = self.child.wait();
            }
        }
        cleanup::unregister_process_group(self.group);
        let _ = std::fs::remove_file(&self.socket_path);
    }
}

/// Host ports forwarded to one user-network guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PortRun {
    first: u16,
}

impl PortRun {
    fn echo(self) -> u16 {
        self.first
    }

    fn netperf_control(self) -> u16 {
        self.first + 3
    }

    fn run_sh_arguments(self) -> Vec<String> {
        let data_first = self.first + SERVICE_PORTS;
        vec![
            "--echo-port".into(),
            self.echo().to_string(),
            "--discard-port".into(),
            (self.first + 1).to_string(),
            "--chargen-port".into(),
            (self.first + 2).to_string(),
            "--netperf-port".into(),
            self.netperf_control().to_string(),
            "--data-ports".into(),
            format!("{data_first}-{}", data_first + DATA_PORTS - 1),
        ]
    }
}

enum BootOutcome {
    Ready(TrialGuest),
    /// QEMU exited because a forwarded port was taken; its output.
    PortTaken(String),
}

static NEXT_SOCKET: AtomicUsize = AtomicUsize::new(1);

fn boot_once(setup: &GuestSetup<'_>, ports: Option<PortRun>) -> Result<BootOutcome, E2eError> {
    let socket_number = NEXT_SOCKET.fetch_add(1, Ordering::Relaxed);
    let socket_path = std::env::temp_dir().join(format!("vbench-console-{}-{socket_number}.sock", std::process::id()));
    let _ = std::fs::remove_file(&socket_path);

    let (command_prefix, network_arguments, append) = match setup.network {
        GuestNetwork::User => {
            let ports = ports.expect("user networking always leases ports");
            (Vec::new(), ports.run_sh_arguments(), setup.append.clone())
        }
        GuestNetwork::Tap(tap) => {
            let mut arguments = vec!["--no-nic".to_string(), "--".to_string()];
            arguments.extend(tap.qemu_arguments());
            (tap.command_prefix(), arguments, format!("{} {}", tap.kernel_options(), setup.append))
        }
    };
    let mut run_sh_arguments = vec!["--no-build".to_string()];
    if let Some(accelerator) = setup.accelerator {
        run_sh_arguments.extend(["--accel".to_string(), accelerator.name().to_string()]);
    }
    run_sh_arguments.extend(["--append".to_string(), append]);
    run_sh_arguments.extend(["--serial".to_string(), format!("socket:{}", socket_path.display())]);
    // Options after `--` go to QEMU, so they come last.
    run_sh_arguments.extend(network_arguments);

    let run_sh = repository_root().join("run.sh");
    let mut command = match command_prefix.split_first() {
        Some((program, arguments)) => {
            let mut command = Command::new(program);
            command.args(arguments).arg(&run_sh);
            command
        }
        None => Command::new(&run_sh),
    };
    // Its own process group lets drop and the Ctrl-C handler end QEMU with
    // run.sh.
    command
        .current_dir(repository_root())
        .args(&run_sh_arguments)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().map_err(|error| E2eError::Boot {
        problem: format!("cannot start {command:?}: {error}"),
        output: String::new(),
    })?;
    let group = child.id() as i32;
    cleanup::register_process_group(group);

    let log = Arc::new(SerialLog::default());
    log.follow(child.stdout.take().expect("stdout was configured as a pipe"), Stream::Serial);
    log.follow(child.stderr.take().expect("stderr was configured as a pipe"), Stream::Stderr);

    let (netperf_host, netperf_control_port) = match (setup.network, ports) {
        (GuestNetwork::Tap(tap), _) => (tap.guest_address().to_string(), NETPERF_CONTROL_PORT),
        (GuestNetwork::User, Some(ports)) => (Ipv4Addr::LOCALHOST.to_string(), ports.netperf_control()),
        (GuestNetwork::User, None) => unreachable!("user networking always leases ports"),
    };
    let mut partial = PartialGuest { child: Some(child), group, socket_path: socket_path.clone() };

    let listening = match log.wait_for_line(0, LISTENING_LINE, BOOT_TIMEOUT) {
        Ok(line) => line,
        Err(error) => {
            partial.end();
            log.wait_closed(Duration::from_secs(5));
            let output = output_tail(&log);
            let port_taken = log
                .lines()
                .iter()
                .any(|line| line.stream == Stream::Stderr && line.text.contains(HOST_FORWARDING_FAILURE));
            if port_taken {
                return Ok(BootOutcome::PortTaken(output));
            }
            return Err(E2eError::Boot { problem: error.to_string(), output });
        }
    };
    let console = match ConsoleSocket::connect(&socket_path, CONSOLE_CONNECT_TIMEOUT) {
        Ok(console) => console,
        Err(error) => {
            partial.end();
            return Err(E2eError::Boot {
                problem: format!("cannot connect to the console socket {}: {error}", socket_path.display()),
                output: output_tail(&log),
            });
        }
    };
    let accelerator = log
        .lines()
        .iter()
        .filter(|line| line.stream == Stream::Stderr)
        .find_map(|line| accelerator_from_run_sh(&line.text))
        .unwrap_or_else(|| "unknown".to_string());

    let child = partial.child.take().expect("the child is kept until the guest is built");
    Ok(BootOutcome::Ready(TrialGuest {
        child,
        group,
        log,
        console,
        socket_path,
        netperf_host,
        netperf_control_port,
        command_prefix,
        accelerator,
        boot_us: boot_microseconds(&listening.text),
    }))
}

/// A started `run.sh` that is not yet a [`TrialGuest`]; [`Self::end`] stops
/// it on a failed boot.
struct PartialGuest {
    child: Option<Child>,
    group: i32,
    socket_path: PathBuf,
}

impl PartialGuest {
    fn end(&mut self) {
        if let Some(mut child) = self.child.take() {
            if matches!(child.try_wait(), Ok(None)) {
                cleanup::signal_process_group(self.group, libc::SIGTERM);
                let deadline = Instant::now() + TERMINATE_GRACE;
                while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                    thread::sleep(Duration::from_millis(20));
                }
                cleanup::signal_process_group(self.group, libc::SIGKILL);
            }
            let _ = child.wait();
        }
        cleanup::unregister_process_group(self.group);
        let _ = std::fs::remove_file(&self.socket_path);
    }
}

/// The accelerator from run.sh's `accelerator tcg: REASON` or
/// `accelerator kvm (from --accel)` line.
pub fn accelerator_from_run_sh(line: &str) -> Option<String> {
    let rest = line.strip_prefix("run.sh: accelerator ")?;
    let name: String = rest.chars().take_while(char::is_ascii_alphanumeric).collect();
    (!name.is_empty()).then_some(name)
}

/// The `N` of the listening line's `(boot took N us)`.
pub fn boot_microseconds(line: &str) -> Option<u64> {
    let after = line.split("boot took ").nth(1)?;
    after.split_whitespace().next()?.parse().ok()
}

/// The last 60 lines of a guest's output, for error messages.
fn output_tail(log: &SerialLog) -> String {
    let rendered = log.render();
    let lines: Vec<&str> = rendered.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

/// Finds `count` consecutive ports on 127.0.0.1 that are free for TCP and
/// UDP now. Another process can still take one before QEMU binds it;
/// [`TrialGuest::boot`] then retries.
fn free_port_run(count: u16) -> Result<PortRun, E2eError> {
    const ATTEMPTS: u32 = 200;
    for _ in 0..ATTEMPTS {
        // The kernel picks an unused ephemeral port; the run starts there.
        let Ok(first) = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).and_then(|probe| probe.local_addr()) else {
            continue;
        };
        let first = first.port();
        let Some(last) = first.checked_add(count - 1) else {
            continue;
        };
        let free = |port: u16| {
            TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() && UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
        };
        if (first..=last).all(free) {
            return Ok(PortRun { first });
        }
    }
    Err(E2eError::Boot {
        problem: format!("no {count} consecutive free ports on 127.0.0.1 found in {ATTEMPTS} attempts"),
        output: String::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_sh_lines_name_the_accelerator() {
        let picked = "run.sh: accelerator tcg: /dev/kvm is kvm_pvm (paravirtual, emulates kernel-mode code, slower than TCG)";
        assert_eq!(accelerator_from_run_sh(picked).as_deref(), Some("tcg"));
        let forced = "run.sh: accelerator kvm (from --accel)";
        assert_eq!(accelerator_from_run_sh(forced).as_deref(), Some("kvm"));
        assert_eq!(accelerator_from_run_sh("run.sh: qemu-system-x86_64 -accel tcg"), None);
    }

    #[test]
    fn listening_line_gives_boot_time() {
        let line = "[    0.052990] INFO  kernel::runtime: echo listening on TCP and UDP port 7 (boot took 52943 us), mode Interrupt";
        assert_eq!(boot_microseconds(line), Some(52_943));
        assert_eq!(boot_microseconds("echo listening"), None);
    }

    #[test]
    fn port_run_is_consecutive() {
        let ports = free_port_run(SERVICE_PORTS + DATA_PORTS).expect("free ports");
        let arguments = ports.run_sh_arguments().join(" ");
        let first = ports.echo();
        assert!(arguments.starts_with(&format!("--echo-port {first} --discard-port {}", first + 1)), "{arguments}");
        assert!(arguments.ends_with(&format!("--data-ports {}-{}", first + 4, first + 7)), "{arguments}");
        assert_eq!(ports.netperf_control(), first + 3);
    }
}
