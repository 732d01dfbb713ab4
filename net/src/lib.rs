//! Networking for the unikernel: smoltcp glue and the services.
//!
//! - [`executor`]: the single-CPU task executor the services run on.
//! - [`stack`]: the smoltcp interface and socket set shared by all tasks.
//! - [`nic`]: smoltcp's `Device` over the virtio-net driver.
//! - [`tcp`], [`udp`]: async sockets over smoltcp.
//! - [`timer`]: deadlines and timeouts for tasks.
//! - [`services`]: echo and the other services.
//! - [`netperf`]: netperf 2.7's control protocol as a pure codec.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod executor;
pub mod services;
pub mod stack;
pub mod tcp;
pub mod timer;
#[cfg(test)]
mod testing;
pub mod udp;
pub mod netperf;
pub mod nic;

/// Errors of the socket layer and the services.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetError {
    /// The port cannot be bound (zero, or already bound).
    InvalidPort { port: u16 },
    /// The peer reset the connection.
    ConnectionReset,
    /// The connection can no longer send.
    ConnectionClosed,
    /// The peer closed the connection after `received` bytes of a message.
    UnexpectedEof { received: usize },
    /// No route or neighbour for the destination.
    Unaddressable,
}
