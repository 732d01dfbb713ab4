//! Hostile and random input: the codec must never panic and must classify
//! every request as the protocol rules require.

use std::vec::Vec;

use core::time::Duration;

use super::parameters::{TestKind, TestLength, TestParameters, Unsupported, MAX_UDP_PAYLOAD_BYTES};
use super::request::{DecodeError, Message, OmniRequest};
use super::response::DataSocketSetup;
use super::results::OmniResults;
use super::session::{Action, Event, RejectReason, Session, SessionState};
use super::wire::{errno, message_type, RawMessage, MESSAGE_BYTES};
use super::ControlReader;

/// splitmix64: a small seeded generator, so every run gets the same inputs.
struct Prng(u64);

impl Prng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next_u64() % bound as u64) as usize
    }

    fn pick<T: Copy>(&mut self, choices: &[T]) -> T {
        choices[self.below(choices.len())]
    }

    fn fill(&mut self, bytes: &mut [u8]) {
        for byte in bytes {
            *byte = self.next_u64() as u8;
        }
    }
}

fn set_word(raw: &mut RawMessage, offset: usize, value: u32) {
    raw[offset..offset + 4].copy_from_slice(&value.to_be_bytes());
}

/// Builds a DO_OMNI request with random bytes everywhere, and the fields a
/// server checks drawn from mixes of valid, edge and random values.
fn random_request(prng: &mut Prng) -> RawMessage {
    let mut raw = [0; MESSAGE_BYTES];
    prng.fill(&mut raw);
    set_word(&mut raw, 0, message_type::DO_OMNI as u32);

    let random = prng.next_u32();
    let sizes = [
        1,
        2,
        64,
        65_507,
        65_508,
        0,
        u32::MAX,
        0x8000_0000,
        0x7fff_ffff,
        random,
    ];
    let fields = [
        (28, prng.pick(&sizes)),
        (52, prng.pick(&sizes)),
        (56, prng.pick(&[0x20, 0x24, 0x28, 0x0, 0x4, random])),
        (
            64,
            prng.pick(&[2, 1, 0, u32::MAX, 0x8000_0000, 0x7fff_ffff, random]),
        ),
        (88, prng.pick(&[0, 5001, 65_535, 65_536, u32::MAX, random])),
        (92, prng.pick(&[4, 4, 0, 6, random])),
        (96, prng.pick(&[1, 2, 3, random])),
        (100, prng.pick(&[6, 6, 17, 0, 132, random])),
        (104, prng.pick(&[6, 6, 4, 2, 0, 7, random])),
    ];
    for (offset, value) in fields {
        set_word(&mut raw, offset, value);
    }
    raw
}

/// The rules a request must pass, written out independently of the codec:
/// returns the errno of the first rule it breaks, or `None`.
fn expected_errno(request: &OmniRequest) -> Option<i32> {
    if request.ipfamily != 4 && request.ipfamily != 0 {
        return Some(errno::EAFNOSUPPORT);
    }
    let socket_type_fits = match request.protocol {
        6 => request.socket_type == 1,
        17 => request.socket_type == 2,
        _ => return Some(errno::EPROTONOSUPPORT),
    };
    if !socket_type_fits {
        return Some(if matches!(request.socket_type, 1 | 2) {
            errno::EPROTONOSUPPORT
        } else {
            errno::ESOCKTNOSUPPORT
        });
    }
    let connect = request.flags.0 & 0x4 != 0;
    let request_response = match (request.protocol, request.direction, connect) {
        (6, 6, _) | (17, 6, _) => true,
        (6, 4, false) | (6, 2, false) | (6, 0, true) | (17, 4, _) => false,
        _ => return Some(errno::EOPNOTSUPP),
    };
    if request.data_port > 65_535 {
        return Some(errno::EINVAL);
    }
    if request_response {
        if request.request_size < 1 || request.response_size < 1 {
            return Some(errno::EINVAL);
        }
        let largest = request.request_size.max(request.response_size);
        if request.protocol == 17 && largest > 65_507 {
            return Some(errno::EMSGSIZE);
        }
    }
    None
}

