//! A test's data phase as its own executor task, so that data traffic wakes
//! only that task and the control connection's task wakes only for control
//! traffic and the end of the test.
//!
//! ```text
//!  control task                         test task
//!  TestTask::spawn ───────────────────► data phase runs
//!  finished().await ◄── report, wake ── data phase ends, sockets closed
//!  drop (abort) ──── flag, wake ──────► data phase dropped, sockets freed
//! ```

use alloc::rc::Rc;
use core::cell::RefCell;
use core::future::{poll_fn, Future};
use core::pin::pin;
use core::task::{Poll, Waker};

use futures_util::future::{select, Either};

use super::data_phase::PhaseReport;
use crate::executor::Spawner;

#[derive(Default)]
struct Handoff {
    report: Option<PhaseReport>,
    aborted: bool,
    control_waker: Option<Waker>,
    test_waker: Option<Waker>,
}

/// The control side of a running data phase. Dropping it before the
/// report arrived aborts the data phase.
pub(super) struct TestTask {
    handoff: Rc<RefCell<Handoff>>,
}

impl TestTask {
    /// Spawns `phase` as a task named `netserver-test`.
    pub(super) fn spawn(
        spawner: &Spawner,
        phase: impl Future<Output = PhaseReport> + 'static,
    ) -> Self {
        let handoff = Rc::new(RefCell::new(Handoff::default()));
        let shared = handoff.clone();
        spawner.spawn_named("netserver-test", async move {
            // The abort signal is polled first, so an aborted phase is
            // dropped without running any further.
            let aborted = pin!(wait_for_abort(&shared));
            let phase = pin!(phase);
            if let Either::Right((report, _)) = select(aborted, phase).await {
                let mut handoff = shared.borrow_mut();
                handoff.report = Some(report);
                if let Some(waker) = handoff.control_waker.take() {
                    waker.wake();
                }
            }
        });
        TestTask { handoff }
    }

    /// Waits for the data phase to end and returns its report.
    pub(super) async fn finished(&self) -> PhaseReport {
        poll_fn(|context| {
            let mut handoff = self.handoff.borrow_mut();
            match handoff.report {
                Some(report) => Poll::Ready(report),
                None => {
                    handoff.control_waker = Some(context.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await
    }
}

impl Drop for TestTask {
    fn drop(&mut self) {
        let mut handoff = self.handoff.borrow_mut();
        if handoff.report.is_none() {
            handoff.aborted = true;
            if let Some(waker) = handoff.test_waker.take() {
                waker.wake();
            }
        }
    }
}

async fn wait_for_abort(handoff: &RefCell<Handoff>) {
    poll_fn(|context| {
        let mut handoff = handoff.borrow_mut();
        if handoff.aborted {
            return Poll::Ready(());
        }
        handoff.test_waker = Some(context.waker().clone());
        Poll::Pending
    })
    .await
}
