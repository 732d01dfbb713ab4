//! The life cycle of one control connection, as a pure state machine.
//!
//! [`Session`] turns events from the control connection into [`Action`]s for
//! the service that owns the sockets. It does no I/O and keeps no clock.
//!
//! ```text
//!                 Message(PASSPHRASE)     / Ignore
//!                 Message(other type)     / Reject (serv_errno 998)
//!                 Message(bad DO_OMNI)    / Reject (Unsupported::errno)
//!                 +-----+
//!                 |     v
//!              +-----------+  Message(valid DO_OMNI) / StartTest  +---------+
//!  connect --> |   Idle    | ----------------------------------> | Testing |
//!              +-----------+ <---------------------------------- +---------+
//!                    |               TestFinished / Ignore             |
//!                    |                                                 |
//!                    | EndOfFile / Close          EndOfFile / AbortTest |
//!                    |                             Message   / AbortTest |
//!                    v                                                 |
//!              +-----------+                                           |
//!              |  Closed   | <-----------------------------------------+
//!              +-----------+   every later event / Close
//! ```
//!
//! netperf speaks first and waits for each reply, so it never sends a
//! message while a test runs. One that arrives anyway aborts the test.
//! After its last results netperf half-closes the connection and waits for
//! the server to close; `EndOfFile` in `Idle` is that normal end.

use super::parameters::{TestParameters, Unsupported};
use super::request::Message;
use super::response::OmniResponse;
use super::wire::{errno, RawMessage};

/// An input to the session.
#[derive(Clone, Copy, Debug)]
pub enum Event<'a> {
    /// A complete message from [`ControlReader`](super::ControlReader).
    Message(&'a RawMessage),
    /// The peer closed its side of the control connection.
    EndOfFile,
    /// The service finished the data phase of the running test and sent the
    /// results.
    TestFinished,
}

/// Instruction to the service that owns the sockets.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Run a test: create the data socket (TCP: listening), send
    /// [`TestParameters::response`], run the data phase, send the results,
    /// then report [`Event::TestFinished`]. If the socket cannot be created,
    /// send [`OmniResponse::error`] instead and report `TestFinished` all
    /// the same.
    StartTest(TestParameters),
    /// Send [`RejectReason::reply`], an error response, and keep reading
    /// requests.
    Reject(RejectReason),
    /// Nothing to send; keep reading.
    Ignore,
    /// Stop the running test without sending results, free its sockets and
    /// close the control connection.
    AbortTest,
    /// Close the control connection.
    Close,
}

/// Reason for an error response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectReason {
    /// The message type is not one a server handles.
    UnknownType(i32),
    /// The DO_OMNI request requires something the server cannot do.
    Unsupported(Unsupported),
}

impl RejectReason {
    /// Returns the `serv_errno` sent for this reason.
    pub const fn errno(&self) -> i32 {
        match self {
            RejectReason::UnknownType(_) => errno::UNKNOWN_REQUEST_TYPE,
            RejectReason::Unsupported(unsupported) => unsupported.errno(),
        }
    }

    /// Encodes the error response: `serv_errno` set, every other field zero.
    pub fn reply(&self) -> RawMessage {
        OmniResponse::error(self.errno()).encode()
    }
}

/// Life-cycle state of a control connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionState {
    /// Waiting for the next request.
    Idle,
    /// A test's data phase is running.
    Testing,
    /// The connection is finished; every event returns [`Action::Close`].
    Closed,
}

/// State machine for one control connection.
#[derive(Clone, Debug)]
pub struct Session {
    state: SessionState,
}

impl Session {
    /// Creates a session for a freshly accepted control connection.
    pub const fn new() -> Self {
        Session {
            state: SessionState::Idle,
        }
    }

    /// Returns the current state.
    pub const fn state(&self) -> SessionState {
        self.state
    }

    /// Advances the state machine by one event.
    pub fn handle(&mut self, event: Event<'_>) -> Action {
        match (self.state, event) {
            (SessionState::Closed, _) => Action::Close,
            (SessionState::Idle, Event::Message(raw)) => self.handle_request(raw),
            (SessionState::Idle, Event::EndOfFile) => self.close(Action::Close),
            // A finished test without a running one is a service bug with
            // nothing left to undo.
            (SessionState::Idle, Event::TestFinished) => Action::Ignore,
            (SessionState::Testing, Event::TestFinished) => {
                self.state = SessionState::Idle;
                Action::Ignore
            }
            (SessionState::Testing, Event::Message(_) | Event::EndOfFile) => {
                self.close(Action::AbortTest)
            }
        }
    }

