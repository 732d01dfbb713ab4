//! Test doubles: two smoltcp devices joined by an in-memory Ethernet cable,
//! so that a client stack and a server stack exchange real frames (ARP, TCP,
//! UDP) on the host.

use alloc::collections::VecDeque;
use alloc::rc::Rc;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;

use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

type Queue = Rc<RefCell<VecDeque<Vec<u8>>>>;

/// One end of the cable.
pub struct CableEnd {
    receive: Queue,
    transmit: Queue,
}

/// Returns the two ends of a cable.
pub fn cable() -> (CableEnd, CableEnd) {
    let left: Queue = Rc::default();
    let right: Queue = Rc::default();
    (
        CableEnd { receive: left.clone(), transmit: right.clone() },
        CableEnd { receive: right, transmit: left },
    )
}

pub struct CableRxToken(Vec<u8>);
pub struct CableTxToken(Queue);

impl phy::RxToken for CableRxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, operation: F) -> R {
        operation(&self.0)
    }
}

impl phy::TxToken for CableTxToken {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, length: usize, operation: F) -> R {
        let mut frame = vec![0; length];
        let result = operation(&mut frame);
        self.0.borrow_mut().push_back(frame);
        result
    }
}

impl Device for CableEnd {
    type RxToken<'a> = CableRxToken;
    type TxToken<'a> = CableTxToken;

    fn receive(&mut self, _timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let frame = self.receive.borrow_mut().pop_front()?;
        Some((CableRxToken(frame), CableTxToken(self.transmit.clone())))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<Self::TxToken<'_>> {
        Some(CableTxToken(self.transmit.clone()))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut capabilities = DeviceCapabilities::default();
        capabilities.medium = Medium::Ethernet;
        capabilities.max_transmission_unit = 1514;
        capabilities
    }
}

/// Returns a time that advances 100 µs on every call, so that timers fire in
/// tests without sleeping.
pub fn stepping_clock() -> Instant {
    use core::sync::atomic::{AtomicI64, Ordering};
    static MICROS: AtomicI64 = AtomicI64::new(0);
    Instant::from_micros(MICROS.fetch_add(100, Ordering::Relaxed))
}

/// Address of the stack that runs the service under test.
pub const SERVER: core::net::Ipv4Addr = core::net::Ipv4Addr::new(10, 0, 2, 15);
/// Address of the stack that plays the client.
pub const CLIENT: core::net::Ipv4Addr = core::net::Ipv4Addr::new(10, 0, 2, 2);

fn config(address: core::net::Ipv4Addr, last_mac_byte: u8) -> crate::stack::StackConfig {
    crate::stack::StackConfig {
        mac_address: [0x52, 0x54, 0, 0x12, 0x34, last_mac_byte],
        address,
        prefix_length: 24,
        gateway: None,
        random_seed: u64::from(last_mac_byte),
    }
}

/// A server stack and a client stack joined by a cable, with a task that
/// polls both interfaces on every executor pass.
pub struct TwoStacks {
    pub executor: crate::executor::Executor,
    pub spawner: crate::executor::Spawner,
    pub server: crate::stack::Stack,
    pub client: crate::stack::Stack,
}

/// Returns two connected stacks on the stepping clock.
pub fn two_stacks() -> TwoStacks {
    use crate::stack::Stack;

    let (mut server_end, mut client_end) = cable();
    let server = Stack::new(config(SERVER, 1), &mut server_end, stepping_clock);
    let client = Stack::new(config(CLIENT, 2), &mut client_end, stepping_clock);
    let executor = crate::executor::Executor::new();
    let spawner = executor.spawner();
    let (server_driver, client_driver) = (server.clone(), client.clone());
    spawner.spawn_named("interfaces", async move {
        loop {
            server_driver.poll(&mut server_end);
            client_driver.poll(&mut client_end);
            crate::executor::yield_now().await;
        }
    });
    TwoStacks { executor, spawner, server, client }
}
