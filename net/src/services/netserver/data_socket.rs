//! Data ports and data sockets: which port a test gets, and the listener or
//! UDP socket bound to it before the response goes out.
//!
//! smoltcp lets several sockets bind one port (the first one in the socket
//! set then receives the traffic), so the service keeps its own table of the
//! ports its tests hold, as (transport, port) pairs. A TCP port is also taken
//! while any socket of the stack listens on it, such as the control port or
//! the echo service's port.

use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};

use smoltcp::socket::tcp::State;

use crate::netperf::{DataSocketSetup, TestKind, TestParameters};
use crate::stack::{Stack, TCP_BUFFER_BYTES};
use crate::tcp::TcpListener;
use crate::udp::UdpSocket;

/// Smallest data socket buffer the service uses, whatever netperf requests.
const MIN_BUFFER_BYTES: u32 = 4 * 1024;
/// Largest data socket buffer the service allocates, whatever netperf
/// requests (`-s`, `-S`). Each TCP socket has one buffer in each direction.
const MAX_BUFFER_BYTES: u32 = 256 * 1024;
/// Buffer of each `TCP_CRR` connection when netperf sets none. Its
/// connections carry one small transaction each, and a socket is allocated
/// per connection.
const CONNECT_TEST_BUFFER_BYTES: u32 = 8 * 1024;
/// Listening sockets of a `TCP_CRR` data port, so that a connection that
/// arrives while the previous one closes still finds a listener.
const CONNECT_TEST_BACKLOG: usize = 4;
/// Datagrams each UDP data socket queues per direction.
const UDP_PACKETS: usize = 64;
/// Bytes per call of a stream test when netperf leaves the size to the
/// server. The response reports it.
pub(super) const STREAM_CHUNK_BYTES: u32 = 16 * 1024;

/// The transport of a data port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    Tcp,
    Udp,
}

/// The data ports held by running tests, and the range to pick from when
/// netperf requests none.
pub(super) struct DataPorts {
    first: u16,
    last: u16,
    /// Start of the next search of the range, so that consecutive tests
    /// use different ports while sockets of the previous test still close.
    next: Cell<u16>,
    held: RefCell<Vec<(Transport, u16)>>,
}

/// A port held by one test. Dropping it frees the port.
pub(super) struct PortLease {
    ports: Rc<DataPorts>,
    key: (Transport, u16),
}

impl Drop for PortLease {
    fn drop(&mut self) {
        self.ports
            .held
            .borrow_mut()
            .retain(|&held| held != self.key);
    }
}

impl DataPorts {
    /// Creates the table for the inclusive range `first..=last`.
    pub(super) fn new(first: u16, last: u16) -> Rc<Self> {
        Rc::new(DataPorts {
            first,
            last,
            next: Cell::new(first),
            held: RefCell::new(Vec::new()),
        })
    }

    /// Holds `requested`, or the next free port of the range if `requested`
    /// is 0. Returns `None` when that port (or every port of the range) is
    /// taken.
    fn lease(
        self: &Rc<Self>,
        stack: &Stack,
        transport: Transport,
        requested: u16,
    ) -> Option<PortLease> {
        let port = if requested != 0 {
            Some(requested).filter(|&port| self.is_free(stack, transport, port))
        } else {
            self.find_free(stack, transport)
        }?;
        self.held.borrow_mut().push((transport, port));
        Some(PortLease {
            ports: self.clone(),
            key: (transport, port),
        })
    }

    fn find_free(&self, stack: &Stack, transport: Transport) -> Option<u16> {
        let range_length = u32::from(self.last - self.first) + 1;
        let start = u32::from(self.next.get().clamp(self.first, self.last) - self.first);
        let port = (0..range_length)
            .map(|step| self.first + ((start + step) % range_length) as u16)
            .find(|&port| self.is_free(stack, transport, port))?;
        self.next.set(if port == self.last {
            self.first
        } else {
            port + 1
        });
        Some(port)
    }

