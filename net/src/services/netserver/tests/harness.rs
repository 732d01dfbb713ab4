//! A server stack running the netperf service and a client stack, joined by
//! the in-memory cable, on one executor and a virtual clock.
//!
//! The clock belongs to the test's thread. Each pass of [`World::run_until`]
//! advances it by [`STEP`]. When nothing happened for a few passes (no
//! frame, no task woken), it jumps to the next timer or smoltcp deadline.
//! A test's T + 4 s server deadline therefore costs a few passes, not
//! millions, while time still passes during a busy data phase.

use alloc::rc::Rc;
use core::cell::{Cell, RefCell};
use core::future::Future;
use core::net::Ipv4Addr;
use std::thread_local;

use smoltcp::time::{Duration, Instant};

use super::super::{
    serve, NetserverConfig, SharedNetserverStats, DEFAULT_DATA_PORTS, NETSERVER_PORT,
};
use crate::executor::{Executor, Spawner};
use crate::stack::{Stack, StackConfig};
use crate::testing::{cable, CableEnd};
use crate::timer::Timers;

pub(super) const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);
pub(super) const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
/// Virtual time per pass while anything is happening.
const STEP: Duration = Duration::from_micros(100);
/// Quiet passes before the clock jumps to the next deadline.
const QUIET_PASSES: u32 = 3;

thread_local! {
    static NOW_MICROS: Cell<i64> = const { Cell::new(1_000_000) };
}

/// Returns the test thread's virtual time.
pub(super) fn clock() -> Instant {
    Instant::from_micros(NOW_MICROS.with(Cell::get))
}

fn set_clock(now: Instant) {
    NOW_MICROS.with(|micros| micros.set(now.total_micros()));
}

/// Hands out local ports for the client's sockets, so that no two
/// connections of a test share a 4-tuple.
#[derive(Clone)]
pub(super) struct ClientPorts(Rc<Cell<u16>>);

impl ClientPorts {
    pub(super) fn next(&self) -> u16 {
        let port = self.0.get();
        self.0.set(if port >= 60_000 { 20_000 } else { port + 1 });
        port
    }
}

/// The client side of a test: its stack, the shared timers and its ports.
#[derive(Clone)]
pub(super) struct ClientSide {
    pub(super) stack: Stack,
    pub(super) timers: Timers,
    pub(super) ports: ClientPorts,
}

/// The value a spawned client task ends with, once it has ended.
pub(super) type Outcome<T> = Rc<RefCell<Option<T>>>;

pub(super) struct World {
    executor: Executor,
    spawner: Spawner,
    pub(super) server: Stack,
    server_end: CableEnd,
    client_end: CableEnd,
    pub(super) client: ClientSide,
    pub(super) stats: SharedNetserverStats,
}

fn stack_config(address: Ipv4Addr, last_mac_byte: u8) -> StackConfig {
    StackConfig {
        mac_address: [0x52, 0x54, 0, 0x12, 0x34, last_mac_byte],
        address,
        prefix_length: 24,
        gateway: None,
        random_seed: u64::from(last_mac_byte),
    }
}

impl World {
    /// Serves netperf with the default configuration.
    pub(super) fn new() -> Self {
        Self::with_config(|_| {})
    }

    /// Serves netperf with the default configuration changed by `adjust`.
    pub(super) fn with_config(adjust: impl FnOnce(&mut NetserverConfig)) -> Self {
        let (mut server_end, mut client_end) = cable();
        let server = Stack::new(stack_config(SERVER, 1), &mut server_end, clock);
        let client = Stack::new(stack_config(CLIENT, 2), &mut client_end, clock);
        let executor = Executor::new();
        let spawner = executor.spawner();
        let timers = Timers::new(clock);

        let mut config = NetserverConfig::default();
        adjust(&mut config);
        let stats = config.stats.clone();
        spawner.spawn_named("netserver", {
            let (stack, spawner, timers) = (server.clone(), spawner.clone(), timers.clone());
            async move {
                serve(stack, spawner, timers, config)
                    .await
                    .expect("the netserver runs")
            }
        });

        let client = ClientSide {
            stack: client,
            timers,
            ports: ClientPorts(Rc::new(Cell::new(40_000))),
        };
        let mut world = World {
            executor,
            spawner,
            server,
            server_end,
            client_end,
            client,
            stats,
        };
        world.run_for(Duration::from_millis(1));
        world
    }

