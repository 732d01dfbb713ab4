//! Clients for the guest's echo service (RFC 862) over the forwarded port.
//!
//! Every call takes a timeout, so a guest that stops responding fails the
//! test instead of blocking it.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

/// Largest UDP payload in one 1500-byte Ethernet frame: 1500 minus the
/// 20-byte IPv4 and 8-byte UDP headers.
pub const MAX_UDP_PAYLOAD_BYTES: usize = 1472;

/// Sends `payload` over one TCP connection and returns what came back,
/// which is `payload.len()` bytes unless the call fails.
///
/// A second thread writes while this one reads, so a payload larger than
/// the socket buffers on both sides cannot deadlock. After the payload is
/// back the client half-closes and expects the server to close without
/// sending more.
///
/// # Errors
/// Connection failures, a timeout (the message counts the bytes received),
/// the server closing early, or extra bytes after the payload.
pub fn tcp_echo(address: SocketAddr, payload: &[u8], timeout: Duration) -> io::Result<Vec<u8>> {
    let deadline = Instant::now() + timeout;
    let stream = TcpStream::connect_timeout(&address, timeout)?;
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(timeout))?;
    let writer_stream = stream.try_clone()?;

    thread::scope(|scope| {
        let writer = scope.spawn(move || (&writer_stream).write_all(payload));
        let received = read_exactly(&stream, payload.len(), deadline);
        if received.is_err() {
            // Unblocks the writer if the server stopped reading.
            let _ = stream.shutdown(Shutdown::Both);
        }
        let written = writer.join().expect("the writer thread does not panic");
        let received = received?;
        written.map_err(|error| context(error, "writing the payload"))?;

        stream.shutdown(Shutdown::Write)?;
        expect_close(&stream, deadline)?;
        Ok(received)
    })
}

/// Reads exactly `length` bytes before `deadline`.
fn read_exactly(mut stream: &TcpStream, length: usize, deadline: Instant) -> io::Result<Vec<u8>> {
    let mut received = vec![0u8; length];
    let mut filled = 0;
    while filled < length {
        set_read_deadline(stream, deadline, filled, length)?;
        match stream.read(&mut received[filled..]) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the server closed the connection after {filled} of {length} bytes"),
                ))
            }
            Ok(count) => filled += count,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(context(error, &format!("after {filled} of {length} bytes"))),
        }
    }
    Ok(received)
}

/// Reads until the server closes, and fails on any byte it still sends.
fn expect_close(mut stream: &TcpStream, deadline: Instant) -> io::Result<()> {
    let mut extra = [0u8; 4096];
    let mut extra_bytes = 0usize;
    loop {
        set_read_deadline(stream, deadline, 0, 0)?;
        match stream.read(&mut extra) {
            Ok(0) if extra_bytes == 0 => return Ok(()),
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("the server sent {extra_bytes} bytes after the echoed payload"),
                ))
            }
            Ok(count) => extra_bytes += count,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(context(error, "waiting for the server to close")),
        }
    }
}

fn set_read_deadline(
    stream: &TcpStream,
    deadline: Instant,
    filled: usize,
    length: usize,
) -> io::Result<()> {
    let remaining = deadline.saturating_duration_since(Instant::now());
    if remaining.is_zero() {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("timed out after receiving {filled} of {length} bytes"),
        ));
    }
    stream.set_read_timeout(Some(remaining))
}

fn context(error: io::Error, what: &str) -> io::Error {
    io::Error::new(error.kind(), format!("{what}: {error}"))
}

/// One TCP connection for a sequence of short request/response exchanges.
pub struct TcpEchoSession {
    stream: TcpStream,
}

impl TcpEchoSession {
    /// Connects; every later read and write times out after `timeout`.
    ///
    /// # Errors
    /// Connection failures.
    pub fn connect(address: SocketAddr, timeout: Duration) -> io::Result<Self> {
        let stream = TcpStream::connect_timeout(&address, timeout)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(Self { stream })
    }

    /// Sends `message` and reads the same number of bytes back. The
    /// message must fit the socket buffers (tens of KiB), because one thread
    /// writes all of it before reading; use [`tcp_echo`] for bulk data.
    ///
    /// # Errors
    /// Write or read failures, including a timeout or an early close.
    pub fn exchange(&mut self, message: &[u8]) -> io::Result<Vec<u8>> {
        self.stream
            .write_all(message)
            .map_err(|error| context(error, "writing a message"))?;
        let mut received = vec![0u8; message.len()];
        self.stream
            .read_exact(&mut received)
            .map_err(|error| context(error, &format!("reading a {}-byte echo", message.len())))?;
        Ok(received)
    }

    /// Half-closes the connection and checks that the server closes it
    /// without sending anything more.
    ///
    /// # Errors
    /// Extra bytes, a timeout, or a socket error.
    pub fn close(self) -> io::Result<()> {
        self.stream.shutdown(Shutdown::Write)?;
        let timeout = self
            .stream
            .read_timeout()?
            .unwrap_or(Duration::from_secs(30));
        expect_close(&self.stream, Instant::now() + timeout)
    }
}

