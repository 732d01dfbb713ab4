//! Async UDP on top of smoltcp sockets.

use core::future::poll_fn;
use core::task::Poll;

use smoltcp::iface::SocketHandle;
use smoltcp::wire::IpEndpoint;

use crate::stack::Stack;
use crate::NetError;

/// A bound UDP socket.
pub struct UdpSocket {
    stack: Stack,
    handle: SocketHandle,
}

impl UdpSocket {
    /// Binds `port` with room for `packets` datagrams and `payload_bytes`
    /// of payload in each direction.
    pub fn bind(stack: &Stack, port: u16, packets: usize, payload_bytes: usize) -> Result<Self, NetError> {
        let handle = stack.add_udp_socket(packets, payload_bytes);
        if stack.with_udp(handle, |socket| socket.bind(port)).is_err() {
            stack.remove(handle);
            return Err(NetError::InvalidPort { port });
        }
        Ok(Self { stack: stack.clone(), handle })
    }

    /// Receives one datagram into `buffer`; returns its length (truncated to
    /// the buffer) and source.
    pub async fn recv_from(&mut self, buffer: &mut [u8]) -> (usize, IpEndpoint) {
        poll_fn(|context| {
            self.stack.with_udp(self.handle, |socket| {
                match socket.recv() {
                    Ok((payload, metadata)) => {
                        let length = payload.len().min(buffer.len());
                        buffer[..length].copy_from_slice(&payload[..length]);
                        Poll::Ready((length, metadata.endpoint))
                    }
                    Err(_) => {
                        socket.register_recv_waker(context.waker());
                        Poll::Pending
                    }
                }
            })
        })
        .await
    }

    /// Queues one datagram to `destination`, waiting for buffer space.
    pub async fn send_to(&mut self, data: &[u8], destination: IpEndpoint) -> Result<(), NetError> {
        let result = poll_fn(|context| {
            self.stack.with_udp(self.handle, |socket| match socket.send_slice(data, destination) {
                Ok(()) => Poll::Ready(Ok(())),
                Err(smoltcp::socket::udp::SendError::BufferFull) => {
                    socket.register_send_waker(context.waker());
                    Poll::Pending
                }
                Err(smoltcp::socket::udp::SendError::Unaddressable) => {
                    Poll::Ready(Err(NetError::Unaddressable))
                }
            })
        })
        .await;
        self.stack.wake_interface();
        result
    }
}

impl Drop for UdpSocket {
    fn drop(&mut self) {
        self.stack.remove(self.handle);
    }
}
