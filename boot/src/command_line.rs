//! The kernel command line (`-append`): space-separated `KEY=VALUE` options.
//!
//! An unknown key or a malformed value is an error that names the option, so
//! that boot stops with a message instead of running with a setting the user
//! did not ask for.

use core::fmt;
use core::net::Ipv4Addr;
use core::str::FromStr;

/// Memory-barrier mode of the virtqueues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Barriers {
    /// SMP barriers: compiler barriers and one locked instruction.
    Weak,
    /// Mandatory barriers: `lfence`, `sfence`, `mfence`.
    Strong,
}

/// Wait mode of the kernel: interrupts or polling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitMode {
    /// Sleep until an interrupt or timer; the CPU halts when idle.
    Interrupt,
    /// Spin on the used rings; the CPU never halts.
    Poll,
}

/// Maximum log level on the console.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    Off,
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

/// The options the kernel understands, with their defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// `ip=ADDR/PREFIX`: the interface address (default 10.0.2.15/24, as
    /// QEMU user networking expects).
    pub address: Ipv4Addr,
    pub prefix_length: u8,
    /// `gw=ADDR`: the default gateway (default 10.0.2.2).
    pub gateway: Ipv4Addr,
    /// `log=off|error|warn|info|debug|trace` (default info).
    pub log_level: LogLevel,
    /// `barriers=weak|strong` (default weak, as Linux uses on virtio-pci).
    pub barriers: Barriers,
    /// `netperf_data_ports=FIRST-LAST`: the ports the netperf service binds
    /// for data connections when netperf requests none (default 12866-12869).
    /// QEMU user networking forwards them with the same numbers.
    pub netperf_data_ports: (u16, u16),
    /// `mode=irq|poll` (default irq).
    pub mode: WaitMode,
    /// `barrier_bench=on|off|ITERATIONS`: run the barrier microbenchmark at
    /// boot with this many barriers per timed loop (default off).
    pub barrier_bench_iterations: Option<u32>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            address: Ipv4Addr::new(10, 0, 2, 15),
            prefix_length: 24,
            gateway: Ipv4Addr::new(10, 0, 2, 2),
            log_level: LogLevel::Info,
            barriers: Barriers::Weak,
            netperf_data_ports: (12866, 12869),
            mode: WaitMode::Interrupt,
            barrier_bench_iterations: None,
        }
    }
}

/// Barriers per timed loop for `barrier_bench=on`.
pub const DEFAULT_BARRIER_BENCH_ITERATIONS: u32 = 100_000;

/// The option names, for the error message that lists them.
pub const KNOWN_OPTIONS: &str =
    "ip=ADDR/PREFIX gw=ADDR log=LEVEL barriers=weak|strong mode=irq|poll netperf_data_ports=FIRST-LAST \
     barrier_bench=on|off|ITERATIONS";

/// Error in a command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandLineError<'a> {
    /// The key is not one of [`KNOWN_OPTIONS`].
    UnknownOption { key: &'a str },
    /// A token has no `=`.
    MissingValue { token: &'a str },
    /// The value does not parse; `expected` describes the valid form.
    InvalidValue { key: &'a str, value: &'a str, expected: &'static str },
}

impl fmt::Display for CommandLineError<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownOption { key } => write!(
                formatter,
                "unknown option '{key}' (known options: {KNOWN_OPTIONS})"
            ),
            Self::MissingValue { token } => {
                write!(formatter, "option '{token}' has no value: write KEY=VALUE")
            }
            Self::InvalidValue { key, value, expected } => {
                write!(formatter, "invalid value '{value}' for option '{key}': expected {expected}")
            }
        }
    }
}

