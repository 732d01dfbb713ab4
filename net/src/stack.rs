//! The smoltcp interface and socket set, shared by every task of the kernel.
//!
//! One [`Stack`] owns the `Interface` and the `SocketSet` behind a
//! `RefCell`: the kernel runs on one CPU and its tasks never hold the borrow
//! across an `.await`. The device is not inside: the interface task that
//! owns it calls [`Stack::poll`]. Socket operations wake that task through
//! [`Stack::wake_interface`] so that new data leaves without delay.

use alloc::rc::Rc;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::net::Ipv4Addr;
use core::task::{Context, Waker};

use smoltcp::iface::{Config, Interface, PollResult, SocketHandle, SocketSet};
use smoltcp::phy::Device;
use smoltcp::socket::{tcp, udp};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, IpEndpoint};

/// Bytes of each TCP socket's receive and transmit buffer.
pub const TCP_BUFFER_BYTES: usize = 64 * 1024;

/// How long a released TCP socket may take to close before it is aborted.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(30);

/// Addresses of the interface.
#[derive(Clone, Copy, Debug)]
pub struct StackConfig {
    pub mac_address: [u8; 6],
    pub address: Ipv4Addr,
    pub prefix_length: u8,
    pub gateway: Option<Ipv4Addr>,
    /// Seed for smoltcp's initial sequence numbers and ephemeral ports.
    pub random_seed: u64,
}

/// Socket-layer counters, for the console.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StackStats {
    pub polls: u64,
    pub polls_with_changes: u64,
    pub tcp_sockets_opened: u64,
    pub tcp_sockets_reaped: u64,
}

pub(crate) struct StackInner {
    pub(crate) interface: Interface,
    pub(crate) sockets: SocketSet<'static>,
    clock: fn() -> Instant,
    interface_waker: Option<Waker>,
    /// TCP sockets whose owner has let go, with the time of release;
    /// removed once fully closed.
    closing: Vec<(SocketHandle, Instant)>,
    stats: StackStats,
}

/// A cheap, cloneable handle to the shared stack.
#[derive(Clone)]
pub struct Stack {
    inner: Rc<RefCell<StackInner>>,
}

impl Stack {
    /// Creates the interface with a static address and default route.
    pub fn new<D: Device + ?Sized>(config: StackConfig, device: &mut D, clock: fn() -> Instant) -> Self {
        let mut interface_config =
            Config::new(HardwareAddress::Ethernet(EthernetAddress(config.mac_address)));
        interface_config.random_seed = config.random_seed;
        let mut interface = Interface::new(interface_config, device, clock());
        let address = IpCidr::new(config.address.into(), config.prefix_length);
        interface.update_ip_addrs(|addresses| {
            if addresses.push(address).is_err() {
                log::error!("interface address {address} not added: the address list is full");
            }
        });
        if let Some(gateway) = config.gateway {
            if let Err(error) = interface.routes_mut().add_default_ipv4_route(gateway) {
                log::error!("default route via {gateway} not added: {error:?}");
            }
        }
        Self {
            inner: Rc::new(RefCell::new(StackInner {
                interface,
                sockets: SocketSet::new(Vec::new()),
                clock,
                interface_waker: None,
                closing: Vec::new(),
                stats: StackStats::default(),
            })),
        }
    }

    /// Returns the current time of the stack's clock.
    pub fn now(&self) -> Instant {
        (self.inner.borrow().clock)()
    }

    /// Processes received frames, socket timers and pending transmissions.
    /// Returns whether any socket may have changed state.
    pub fn poll<D: Device + ?Sized>(&self, device: &mut D) -> bool {
        let mut inner = self.inner.borrow_mut();
        let now = (inner.clock)();
        let StackInner { interface, sockets, stats, .. } = &mut *inner;
        let result = interface.poll(now, device, sockets);
        stats.polls += 1;
        let changed = result == PollResult::SocketStateChanged;
        if changed {
            stats.polls_with_changes += 1;
        }
        inner.reap_closed_sockets(now);
        changed
    }

    /// Returns how long the interface may sleep before it must poll again.
    pub fn poll_delay(&self) -> Option<Duration> {
        let mut inner = self.inner.borrow_mut();
        let now = (inner.clock)();
        let StackInner { interface, sockets, .. } = &mut *inner;
        interface.poll_delay(now, sockets)
    }

    /// Registers the waker of the task that polls the interface.
    pub fn register_interface_waker(&self, waker: &Waker) {
        let mut inner = self.inner.borrow_mut();
        match &inner.interface_waker {
            Some(current) if current.will_wake(waker) => {}
            _ => inner.interface_waker = Some(waker.clone()),
        }
    }