/// Properties every accepted request must have.
fn check_accepted(request: &OmniRequest, parameters: &TestParameters) {
    assert_eq!(parameters.kind.is_tcp(), request.protocol == 6);
    assert_eq!(u32::from(parameters.data_port), request.data_port);
    if parameters.kind.is_request_response() {
        assert_eq!(parameters.request_size_bytes as i32, request.request_size);
        assert_eq!(parameters.response_size_bytes as i32, request.response_size);
    }
    if !parameters.kind.is_tcp() {
        assert!(parameters.request_size_bytes <= MAX_UDP_PAYLOAD_BYTES);
        assert!(parameters.response_size_bytes <= MAX_UDP_PAYLOAD_BYTES);
    }
    match (parameters.length, parameters.server_deadline()) {
        (TestLength::Seconds(seconds), Some(deadline)) => {
            assert!(deadline >= Duration::from_secs(u64::from(seconds)));
        }
        (TestLength::Seconds(_), None) => panic!("timed test without deadline"),
        (_, deadline) => assert_eq!(deadline, None),
    }

    let setup = DataSocketSetup {
        data_port: parameters.data_port,
        receive_buffer_bytes: parameters.receive_buffer_bytes,
        send_buffer_bytes: parameters.send_buffer_bytes,
        default_chunk_bytes: 16_384,
        measures_cpu: true,
    };
    let response = parameters.response(&setup).encode();
    assert_eq!(response[4..8], [0; 4], "serv_errno of an accepted test");
    assert!(response[80..].iter().all(|&b| b == 0));
}

#[test]
fn random_requests_classify_by_rules() {
    let mut prng = Prng(0x6e65_7470_6572_6621);
    let mut accepted = 0;
    let mut rejected_by_errno = std::collections::BTreeMap::new();

    for _ in 0..20_000 {
        let raw = random_request(&mut prng);
        let Message::DoOmni(request) = Message::from_raw(&raw) else {
            panic!("type 97 must decode as DO_OMNI");
        };
        match (
            TestParameters::from_request(&request),
            expected_errno(&request),
        ) {
            (Ok(parameters), None) => {
                check_accepted(&request, &parameters);
                accepted += 1;
            }
            (Err(unsupported), Some(expected)) => {
                assert_eq!(
                    unsupported.errno(),
                    expected,
                    "{unsupported} for {request:?}"
                );
                *rejected_by_errno.entry(expected).or_insert(0) += 1;
            }
            (outcome, expected) => {
                panic!("{request:?}: codec gave {outcome:?}, rules expect {expected:?}")
            }
        }
    }

    // The generator must reach every outcome, or this test proves little.
    assert!(accepted > 100, "accepted {accepted}");
    for errno in [
        errno::EAFNOSUPPORT,
        errno::EPROTONOSUPPORT,
        errno::ESOCKTNOSUPPORT,
        errno::EOPNOTSUPP,
        errno::EINVAL,
        errno::EMSGSIZE,
    ] {
        assert!(
            rejected_by_errno.get(&errno).copied().unwrap_or(0) > 10,
            "errno {errno}: {rejected_by_errno:?}"
        );
    }
}

#[test]
fn random_messages_never_panic() {
    let mut prng = Prng(42);
    let mut session = Session::new();
    for round in 0..20_000 {
        let mut raw = [0; MESSAGE_BYTES];
        prng.fill(&mut raw);
        // Every fourth message gets a type a server acts on.
        if round % 4 == 0 {
            let message_type = prng.pick(&[message_type::DO_OMNI, message_type::PASSPHRASE]);
            set_word(&mut raw, 0, message_type as u32);
        }
        let message_type = i32::from_be_bytes(raw[..4].try_into().unwrap());

        let message = Message::from_raw(&raw);
        match (&message, message_type) {
            (Message::DoOmni(_), message_type::DO_OMNI)
            | (Message::Passphrase(_), message_type::PASSPHRASE) => {}
            (Message::Unknown(found), _) => assert_eq!(*found, message_type),
            (message, _) => panic!("type {message_type} decoded as {message:?}"),
        }
        if let Message::DoOmni(request) = message {
            if let Ok(parameters) = TestParameters::from_request(&request) {
                check_accepted(&request, &parameters);
            }
        }

        let action = session.handle(Event::Message(&raw));
        if matches!(action, Action::StartTest(_)) {
            session.handle(Event::TestFinished);
        }
        assert_eq!(
            session.state(),
            SessionState::Idle,
            "round {round}: {action:?}"
        );
    }
}

