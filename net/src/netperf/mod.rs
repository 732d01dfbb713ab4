//! netperf 2.7.0 control protocol, as a pure codec.
//!
//! Owns the messages the Debian netperf 2.7.0 client (`2.7.0-0.1`) exchanges
//! with a netserver on the control connection (TCP port 12865 by default),
//! with no I/O and no clock:
//!
//! - [`wire`]: the 656-byte message, type numbers, flag bits, errno numbers.
//! - [`framing`]: [`ControlReader`] reassembles messages from TCP chunks.
//! - [`request`]: [`Message`] and [`OmniRequest`] decode what netperf sends.
//! - [`parameters`]: [`TestKind`] and [`TestParameters`] classify and
//!   validate a request, or give the [`Unsupported`] reason and its errno.
//! - [`response`] and [`results`]: [`OmniResponse`] (type 98) and
//!   [`OmniResults`] (type 99) encode the server's replies.
//! - [`session`]: [`Session`] drives one control connection.
//!
//! netperf 2.7.0 runs `TCP_RR`, `UDP_RR`, `TCP_STREAM`, `TCP_MAERTS` and
//! `TCP_CRR` all as the omni test. Each test is one DO_OMNI request, one
//! response once the data socket listens, the data phase, and one results
//! message. With `-i`, several tests follow on one connection. After the
//! last one netperf half-closes, and the server must close. netperf speaks
//! first and there is no greeting.
//!
//! Every message is 2 header words and 162 payload words. Only a leading
//! block of words is big-endian (40 in a request, 20 in a response, 29 in
//! results). Floats travel as big-endian IEEE-754 bit patterns, and strings
//! are raw. The tests check the codec against messages captured between
//! the Debian netperf and netserver 2.7.0 on loopback (`fixtures/`).
//!
//! Driving a control connection from a task that reads chunks and writes
//! replies:
//!
//! ```
//! use net::netperf::{Action, ControlReader, Event, Session, MESSAGE_BYTES};
//!
//! // An unknown request type (13, netperf's classic TCP_RR number), then
//! // end-of-file.
//! let mut request = [0u8; MESSAGE_BYTES];
//! request[3] = 13;
//! let chunks: [&[u8]; 2] = [&request[..300], &request[300..]];
//!
//! let mut reader = ControlReader::new();
//! let mut session = Session::new();
//! let mut sent = Vec::new();
//! for chunk in chunks {
//!     for message in reader.messages(chunk) {
//!         match session.handle(Event::Message(&message)) {
//!             Action::StartTest(_parameters) => { /* bind, respond, run, send results */ }
//!             Action::Reject(reason) => sent.push(reason.reply()),
//!             Action::Ignore => {}
//!             Action::AbortTest | Action::Close => { /* free sockets, close */ }
//!         }
//!     }
//! }
//! assert_eq!(session.handle(Event::EndOfFile), Action::Close);
//! assert_eq!(sent.len(), 1);
//! assert_eq!(sent[0][4..8], 998i32.to_be_bytes());
//! ```

pub mod framing;
pub mod parameters;
pub mod request;
pub mod response;
pub mod results;
pub mod session;
pub mod wire;

#[cfg(test)]
mod capture_tests;
#[cfg(test)]
mod hostile_tests;

pub use framing::{ControlReader, Messages};
pub use parameters::{TestKind, TestLength, TestParameters, Unsupported, SERVER_DEADLINE_PAD};
pub use request::{DecodeError, Message, OmniRequest, Passphrase};
pub use response::{DataSocketSetup, OmniResponse};
pub use results::{CpuMethod, CpuUtilisation, OmniResults};
pub use session::{Action, Event, RejectReason, Session, SessionState};
pub use wire::{errno, message_type, OmniFlags, RawMessage, MESSAGE_BYTES};
