//! The netperf server ("netserver") for the unmodified netperf 2.7.0
//! client: `TCP_RR`, `UDP_RR`, `TCP_CRR`, `TCP_STREAM` and `TCP_MAERTS`.
//!
//! Owns the control listener (TCP port 12865 by default), one task per
//! control connection (`control`), the data ports (`data_socket`), one
//! task per test's data phase (`data_phase`, `test_task`), the results
//! (`results`) and the service's counters (`stats`). The messages come
//! from the codec in [`crate::netperf`].
//!
//! Per test: netperf sends a DO_OMNI request, and the service binds the data
//! socket (TCP: listening) and only then sends the response, because
//! netperf connects as soon as it reads it. The server's deadline starts
//! with the response: T + 4 s for a timed test, exactly T for
//! `TCP_MAERTS`. After the data phase the data sockets are closed, then
//! the results are sent. Several tests may follow on one control
//! connection (netperf `-i`), and end-of-file closes it.
//!
//! Behind NAT (QEMU user networking), netperf connects to the forwarded
//! host address on the data port the response names. The default data
//! ports therefore come from a configured range that the host forwards with
//! the same numbers. Replies always go to the actual peer of each
//! connection or datagram.
//!
//! Bad input never stops the service: each problem gets the reply netperf
//! understands or a closed connection, a counter in [`NetserverStats`] and
//! a rate-limited warning.

mod connection_limit;
mod control;
mod data_phase;
mod data_socket;
mod results;
mod stats;
mod test_task;

#[cfg(test)]
mod tests;

use alloc::rc::Rc;

use log::debug;

pub use stats::{ErrorReason, NetserverStats, SharedNetserverStats, TEST_KINDS};

use crate::executor::Spawner;
use crate::stack::Stack;
use crate::tcp::TcpListener;
use crate::timer::Timers;
use crate::NetError;
pub(crate) use connection_limit::ConnectionLimit;
use data_socket::DataPorts;

/// netserver's well-known control port.
pub const NETSERVER_PORT: u16 = 12865;
/// Data ports used when netperf requests none. QEMU user networking must
/// forward them with the same numbers on the host.
pub const DEFAULT_DATA_PORTS: (u16, u16) = (12866, 12869);
/// Control connections served at once. While all are taken, the listener's
/// sockets still complete up to `CONTROL_BACKLOG` handshakes, which wait
/// to be served, and later connection attempts are reset.
pub const MAX_CONTROL_CONNECTIONS: usize = 16;
/// Listening sockets of the control port.
const CONTROL_BACKLOG: usize = 4;
/// Buffer of each control connection per direction: control messages are
/// 656 bytes and netperf waits for each reply.
const CONTROL_BUFFER_BYTES: usize = 4 * 1024;

/// CPU time counters the kernel keeps, read at the start and the end of a
/// test to report the server's utilisation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuCounters {
    /// Ticks the CPU spent running (not halted) since boot.
    pub busy_ticks: u64,
    /// Ticks elapsed since boot, busy or halted.
    pub total_ticks: u64,
}

/// Settings of the netperf service.
#[derive(Clone, Debug)]
pub struct NetserverConfig {
    /// TCP port of the control listener (netperf `-p`).
    pub control_port: u16,
    /// Inclusive range of data ports used when netperf requests port 0. A
    /// requested port (netperf `-- -P ,N`) is used even outside the range.
    pub data_ports: (u16, u16),
    /// Reads the kernel's CPU counters. With `None` the response clears
    /// `MEASURE_CPU`, and netperf prints its "not measured" form for `-C`.
    pub cpu: Option<fn() -> CpuCounters>,
    /// The counters the service updates. Keep a clone to read them.
    pub stats: SharedNetserverStats,
}

impl Default for NetserverConfig {
    fn default() -> Self {
        NetserverConfig {
            control_port: NETSERVER_PORT,
            data_ports: DEFAULT_DATA_PORTS,
            cpu: None,
            stats: SharedNetserverStats::default(),
        }
    }
}

/// State that every control connection of the service shares.
struct Service {
    stack: Stack,
    spawner: Spawner,
    timers: Timers,
    cpu: Option<fn() -> CpuCounters>,
    ports: Rc<DataPorts>,
    stats: SharedNetserverStats,
}

/// Serves netperf on `config.control_port`, one task per control
/// connection and one per test. Runs until the control listener fails.
///
/// # Errors
///
/// [`NetError::InvalidPort`] when the control port is 0 or the data port
/// range is empty or starts at 0.
pub async fn serve(
    stack: Stack,
    spawner: Spawner,
    timers: Timers,
    config: NetserverConfig,
) -> Result<(), NetError> {
    let (first, last) = config.data_ports;
    if first == 0 || first > last {
        return Err(NetError::InvalidPort { port: first });
    }
    let mut listener = TcpListener::bind_with_buffers(
        &stack,
        config.control_port,
        CONTROL_BACKLOG,
        CONTROL_BUFFER_BYTES,
    )?;
    let service = Rc::new(Service {
        stack,
        spawner: spawner.clone(),
        timers,
        cpu: config.cpu,
        ports: DataPorts::new(first, last),
        stats: config.stats,
    });
    let limit = ConnectionLimit::new(MAX_CONTROL_CONNECTIONS);
    loop {
        limit.wait_for_free_slot().await;
        let stream = listener.accept().await?;
        debug!(
            "netserver: control connection from {:?}",
            stream.remote_endpoint()
        );
        service.stats.record_control_connection();
        let (service, slot) = (service.clone(), limit.take_slot());
        spawner.spawn_named("netserver-control", async move {
            control::serve_connection(service, stream).await;
            drop(slot);
        });
    }
}
