//! Async TCP on top of smoltcp sockets: a listener with a backlog of
//! listening sockets, and streams with `read`, `write` and `close`.
//!
//! smoltcp has no accept queue: a socket in LISTEN becomes the connection.
//! [`TcpListener`] therefore keeps several sockets listening on its port and
//! replaces each one it hands out, so that connections arriving together all
//! complete their handshake.

use alloc::collections::VecDeque;
use core::future::poll_fn;
use core::task::Poll;

use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp::{self, State};
use smoltcp::wire::IpEndpoint;

use crate::stack::{Stack, TCP_BUFFER_BYTES};
use crate::NetError;

/// How long the peer of an accepted connection may stay silent (no data,
/// no acknowledgement, no reply to keep-alive probes) before smoltcp
/// resets the connection.
pub const PEER_SILENCE_TIMEOUT: smoltcp::time::Duration = smoltcp::time::Duration::from_secs(15);
/// Interval of keep-alive probes on an idle accepted connection.
pub const KEEP_ALIVE_INTERVAL: smoltcp::time::Duration = smoltcp::time::Duration::from_secs(5);

/// A TCP port in LISTEN with a backlog of sockets.
pub struct TcpListener {
    stack: Stack,
    port: u16,
    /// Sockets in LISTEN; kept at `backlog` sockets.
    listening: VecDeque<SocketHandle>,
    /// Sockets that left LISTEN (handshake under way or done), oldest first.
    pending: VecDeque<SocketHandle>,
    backlog: usize,
    buffer_bytes: usize,
}

impl TcpListener {
    /// Listens on `port` with `backlog` sockets of the default buffer size.
    pub fn bind(stack: &Stack, port: u16, backlog: usize) -> Result<Self, NetError> {
        Self::bind_with_buffers(stack, port, backlog, TCP_BUFFER_BYTES)
    }

    /// Listens on `port` with `backlog` sockets of `buffer_bytes` each way.
    pub fn bind_with_buffers(stack: &Stack, port: u16, backlog: usize, buffer_bytes: usize) -> Result<Self, NetError> {
        let mut listener = Self {
            stack: stack.clone(),
            port,
            listening: VecDeque::new(),
            pending: VecDeque::new(),
            backlog: backlog.max(1),
            buffer_bytes,
        };
        listener.refill()?;
        Ok(listener)
    }

    /// Returns the port.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn new_listening_socket(&self) -> Result<SocketHandle, NetError> {
        let handle = self.stack.add_tcp_socket(self.buffer_bytes);
        let port = self.port;
        let listened = self.stack.with_tcp(handle, |socket| socket.listen(port));
        if listened.is_err() {
            self.stack.remove(handle);
            return Err(NetError::InvalidPort { port });
        }
        Ok(handle)
    }

    /// Moves sockets that received a SYN to `pending` and tops the listening
    /// set up again, so that new connections keep completing their handshakes
    /// while earlier ones finish theirs.
    fn refill(&mut self) -> Result<(), NetError> {
        let stack = &self.stack;
        let pending = &mut self.pending;
        self.listening.retain(|&handle| {
            let still_listening = stack.with_tcp(handle, |socket| socket.state() == State::Listen);
            if !still_listening {
                pending.push_back(handle);
            }
            still_listening
        });
        while self.listening.len() < self.backlog {
            let handle = self.new_listening_socket()?;
            self.listening.push_back(handle);
        }
        Ok(())
    }

    /// Waits for a connection that completed its handshake.
    pub async fn accept(&mut self) -> Result<TcpStream, NetError> {
        let handle = poll_fn(|context| {
            if let Err(error) = self.refill() {
                return Poll::Ready(Err(error));
            }
            let stack = &self.stack;
            let mut ready = None;
            // A handshake that was reset puts the socket back in LISTEN (or
            // CLOSED): keep such sockets out of the pending list.
            self.pending.retain(|&handle| {
                let state = stack.with_tcp(handle, |socket| socket.state());
                match state {
                    State::Listen | State::Closed => {
                        stack.remove(handle);
                        false
                    }
                    State::SynReceived => true,
                    _ => {
                        if ready.is_none() {
                            ready = Some(handle);
                        }
                        true
                    }
                }
            });
            if let Some(handle) = ready {
                self.pending.retain(|&pending| pending != handle);
                return Poll::Ready(Ok(handle));
            }
            for &handle in self.listening.iter().chain(self.pending.iter()) {
                stack.register_tcp_recv_waker(handle, context);
            }
            Poll::Pending
        })
        .await?;
        // A peer that stops answering (gone, or its link down) ends the
        // connection after PEER_SILENCE_TIMEOUT instead of holding the socket
        // with retransmissions forever, smoltcp's default. smoltcp counts the
        // timeout from the peer's last segment even on an idle connection,
        // so keep-alive probes make an idle but healthy peer answer.
        self.stack.with_tcp(handle, |socket| {
            socket.set_keep_alive(Some(KEEP_ALIVE_INTERVAL));
            socket.set_timeout(Some(PEER_SILENCE_TIMEOUT));
        });
        Ok(TcpStream { stack: self.stack.clone(), handle })
    }
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        for &handle in self.listening.iter().chain(self.pending.iter()) {
            self.stack.with_tcp(handle, |socket| socket.abort());
            self.stack.release_tcp(handle);
        }
        self.stack.wake_interface();
    }
}