/// A UDP socket on 127.0.0.1 connected to the echo port.
pub struct UdpEchoClient {
    socket: UdpSocket,
}

impl UdpEchoClient {
    /// Binds an ephemeral port; each reply is awaited for up to `timeout`.
    ///
    /// # Errors
    /// Socket failures.
    pub fn connect(address: SocketAddr, timeout: Duration) -> io::Result<Self> {
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
        socket.connect(address)?;
        socket.set_read_timeout(Some(timeout))?;
        Ok(Self { socket })
    }

    /// Sends one datagram and returns the next datagram received.
    ///
    /// # Errors
    /// Send failures, or a timeout when no reply arrives.
    pub fn exchange(&self, datagram: &[u8]) -> io::Result<Vec<u8>> {
        let sent = self.socket.send(datagram)?;
        if sent != datagram.len() {
            return Err(io::Error::other(format!(
                "sent {sent} of {} bytes",
                datagram.len()
            )));
        }
        // Larger than any datagram, so a reply that grew is seen whole.
        let mut buffer = vec![0u8; 65_536];
        let length = self.socket.recv(&mut buffer).map_err(|error| {
            context(
                error,
                &format!("waiting for the echo of a {}-byte datagram", datagram.len()),
            )
        })?;
        buffer.truncate(length);
        Ok(buffer)
    }
}

#[cfg(test)]
mod tests {
    //! The clients against small echo servers on 127.0.0.1 in this process,
    //! including servers that misbehave the way a broken guest could.
    use super::*;
    use crate::payload::pseudo_random_bytes;
    use std::net::TcpListener;

    /// Serves one TCP connection with `serve` on a thread.
    fn tcp_server(serve: impl FnOnce(TcpStream) + Send + 'static) -> SocketAddr {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let address = listener.local_addr().unwrap();
        thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            serve(stream);
        });
        address
    }

    fn echo_all(mut stream: TcpStream) {
        let mut buffer = [0u8; 1024];
        loop {
            match stream.read(&mut buffer) {
                Ok(0) | Err(_) => return,
                Ok(count) => {
                    if stream.write_all(&buffer[..count]).is_err() {
                        return;
                    }
                }
            }
        }
    }

    #[test]
    fn tcp_echo_of_large_payload() {
        let address = tcp_server(echo_all);
        // Larger than the socket buffers, so a client that wrote everything
        // before reading would deadlock.
        let payload = pseudo_random_bytes(1, 8 << 20);
        let received = tcp_echo(address, &payload, Duration::from_secs(60)).unwrap();
        assert!(received == payload);
    }

    #[test]
    fn tcp_echo_detects_early_close() {
        // Reads everything, so that closing sends FIN rather than RST.
        let address = tcp_server(|mut stream| {
            let mut buffer = [0u8; 100];
            let _ = stream.read_exact(&mut buffer);
            let _ = stream.write_all(&buffer[..10]);
        });
        let error = tcp_echo(address, &[7u8; 100], Duration::from_secs(10)).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof, "{error}");
        assert!(
            error.to_string().contains("after 10 of 100 bytes"),
            "{error}"
        );
    }

    #[test]
    fn tcp_echo_detects_extra_bytes() {
        let address = tcp_server(|mut stream| {
            let mut buffer = [0u8; 4];
            stream.read_exact(&mut buffer).unwrap();
            stream.write_all(&buffer).unwrap();
            stream.write_all(b"more").unwrap();
        });
        let error = tcp_echo(address, b"ping", Duration::from_secs(10)).unwrap_err();
        assert!(error.to_string().contains("sent 4 bytes after"), "{error}");
    }

    #[test]
    fn tcp_echo_times_out_on_silent_server() {
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let address = tcp_server(move |stream| {
            let _ = hold.recv();
            drop(stream);
        });
        let started = Instant::now();
        let error = tcp_echo(address, b"ping", Duration::from_millis(300)).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(
            matches!(
                error.kind(),
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
            ),
            "{error}"
        );
        drop(release);
    }

    #[test]
    fn session_exchanges_then_closes() {
        let address = tcp_server(echo_all);
        let mut session = TcpEchoSession::connect(address, Duration::from_secs(10)).unwrap();
        for message in [&b"a"[..], b"second message", &[0u8; 3000]] {
            assert_eq!(session.exchange(message).unwrap(), message);
        }
        session.close().unwrap();
    }

    #[test]
    fn udp_exchange_and_timeout() {
        let server = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let address = server.local_addr().unwrap();
        thread::spawn(move || {
            let mut buffer = [0u8; 2048];
            // Echoes the first datagram and ignores the second.
            let (length, peer) = server.recv_from(&mut buffer).unwrap();
            server.send_to(&buffer[..length], peer).unwrap();
            let _ = server.recv_from(&mut buffer);
        });
        let client = UdpEchoClient::connect(address, Duration::from_millis(300)).unwrap();
        let datagram = pseudo_random_bytes(2, MAX_UDP_PAYLOAD_BYTES);
        assert_eq!(client.exchange(&datagram).unwrap(), datagram);
        assert!(client.exchange(b"lost").is_err());
    }
}
