//! Counters of the netperf service, for the kernel's console, and the
//! rate-limited warning every counted error produces.

use alloc::rc::Rc;
use core::cell::RefCell;
use core::fmt;

use log::warn;

use crate::netperf::TestKind;

/// Every test kind netperf can request, in the order of
/// [`NetserverStats::tests_started`].
pub const TEST_KINDS: [TestKind; 7] = [
    TestKind::TcpRr,
    TestKind::UdpRr,
    TestKind::TcpCrr,
    TestKind::TcpStream,
    TestKind::TcpMaerts,
    TestKind::TcpCc,
    TestKind::UdpStream,
];

/// A problem the service counted and recovered from. The service keeps
/// accepting control connections after every one of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorReason {
    /// A message type other than DO_OMNI or PASSPHRASE. The reply carries
    /// `serv_errno` 998.
    UnknownRequestType,
    /// A DO_OMNI request the codec rejected (IPv6, bad sizes, unknown
    /// protocol or direction). The reply carries the codec's errno.
    UnsupportedRequest,
    /// A valid test this service does not run: `TCP_CC` and `UDP_STREAM`
    /// (the reply carries `EOPNOTSUPP`), or `UDP_RR` with a message larger
    /// than one unfragmented datagram (`EMSGSIZE`).
    UnsupportedTest,
    /// The requested data port is taken, or every port of the data range
    /// is. The reply carries `EADDRINUSE`.
    DataPortUnavailable,
    /// The control connection reached end-of-file in the middle of a message.
    TruncatedMessage,
    /// The control connection closed or was reset while a test ran, so the
    /// test was aborted.
    ControlClosedDuringTest,
    /// netperf sent a message while a test ran; the test was aborted and the
    /// control connection closed.
    MessageDuringTest,
    /// No byte arrived on an idle control connection for 10 minutes, so the
    /// service closed it.
    ControlIdleTimeout,
    /// A read or write on the control connection failed (reset).
    ControlConnectionFailed,
    /// The server deadline passed before any data connection or datagram
    /// arrived. The results carry zero counts.
    DataConnectionMissing,
    /// The server deadline ended a test that netperf should have ended (by
    /// end-of-file or zero-length datagrams).
    DataPhaseDeadline,
    /// The data connection was reset during `TCP_RR` or `TCP_STREAM`. The
    /// results carry `ECONNRESET`.
    DataConnectionReset,
}

impl ErrorReason {
    /// Every reason, in the order of [`NetserverStats::errors`].
    pub const ALL: [ErrorReason; 12] = [
        ErrorReason::UnknownRequestType,
        ErrorReason::UnsupportedRequest,
        ErrorReason::UnsupportedTest,
        ErrorReason::DataPortUnavailable,
        ErrorReason::TruncatedMessage,
        ErrorReason::ControlClosedDuringTest,
        ErrorReason::MessageDuringTest,
        ErrorReason::ControlIdleTimeout,
        ErrorReason::ControlConnectionFailed,
        ErrorReason::DataConnectionMissing,
        ErrorReason::DataPhaseDeadline,
        ErrorReason::DataConnectionReset,
    ];

