//! The guest's output: every line `run.sh` writes to stdout (the serial
//! console, COM1) and to stderr (its own messages and QEMU's), kept whole
//! for the test's lifetime and searchable while the guest runs.

use std::io::{BufRead, BufReader, Read};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::GuestError;

/// Markers of a kernel failure on the serial console. A line containing one
/// always fails a test.
pub const KERNEL_FAULT_MARKERS: [&str; 2] = ["KERNEL PANIC", "CPU EXCEPTION"];

/// The stream a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// `run.sh`'s stdout, which is COM1.
    Serial,
    /// `run.sh`'s stderr: its own messages and QEMU's errors.
    Stderr,
}

/// One line of output, without its line terminator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    pub stream: Stream,
    pub text: String,
}

/// A line found by [`SerialLog::wait_for_line`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoundLine {
    /// The line's position in the log; search from `index + 1` for the
    /// next occurrence.
    pub index: usize,
    pub text: String,
}

#[derive(Default)]
struct LogState {
    lines: Vec<LogLine>,
    /// Streams whose reader has not yet seen end of file.
    open_streams: usize,
}

/// The shared log that reader threads append to.
#[derive(Default)]
pub struct SerialLog {
    state: Mutex<LogState>,
    changed: Condvar,
}

impl SerialLog {
    /// Starts a thread that appends every line of `source` to the log until
    /// end of file.
    pub fn follow(self: &Arc<Self>, source: impl Read + Send + 'static, stream: Stream) {
        self.lock().open_streams += 1;
        let log = Arc::clone(self);
        thread::spawn(move || {
            let mut reader = BufReader::new(source);
            let mut bytes = Vec::new();
            loop {
                bytes.clear();
                match reader.read_until(b'\n', &mut bytes) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => log.push(stream, &bytes),
                }
            }
            log.lock().open_streams -= 1;
            log.changed.notify_all();
        });
    }

    fn push(&self, stream: Stream, bytes: &[u8]) {
        // The serial console ends lines with "\r\n".
        let text = String::from_utf8_lossy(bytes)
            .trim_end_matches(['\r', '\n'])
            .to_owned();
        self.lock().lines.push(LogLine { stream, text });
        self.changed.notify_all();
    }

    fn lock(&self) -> MutexGuard<'_, LogState> {
        // A reader thread holds the lock only to push a line, so a poisoned
        // lock still guards a consistent list.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Returns a copy of every line so far.
    pub fn lines(&self) -> Vec<LogLine> {
        self.lock().lines.clone()
    }

    /// Returns the number of lines so far.
    pub fn len(&self) -> usize {
        self.lock().lines.len()
    }

    /// Returns whether no line has arrived yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Returns whether both streams have reached end of file, which happens
    /// once `run.sh` and QEMU have exited.
    pub fn is_closed(&self) -> bool {
        self.lock().open_streams == 0
    }

    /// Returns the first serial line that contains a kernel fault marker.
    pub fn kernel_fault(&self) -> Option<String> {
        self.lock()
            .lines
            .iter()
            .find(|line| is_kernel_fault(line))
            .map(|line| line.text.clone())
    }

    /// Waits for a serial line at or after `first_index` that contains
    /// `needle`.
    ///
    /// # Errors
    /// [`GuestError::KernelFault`] as soon as a serial line contains a kernel
    /// fault marker, [`GuestError::ExitedBeforeLine`] when the output ends
    /// first, and [`GuestError::LineTimeout`] after `timeout`.
    pub fn wait_for_line(
        &self,
        first_index: usize,
        needle: &str,
        timeout: Duration,
    ) -> Result<FoundLine, GuestError> {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        let mut next_index = first_index;
        loop {
            for (index, line) in state.lines.iter().enumerate().skip(next_index) {
                if is_kernel_fault(line) {
                    return Err(GuestError::KernelFault {
                        line: line.text.clone(),
                    });
                }
                if line.stream == Stream::Serial && line.text.contains(needle) {
                    return Ok(FoundLine {
                        index,
                        text: line.text.clone(),
                    });
                }
            }
            next_index = next_index.max(state.lines.len());

            if state.open_streams == 0 {
                return Err(GuestError::ExitedBeforeLine {
                    needle: needle.to_owned(),
                });
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(GuestError::LineTimeout {
                    needle: needle.to_owned(),
                    timeout,
                });
            }
            state = self
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
    }

    /// Waits until both streams reach end of file, and returns whether they
    /// did within `timeout`.
    pub fn wait_closed(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        while state.open_streams > 0 {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            state = self
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
        true
    }

    /// Formats the whole log, stderr lines marked, for a failure report.
    pub fn render(&self) -> String {
        let mut text = String::new();
        for line in self.lock().lines.iter() {
            if line.stream == Stream::Stderr {
                text.push_str("stderr| ");
            }
            text.push_str(&line.text);
            text.push('\n');
        }
        text
    }
}

fn is_kernel_fault(line: &LogLine) -> bool {
    line.stream == Stream::Serial
        && KERNEL_FAULT_MARKERS
            .iter()
            .any(|marker| line.text.contains(marker))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_of(serial: &'static str, stderr: &'static str) -> Arc<SerialLog> {
        let log = Arc::new(SerialLog::default());
        log.follow(serial.as_bytes(), Stream::Serial);
        log.follow(stderr.as_bytes(), Stream::Stderr);
        assert!(
            log.wait_closed(Duration::from_secs(5)),
            "readers of in-memory text must finish"
        );
        log
    }

    /// A stream that stays open, with no data, until its sender is dropped.
    struct BlockingReader(std::sync::mpsc::Receiver<()>);

    impl Read for BlockingReader {
        fn read(&mut self, _buffer: &mut [u8]) -> std::io::Result<usize> {
            let _ = self.0.recv();
            Ok(0)
        }
    }

    #[test]
    fn finds_line_and_strips_terminators() {
        let log = log_of("first\r\nsecond line\r\nthird", "");
        let found = log
            .wait_for_line(0, "second", Duration::from_secs(1))
            .unwrap();
        assert_eq!(
            found,
            FoundLine {
                index: 1,
                text: "second line".to_owned()
            }
        );
        let last = log
            .wait_for_line(0, "third", Duration::from_secs(1))
            .unwrap();
        assert_eq!(last.text, "third");
    }

    #[test]
    fn search_starts_at_first_index() {
        let log = log_of("tick 1\ntick 2\n", "");
        assert_eq!(
            log.wait_for_line(1, "tick", Duration::from_secs(1))
                .unwrap()
                .index,
            1
        );
        assert!(matches!(
            log.wait_for_line(2, "tick", Duration::from_secs(1)),
            Err(GuestError::ExitedBeforeLine { .. })
        ));
    }

    #[test]
    fn stderr_lines_never_match() {
        let log = log_of("", "echo listening\n");
        assert!(matches!(
            log.wait_for_line(0, "echo listening", Duration::from_secs(1)),
            Err(GuestError::ExitedBeforeLine { .. })
        ));
        assert_eq!(log.render(), "stderr| echo listening\n");
    }

    #[test]
    fn kernel_fault_ends_wait() {
        let log = log_of("boot\n\nKERNEL PANIC: at net/src/lib.rs:1\nready\n", "");
        match log.wait_for_line(0, "ready", Duration::from_secs(1)) {
            Err(GuestError::KernelFault { line }) => assert!(line.starts_with("KERNEL PANIC")),
            other => panic!("expected a kernel fault, got {other:?}"),
        }
        assert!(log.kernel_fault().is_some());
    }

    #[test]
    fn wait_times_out_while_open() {
        let log = Arc::new(SerialLog::default());
        let (_sender, receiver) = std::sync::mpsc::channel();
        log.follow(BlockingReader(receiver), Stream::Serial);
        let started = Instant::now();
        assert!(matches!(
            log.wait_for_line(0, "never", Duration::from_millis(200)),
            Err(GuestError::LineTimeout { .. })
        ));
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert!(!log.is_closed());
    }
}
