//! The discard service (RFC 863) on TCP and UDP: everything received is
//! counted and thrown away, and nothing is ever sent back.

use alloc::rc::Rc;
use core::cell::Cell;

use log::debug;

use super::netserver::ConnectionLimit;
use crate::executor::Spawner;
use crate::stack::Stack;
use crate::tcp::{TcpListener, TcpStream};
use crate::udp::UdpSocket;
use crate::NetError;

/// The well-known discard port.
pub const DISCARD_PORT: u16 = 9;
/// Connections served at once. While all are taken, up to `TCP_BACKLOG`
/// more complete their handshake and wait, and later ones are reset.
pub const MAX_TCP_CONNECTIONS: usize = 16;
/// Sockets kept listening for connections that arrive together.
const TCP_BACKLOG: usize = 4;
const READ_BUFFER_BYTES: usize = 4096;
/// Datagrams and payload bytes the UDP socket queues.
const UDP_PACKETS: usize = 32;
const UDP_PAYLOAD_BYTES: usize = 32 * 1024;
/// Bytes read per datagram. A longer datagram is truncated and counted as
/// this many bytes.
const MAX_DATAGRAM_BYTES: usize = 1472;

/// Byte and connection counters of the discard service, shared between the
/// service's tasks and the console.
#[derive(Clone, Debug, Default)]
pub struct DiscardCounters {
    inner: Rc<DiscardTotals>,
}

#[derive(Debug, Default)]
struct DiscardTotals {
    tcp_connections: Cell<u64>,
    tcp_bytes: Cell<u64>,
    udp_datagrams: Cell<u64>,
    udp_bytes: Cell<u64>,
}

impl DiscardCounters {
    /// Returns the TCP connections accepted.
    pub fn tcp_connections(&self) -> u64 {
        self.inner.tcp_connections.get()
    }

    /// Returns the bytes received over TCP.
    pub fn tcp_bytes(&self) -> u64 {
        self.inner.tcp_bytes.get()
    }

    /// Returns the UDP datagrams received.
    pub fn udp_datagrams(&self) -> u64 {
        self.inner.udp_datagrams.get()
    }

    /// Returns the UDP payload bytes received (as far as the socket kept
    /// them: up to 1472 per datagram).
    pub fn udp_bytes(&self) -> u64 {
        self.inner.udp_bytes.get()
    }
}

fn add(counter: &Cell<u64>, amount: u64) {
    counter.set(counter.get().wrapping_add(amount));
}

/// Serves TCP discard on `port`, one task per connection, counting into
/// `counters`.
pub async fn serve_tcp(
    stack: Stack,
    spawner: Spawner,
    port: u16,
    counters: DiscardCounters,
) -> Result<(), NetError> {
    let mut listener = TcpListener::bind(&stack, port, TCP_BACKLOG)?;
    let limit = ConnectionLimit::new(MAX_TCP_CONNECTIONS);
    loop {
        limit.wait_for_free_slot().await;
        let stream = listener.accept().await?;
        add(&counters.inner.tcp_connections, 1);
        let (slot, counters) = (limit.take_slot(), counters.clone());
        spawner.spawn_named("discard-tcp-connection", async move {
            discard_connection(stream, &counters).await;
            drop(slot);
        });
    }
}

async fn discard_connection(mut stream: TcpStream, counters: &DiscardCounters) {
    let peer = stream.remote_endpoint();
    let mut buffer = [0u8; READ_BUFFER_BYTES];
    let mut received_bytes = 0u64;
    let ended = loop {
        match stream.read(&mut buffer).await {
            Ok(0) => break Ok(()),
            Ok(count) => {
                received_bytes += count as u64;
                add(&counters.inner.tcp_bytes, count as u64);
            }
            Err(error) => break Err(error),
        }
    };
    debug!("discard: connection from {peer:?} ended after {received_bytes} bytes: {ended:?}");
    stream.close();
}

/// Serves UDP discard on `port`, counting into `counters`.
pub async fn serve_udp(stack: Stack, port: u16, counters: DiscardCounters) -> Result<(), NetError> {
    let mut socket = UdpSocket::bind(&stack, port, UDP_PACKETS, UDP_PAYLOAD_BYTES)?;
    let mut buffer = [0u8; MAX_DATAGRAM_BYTES];
    loop {
        let (length, _source) = socket.recv_from(&mut buffer).await;
        add(&counters.inner.udp_datagrams, 1);
        add(&counters.inner.udp_bytes, length as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::Executor;
    use crate::testing::{two_stacks, TwoStacks, SERVER};
    use smoltcp::wire::IpEndpoint;


    /// Two stacks joined by a cable, discard served on one of them.
    fn setup() -> (Executor, Stack, Spawner, DiscardCounters) {
        let TwoStacks { executor, spawner, server, client } = two_stacks();
        let counters = DiscardCounters::default();
        spawner.spawn_named("discard-tcp", {
            let (stack, spawner, counters) = (server.clone(), spawner.clone(), counters.clone());
            async move {
                serve_tcp(stack, spawner, DISCARD_PORT, counters)
                    .await
                    .expect("discard port binds")
            }
        });
        spawner.spawn_named("discard-udp", {
            let (stack, counters) = (server.clone(), counters.clone());
            async move {
                serve_udp(stack, DISCARD_PORT, counters)
                    .await
                    .expect("discard port binds")
            }
        });
        (executor, client, spawner, counters)
    }

    #[test]
    fn tcp_discard_counts_and_sends_nothing() {
        let (mut executor, client, spawner, counters) = setup();
        let received_back = Rc::new(Cell::new(None));
        let result = received_back.clone();
        spawner.spawn_named("client", async move {
            let remote = IpEndpoint::new(SERVER.into(), DISCARD_PORT);
            let mut stream = TcpStream::connect(&client, remote, 40000)
                .await
                .expect("connects");
            let data = [0x5au8; 10_000];
            for _ in 0..30 {
                stream.write_all(&data).await.expect("writes");
            }
            stream.close();
            // The server closes after our FIN without having sent a byte.
            let mut buffer = [0u8; 64];
            result.set(Some(stream.read(&mut buffer).await));
        });
        assert!(executor.run_until(2_000_000, || received_back.get().is_some()));
        assert_eq!(received_back.get(), Some(Ok(0)));
        assert!(
            executor.run_until(100_000, || counters.tcp_bytes() == 300_000),
            "bytes {}",
            counters.tcp_bytes()
        );
        assert_eq!(counters.tcp_connections(), 1);
    }

    #[test]
    fn udp_discard_counts_datagrams() {
        let (mut executor, client, spawner, counters) = setup();
        spawner.spawn_named("client", async move {
            let mut socket = UdpSocket::bind(&client, 40001, 8, 16 * 1024).expect("binds");
            let server = IpEndpoint::new(SERVER.into(), DISCARD_PORT);
            for length in [0usize, 1, 100, 1472] {
                socket
                    .send_to(&[7u8; 1472][..length], server)
                    .await
                    .expect("sends");
            }
            // Dropping the socket would discard datagrams still queued
            // behind the ARP exchange.
            core::future::pending::<()>().await;
        });
        assert!(
            executor.run_until(100_000, || counters.udp_datagrams() == 4),
            "datagrams {} bytes {}",
            counters.udp_datagrams(),
            counters.udp_bytes()
        );
        assert_eq!(counters.udp_bytes(), 1 + 100 + 1472);
    }
}
