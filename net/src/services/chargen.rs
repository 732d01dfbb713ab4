//! The character generator service (RFC 864) on TCP: after a connection
//! opens, the server sends lines of text until the peer closes.
//!
//! Each line is 72 characters of the 95 printable ASCII characters (space
//! to `~`) followed by CR LF. Line `n` starts with the character `n mod 95`
//! places after the space, so the text repeats every 95 lines. That cycle
//! is built at compile time and sent from a moving offset, so a connection
//! costs no memory beyond its socket buffers.

use log::debug;

use super::netserver::ConnectionLimit;
use crate::executor::Spawner;
use crate::stack::Stack;
use crate::tcp::{TcpListener, TcpStream};
use crate::NetError;

/// The well-known chargen port.
pub const CHARGEN_PORT: u16 = 19;
/// Connections served at once. While all are taken, up to `TCP_BACKLOG`
/// more complete their handshake and wait, and later ones are reset.
pub const MAX_TCP_CONNECTIONS: usize = 16;
/// Sockets kept listening for connections that arrive together.
const TCP_BACKLOG: usize = 4;
/// Socket buffer per direction: enough to keep a link busy, small enough
/// for many slow readers.
const SOCKET_BUFFER_BYTES: usize = 16 * 1024;

/// Characters per line, before CR LF.
pub const LINE_CHARACTERS: usize = 72;
const LINE_BYTES: usize = LINE_CHARACTERS + 2;
/// Printable ASCII characters: space (0x20) to tilde (0x7e).
const PRINTABLE_COUNT: usize = 95;
const FIRST_PRINTABLE: u8 = b' ';
const CYCLE_BYTES: usize = PRINTABLE_COUNT * LINE_BYTES;

/// One full cycle of 95 lines.
static CYCLE: [u8; CYCLE_BYTES] = build_cycle();

const fn build_cycle() -> [u8; CYCLE_BYTES] {
    let mut cycle = [0u8; CYCLE_BYTES];
    let mut line = 0;
    while line < PRINTABLE_COUNT {
        let mut column = 0;
        while column < LINE_CHARACTERS {
            let character = (line + column) % PRINTABLE_COUNT;
            cycle[line * LINE_BYTES + column] = FIRST_PRINTABLE + character as u8;
            column += 1;
        }
        cycle[line * LINE_BYTES + LINE_CHARACTERS] = b'\r';
        cycle[line * LINE_BYTES + LINE_CHARACTERS + 1] = b'\n';
        line += 1;
    }
    cycle
}

/// Serves TCP chargen on `port`, one task per connection.
pub async fn serve_tcp(stack: Stack, spawner: Spawner, port: u16) -> Result<(), NetError> {
    let mut listener =
        TcpListener::bind_with_buffers(&stack, port, TCP_BACKLOG, SOCKET_BUFFER_BYTES)?;
    let limit = ConnectionLimit::new(MAX_TCP_CONNECTIONS);
    loop {
        limit.wait_for_free_slot().await;
        let stream = listener.accept().await?;
        let slot = limit.take_slot();
        spawner.spawn_named("chargen-tcp-connection", async move {
            generate(stream).await;
            drop(slot);
        });
    }
}

/// Sends the cycle until the peer closes its side (FIN) or resets.
///
/// NOTE: data the peer sends is never read, because a stream cannot wait
/// for reads and writes at once. RFC 864 discards received data anyway, so
/// the only effect is that the peer's window closes after one buffer. A
/// peer that half-closes while its receive window is zero keeps its
/// connection until it resets.
async fn generate(mut stream: TcpStream) {
    let peer = stream.remote_endpoint();
    let mut offset = 0;
    let mut sent_bytes = 0u64;
    let ended = loop {
        if stream.state() == smoltcp::socket::tcp::State::CloseWait {
            break Ok(());
        }
        match stream.write(&CYCLE[offset..]).await {
            Ok(count) => {
                offset = (offset + count) % CYCLE_BYTES;
                sent_bytes += count as u64;
            }
            Err(error) => break Err(error),
        }
    };
    debug!("chargen: connection from {peer:?} ended after {sent_bytes} bytes: {ended:?}");
    stream.close();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{two_stacks, TwoStacks, SERVER};
    use alloc::rc::Rc;
    use core::cell::RefCell;
    use smoltcp::wire::IpEndpoint;
    use std::vec::Vec;


    #[test]
    fn cycle_lines_rotate_through_printable_ascii() {
        let lines: Vec<&[u8]> = CYCLE.chunks(LINE_BYTES).collect();
        assert_eq!(lines.len(), 95);
        assert_eq!(
            &lines[0][..LINE_CHARACTERS],
            &(b' '..=b'g').collect::<Vec<u8>>()[..]
        );
        assert_eq!(
            &lines[1][..LINE_CHARACTERS],
            &(b'!'..=b'h').collect::<Vec<u8>>()[..]
        );
        // Line 94 starts at '~' and wraps to the space.
        assert_eq!(&lines[94][..3], b"~ !");
        for line in &lines {
            assert_eq!(&line[LINE_CHARACTERS..], b"\r\n");
            assert!(line[..LINE_CHARACTERS]
                .iter()
                .all(|byte| (0x20..=0x7e).contains(byte)));
        }
    }

    /// Reads 100 000 bytes, checks they are the RFC 864 line sequence, then
    /// closes: the server must notice and end the connection.
    #[test]
    fn tcp_chargen_sends_lines_until_peer_closes() {
        let TwoStacks { mut executor, spawner, server, client } = two_stacks();
        spawner.spawn_named("chargen", {
            let (stack, spawner) = (server.clone(), spawner.clone());
            async move {
                serve_tcp(stack, spawner, CHARGEN_PORT)
                    .await
                    .expect("chargen port binds")
            }
        });
        let received = Rc::new(RefCell::new(Vec::new()));
        let sink = received.clone();
        let finished = Rc::new(RefCell::new(false));
        let done = finished.clone();
        spawner.spawn_named("client", async move {
            let remote = IpEndpoint::new(SERVER.into(), CHARGEN_PORT);
            let mut stream = TcpStream::connect(&client, remote, 40000)
                .await
                .expect("connects");
            let mut buffer = [0u8; 4096];
            while sink.borrow().len() < 100_000 {
                let count = stream.read(&mut buffer).await.expect("reads");
                assert!(count > 0, "chargen closed first");
                sink.borrow_mut().extend_from_slice(&buffer[..count]);
            }
            // Half-close, then read what is still in flight: the server
            // must stop at our FIN and close its side too.
            stream.close();
            loop {
                let count = stream.read(&mut buffer).await.expect("reads after close");
                if count == 0 {
                    break;
                }
                sink.borrow_mut().extend_from_slice(&buffer[..count]);
            }
            *done.borrow_mut() = true;
        });
        assert!(
            executor.run_until(2_000_000, || *finished.borrow()),
            "the server never closed"
        );
        let expected: Vec<u8> = CYCLE
            .iter()
            .copied()
            .cycle()
            .take(received.borrow().len())
            .collect();
        assert!(
            *received.borrow() == expected,
            "the text differs from the RFC 864 pattern"
        );

        assert!(received.borrow().len() >= 100_000);
        // The closed connection's socket is reaped: only the listener's remain.
        let listening_sockets = TCP_BACKLOG;
        assert!(
            executor.run_until(2_000_000, || server.socket_count() == listening_sockets),
            "server sockets: {}",
            server.socket_count()
        );
    }
}