#[test]
fn random_stream_in_random_chunks() {
    let mut prng = Prng(7);
    for _ in 0..200 {
        let mut stream = std::vec![0u8; prng.below(5 * MESSAGE_BYTES)];
        prng.fill(&mut stream);

        let mut reader = ControlReader::new();
        let mut messages: Vec<RawMessage> = Vec::new();
        let mut rest = stream.as_slice();
        while !rest.is_empty() {
            let chunk_bytes = 1 + prng.below(rest.len().min(2 * MESSAGE_BYTES));
            let (chunk, tail) = rest.split_at(chunk_bytes);
            messages.extend(reader.messages(chunk));
            rest = tail;
        }

        assert_eq!(messages.len(), stream.len() / MESSAGE_BYTES);
        for (message, expected) in messages.iter().zip(stream.chunks_exact(MESSAGE_BYTES)) {
            assert_eq!(&message[..], expected);
        }
        assert_eq!(reader.buffered_bytes(), stream.len() % MESSAGE_BYTES);
    }
}

#[test]
fn truncated_and_oversized_messages() {
    let mut prng = Prng(3);
    let mut bytes = std::vec![0u8; 2 * MESSAGE_BYTES];
    prng.fill(&mut bytes);
    bytes[..4].copy_from_slice(&message_type::DO_OMNI.to_be_bytes());
    for length_bytes in (0..MESSAGE_BYTES).chain(MESSAGE_BYTES + 1..2 * MESSAGE_BYTES) {
        assert_eq!(
            Message::decode(&bytes[..length_bytes]),
            Err(DecodeError::Length { length_bytes })
        );
    }
    assert!(matches!(
        Message::decode(&bytes[..MESSAGE_BYTES]),
        Ok(Message::DoOmni(_))
    ));
}

/// Builds a valid TCP_RR request for tests to modify field by field.
fn tcp_rr() -> RawMessage {
    let mut raw = [0; MESSAGE_BYTES];
    for (offset, value) in [
        (0, 97),
        (28, 1),
        (52, 1),
        (64, 2),
        (92, 4),
        (96, 1),
        (100, 6),
        (104, 6),
    ] {
        set_word(&mut raw, offset, value);
    }
    raw
}

fn classify(raw: &RawMessage) -> Result<TestParameters, Unsupported> {
    let Message::DoOmni(request) = Message::from_raw(raw) else {
        panic!("test request must be DO_OMNI");
    };
    TestParameters::from_request(&request)
}

#[test]
fn huge_tcp_sizes_are_accepted() {
    let mut raw = tcp_rr();
    set_word(&mut raw, 28, i32::MAX as u32);
    set_word(&mut raw, 52, i32::MAX as u32);
    let parameters = classify(&raw).unwrap();
    assert_eq!(parameters.request_size_bytes, i32::MAX as u32);
    assert_eq!(parameters.chosen_receive_size(16_384), i32::MAX as u32);
}

#[test]
fn huge_udp_sizes_are_rejected() {
    let mut raw = tcp_rr();
    set_word(&mut raw, 96, 2);
    set_word(&mut raw, 100, 17);
    set_word(&mut raw, 52, 65_508);
    let error = classify(&raw).unwrap_err();
    assert_eq!(error, Unsupported::DatagramSize { size_bytes: 65_508 });
    assert_eq!(error.errno(), errno::EMSGSIZE);

    set_word(&mut raw, 52, 65_507);
    assert_eq!(classify(&raw).unwrap().kind, TestKind::UdpRr);
}