/// One TCP connection. Dropping it closes the connection gracefully; the
/// stack removes the socket once the close has finished.
pub struct TcpStream {
    stack: Stack,
    handle: SocketHandle,
}

impl TcpStream {
    /// Connects from `local_port` to `remote` and waits for the handshake.
    pub async fn connect(stack: &Stack, remote: IpEndpoint, local_port: u16) -> Result<Self, NetError> {
        let handle = stack.add_tcp_socket(TCP_BUFFER_BYTES);
        let stream = Self { stack: stack.clone(), handle };
        if !stack.connect_tcp(handle, remote, local_port) {
            return Err(NetError::Unaddressable);
        }
        stack.wake_interface();
        poll_fn(|context| {
            stack.with_tcp(handle, |socket| match socket.state() {
                State::SynSent | State::SynReceived => {
                    socket.register_send_waker(context.waker());
                    Poll::Pending
                }
                State::Established => Poll::Ready(Ok(())),
                _ => Poll::Ready(Err(NetError::ConnectionReset)),
            })
        })
        .await?;
        Ok(stream)
    }

    /// Returns the peer's address and port.
    pub fn remote_endpoint(&self) -> Option<IpEndpoint> {
        self.stack.with_tcp(self.handle, |socket| socket.remote_endpoint())
    }

    /// Returns the TCP state.
    pub fn state(&self) -> State {
        self.stack.with_tcp(self.handle, |socket| socket.state())
    }

    /// Turns Nagle's algorithm off (`no_delay = true`) or on.
    pub fn set_no_delay(&mut self, no_delay: bool) {
        self.stack.with_tcp(self.handle, |socket| socket.set_nagle_enabled(!no_delay));
    }

    /// Sets the delayed-ACK time; `None` acknowledges every segment at once.
    pub fn set_ack_delay(&mut self, delay: Option<smoltcp::time::Duration>) {
        self.stack.with_tcp(self.handle, |socket| socket.set_ack_delay(delay));
    }

    /// Reads at least one byte into `buffer`; 0 means the peer closed its side.
    pub async fn read(&mut self, buffer: &mut [u8]) -> Result<usize, NetError> {
        let result = poll_fn(|context| {
            self.stack.with_tcp(self.handle, |socket| {
                if socket.can_recv() {
                    return Poll::Ready(socket.recv_slice(buffer).map_err(|_| NetError::ConnectionReset));
                }
                if !socket.may_recv() {
                    return Poll::Ready(match socket.state() {
                        State::Closed if socket.remote_endpoint().is_none() => Err(NetError::ConnectionReset),
                        _ => Ok(0),
                    });
                }
                socket.register_recv_waker(context.waker());
                Poll::Pending
            })
        })
        .await;
        // Reading opened receive window space: let the interface advertise it.
        self.stack.wake_interface();
        result
    }