    /// Spawns a client task. Its output appears in the returned cell.
    pub(super) fn spawn<T: 'static>(
        &self,
        future: impl Future<Output = T> + 'static,
    ) -> Outcome<T> {
        let outcome: Outcome<T> = Rc::new(RefCell::new(None));
        let slot = outcome.clone();
        self.spawner.spawn_named("client", async move {
            let value = future.await;
            *slot.borrow_mut() = Some(value);
        });
        outcome
    }

    /// Spawns `future` and runs until it ends, at most `limit` of virtual
    /// time. Panics with `description` if it does not end.
    pub(super) fn run<T: 'static>(
        &mut self,
        description: &str,
        limit: Duration,
        future: impl Future<Output = T> + 'static,
    ) -> T {
        let outcome = self.spawn(future);
        assert!(
            self.run_until(limit, || outcome.borrow().is_some()),
            "{description} did not finish within {limit}"
        );
        let value = outcome.borrow_mut().take();
        value.expect("the outcome was just checked")
    }

    /// Runs the stacks, the timers and the tasks until `done` or until
    /// `limit` of virtual time has passed. Returns whether `done` held.
    pub(super) fn run_until(&mut self, limit: Duration, mut done: impl FnMut() -> bool) -> bool {
        let end = clock() + limit;
        let mut quiet_passes = 0;
        while clock() < end {
            if done() {
                return true;
            }
            let server_changed = self.server.poll(&mut self.server_end);
            let client_changed = self.client.stack.poll(&mut self.client_end);
            self.client.timers.fire(clock());
            let tasks_ran = self.executor.run_once();
            if server_changed || client_changed || tasks_ran {
                quiet_passes = 0;
            } else {
                quiet_passes += 1;
            }
            let next = if quiet_passes >= QUIET_PASSES {
                self.next_deadline().min(end)
            } else {
                clock() + STEP
            };
            set_clock(next.max(clock() + STEP));
        }
        done()
    }

    /// Runs for `duration` of virtual time.
    pub(super) fn run_for(&mut self, duration: Duration) {
        self.run_until(duration, || false);
    }

    /// Returns the earliest timer or smoltcp deadline, or a second from now
    /// when none is pending.
    fn next_deadline(&self) -> Instant {
        let now = clock();
        let stack_delays = [self.server.poll_delay(), self.client.stack.poll_delay()];
        let stack_deadlines = stack_delays.into_iter().flatten().map(|delay| now + delay);
        let timer_deadline = self
            .client
            .timers
            .next_deadline()
            .filter(|&deadline| deadline > now);
        stack_deadlines
            .chain(timer_deadline)
            .min()
            .unwrap_or(now + Duration::from_secs(1))
    }

    /// Runs until only the control listener's sockets remain (at most 60 s
    /// of virtual time) and returns the server's socket count.
    pub(super) fn settle(&mut self) -> usize {
        let server = self.server.clone();
        self.run_until(Duration::from_secs(60), || {
            server.socket_count() == CONTROL_LISTENING_SOCKETS
        });
        server.socket_count()
    }
}

/// Sockets the control listener keeps when no test runs.
pub(super) const CONTROL_LISTENING_SOCKETS: usize = super::super::CONTROL_BACKLOG;

/// Returns the default data ports as a range.
pub(super) fn default_data_ports() -> core::ops::RangeInclusive<u16> {
    DEFAULT_DATA_PORTS.0..=DEFAULT_DATA_PORTS.1
}

/// The control port the tests connect to.
pub(super) const CONTROL_PORT: u16 = NETSERVER_PORT;
