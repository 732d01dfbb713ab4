//! Host-side harness for the QEMU integration tests.
//!
//! A test boots the kernel with [`Guest::boot`], which runs
//! `./run.sh --no-build` and so boots the release image that
//! `./run.sh build` produced. It then waits for a serial line, talks to the
//! guest's services over user-mode port forwarding on 127.0.0.1, and checks
//! the exit status or the log. Every wait has a timeout, so a hung guest
//! fails its test.
//!
//! - [`guest`]: starting `run.sh`, the forwarded ports, waiting for lines
//!   and for the exit status, ending QEMU on drop.
//! - [`serial_log`]: the captured stdout (COM1) and stderr of `run.sh`,
//!   printed in full when a test fails.
//! - [`ports`]: free host ports, never shared between live guests of this
//!   process.
//! - [`slots`]: at most two guests at once, because each keeps a host core
//!   busy under TCG.
//! - [`console`]: the serial console over a Unix socket.
//! - [`echo`]: TCP and UDP clients for the echo service.
//! - [`echo_checks`]: the echo checks the tests share (bulk, concurrent,
//!   UDP sizes).
//! - [`netperf`]: running the netperf client and reading its report.
//! - [`payload`]: reproducible random payloads and byte-exact comparison.
#![forbid(unsafe_code)]

pub mod console;
pub mod echo;
pub mod echo_checks;
pub mod error;
pub mod guest;
pub mod netperf;
pub mod payload;
pub mod ports;
pub mod serial_log;
pub mod slots;

pub use error::GuestError;
pub use guest::{exit_code, Firmware, Guest, GuestOptions, Machine, BOOT_TIMEOUT, LISTENING_LINE};
pub use ports::ForwardedPorts;
pub use serial_log::{FoundLine, LogLine, SerialLog, Stream};
