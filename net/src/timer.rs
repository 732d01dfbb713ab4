//! Timers for async tasks: [`Timers::sleep_until`] parks a task until a
//! deadline on the stack's clock, and the kernel's run loop calls
//! [`Timers::fire`] with the current time (and asks [`Timers::next_deadline`]
//! to know how long it may sleep).
//!
//! Deadlines live in a binary heap; a cancelled sleep (its future dropped)
//! leaves a stale entry that is discarded when it comes due.

use alloc::collections::BinaryHeap;
use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::cmp::Reverse;
use core::future::{poll_fn, Future};
use core::pin::pin;
use core::task::{Poll, Waker};

use futures_util::future::{select, Either};
use smoltcp::time::{Duration, Instant};

#[derive(Default)]
struct TimerState {
    /// (deadline, timer id), earliest first.
    deadlines: BinaryHeap<Reverse<(Instant, u64)>>,
    /// Wakers of sleeping timers by id; removed when fired or dropped.
    wakers: Vec<(u64, Waker)>,
    next_id: u64,
    fired: u64,
}

/// The timer queue shared by all tasks; cheap to clone.
#[derive(Clone)]
pub struct Timers {
    state: Rc<RefCell<TimerState>>,
    clock: fn() -> Instant,
}

/// Returned by [`Timers::timeout`] when the deadline passed first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimedOut;

impl Timers {
    /// Creates a timer queue on `clock`.
    pub fn new(clock: fn() -> Instant) -> Self {
        Self { state: Rc::default(), clock }
    }

    /// Returns the current time.
    pub fn now(&self) -> Instant {
        (self.clock)()
    }

    /// Wakes every timer whose deadline is at or before `now`. Returns how
    /// many fired.
    pub fn fire(&self, now: Instant) -> usize {
        let mut state = self.state.borrow_mut();
        let mut fired = 0;
        while let Some(&Reverse((deadline, id))) = state.deadlines.peek() {
            if deadline > now {
                break;
            }
            state.deadlines.pop();
            if let Some(position) = state.wakers.iter().position(|(waiting, _)| *waiting == id) {
                let (_, waker) = state.wakers.swap_remove(position);
                waker.wake();
                fired += 1;
            }
        }
        state.fired += fired as u64;
        fired
    }

    /// Returns the earliest pending deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.state.borrow().deadlines.peek().map(|Reverse((deadline, _))| *deadline)
    }

    /// Returns how many timers have fired since boot.
    pub fn fired_count(&self) -> u64 {
        self.state.borrow().fired
    }

    /// Sleeps until `deadline` (returns at once if it has passed).
    pub async fn sleep_until(&self, deadline: Instant) {
        let id = {
            let mut state = self.state.borrow_mut();
            let id = state.next_id;
            state.next_id += 1;
            state.deadlines.push(Reverse((deadline, id)));
            id
        };
        let guard = SleepGuard { timers: self, id };
        poll_fn(|context| {
            if self.now() >= deadline {
                return Poll::Ready(());
            }
            let mut state = self.state.borrow_mut();
            match state.wakers.iter_mut().find(|(waiting, _)| *waiting == id) {
                Some((_, waker)) => waker.clone_from(context.waker()),
                None => state.wakers.push((id, context.waker().clone())),
            }
            Poll::Pending
        })
        .await;
        drop(guard);
    }

    /// Sleeps for `duration`.
    pub async fn sleep(&self, duration: Duration) {
        self.sleep_until(self.now() + duration).await
    }

    /// Runs `future` until `deadline`; returns its output, or [`TimedOut`].
    pub async fn timeout<F: Future>(&self, deadline: Instant, future: F) -> Result<F::Output, TimedOut> {
        let future = pin!(future);
        let sleep = pin!(self.sleep_until(deadline));
        match select(future, sleep).await {
            Either::Left((output, _)) => Ok(output),
            Either::Right(((), _)) => Err(TimedOut),
        }
    }
}

/// Forgets a sleeping timer's waker when its future is dropped early.
struct SleepGuard<'a> {
    timers: &'a Timers,
    id: u64,
}

impl Drop for SleepGuard<'_> {
    fn drop(&mut self) {
        let mut state = self.timers.state.borrow_mut();
        state.wakers.retain(|(waiting, _)| *waiting != self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::Executor;
    use core::cell::Cell;
    use core::sync::atomic::{AtomicI64, Ordering};

    static NOW_MICROS: AtomicI64 = AtomicI64::new(0);

    fn manual_clock() -> Instant {
        Instant::from_micros(NOW_MICROS.load(Ordering::Relaxed))
    }

    // One test drives the shared manual clock, so the cases run in sequence.
    #[test]
    fn timers_fire_in_deadline_order_and_time_out() {
        NOW_MICROS.store(0, Ordering::Relaxed);
        let timers = Timers::new(manual_clock);
        let mut executor = Executor::new();
        let order = Rc::new(RefCell::new(Vec::new()));
        for (label, millis) in [(3, 30u64), (1, 10), (2, 20)] {
            let (timers, order) = (timers.clone(), order.clone());
            executor.spawner().spawn_named("sleeper", async move {
                timers.sleep(Duration::from_millis(millis)).await;
                order.borrow_mut().push(label);
            });
        }
        executor.run_until(5, || false);
        assert_eq!(timers.next_deadline(), Some(Instant::from_millis(10)));
        assert!(order.borrow().is_empty(), "a timer fired before its deadline");

        for now_millis in [10, 20, 30] {
            NOW_MICROS.store(now_millis * 1000, Ordering::Relaxed);
            assert_eq!(timers.fire(manual_clock()), 1);
            executor.run_until(5, || false);
        }
        assert_eq!(*order.borrow(), std::vec![1, 2, 3]);
        assert_eq!(timers.next_deadline(), None);

        // A timeout around a future that never finishes returns TimedOut at
        // the deadline, and its sleep leaves no waker behind.
        let result = Rc::new(Cell::new(None));
        {
            let (timers, result) = (timers.clone(), result.clone());
            executor.spawner().spawn_named("timeout", async move {
                let deadline = timers.now() + Duration::from_millis(5);
                let outcome = timers.timeout(deadline, core::future::pending::<()>()).await;
                result.set(Some(outcome));
            });
        }
        executor.run_until(5, || false);
        assert_eq!(result.get(), None);
        NOW_MICROS.store(35_000, Ordering::Relaxed);
        timers.fire(manual_clock());
        assert!(executor.run_until(5, || result.get().is_some()));
        assert_eq!(result.get(), Some(Err(TimedOut)));
        assert!(timers.state.borrow().wakers.is_empty());
    }
}