#[test]
fn negative_transaction_sizes_are_invalid() {
    for (request_size, response_size) in [(-1, 1), (1, -1), (0, 1), (1, 0), (i32::MIN, i32::MIN)] {
        let mut raw = tcp_rr();
        set_word(&mut raw, 28, request_size as u32);
        set_word(&mut raw, 52, response_size as u32);
        let error = classify(&raw).unwrap_err();
        assert_eq!(
            error,
            Unsupported::TransactionSize {
                request_size,
                response_size
            }
        );
        assert_eq!(error.errno(), errno::EINVAL);
    }
}

#[test]
fn extreme_test_lengths() {
    let mut raw = tcp_rr();
    set_word(&mut raw, 64, i32::MAX as u32);
    let longest = classify(&raw).unwrap();
    let expected = Duration::from_secs(i32::MAX as u64) + Duration::from_secs(4);
    assert_eq!(longest.server_deadline(), Some(expected));

    set_word(&mut raw, 64, i32::MIN as u32);
    let counted = classify(&raw).unwrap();
    assert_eq!(counted.length, TestLength::Transactions(1 << 31));
    assert_eq!(counted.server_deadline(), None);

    set_word(&mut raw, 64, 0);
    assert_eq!(classify(&raw).unwrap().server_deadline(), None);
}

#[test]
fn data_port_beyond_16_bits_is_invalid() {
    let mut raw = tcp_rr();
    set_word(&mut raw, 88, 65_536);
    let error = classify(&raw).unwrap_err();
    assert_eq!(error, Unsupported::DataPort { data_port: 65_536 });
    assert_eq!(error.errno(), errno::EINVAL);
}

#[test]
fn huge_buffer_requests_are_hints() {
    let mut raw = tcp_rr();
    set_word(&mut raw, 8, i32::MAX as u32);
    set_word(&mut raw, 32, u32::MAX);
    let parameters = classify(&raw).unwrap();
    assert_eq!(parameters.send_buffer_bytes, Some(i32::MAX as u32));
    assert_eq!(parameters.receive_buffer_bytes, None);
}

#[test]
fn unknown_types_get_998() {
    let mut prng = Prng(99);
    for _ in 0..1000 {
        let mut raw = [0; MESSAGE_BYTES];
        prng.fill(&mut raw);
        let message_type = i32::from_be_bytes(raw[..4].try_into().unwrap());
        if matches!(
            message_type,
            message_type::DO_OMNI | message_type::PASSPHRASE
        ) {
            continue;
        }
        let mut session = Session::new();
        let action = session.handle(Event::Message(&raw));
        let Action::Reject(reason) = action else {
            panic!("type {message_type} must be rejected, got {action:?}");
        };
        assert_eq!(reason, RejectReason::UnknownType(message_type));
        let reply = reason.reply();
        assert_eq!(reply[..4], 98i32.to_be_bytes());
        assert_eq!(reply[4..8], 998i32.to_be_bytes());
        assert!(reply[8..].iter().all(|&b| b == 0));
    }
}

#[test]
fn random_event_sequences_keep_invariants() {
    let mut prng = Prng(2024);
    let valid = tcp_rr();
    let unknown = [0xffu8; MESSAGE_BYTES];
    for _ in 0..2000 {
        let mut session = Session::new();
        for _ in 0..20 {
            let before = session.state();
            let event = match prng.below(4) {
                0 => Event::Message(&valid),
                1 => Event::Message(&unknown),
                2 => Event::TestFinished,
                _ => Event::EndOfFile,
            };
            let action = session.handle(event);
            let after = session.state();
            match action {
                Action::StartTest(_) => {
                    assert_eq!(before, SessionState::Idle);
                    assert_eq!(after, SessionState::Testing);
                }
                Action::AbortTest => {
                    assert_eq!(before, SessionState::Testing);
                    assert_eq!(after, SessionState::Closed);
                }
                Action::Close => assert_eq!(after, SessionState::Closed),
                Action::Reject(_) => {
                    assert_eq!((before, after), (SessionState::Idle, SessionState::Idle))
                }
                Action::Ignore => assert_ne!(after, SessionState::Closed),
            }
        }
    }
}

#[test]
fn results_error_is_clean() {
    let bytes = OmniResults::error(errno::ECONNRESET).encode();
    assert_eq!(bytes[..8], [0, 0, 0, 99, 0, 0, 0, 104]);
}