    fn is_free(&self, stack: &Stack, transport: Transport, port: u16) -> bool {
        if self.held.borrow().contains(&(transport, port)) {
            return false;
        }
        // NOTE: UDP sockets of other services cannot be seen through the
        // stack's public interface, so a UDP data port that collides with
        // one of them (echo on 7, discard on 9) is granted. The default
        // range contains no well-known port.
        let mut listening = false;
        if transport == Transport::Tcp {
            stack.for_each_tcp_socket(|local_port, _, state| {
                listening |= local_port == port && state == State::Listen;
            });
        }
        !listening
    }
}

/// The socket a test's data phase starts from.
pub(super) enum DataEndpoint {
    /// A listening TCP port (every TCP test).
    Tcp(TcpListener),
    /// A bound UDP port (`UDP_RR`).
    Udp(UdpSocket),
}

/// A bound data socket, ready before the response is sent.
pub(super) struct DataSocket {
    pub(super) endpoint: DataEndpoint,
    pub(super) port: u16,
    /// Bytes of the socket's buffer in each direction.
    pub(super) buffer_bytes: u32,
    /// Frees the port when the test's sockets are dropped.
    pub(super) lease: PortLease,
}

impl DataSocket {
    /// Binds the data socket for `parameters` on the requested port, or on
    /// a free port of the range when netperf requested port 0.
    ///
    /// NOTE: the address netperf requests the server to bind (`-- -H addr`) is
    /// ignored: the interface has one address, so binding it is the same as
    /// binding any.
    ///
    /// Returns `None` when no port is available, and the caller then sends
    /// `EADDRINUSE`.
    pub(super) fn open(
        ports: &Rc<DataPorts>,
        stack: &Stack,
        parameters: &TestParameters,
    ) -> Option<DataSocket> {
        let transport = if parameters.kind.is_tcp() {
            Transport::Tcp
        } else {
            Transport::Udp
        };
        let lease = ports.lease(stack, transport, parameters.data_port)?;
        let port = lease.key.1;
        let buffer_bytes = buffer_bytes(parameters);
        let endpoint = match transport {
            Transport::Tcp => {
                let backlog = if parameters.kind.is_connect_test() {
                    CONNECT_TEST_BACKLOG
                } else {
                    1
                };
                let listener =
                    TcpListener::bind_with_buffers(stack, port, backlog, buffer_bytes as usize)
                        .ok()?;
                DataEndpoint::Tcp(listener)
            }
            Transport::Udp => {
                let socket =
                    UdpSocket::bind(stack, port, UDP_PACKETS, buffer_bytes as usize).ok()?;
                DataEndpoint::Udp(socket)
            }
        };
        Some(DataSocket {
            endpoint,
            port,
            buffer_bytes,
            lease,
        })
    }

    /// Describes the socket for the response.
    pub(super) fn setup(&self, measures_cpu: bool) -> DataSocketSetup {
        DataSocketSetup {
            data_port: self.port,
            receive_buffer_bytes: Some(self.buffer_bytes),
            send_buffer_bytes: Some(self.buffer_bytes),
            default_chunk_bytes: STREAM_CHUNK_BYTES,
            measures_cpu,
        }
    }
}

/// Chooses the buffer of each direction: the larger of netperf's `-s` and
/// `-S` sizes within the service's limits, else a default per test. A UDP
/// buffer always has room for four datagrams of the larger RR size.
fn buffer_bytes(parameters: &TestParameters) -> u32 {
    let requested = parameters
        .send_buffer_bytes
        .max(parameters.receive_buffer_bytes);
    let default = match parameters.kind {
        TestKind::TcpCrr | TestKind::TcpCc => CONNECT_TEST_BUFFER_BYTES,
        _ => TCP_BUFFER_BYTES as u32,
    };
    let chosen = requested.map_or(default, |bytes| {
        bytes.clamp(MIN_BUFFER_BYTES, MAX_BUFFER_BYTES)
    });
    if parameters.kind.is_tcp() {
        return chosen;
    }
    // A datagram is queued whole, so the ring needs room for the largest
    // one. The codec limits both sizes to one UDP datagram.
    let largest_datagram = parameters
        .request_size_bytes
        .max(parameters.response_size_bytes);
    chosen.max(largest_datagram.saturating_mul(4))
}