    fn handle_request(&mut self, raw: &RawMessage) -> Action {
        let reason = match Message::from_raw(raw) {
            Message::Passphrase(_) => return Action::Ignore,
            Message::Unknown(message_type) => RejectReason::UnknownType(message_type),
            Message::DoOmni(request) => match TestParameters::from_request(&request) {
                Ok(parameters) => {
                    self.state = SessionState::Testing;
                    return Action::StartTest(parameters);
                }
                Err(unsupported) => RejectReason::Unsupported(unsupported),
            },
        };
        Action::Reject(reason)
    }

    fn close(&mut self, action: Action) -> Action {
        self.state = SessionState::Closed;
        action
    }
}

impl Default for Session {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netperf::parameters::TestKind;
    use crate::netperf::wire::{message_type, WordWriter};

    /// A TCP_RR request with netperf's default values for the fields a
    /// server checks.
    fn tcp_rr_request() -> RawMessage {
        let mut raw = [0; crate::netperf::wire::MESSAGE_BYTES];
        let words: [(usize, u32); 9] = [
            (0, 97),
            (28, 1),
            (52, 1),
            (64, 2),
            (92, 4),
            (96, 1),
            (100, 6),
            (104, 6),
            (152, u32::MAX),
        ];
        for (offset, value) in words {
            raw[offset..offset + 4].copy_from_slice(&value.to_be_bytes());
        }
        raw
    }

    fn message_of_type(message_type: i32) -> RawMessage {
        let mut writer = WordWriter::new();
        writer.i32(message_type);
        writer.finish()
    }

    #[test]
    fn request_starts_test_then_returns_idle() {
        let mut session = Session::new();
        let Action::StartTest(parameters) = session.handle(Event::Message(&tcp_rr_request()))
        else {
            panic!("a valid TCP_RR request must start a test");
        };
        assert_eq!(parameters.kind, TestKind::TcpRr);
        assert_eq!(session.state(), SessionState::Testing);
        assert_eq!(session.handle(Event::TestFinished), Action::Ignore);
        assert_eq!(session.state(), SessionState::Idle);
    }

    #[test]
    fn several_tests_on_one_connection() {
        let mut session = Session::new();
        for _ in 0..3 {
            let action = session.handle(Event::Message(&tcp_rr_request()));
            assert!(matches!(action, Action::StartTest(_)), "{action:?}");
            assert_eq!(session.handle(Event::TestFinished), Action::Ignore);
        }
        assert_eq!(session.handle(Event::EndOfFile), Action::Close);
        assert_eq!(session.state(), SessionState::Closed);
    }

    #[test]
    fn passphrase_is_ignored() {
        let mut session = Session::new();
        let action = session.handle(Event::Message(&message_of_type(message_type::PASSPHRASE)));
        assert_eq!(action, Action::Ignore);
        assert_eq!(session.state(), SessionState::Idle);
    }

    #[test]
    fn unknown_type_is_rejected_with_998() {
        let mut session = Session::new();
        let action = session.handle(Event::Message(&message_of_type(13)));
        let Action::Reject(reason) = action else {
            panic!("unknown type must be rejected, got {action:?}");
        };
        assert_eq!(reason, RejectReason::UnknownType(13));
        assert_eq!(
            reason.reply(),
            OmniResponse::unknown_request_type().encode()
        );
        assert_eq!(session.state(), SessionState::Idle);
    }

    #[test]
    fn unsupported_request_is_rejected_with_errno() {
        let mut raw = tcp_rr_request();
        raw[92..96].copy_from_slice(&6u32.to_be_bytes());
        let mut session = Session::new();
        let Action::Reject(reason) = session.handle(Event::Message(&raw)) else {
            panic!("an IPv6 request must be rejected");
        };
        assert_eq!(reason.errno(), errno::EAFNOSUPPORT);
        assert_eq!(reason.reply()[4..8], 97i32.to_be_bytes());
        assert_eq!(session.state(), SessionState::Idle);
    }

    #[test]
    fn end_of_file_during_test_aborts() {
        let mut session = Session::new();
        session.handle(Event::Message(&tcp_rr_request()));
        assert_eq!(session.handle(Event::EndOfFile), Action::AbortTest);
        assert_eq!(session.state(), SessionState::Closed);
        assert_eq!(session.handle(Event::TestFinished), Action::Close);
    }

    #[test]
    fn message_during_test_aborts() {
        let mut session = Session::new();
        session.handle(Event::Message(&tcp_rr_request()));
        let action = session.handle(Event::Message(&tcp_rr_request()));
        assert_eq!(action, Action::AbortTest);
        assert_eq!(
            session.handle(Event::Message(&tcp_rr_request())),
            Action::Close
        );
    }

    #[test]
    fn stray_test_finished_is_ignored() {
        let mut session = Session::new();
        assert_eq!(session.handle(Event::TestFinished), Action::Ignore);
        assert_eq!(session.state(), SessionState::Idle);
    }
}
