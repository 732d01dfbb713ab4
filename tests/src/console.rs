//! A client for the kernel's serial console on a Unix socket (`run.sh
//! --serial socket:PATH`): it sends a command line and returns what the
//! kernel printed before the next prompt.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

/// The console's prompt, printed after each command's output.
pub const PROMPT: &str = "> ";

/// A connected console.
pub struct ConsoleSocket {
    stream: UnixStream,
    pending: String,
}

impl ConsoleSocket {
    /// Connects to the socket at `path`, retrying until QEMU has created it
    /// or `timeout` has passed.
    pub fn connect(path: &Path, timeout: Duration) -> io::Result<ConsoleSocket> {
        let deadline = Instant::now() + timeout;
        loop {
            match UnixStream::connect(path) {
                Ok(stream) => return Ok(ConsoleSocket { stream, pending: String::new() }),
                Err(error) if Instant::now() >= deadline => return Err(error),
                Err(_) => thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Sends `line` and Enter, then returns the output between the echoed
    /// line and the next prompt, with carriage returns removed.
    ///
    /// # Errors
    /// The socket fails, or no prompt follows within `timeout`.
    pub fn command(&mut self, line: &str, timeout: Duration) -> io::Result<String> {
        self.pending.clear();
        self.stream.write_all(format!("{line}\r").as_bytes())?;
        let echoed = format!("{line}\n");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(start) = self.pending.find(&echoed) {
                let after = start + echoed.len();
                if let Some(end) = self.pending[after..].find(&format!("\n{PROMPT}")) {
                    return Ok(self.pending[after..after + end + 1].to_string());
                }
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no prompt after '{line}' within {timeout:?}; received: {:?}", self.pending),
                ));
            }
            self.read_some(remaining)?;
        }
    }

    /// Sends `line` and Enter without waiting for output (for `exit`).
    pub fn send(&mut self, line: &str) -> io::Result<()> {
        self.stream.write_all(format!("{line}\r").as_bytes())
    }

    fn read_some(&mut self, timeout: Duration) -> io::Result<()> {
        self.stream.set_read_timeout(Some(timeout.max(Duration::from_millis(1))))?;
        let mut buffer = [0u8; 4096];
        match self.stream.read(&mut buffer) {
            Ok(0) => Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the console socket closed")),
            Ok(count) => {
                self.pending.push_str(&String::from_utf8_lossy(&buffer[..count]).replace('\r', ""));
                Ok(())
            }
            Err(error) if matches!(error.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => Ok(()),
            Err(error) => Err(error),
        }
    }
}

/// Returns the value of `key=` in the first line of `output` that starts
/// with `record` and contains every `filter` (such as `name=receive`).
pub fn field(output: &str, record: &str, filters: &[&str], key: &str) -> Option<u64> {
    let line = output.lines().find(|line| {
        line.split_whitespace().next() == Some(record) && filters.iter().all(|filter| line.split_whitespace().any(|word| word == *filter))
    })?;
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
        .and_then(|value| value.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_reads_filtered_records() {
        let output = "queue index=0 name=receive adds=5 used=3\nqueue index=1 name=transmit adds=7 used=6\n";
        assert_eq!(field(output, "queue", &["name=transmit"], "adds"), Some(7));
        assert_eq!(field(output, "queue", &["name=receive"], "used"), Some(3));
        assert_eq!(field(output, "queue", &["name=other"], "used"), None);
        assert_eq!(field(output, "nic", &[], "adds"), None);
    }
}
