//! One booted guest: `./run.sh --no-build` with its own forwarded ports,
//! its output captured in a [`SerialLog`], and its process group ended on
//! drop.
//!
//! ```text
//!  boot() ──> running ──wait_exit()──> exited (status kept)
//!                │
//!              drop ──SIGTERM to the group──> gone (SIGKILL after 10 s)
//! ```

use std::fmt;
use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::error::GuestError;
use crate::ports::{lease_ports, tcp_port_is_free, udp_port_is_free, ForwardedPorts, PortLease};
use crate::serial_log::{FoundLine, SerialLog, Stream};
use crate::slots::{acquire_slot, GuestSlot, SLOT_TIMEOUT};

/// Time allowed from starting `run.sh` to the listening line. A boot takes
/// well under a second with qboot and a few seconds with SeaBIOS under TCG;
/// the margin covers a loaded host.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(60);

/// The line the kernel prints once the echo service accepts traffic.
pub const LISTENING_LINE: &str = "echo listening on TCP and UDP port 7";

/// QEMU's message when a forwarded host port is already taken.
const HOST_FORWARDING_FAILURE: &str = "Could not set up host forwarding rule";
const MAX_BOOT_ATTEMPTS: u32 = 5;
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Time the forwarded ports must stay bound before a boot counts as past
/// QEMU's network setup. QEMU exits within milliseconds of a failed rule.
const FORWARDING_SETTLE: Duration = Duration::from_millis(300);
/// Time between SIGTERM and SIGKILL when ending a guest.
const TERMINATE_GRACE: Duration = Duration::from_secs(10);
/// Time for the output pipes to close once `run.sh` has exited.
const OUTPUT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// `run.sh`'s exit statuses, which are the kernel's exit codes.
pub mod exit_code {
    pub const CLEAN: i32 = 0;
    pub const INVALID_COMMAND_LINE: i32 = 64;
    pub const NO_USABLE_NIC: i32 = 69;
    pub const BOOT_FAILURE: i32 = 70;
    pub const PANIC: i32 = 101;
}

static NEXT_GUEST_ID: AtomicUsize = AtomicUsize::new(1);

/// QEMU machine type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Machine {
    Q35,
    /// i440FX, QEMU's `pc`.
    Pc,
}

impl Machine {
    fn run_sh_name(self) -> &'static str {
        match self {
            Self::Q35 => "q35",
            Self::Pc => "pc",
        }
    }
}

/// Firmware QEMU runs before the PVH kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Firmware {
    /// Fast; leaves PCI BARs unassigned for the kernel to place.
    Qboot,
    /// QEMU's default; assigns PCI BARs and takes seconds under TCG.
    SeaBios,
}

impl Firmware {
    fn run_sh_name(self) -> &'static str {
        match self {
            Self::Qboot => "qboot",
            Self::SeaBios => "seabios",
        }
    }
}

/// How to boot a guest; each field maps to a `run.sh` option.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestOptions {
    pub machine: Machine,
    pub firmware: Firmware,
    /// Kernel command line (`--append`), such as `barriers=strong log=debug`.
    pub append: String,
    /// Extra `virtio-net-pci` properties (`--nic-options`), such as
    /// `event_idx=off`.
    pub nic_options: String,
    /// Boot without a network device (`--no-nic`).
    pub no_nic: bool,
    /// Arguments passed to QEMU after `--`.
    pub extra_qemu_args: Vec<String>,
    /// Netperf data ports to forward (`--data-ports`), at least one.
    pub data_port_count: u16,
    /// Put the console on a Unix socket (`--serial socket:PATH`) instead of
    /// run.sh's stdin; the output still reaches the log.
    pub console_socket: bool,
}

impl Default for GuestOptions {
    fn default() -> Self {
        Self {
            machine: Machine::Q35,
            firmware: Firmware::Qboot,
            append: String::new(),
            nic_options: String::new(),
            no_nic: false,
            extra_qemu_args: Vec::new(),
            data_port_count: 4,
            console_socket: false,
        }
    }
}

impl fmt::Display for GuestOptions {
    /// Formats the options as `run.sh` arguments, without the ports.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "--machine {} --firmware {}",
            self.machine.run_sh_name(),
            self.firmware.run_sh_name()
        )?;
        if !self.append.is_empty() {
            write!(formatter, " --append '{}'", self.append)?;
        }
        if !self.nic_options.is_empty() {
            write!(formatter, " --nic-options '{}'", self.nic_options)?;
        }
        if self.no_nic {
            write!(formatter, " --no-nic")?;
        }
        if self.console_socket {
            write!(formatter, " --serial socket:PATH")?;
        }
        if !self.extra_qemu_args.is_empty() {
            write!(formatter, " -- {}", self.extra_qemu_args.join(" "))?;
        }
        Ok(())
    }
}

