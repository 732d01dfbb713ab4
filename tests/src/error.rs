//! The harness's error type: what went wrong while starting, watching or
//! stopping a guest.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// A failure to boot, watch or stop a guest.
#[derive(Debug)]
pub enum GuestError {
    /// The kernel image that `./run.sh --no-build` boots does not exist.
    ImageMissing { path: PathBuf },
    /// `run.sh` could not be started.
    Spawn { command: String, source: io::Error },
    /// No run of `count` consecutive ports free for TCP and UDP on 127.0.0.1
    /// was found.
    NoFreePorts { count: u16, attempts: u32 },
    /// QEMU could not bind a forwarded host port on every attempt; `stderr`
    /// is the last attempt's error output.
    HostForwarding { attempts: u32, stderr: String },
    /// Other guests held every slot for longer than `waited`.
    SlotTimeout { waited: Duration },
    /// No log line contained `needle` within `timeout`.
    LineTimeout { needle: String, timeout: Duration },
    /// The guest's output ended (QEMU exited) before a line contained
    /// `needle`.
    ExitedBeforeLine { needle: String },
    /// The kernel printed a panic or CPU exception line.
    KernelFault { line: String },
    /// The guest exited while a test expected it to keep running.
    UnexpectedExit { code: Option<i32> },
    /// The guest was still running after `timeout`.
    ExitTimeout { timeout: Duration },
    /// `run.sh` ended without an exit code, killed by a signal.
    KilledBySignal { signal: Option<i32> },
    /// Waiting for or signalling the `run.sh` process failed.
    Process {
        action: &'static str,
        source: io::Error,
    },
}

impl fmt::Display for GuestError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ImageMissing { path } => write!(
                formatter,
                "kernel image {} not found: run ./run.sh build first",
                path.display()
            ),
            Self::Spawn { command, source } => {
                write!(formatter, "cannot start {command}: {source}")
            }
            Self::NoFreePorts { count, attempts } => write!(
                formatter,
                "no {count} consecutive free ports on 127.0.0.1 found in {attempts} attempts"
            ),
            Self::HostForwarding { attempts, stderr } => write!(
                formatter,
                "QEMU could not bind its forwarded host ports in {attempts} attempts; \
                 last error output:\n{stderr}"
            ),
            Self::SlotTimeout { waited } => {
                write!(formatter, "no guest slot became free within {waited:?}")
            }
            Self::LineTimeout { needle, timeout } => {
                write!(
                    formatter,
                    "timed out after {timeout:?} waiting for a line containing '{needle}'"
                )
            }
            Self::ExitedBeforeLine { needle } => {
                write!(
                    formatter,
                    "the guest exited before printing a line containing '{needle}'"
                )
            }
            Self::KernelFault { line } => write!(formatter, "the kernel failed: {line}"),
            Self::UnexpectedExit { code } => {
                write!(
                    formatter,
                    "the guest exited unexpectedly with status {code:?}"
                )
            }
            Self::ExitTimeout { timeout } => {
                write!(formatter, "the guest was still running after {timeout:?}")
            }
            Self::KilledBySignal { signal } => {
                write!(
                    formatter,
                    "run.sh was killed by signal {signal:?} instead of exiting"
                )
            }
            Self::Process { action, source } => write!(formatter, "cannot {action}: {source}"),
        }
    }
}

impl std::error::Error for GuestError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Spawn { source, .. } | Self::Process { source, .. } => Some(source),
            _ => None,
        }
    }
}
