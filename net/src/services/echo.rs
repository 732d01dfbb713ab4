//! The echo service (RFC 862) on TCP and UDP: every byte or datagram
//! received is sent back unchanged.

use alloc::rc::Rc;
use core::cell::Cell;

use log::{debug, warn};

use crate::executor::Spawner;
use crate::stack::Stack;
use crate::tcp::{TcpListener, TcpStream};
use crate::udp::UdpSocket;
use crate::NetError;

/// The well-known echo port.
pub const ECHO_PORT: u16 = 7;
/// Connections served at once; further ones wait in the backlog.
pub const MAX_TCP_CONNECTIONS: usize = 64;
/// Sockets kept listening for connections that arrive together.
const TCP_BACKLOG: usize = 16;
const COPY_BUFFER_BYTES: usize = 4096;
/// The largest UDP payload in one Ethernet frame without fragmentation.
const MAX_UDP_PAYLOAD_BYTES: usize = 1472;

/// Serves TCP echo on `port`, one task per connection.
pub async fn serve_tcp(stack: Stack, spawner: Spawner, port: u16) -> Result<(), NetError> {
    let mut listener = TcpListener::bind(&stack, port, TCP_BACKLOG)?;
    let active = Rc::new(Cell::new(0usize));
    loop {
        while active.get() >= MAX_TCP_CONNECTIONS {
            crate::executor::yield_now().await;
        }
        let stream = listener.accept().await?;
        active.set(active.get() + 1);
        let counter = active.clone();
        spawner.spawn_named("echo-tcp-connection", async move {
            let peer = stream.remote_endpoint();
            debug!("echo: connection from {peer:?}");
            if let Err(error) = echo_connection(stream).await {
                debug!("echo: connection from {peer:?} ended: {error:?}");
            }
            counter.set(counter.get() - 1);
        });
    }
}

async fn echo_connection(mut stream: TcpStream) -> Result<(), NetError> {
    stream.set_no_delay(true);
    let mut buffer = [0u8; COPY_BUFFER_BYTES];
    loop {
        let count = stream.read(&mut buffer).await?;
        if count == 0 {
            break;
        }
        stream.write_all(&buffer[..count]).await?;
    }
    stream.close();
    stream.wait_closed().await;
    Ok(())
}

/// Serves UDP echo on `port`.
pub async fn serve_udp(stack: Stack, port: u16) -> Result<(), NetError> {
    let mut socket = UdpSocket::bind(&stack, port, 64, 64 * 1024)?;
    let mut buffer = [0u8; MAX_UDP_PAYLOAD_BYTES];
    loop {
        let (length, source) = socket.recv_from(&mut buffer).await;
        if let Err(error) = socket.send_to(&buffer[..length], source).await {
            warn!("echo: UDP reply to {source} failed: {error:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::Executor;
    use crate::testing::{two_stacks, TwoStacks, SERVER};
    use smoltcp::wire::IpEndpoint;
    use std::vec::Vec;


    /// Two stacks joined by a cable, with echo served on one of them and an
    /// interface task driving both.
    fn setup() -> (Executor, Stack, Spawner) {
        let TwoStacks { executor, spawner, server, client } = two_stacks();
        spawner.spawn_named("echo-tcp", {
            let (stack, spawner) = (server.clone(), spawner.clone());
            async move { serve_tcp(stack, spawner, ECHO_PORT).await.expect("echo port binds") }
        });
        spawner.spawn_named("echo-udp", {
            let stack = server.clone();
            async move { serve_udp(stack, ECHO_PORT).await.expect("echo port binds") }
        });
        (executor, client, spawner)
    }

    fn pattern(length: usize, seed: u8) -> Vec<u8> {
        (0..length).map(|index| (index as u8).wrapping_mul(31).wrapping_add(seed)).collect()
    }

    #[test]
    fn tcp_echo_returns_every_byte() {
        let (mut executor, client, spawner) = setup();
        let payload = pattern(256 * 1024, 7);
        let received = Rc::new(core::cell::RefCell::new(Vec::new()));
        let (sink, expected_length) = (received.clone(), payload.len());
        spawner.spawn_named("client", async move {
            let remote = IpEndpoint::new(SERVER.into(), ECHO_PORT);
            let stream = TcpStream::connect(&client, remote, 40000).await.expect("connects");
            let stream = Rc::new(core::cell::RefCell::new(stream));
            let mut buffer = [0u8; 2048];
            let mut sent = 0;
            // Write and read in turns so that neither window fills up.
            while sink.borrow().len() < expected_length {
                if sent < payload.len() {
                    let end = (sent + 8192).min(payload.len());
                    stream.borrow_mut().write_all(&payload[sent..end]).await.expect("writes");
                    sent = end;
                }
                while sink.borrow().len() < sent {
                    let count = stream.borrow_mut().read(&mut buffer).await.expect("reads");
                    assert!(count > 0, "echo closed early");
                    sink.borrow_mut().extend_from_slice(&buffer[..count]);
                }
            }
        });
        assert!(executor.run_until(2_000_000, || received.borrow().len() >= expected_length));
        assert_eq!(*received.borrow(), pattern(256 * 1024, 7));
    }

    #[test]
    fn tcp_echo_serves_sixteen_connections_at_once() {
        let (mut executor, client, spawner) = setup();
        let finished = Rc::new(Cell::new(0));
        for index in 0..16u16 {
            let (client, finished) = (client.clone(), finished.clone());
            spawner.spawn_named("client", async move {
                let remote = IpEndpoint::new(SERVER.into(), ECHO_PORT);
                let mut stream = TcpStream::connect(&client, remote, 41000 + index).await.expect("connects");
                let message = pattern(1000, index as u8);
                // Hold the connection open across several exchanges so that
                // all sixteen are established at the same time.
                for _ in 0..4 {
                    stream.write_all(&message).await.expect("writes");
                    let mut echoed = std::vec![0u8; message.len()];
                    assert!(stream.read_exact(&mut echoed).await.expect("reads"));
                    assert_eq!(echoed, message);
                    crate::executor::yield_now().await;
                }
                finished.set(finished.get() + 1);
            });
        }
        assert!(executor.run_until(2_000_000, || finished.get() == 16), "finished {}", finished.get());
    }

    #[test]
    fn udp_echo_returns_each_datagram() {
        let (mut executor, client, spawner) = setup();
        let done = Rc::new(Cell::new(false));
        let flag = done.clone();
        spawner.spawn_named("client", async move {
            let mut socket = UdpSocket::bind(&client, 40001, 8, 16 * 1024).expect("binds");
            let server = IpEndpoint::new(SERVER.into(), ECHO_PORT);
            for length in [1usize, 2, 100, 512, 1000, 1472] {
                let datagram = pattern(length, length as u8);
                socket.send_to(&datagram, server).await.expect("sends");
                let mut buffer = [0u8; 2000];
                let (count, source) = socket.recv_from(&mut buffer).await;
                assert_eq!(source, server);
                assert_eq!(&buffer[..count], &datagram[..]);
            }
            flag.set(true);
        });
        assert!(executor.run_until(2_000_000, || done.get()));
    }
}