impl Options {
    /// Parses a command line; the first bad option is the error.
    pub fn parse(command_line: &str) -> Result<Self, CommandLineError<'_>> {
        let mut options = Self::default();
        for token in command_line.split_ascii_whitespace() {
            let Some((key, value)) = token.split_once('=') else {
                return Err(CommandLineError::MissingValue { token });
            };
            options.apply(key, value)?;
        }
        Ok(options)
    }

    fn apply<'a>(&mut self, key: &'a str, value: &'a str) -> Result<(), CommandLineError<'a>> {
        let invalid = |expected| CommandLineError::InvalidValue { key, value, expected };
        match key {
            "ip" => {
                let (address, prefix) = value
                    .split_once('/')
                    .ok_or_else(|| invalid("ADDR/PREFIX, such as 10.0.2.15/24"))?;
                self.address =
                    Ipv4Addr::from_str(address).map_err(|_| invalid("an IPv4 address before '/'"))?;
                self.prefix_length = match u8::from_str(prefix) {
                    Ok(length) if length <= 32 => length,
                    _ => return Err(invalid("a prefix length from 0 to 32 after '/'")),
                };
            }
            "gw" => {
                self.gateway = Ipv4Addr::from_str(value).map_err(|_| invalid("an IPv4 address"))?;
            }
            "log" => {
                self.log_level = match value {
                    "off" => LogLevel::Off,
                    "error" => LogLevel::Error,
                    "warn" => LogLevel::Warn,
                    "info" => LogLevel::Info,
                    "debug" => LogLevel::Debug,
                    "trace" => LogLevel::Trace,
                    _ => return Err(invalid("off, error, warn, info, debug or trace")),
                };
            }
            "barriers" => {
                self.barriers = match value {
                    "weak" => Barriers::Weak,
                    "strong" => Barriers::Strong,
                    _ => return Err(invalid("weak or strong")),
                };
            }
            "mode" => {
                self.mode = match value {
                    "irq" => WaitMode::Interrupt,
                    "poll" => WaitMode::Poll,
                    _ => return Err(invalid("irq or poll")),
                };
            }
            "barrier_bench" => {
                self.barrier_bench_iterations = match value {
                    "off" => None,
                    "on" => Some(DEFAULT_BARRIER_BENCH_ITERATIONS),
                    _ => match u32::from_str(value) {
                        Ok(iterations) if iterations > 0 => Some(iterations),
                        _ => return Err(invalid("on, off or a positive number of iterations")),
                    },
                };
            }
            "netperf_data_ports" => {
                let expected = "FIRST-LAST, two ports from 1 to 65535 with FIRST <= LAST";
                let (first, last) = value.split_once('-').ok_or_else(|| invalid(expected))?;
                let first = u16::from_str(first).map_err(|_| invalid(expected))?;
                let last = u16::from_str(last).map_err(|_| invalid(expected))?;
                if first == 0 || first > last {
                    return Err(invalid(expected));
                }
                self.netperf_data_ports = (first, last);
            }
            _ => return Err(CommandLineError::UnknownOption { key }),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn empty_line_gives_defaults() {
        assert_eq!(Options::parse("").unwrap(), Options::default());
        assert_eq!(Options::parse("   ").unwrap(), Options::default());
    }

    #[test]
    fn every_option_parses() {
        let options = Options::parse(
            "ip=192.168.7.2/16 gw=192.168.0.1 log=debug barriers=strong mode=poll netperf_data_ports=5000-5003 \
             barrier_bench=5000",
        )
        .unwrap();
        assert_eq!(options.address, Ipv4Addr::new(192, 168, 7, 2));
        assert_eq!(options.prefix_length, 16);
        assert_eq!(options.gateway, Ipv4Addr::new(192, 168, 0, 1));
        assert_eq!(options.log_level, LogLevel::Debug);
        assert_eq!(options.barriers, Barriers::Strong);
        assert_eq!(options.netperf_data_ports, (5000, 5003));
        assert_eq!(options.mode, WaitMode::Poll);
        assert_eq!(options.barrier_bench_iterations, Some(5000));
        assert_eq!(
            Options::parse("barrier_bench=on").unwrap().barrier_bench_iterations,
            Some(DEFAULT_BARRIER_BENCH_ITERATIONS)
        );
    }

    #[test]
    fn unknown_option_is_named() {
        let error = Options::parse("log=info colour=red").unwrap_err();
        assert_eq!(error, CommandLineError::UnknownOption { key: "colour" });
        assert!(error.to_string().contains("'colour'"));
    }

    #[test]
    fn malformed_values_are_rejected() {
        for line in [
            "ip=10.0.2.15",
            "ip=10.0.2/24",
            "ip=10.0.2.15/33",
            "gw=gateway",
            "log=loud",
            "barriers=medium",
            "mode=sometimes",
            "barrier_bench=0",
            "barrier_bench=maybe",
            "netperf_data_ports=5000",
            "netperf_data_ports=5003-5000",
            "netperf_data_ports=0-10",
            "netperf_data_ports=1-70000",
        ] {
            let error = Options::parse(line).unwrap_err();
            assert!(
                matches!(error, CommandLineError::InvalidValue { .. }),
                "{line}: {error:?}"
            );
        }
    }

    #[test]
    fn token_without_value_is_rejected() {
        assert_eq!(
            Options::parse("barriers").unwrap_err(),
            CommandLineError::MissingValue { token: "barriers" }
        );
    }
}