    /// Reads exactly `buffer.len()` bytes. Returns `Ok(false)` when the peer
    /// closed before the first byte, and an error when it closed midway.
    pub async fn read_exact(&mut self, buffer: &mut [u8]) -> Result<bool, NetError> {
        let mut filled = 0;
        while filled < buffer.len() {
            let count = self.read(&mut buffer[filled..]).await?;
            if count == 0 {
                return if filled == 0 { Ok(false) } else { Err(NetError::UnexpectedEof { received: filled }) };
            }
            filled += count;
        }
        Ok(true)
    }

    /// Queues some of `data` for sending and returns how much was queued.
    pub async fn write(&mut self, data: &[u8]) -> Result<usize, NetError> {
        let result = poll_fn(|context| {
            self.stack.with_tcp(self.handle, |socket| {
                if !socket.may_send() {
                    return Poll::Ready(Err(NetError::ConnectionClosed));
                }
                if socket.can_send() {
                    return Poll::Ready(socket.send_slice(data).map_err(|_| NetError::ConnectionClosed));
                }
                socket.register_send_waker(context.waker());
                Poll::Pending
            })
        })
        .await;
        self.stack.wake_interface();
        result
    }

    /// Queues all of `data` for sending.
    pub async fn write_all(&mut self, mut data: &[u8]) -> Result<(), NetError> {
        while !data.is_empty() {
            let count = self.write(data).await?;
            data = &data[count..];
        }
        Ok(())
    }

    /// Waits until every queued byte has been acknowledged by the peer.
    pub async fn flush(&mut self) -> Result<(), NetError> {
        poll_fn(|context| {
            self.stack.with_tcp(self.handle, |socket| {
                if socket.send_queue() == 0 {
                    return Poll::Ready(Ok(()));
                }
                if !socket.may_send() && socket.state() == State::Closed {
                    return Poll::Ready(Err(NetError::ConnectionReset));
                }
                socket.register_send_waker(context.waker());
                Poll::Pending
            })
        })
        .await
    }

    /// Sends FIN after the queued data; reads still work until the peer closes.
    pub fn close(&mut self) {
        self.stack.with_tcp(self.handle, close_without_timeout);
        self.stack.wake_interface();
    }

    /// Resets the connection at once.
    pub fn abort(&mut self) {
        self.stack.with_tcp(self.handle, |socket| socket.abort());
        self.stack.wake_interface();
    }

    /// Waits until the connection is fully closed (or the peer reset it).
    pub async fn wait_closed(&mut self) {
        poll_fn(|context| {
            self.stack.with_tcp(self.handle, |socket| match socket.state() {
                State::Closed | State::TimeWait => Poll::Ready(()),
                _ => {
                    socket.register_recv_waker(context.waker());
                    Poll::Pending
                }
            })
        })
        .await
    }
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        self.stack.with_tcp(self.handle, |socket| {
            if socket.state() != tcp::State::Closed {
                close_without_timeout(socket);
            }
        });
        self.stack.release_tcp(self.handle);
        self.stack.wake_interface();
    }
}

/// Sends FIN after clearing the unacknowledged-data timeout. smoltcp counts
/// that timeout from the peer's last segment, and queuing a FIN (unlike
/// queuing data) does not restart the count, so a connection idle for longer
/// than the timeout would be reset instead of closed. The stack aborts
/// sockets that take too long to close.
fn close_without_timeout(socket: &mut tcp::Socket<'static>) {
    socket.set_timeout(None);
    socket.close();
}
