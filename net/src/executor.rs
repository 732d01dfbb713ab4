//! A single-CPU executor for the kernel's tasks, built on `futures-util`.
//!
//! Each task has an atomic "woken" flag, and a waker only sets that flag and
//! a global "something is ready" flag: no lock and no allocation, so an
//! interrupt handler may call `wake` at any moment. The run loop polls each
//! woken task once per pass and calls the idle hook when none was woken.
//!
//! ```text
//!   spawn ──► woken ──poll──► Pending ──wake──► woken ──poll──► Ready ──► removed
//!                               │                                ▲
//!                               └── (not polled while not woken) ┘
//! ```

use alloc::boxed::Box;
use alloc::rc::Rc;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::future::Future;
use core::pin::Pin;
use core::sync::atomic::{AtomicBool, Ordering};
use core::task::{Context, Poll};

use futures_util::future::LocalFutureObj;
use futures_util::task::{waker_ref, ArcWake, LocalSpawn, SpawnError};

/// The wake side of one task: a flag the executor checks.
struct TaskWaker {
    woken: AtomicBool,
    /// Shared by all tasks: set whenever any task is woken.
    any_woken: Arc<AtomicBool>,
}

impl ArcWake for TaskWaker {
    fn wake_by_ref(task: &Arc<Self>) {
        // Release pairs with the executor's Acquire swap, so whatever the
        // waker's caller wrote before waking is visible to the polled task.
        task.woken.store(true, Ordering::Release);
        task.any_woken.store(true, Ordering::Release);
    }
}

struct Task {
    future: Pin<Box<dyn Future<Output = ()>>>,
    waker: Arc<TaskWaker>,
    name: &'static str,
}

/// New tasks spawned while the executor runs, merged at the next pass.
type SpawnQueue = Rc<RefCell<Vec<(&'static str, LocalFutureObj<'static, ()>)>>>;

/// A handle for spawning tasks onto the executor, from inside tasks too.
#[derive(Clone)]
pub struct Spawner {
    queue: SpawnQueue,
}

impl Spawner {
    /// Spawns a named task. The name appears in the executor's statistics.
    pub fn spawn_named(&self, name: &'static str, future: impl Future<Output = ()> + 'static) {
        self.queue.borrow_mut().push((name, LocalFutureObj::new(Box::new(future))));
    }
}

impl LocalSpawn for Spawner {
    fn spawn_local_obj(&self, future: LocalFutureObj<'static, ()>) -> Result<(), SpawnError> {
        self.queue.borrow_mut().push(("task", future));
        Ok(())
    }
}

/// Counters of the run loop, for the console.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExecutorStats {
    pub tasks_spawned: u64,
    pub tasks_finished: u64,
    pub polls: u64,
    pub idle_calls: u64,
}

/// The executor: tasks, the spawn queue and the shared wake flag.
pub struct Executor {
    tasks: Vec<Task>,
    queue: SpawnQueue,
    any_woken: Arc<AtomicBool>,
    stats: ExecutorStats,
}

impl Default for Executor {
    fn default() -> Self {
        Self::new()
    }
}

impl Executor {
    pub fn new() -> Self {
        Self {
            tasks: Vec::new(),
            queue: Rc::new(RefCell::new(Vec::new())),
            any_woken: Arc::new(AtomicBool::new(false)),
            stats: ExecutorStats::default(),
        }
    }

    /// Returns a spawner for this executor.
    pub fn spawner(&self) -> Spawner {
        Spawner { queue: self.queue.clone() }
    }

    /// Returns the run-loop counters.
    pub fn stats(&self) -> ExecutorStats {
        self.stats
    }

    /// Returns the number of live tasks.
    pub fn task_count(&self) -> usize {
        self.tasks.len()
    }

    /// Returns the names of the live tasks, in spawn order.
    pub fn task_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.tasks.iter().map(|task| task.name)
    }

    /// Moves spawned tasks into the task list; each starts woken.
    fn admit_spawned(&mut self) {
        let spawned = core::mem::take(&mut *self.queue.borrow_mut());
        for (name, future) in spawned {
            let waker = Arc::new(TaskWaker {
                woken: AtomicBool::new(true),
                any_woken: self.any_woken.clone(),
            });
            self.any_woken.store(true, Ordering::Release);
            self.tasks.push(Task { future: Box::pin(future), waker, name });
            self.stats.tasks_spawned += 1;
        }
    }

    /// Polls every woken task once. Returns whether any task was polled.
    pub fn run_once(&mut self) -> bool {
        self.admit_spawned();
        if !self.any_woken.swap(false, Ordering::Acquire) {
            return false;
        }

        let mut index = 0;
        let mut polled_any = false;
        while index < self.tasks.len() {
            let task = &mut self.tasks[index];
            if !task.waker.woken.swap(false, Ordering::Acquire) {
                index += 1;
                continue;
            }
            polled_any = true;
            self.stats.polls += 1;
            let waker = waker_ref(&task.waker);
            let mut context = Context::from_waker(&waker);
            if task.future.as_mut().poll(&mut context).is_ready() {
                self.tasks.swap_remove(index);
                self.stats.tasks_finished += 1;
            } else {
                index += 1;
            }
        }
        polled_any
    }

    /// Runs forever: polls woken tasks, and calls `idle` after a pass in
    /// which no task was woken. `idle` may halt until an interrupt; it must
    /// re-check [`Executor::has_woken_tasks`] with interrupts disabled before
    /// halting, so that a wake-up just before the halt is not lost.
    pub fn run(&mut self, mut idle: impl FnMut(&Self)) -> ! {
        loop {
            if !self.run_once() {
                self.stats.idle_calls += 1;
                idle(self);
            }
        }
    }

    /// Runs until `done` returns true or `max_passes` passes have run, for
    /// tests and bounded loops. Returns whether `done` became true.
    pub fn run_until(&mut self, max_passes: usize, mut done: impl FnMut() -> bool) -> bool {
        for _ in 0..max_passes {
            if done() {
                return true;
            }
            if !self.run_once() {
                self.stats.idle_calls += 1;
            }
        }
        done()
    }

    /// Returns whether a task was woken or spawned since the last pass.
    pub fn has_woken_tasks(&self) -> bool {
        self.any_woken.load(Ordering::Acquire) || !self.queue.borrow().is_empty()
    }
}