    /// Returns a short snake_case name for console output.
    pub const fn name(self) -> &'static str {
        match self {
            ErrorReason::UnknownRequestType => "unknown_request_type",
            ErrorReason::UnsupportedRequest => "unsupported_request",
            ErrorReason::UnsupportedTest => "unsupported_test",
            ErrorReason::DataPortUnavailable => "data_port_unavailable",
            ErrorReason::TruncatedMessage => "truncated_message",
            ErrorReason::ControlClosedDuringTest => "control_closed_during_test",
            ErrorReason::MessageDuringTest => "message_during_test",
            ErrorReason::ControlIdleTimeout => "control_idle_timeout",
            ErrorReason::ControlConnectionFailed => "control_connection_failed",
            ErrorReason::DataConnectionMissing => "data_connection_missing",
            ErrorReason::DataPhaseDeadline => "data_phase_deadline",
            ErrorReason::DataConnectionReset => "data_connection_reset",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for ErrorReason {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

/// A snapshot of the service's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetserverStats {
    /// Control connections accepted.
    pub control_connections: u64,
    /// Tests whose response was sent, by kind in [`TEST_KINDS`] order.
    pub tests_started: [u64; TEST_KINDS.len()],
    /// Tests whose results were sent.
    pub tests_completed: u64,
    /// Tests stopped without results because the control connection ended.
    pub tests_aborted: u64,
    /// Data bytes received over all completed tests.
    pub bytes_received: u64,
    /// Data bytes sent over all completed tests.
    pub bytes_sent: u64,
    /// Counted errors, by reason in [`ErrorReason::ALL`] order.
    pub errors: [u64; ErrorReason::ALL.len()],
}

impl NetserverStats {
    /// Returns how many tests of `kind` started.
    pub fn started(&self, kind: TestKind) -> u64 {
        TEST_KINDS
            .iter()
            .position(|&listed| listed == kind)
            .map_or(0, |index| self.tests_started[index])
    }

    /// Returns how often `reason` occurred.
    pub fn error_count(&self, reason: ErrorReason) -> u64 {
        self.errors[reason.index()]
    }
}

/// The service's counters behind a cloneable handle: the service updates
/// them and the console reads them with [`SharedNetserverStats::snapshot`].
#[derive(Clone, Debug, Default)]
pub struct SharedNetserverStats {
    inner: Rc<RefCell<NetserverStats>>,
}

impl SharedNetserverStats {
    /// Returns a copy of the current counters.
    pub fn snapshot(&self) -> NetserverStats {
        *self.inner.borrow()
    }

    pub(super) fn record_control_connection(&self) {
        self.inner.borrow_mut().control_connections += 1;
    }

    pub(super) fn record_test_started(&self, kind: TestKind) {
        if let Some(index) = TEST_KINDS.iter().position(|&listed| listed == kind) {
            self.inner.borrow_mut().tests_started[index] += 1;
        }
    }

    pub(super) fn record_test_completed(&self, bytes_received: u64, bytes_sent: u64) {
        let mut stats = self.inner.borrow_mut();
        stats.tests_completed += 1;
        stats.bytes_received = stats.bytes_received.wrapping_add(bytes_received);
        stats.bytes_sent = stats.bytes_sent.wrapping_add(bytes_sent);
    }

    pub(super) fn record_test_aborted(&self) {
        self.inner.borrow_mut().tests_aborted += 1;
    }

    /// Counts `reason` and logs a warning on its 1st, 2nd, 4th, 8th, ...
    /// occurrence, so that a flood of bad input cannot flood the console.
    pub(super) fn record_error(
        &self,
        reason: ErrorReason,
        peer: &dyn fmt::Display,
        detail: &dyn fmt::Display,
    ) {
        let count = {
            let mut stats = self.inner.borrow_mut();
            let counter = &mut stats.errors[reason.index()];
            *counter += 1;
            *counter
        };
        if count.is_power_of_two() {
            warn!("netserver: {reason} from {peer}: {detail} (occurrence {count})");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_reasons_index_their_own_slot() {
        for (index, reason) in ErrorReason::ALL.iter().enumerate() {
            assert_eq!(reason.index(), index, "{reason}");
        }
    }

    #[test]
    fn counters_accumulate_per_reason_and_kind() {
        let stats = SharedNetserverStats::default();
        for _ in 0..5 {
            stats.record_error(ErrorReason::TruncatedMessage, &"peer", &"detail");
        }
        stats.record_test_started(TestKind::UdpRr);
        stats.record_test_completed(10, 20);
        stats.record_test_completed(u64::MAX, 0);
        let snapshot = stats.snapshot();
        assert_eq!(snapshot.error_count(ErrorReason::TruncatedMessage), 5);
        assert_eq!(snapshot.error_count(ErrorReason::UnknownRequestType), 0);
        assert_eq!(snapshot.started(TestKind::UdpRr), 1);
        assert_eq!(snapshot.started(TestKind::TcpRr), 0);
        assert_eq!(snapshot.tests_completed, 2);
        assert_eq!(
            snapshot.bytes_received, 9,
            "the byte total wraps instead of panicking"
        );
        assert_eq!(snapshot.bytes_sent, 20);
    }
}