/// Returns the repository root, where `run.sh` is.
pub fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits one level below the repository root")
        .to_path_buf()
}

/// Returns the kernel image the tests boot: `KERNEL_IMAGE` when set (as
/// `./run.sh test` does), else the release image `./run.sh build` writes.
///
/// NOTE: `run.sh --no-build` always boots the release image under
/// `target/`; `KERNEL_IMAGE` only changes which file is checked to exist.
pub fn kernel_image() -> PathBuf {
    std::env::var_os("KERNEL_IMAGE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repository_root().join("target/x86_64-unknown-none/release/kernel"))
}

/// A running (or exited) guest. Dropping it ends `run.sh` and QEMU, and
/// prints the whole log when the thread is panicking, so a failed test
/// shows the serial console.
pub struct Guest {
    id: usize,
    options: GuestOptions,
    child: Child,
    /// `run.sh`'s stdin, which QEMU's `-serial stdio` passes to COM1.
    console_input: ChildStdin,
    /// The console's Unix socket, with `console_socket` set.
    console_socket: Option<PathBuf>,
    exit_status: Option<ExitStatus>,
    log: Arc<SerialLog>,
    // Fields drop after `Drop::drop` has ended the process, so the ports and
    // the slot are released only once QEMU is gone.
    lease: Option<PortLease>,
    _slot: GuestSlot,
}

impl Guest {
    /// Starts `./run.sh --no-build` with `options` and free forwarded
    /// ports, and returns once QEMU has bound those ports (or has exited). It
    /// does not wait for the kernel; use [`Guest::wait_for_listening`].
    ///
    /// # Errors
    /// A missing kernel image, no free slot or ports, a failed spawn, or
    /// QEMU failing to bind its ports on every attempt.
    pub fn boot(options: GuestOptions) -> Result<Guest, GuestError> {
        let image = kernel_image();
        if !image.is_file() {
            return Err(GuestError::ImageMissing { path: image });
        }
        let slot = acquire_slot(SLOT_TIMEOUT)?;

        let mut last_stderr = String::new();
        for _ in 0..MAX_BOOT_ATTEMPTS {
            let lease = if options.no_nic {
                None
            } else {
                Some(lease_ports(options.data_port_count)?)
            };
            let ports = lease.as_ref().map(|lease| &lease.ports);
            let socket_path = console_socket_path(&options);
            let (mut child, console_input, log) = spawn_run_sh(&options, ports, socket_path.as_deref())?;

            match wait_for_forwarding(&mut child, &log, ports)? {
                Forwarding::Ready(exit_status) => {
                    let id = NEXT_GUEST_ID.fetch_add(1, Ordering::Relaxed);
                    return Ok(Guest {
                        id,
                        options,
                        child,
                        console_input,
                        console_socket: socket_path,
                        exit_status,
                        log,
                        lease,
                        _slot: slot,
                    });
                }
                // Another process took a port between the probe and QEMU's
                // bind; the next attempt leases a new run.
                Forwarding::PortTaken => last_stderr = log.render(),
            }
        }
        Err(GuestError::HostForwarding {
            attempts: MAX_BOOT_ATTEMPTS,
            stderr: last_stderr,
        })
    }

    /// Boots and waits for [`LISTENING_LINE`].
    ///
    /// # Panics
    /// When the boot or the wait fails; the guest's log is printed.
    pub fn boot_to_listening(options: GuestOptions) -> Guest {
        let summary = options.to_string();
        let guest =
            Guest::boot(options).unwrap_or_else(|error| panic!("boot ({summary}) failed: {error}"));
        if let Err(error) = guest.wait_for_listening() {
            panic!("guest {} ({summary}) did not come up: {error}", guest.id);
        }
        guest
    }

    /// Returns the options the guest was booted with.
    pub fn options(&self) -> &GuestOptions {
        &self.options
    }

    /// Returns the forwarded host ports.
    ///
    /// # Panics
    /// When the guest was booted with `no_nic`, which forwards nothing.
    pub fn ports(&self) -> &ForwardedPorts {
        &self
            .lease
            .as_ref()
            .expect("a guest booted with no_nic has no forwarded ports")
            .ports
    }

    /// Returns the host address forwarded to the echo service.
    pub fn echo_address(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.ports().echo))
    }

    /// Returns the captured output.
    pub fn log(&self) -> &SerialLog {
        &self.log
    }

    /// Waits for a serial line containing `needle`, searching the whole log.
    ///
    /// # Errors
    /// See [`SerialLog::wait_for_line`].
    pub fn wait_for_line(&self, needle: &str, timeout: Duration) -> Result<FoundLine, GuestError> {
        self.log.wait_for_line(0, needle, timeout)
    }

    /// Waits up to [`BOOT_TIMEOUT`] for [`LISTENING_LINE`].
    ///
    /// # Errors
    /// See [`SerialLog::wait_for_line`].
    pub fn wait_for_listening(&self) -> Result<FoundLine, GuestError> {
        self.wait_for_line(LISTENING_LINE, BOOT_TIMEOUT)
    }

    /// Returns an error if the kernel has printed a fault line or the guest
    /// has exited. Call it after a check, because a kernel can fail while
    /// the host side still looks fine.
    ///
    /// # Errors
    /// [`GuestError::KernelFault`], or [`GuestError::UnexpectedExit`] with
    /// the exit status.
    pub fn check_running(&mut self) -> Result<(), GuestError> {
        if let Some(line) = self.log.kernel_fault() {
            return Err(GuestError::KernelFault { line });
        }
        match self.try_exit_status()? {
            Some(status) => Err(GuestError::UnexpectedExit {
                code: status.code(),
            }),
            None => Ok(()),
        }
    }

    /// Waits for `run.sh` to exit and returns its exit status, once the
    /// output is complete.
    ///
    /// # Errors
    /// [`GuestError::ExitTimeout`] after `timeout` (the guest keeps
    /// running), [`GuestError::KilledBySignal`] when `run.sh` had no exit
    /// status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<i32, GuestError> {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.try_exit_status()? {
                break status;
            }
            if Instant::now() >= deadline {
                return Err(GuestError::ExitTimeout { timeout });
            }
            thread::sleep(POLL_INTERVAL);
        };
        self.log.wait_closed(OUTPUT_DRAIN_TIMEOUT);
        status.code().ok_or(GuestError::KilledBySignal {
            signal: status.signal(),
        })
    }

    /// Connects to the console socket (booted with `console_socket`).
    ///
    /// # Errors
    /// The guest has no console socket, or it does not accept a connection
    /// within `timeout`.
    pub fn console(&self, timeout: Duration) -> io::Result<crate::console::ConsoleSocket> {
        let path = self.console_socket.as_deref().ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, "the guest was booted without console_socket")
        })?;
        crate::console::ConsoleSocket::connect(path, timeout)
    }

    /// Returns the PID of QEMU, the child of run.sh, for CPU-time
    /// measurements.
    pub fn qemu_pid(&self) -> Option<u32> {
        let parent = self.child.id();
        std::fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // Fields after the command name (which may contain spaces) start
            // with the state, then the parent PID.
            let after_name = stat.rsplit_once(')')?.1;
            let parent_pid: u32 = after_name.split_whitespace().nth(1)?.parse().ok()?;
            let name = stat.split_once('(')?.1.split_once(')')?.0;
            (parent_pid == parent && name.starts_with("qemu-system")).then_some(pid)
        })
    }

    /// Types `line` on the serial console, followed by Enter.
    ///
    /// # Errors
    /// Writing to the pipe fails, for example once the guest has exited.
    pub fn send_console_line(&mut self, line: &str) -> io::Result<()> {
        // The console's line editor ends a line at a carriage return.
        self.console_input
            .write_all(format!("{line}\r").as_bytes())?;
        self.console_input.flush()
    }

    /// Prints the whole log to stderr, which the test harness shows for a
    /// failed test.
    pub fn print_log(&self) {
        eprintln!(
            "\n===== guest {} (./run.sh --no-build {}) output =====\n{}===== end of guest {} output =====",
            self.id,
            self.options,
            self.log.render(),
            self.id
        );
    }

    fn try_exit_status(&mut self) -> Result<Option<ExitStatus>, GuestError> {
        if self.exit_status.is_none() {
            self.exit_status = self
                .child
                .try_wait()
                .map_err(|source| GuestError::Process {
                    action: "poll run.sh",
                    source,
                })?;
        }
        Ok(self.exit_status)
    }

    /// Ends `run.sh` and QEMU: SIGTERM to the process group, then SIGKILL
    /// if it is still running after [`TERMINATE_GRACE`].
    fn terminate(&mut self) {
        // Once reaped, the PID (and so the group ID) may belong to an
        // unrelated process; a child that is not yet reaped keeps it ours.
        if self.exit_status.is_some() {
            return;
        }
        signal_group(self.child.id(), "TERM");
        let deadline = Instant::now() + TERMINATE_GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exit_status = Some(status);
                return;
            }
            thread::sleep(POLL_INTERVAL);
        }
        signal_group(self.child.id(), "KILL");
        self.exit_status = self.child.wait().ok();
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        if thread::panicking() {
            self.print_log();
        }
        self.terminate();
    }
}