    /// Wakes the interface task, after a socket queued data or changed state.
    pub fn wake_interface(&self) {
        if let Some(waker) = &self.inner.borrow().interface_waker {
            waker.wake_by_ref();
        }
    }

    /// Returns the socket-layer counters.
    pub fn stats(&self) -> StackStats {
        self.inner.borrow().stats
    }

    /// Returns the number of sockets in the set.
    pub fn socket_count(&self) -> usize {
        self.inner.borrow().sockets.iter().count()
    }

    /// Calls `visit` with each TCP socket's local port, remote endpoint and state.
    pub fn for_each_tcp_socket(&self, mut visit: impl FnMut(u16, Option<IpEndpoint>, tcp::State)) {
        let inner = self.inner.borrow();
        for (_, socket) in inner.sockets.iter() {
            if let smoltcp::socket::Socket::Tcp(socket) = socket {
                visit(socket.listen_endpoint().port, socket.remote_endpoint(), socket.state());
            }
        }
    }

    pub(crate) fn add_tcp_socket(&self, buffer_bytes: usize) -> SocketHandle {
        let socket = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; buffer_bytes]),
            tcp::SocketBuffer::new(vec![0; buffer_bytes]),
        );
        let mut inner = self.inner.borrow_mut();
        inner.stats.tcp_sockets_opened += 1;
        inner.sockets.add(socket)
    }

    pub(crate) fn add_udp_socket(&self, packets: usize, payload_bytes: usize) -> SocketHandle {
        let socket = udp::Socket::new(
            udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; packets], vec![0; payload_bytes]),
            udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; packets], vec![0; payload_bytes]),
        );
        self.inner.borrow_mut().sockets.add(socket)
    }

    /// Runs `operation` on a TCP socket.
    pub(crate) fn with_tcp<R>(&self, handle: SocketHandle, operation: impl FnOnce(&mut tcp::Socket<'static>) -> R) -> R {
        let mut inner = self.inner.borrow_mut();
        operation(inner.sockets.get_mut::<tcp::Socket>(handle))
    }

    /// Opens an active connection from `local_port` to `remote`.
    pub(crate) fn connect_tcp(&self, handle: SocketHandle, remote: IpEndpoint, local_port: u16) -> bool {
        let mut inner = self.inner.borrow_mut();
        let StackInner { interface, sockets, .. } = &mut *inner;
        let socket = sockets.get_mut::<tcp::Socket>(handle);
        socket.connect(interface.context(), remote, local_port).is_ok()
    }

    /// Runs `operation` on a UDP socket.
    pub(crate) fn with_udp<R>(&self, handle: SocketHandle, operation: impl FnOnce(&mut udp::Socket<'static>) -> R) -> R {
        let mut inner = self.inner.borrow_mut();
        operation(inner.sockets.get_mut::<udp::Socket>(handle))
    }

    /// Hands a TCP socket over to be removed once it has fully closed.
    pub(crate) fn release_tcp(&self, handle: SocketHandle) {
        let now = self.now();
        self.inner.borrow_mut().closing.push((handle, now));
    }

    /// Removes a socket at once.
    pub(crate) fn remove(&self, handle: SocketHandle) {
        self.inner.borrow_mut().sockets.remove(handle);
    }

    /// Registers `context`'s waker to run when the interface next changes
    /// any socket, for futures that watch several sockets.
    pub(crate) fn register_tcp_recv_waker(&self, handle: SocketHandle, context: &Context<'_>) {
        self.with_tcp(handle, |socket| socket.register_recv_waker(context.waker()));
    }
}

impl StackInner {
    /// Removes released sockets that reached CLOSED or TIME-WAIT, and aborts
    /// those still closing after [`CLOSE_TIMEOUT`] (a peer that never sends
    /// its FIN). TIME-WAIT sockets are dropped early because a
    /// connection-per-transaction test would otherwise keep tens of
    /// thousands of them; a stray segment for one of them gets a reset.
    fn reap_closed_sockets(&mut self, now: Instant) {
        let StackInner { sockets, closing, stats, .. } = self;
        closing.retain(|&(handle, released_at)| {
            let socket = sockets.get_mut::<tcp::Socket>(handle);
            let expired = now - released_at > CLOSE_TIMEOUT;
            if expired {
                socket.abort();
            }
            let finished = expired || matches!(socket.state(), tcp::State::Closed | tcp::State::TimeWait);
            if finished {
                sockets.remove(handle);
                stats.tcp_sockets_reaped += 1;
            }
            !finished
        });
    }
}