/// A future that yields once: it wakes itself and returns `Pending` the
/// first time, so other tasks run before it continues.
pub async fn yield_now() {
    let mut yielded = false;
    core::future::poll_fn(|context| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            context.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::cell::Cell;
    use core::task::Waker;
    use std::thread;

    #[test]
    fn spawned_task_runs_to_completion() {
        let mut executor = Executor::new();
        let done = Rc::new(Cell::new(false));
        let flag = done.clone();
        executor.spawner().spawn_named("once", async move { flag.set(true) });
        assert!(executor.run_until(10, || done.get()));
        assert_eq!(executor.task_count(), 0);
        assert_eq!(executor.stats().tasks_finished, 1);
    }

    #[test]
    fn pending_task_is_not_polled_until_woken() {
        let mut executor = Executor::new();
        let polls = Rc::new(Cell::new(0));
        let stored: Rc<RefCell<Option<Waker>>> = Rc::new(RefCell::new(None));
        let (counter, slot) = (polls.clone(), stored.clone());
        executor.spawner().spawn_named("waiter", async move {
            core::future::poll_fn(|context| {
                counter.set(counter.get() + 1);
                *slot.borrow_mut() = Some(context.waker().clone());
                if counter.get() >= 2 { Poll::Ready(()) } else { Poll::Pending }
            })
            .await
        });

        executor.run_until(20, || false);
        assert_eq!(polls.get(), 1, "polled again without a wake");

        stored.borrow().as_ref().expect("the task registered its waker").wake_by_ref();
        assert!(executor.run_until(5, || polls.get() == 2));
        assert_eq!(executor.task_count(), 0);
    }

    #[test]
    fn wake_from_another_thread_is_seen() {
        let mut executor = Executor::new();
        let finished = Rc::new(Cell::new(false));
        let stored: Arc<std::sync::Mutex<Option<Waker>>> = Arc::new(std::sync::Mutex::new(None));
        let go = Arc::new(AtomicBool::new(false));
        let (slot, flag, ready) = (stored.clone(), finished.clone(), go.clone());
        executor.spawner().spawn_named("remote", async move {
            core::future::poll_fn(|context| {
                *slot.lock().unwrap() = Some(context.waker().clone());
                if ready.load(Ordering::Acquire) { Poll::Ready(()) } else { Poll::Pending }
            })
            .await;
            flag.set(true);
        });
        executor.run_until(3, || false);

        // The other thread plays an interrupt handler: it publishes the
        // condition, then wakes, while the executor keeps passing.
        let waker = stored.lock().unwrap().clone().expect("the task registered its waker");
        let remote = thread::spawn(move || {
            go.store(true, Ordering::Release);
            waker.wake();
        });
        remote.join().unwrap();
        assert!(executor.run_until(10, || finished.get()));
    }

    #[test]
    fn wake_during_poll_repolls_the_task() {
        // A task that wakes itself while being polled (as the busy-poll
        // network task does) must be polled again on the next pass.
        let mut executor = Executor::new();
        let polls = Rc::new(Cell::new(0u32));
        let counter = polls.clone();
        executor.spawner().spawn_named("spinner", async move {
            core::future::poll_fn(|context| {
                counter.set(counter.get() + 1);
                context.waker().wake_by_ref();
                if counter.get() == 5 { Poll::Ready(()) } else { Poll::Pending }
            })
            .await
        });
        assert!(executor.run_until(10, || polls.get() == 5));
    }

    #[test]
    fn tasks_spawned_by_tasks_run() {
        let mut executor = Executor::new();
        let spawner = executor.spawner();
        let count = Rc::new(Cell::new(0));
        let counter = count.clone();
        executor.spawner().spawn_named("parent", async move {
            for _ in 0..3 {
                let child_counter = counter.clone();
                spawner.spawn_named("child", async move { child_counter.set(child_counter.get() + 1) });
                yield_now().await;
            }
        });
        assert!(executor.run_until(20, || count.get() == 3));
        assert_eq!(executor.stats().tasks_spawned, 4);
    }

    #[test]
    fn idle_state_reports_pending_wakes() {
        let mut executor = Executor::new();
        assert!(!executor.has_woken_tasks());
        executor.spawner().spawn_named("idle-check", async {});
        assert!(executor.has_woken_tasks());
        executor.run_once();
        assert!(!executor.has_woken_tasks());
    }
}
