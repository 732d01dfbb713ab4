//! A cap on the connections a service serves at once: the accept loop
//! sleeps while every slot is taken and wakes when a connection ends,
//! instead of spinning the executor.

use alloc::rc::Rc;
use core::cell::{Cell, RefCell};
use core::future::poll_fn;
use core::task::{Poll, Waker};

/// Counts live connections against a maximum.
pub(crate) struct ConnectionLimit {
    maximum: usize,
    active: Cell<usize>,
    /// The accept loop, waiting for a slot.
    waiter: RefCell<Option<Waker>>,
}

/// The slot of one live connection. Dropping it frees the slot.
pub(crate) struct ConnectionSlot(Rc<ConnectionLimit>);

impl ConnectionLimit {
    pub(crate) fn new(maximum: usize) -> Rc<Self> {
        Rc::new(ConnectionLimit {
            maximum,
            active: Cell::new(0),
            waiter: RefCell::new(None),
        })
    }

    /// Waits until fewer than the maximum connections are live.
    pub(crate) async fn wait_for_free_slot(&self) {
        poll_fn(|context| {
            if self.active.get() < self.maximum {
                return Poll::Ready(());
            }
            *self.waiter.borrow_mut() = Some(context.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Takes a slot for a new connection.
    pub(crate) fn take_slot(self: &Rc<Self>) -> ConnectionSlot {
        self.active.set(self.active.get() + 1);
        ConnectionSlot(self.clone())
    }

    /// Returns the number of live connections.
    #[cfg(test)]
    pub(crate) fn active(&self) -> usize {
        self.active.get()
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let limit = &self.0;
        limit.active.set(limit.active.get() - 1);
        if let Some(waker) = limit.waiter.borrow_mut().take() {
            waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::Executor;

    #[test]
    fn waiter_sleeps_until_a_slot_frees() {
        let limit = ConnectionLimit::new(2);
        let mut executor = Executor::new();
        let slots = Rc::new(RefCell::new(alloc::vec::Vec::new()));
        let admitted = Rc::new(Cell::new(0));
        {
            let (limit, slots, admitted) = (limit.clone(), slots.clone(), admitted.clone());
            executor.spawner().spawn_named("acceptor", async move {
                loop {
                    limit.wait_for_free_slot().await;
                    slots.borrow_mut().push(limit.take_slot());
                    admitted.set(admitted.get() + 1);
                }
            });
        }
        executor.run_until(10, || false);
        assert_eq!(admitted.get(), 2);
        assert_eq!(limit.active(), 2);
        let polls_before = executor.stats().polls;
        executor.run_until(10, || false);
        assert_eq!(
            executor.stats().polls,
            polls_before,
            "the full acceptor was polled without a wake"
        );

        drop(slots.borrow_mut().remove(0));
        assert!(executor.run_until(10, || admitted.get() == 3));
        assert_eq!(limit.active(), 2);
    }
}