/// Sends `signal` to the process group that `run.sh` leads. Its group ID
/// is its PID because it was started with `process_group(0)`; the group
/// holds only `run.sh` and the QEMU it started.
fn signal_group(leader_pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg("--")
        .arg(format!("-{leader_pid}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if let Err(error) = status {
        eprintln!("cannot run kill -{signal} for process group {leader_pid}: {error}");
    }
}

/// Returns a fresh socket path for a guest's console, or `None` when the
/// options keep the console on stdin.
fn console_socket_path(options: &GuestOptions) -> Option<PathBuf> {
    static NEXT_SOCKET: AtomicUsize = AtomicUsize::new(1);
    options.console_socket.then(|| {
        let number = NEXT_SOCKET.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("vb-console-{}-{number}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        path
    })
}

fn spawn_run_sh(
    options: &GuestOptions,
    ports: Option<&ForwardedPorts>,
    console_socket: Option<&Path>,
) -> Result<(Child, ChildStdin, Arc<SerialLog>), GuestError> {
    let root = repository_root();
    let mut command = Command::new(root.join("run.sh"));
    command
        .current_dir(&root)
        .args(run_sh_arguments(options, ports));
    if let Some(path) = console_socket {
        command.arg("--serial").arg(format!("socket:{}", path.display()));
    }
    // Its own process group lets drop signal QEMU together with run.sh, even
    // in the instant before run.sh has installed its trap.
    command
        .process_group(0)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());

    let mut child = command.spawn().map_err(|source| GuestError::Spawn {
        command: format!("{command:?}"),
        source,
    })?;
    let log = Arc::new(SerialLog::default());
    let stdin = child.stdin.take().expect("stdin was configured as a pipe");
    let stdout = child
        .stdout
        .take()
        .expect("stdout was configured as a pipe");
    let stderr = child
        .stderr
        .take()
        .expect("stderr was configured as a pipe");
    log.follow(stdout, Stream::Serial);
    log.follow(stderr, Stream::Stderr);
    Ok((child, stdin, log))
}

fn run_sh_arguments(options: &GuestOptions, ports: Option<&ForwardedPorts>) -> Vec<String> {
    let mut arguments: Vec<String> = vec![
        "--no-build".into(),
        "--machine".into(),
        options.machine.run_sh_name().into(),
        "--firmware".into(),
        options.firmware.run_sh_name().into(),
    ];
    if !options.append.is_empty() {
        arguments.extend(["--append".into(), options.append.clone()]);
    }
    if !options.nic_options.is_empty() {
        arguments.extend(["--nic-options".into(), options.nic_options.clone()]);
    }
    if options.no_nic {
        arguments.push("--no-nic".into());
    }
    if let Some(ports) = ports {
        arguments.extend([
            "--echo-port".into(),
            ports.echo.to_string(),
            "--discard-port".into(),
            ports.discard.to_string(),
            "--chargen-port".into(),
            ports.chargen.to_string(),
            "--netperf-port".into(),
            ports.netperf_control.to_string(),
            "--data-ports".into(),
            format!("{}-{}", ports.data.start(), ports.data.end()),
        ]);
    }
    if !options.extra_qemu_args.is_empty() {
        arguments.push("--".into());
        arguments.extend(options.extra_qemu_args.iter().cloned());
    }
    arguments
}

enum Forwarding {
    /// QEMU has bound the ports, or exited for another reason (its status).
    Ready(Option<ExitStatus>),
    /// QEMU exited because a forwarded port was taken.
    PortTaken,
}

/// Waits until QEMU has bound the forwarded ports, the kernel has printed
/// a line, or the process has exited.
fn wait_for_forwarding(
    child: &mut Child,
    log: &SerialLog,
    ports: Option<&ForwardedPorts>,
) -> Result<Forwarding, GuestError> {
    let Some(ports) = ports else {
        return Ok(Forwarding::Ready(None));
    };
    let deadline = Instant::now() + BOOT_TIMEOUT;
    let mut bound_since: Option<Instant> = None;
    while Instant::now() < deadline {
        let exit_status = child.try_wait().map_err(|source| GuestError::Process {
            action: "poll run.sh",
            source,
        })?;
        if let Some(status) = exit_status {
            log.wait_closed(OUTPUT_DRAIN_TIMEOUT);
            let port_taken = log.lines().iter().any(|line| {
                line.stream == Stream::Stderr && line.text.contains(HOST_FORWARDING_FAILURE)
            });
            return Ok(if port_taken {
                Forwarding::PortTaken
            } else {
                Forwarding::Ready(Some(status))
            });
        }

        if log.lines().iter().any(|line| line.stream == Stream::Serial) {
            // The kernel runs, so QEMU is past its network setup.
            return Ok(Forwarding::Ready(None));
        }

        // QEMU applies the forwarding rules one at a time, and QEMU 7.2 goes
        // from the last one written (UDP on the last data port) to the first
        // (TCP echo). With both ends bound, every rule is applied whichever
        // way QEMU goes, unless another process holds one of those two ports.
        // QEMU then exits right after binding the rest, so the ports must
        // stay bound, and QEMU running, for FORWARDING_SETTLE.
        let ends_bound = !tcp_port_is_free(ports.echo) && !udp_port_is_free(*ports.data.end());
        if !ends_bound {
            bound_since = None;
        } else if bound_since.get_or_insert_with(Instant::now).elapsed() >= FORWARDING_SETTLE {
            return Ok(Forwarding::Ready(None));
        }
        thread::sleep(POLL_INTERVAL);
    }
    // Still starting after the boot timeout: later waits report it with the
    // log.
    Ok(Forwarding::Ready(None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_name_every_option_and_port() {
        let options = GuestOptions {
            machine: Machine::Pc,
            firmware: Firmware::SeaBios,
            append: "barriers=strong log=debug".into(),
            nic_options: "event_idx=off".into(),
            no_nic: false,
            extra_qemu_args: vec!["-smp".into(), "2".into()],
            data_port_count: 2,
            console_socket: false,
        };
        let ports = ForwardedPorts {
            echo: 40000,
            discard: 40001,
            chargen: 40002,
            netperf_control: 40003,
            data: 40004..=40005,
        };
        let expected = "--no-build --machine pc --firmware seabios \
             --append barriers=strong%log=debug --nic-options event_idx=off \
             --echo-port 40000 --discard-port 40001 --chargen-port 40002 \
             --netperf-port 40003 --data-ports 40004-40005 -- -smp 2";
        let joined: Vec<String> = run_sh_arguments(&options, Some(&ports))
            .iter()
            .map(|argument| argument.replace(' ', "%"))
            .collect();
        assert_eq!(joined.join(" "), expected);
    }

    #[test]
    fn no_nic_forwards_nothing() {
        let options = GuestOptions {
            no_nic: true,
            ..GuestOptions::default()
        };
        let arguments = run_sh_arguments(&options, None);
        assert_eq!(
            arguments,
            [
                "--no-build",
                "--machine",
                "q35",
                "--firmware",
                "qboot",
                "--no-nic"
            ]
        );
    }

    #[test]
    fn display_matches_run_sh_syntax() {
        let options = GuestOptions {
            append: "bogus=1".into(),
            ..GuestOptions::default()
        };
        assert_eq!(
            options.to_string(),
            "--machine q35 --firmware qboot --append 'bogus=1'"
        );
    }

    #[test]
    fn run_sh_is_at_repository_root() {
        assert!(repository_root().join("run.sh").is_file());
    }

    /// Starts run.sh after another socket has bound the TCP echo port (when
    /// `tcp_echo`) or UDP on the last data port, and checks that the boot is
    /// seen to fail for that reason.
    fn check_taken_port_detected(tcp_echo: bool) {
        assert!(
            kernel_image().is_file(),
            "run ./run.sh build before the tests"
        );
        let lease = lease_ports(1).unwrap();
        let ports = &lease.ports;
        let _tcp_occupant = tcp_echo
            .then(|| std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, ports.echo)).unwrap());
        let _udp_occupant = (!tcp_echo)
            .then(|| std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, *ports.data.end())).unwrap());

        let (mut child, _stdin, log) = spawn_run_sh(&GuestOptions::default(), Some(ports), None).unwrap();
        let outcome = wait_for_forwarding(&mut child, &log, Some(ports)).unwrap();
        if !matches!(outcome, Forwarding::PortTaken) {
            signal_group(child.id(), "KILL");
            let _ = child.wait();
            panic!("a taken port was not detected; output:\n{}", log.render());
        }
    }

    // QEMU exits at the taken port's rule, before the guest runs, so these
    // tests need no guest slot.
    #[test]
    fn taken_echo_port_is_detected() {
        check_taken_port_detected(true);
    }

    #[test]
    fn taken_data_port_is_detected() {
        check_taken_port_detected(false);
    }
}
