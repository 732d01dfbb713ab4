//! Stand-ins for the doorbell and the interrupt: counters in ordinary
//! memory that one side increments and the other side polls.
//!
//! A real available buffer notification is a write to the device's notify
//! register (virtio 1.2 section 4.1.4.4 "Notification structure layout"),
//! which traps to the hypervisor, and a real used buffer notification is an
//! MSI-X message. Here each is a plain release store of an incremented
//! counter (one writer per counter, so no locked instruction), and the other
//! side spins until the value changes. Both sides still decide whether to
//! signal exactly as the spec's suppression rules say, so a lost
//! notification leaves the other side waiting, as it would on hardware.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::thread;

use crate::tsc;

/// Spins without progress after which a waiter also yields the CPU, so that
/// a run whose threads share a core still advances.
const YIELD_AFTER_SPINS: u32 = 1 << 20;
/// Spins between checks of the deadline, the stop flag and the yield count.
const CHECK_EVERY_SPINS: u32 = 256;
/// Bit of [`Signals::device_sleep`] set while the device waits for the
/// doorbell. The low 16 bits then contain the avail idx it waits beyond.
const SLEEPING: u32 = 1 << 16;

/// One value on its own pair of cache lines, so that a counter polled by
/// one core is not invalidated by writes to its neighbours (128 bytes also
/// covers the adjacent-line prefetcher of Intel cores).
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct CacheLinePair<T>(pub T);

/// The shared signalling state of one trial.
#[derive(Debug, Default)]
pub struct Signals {
    /// Doorbell rings (available buffer notifications) so far. Only the
    /// driver writes it.
    pub doorbell: CacheLinePair<AtomicU64>,
    /// Interrupts (used buffer notifications) so far. Only the device
    /// writes it.
    pub interrupt: CacheLinePair<AtomicU64>,
    /// Set by the driver when the trial ends, and by a failing device.
    pub stop: CacheLinePair<AtomicBool>,
    /// Device state for stall diagnosis: [`SLEEPING`] plus the avail idx
    /// while the device waits for the doorbell, 0 while it works.
    pub device_sleep: CacheLinePair<AtomicU32>,
}

impl Signals {
    /// Records that the device is about to wait for the doorbell with every
    /// chain before `avail_idx` taken.
    pub fn device_sleeps(&self, avail_idx: u16) {
        self.device_sleep
            .0
            .store(SLEEPING | u32::from(avail_idx), Ordering::Relaxed);
    }

    /// Records that the device woke up.
    pub fn device_wakes(&self) {
        self.device_sleep.0.store(0, Ordering::Relaxed);
    }

    /// The avail idx the device waits beyond, or `None` while it works.
    pub fn device_sleeping_at(&self) -> Option<u16> {
        let state = self.device_sleep.0.load(Ordering::Relaxed);
        (state & SLEEPING != 0).then_some(state as u16)
    }

    /// Ends the trial: the device's wait returns [`Wait::Stopped`].
    pub fn request_stop(&self) {
        self.stop.0.store(true, Ordering::Release);
    }

    /// Returns whether the trial ended.
    pub fn stop_requested(&self) -> bool {
        self.stop.0.load(Ordering::Acquire)
    }
}

/// The sending end of a counter: it keeps its own count, so a signal is one
/// store and no read of the shared line.
#[derive(Debug)]
pub struct Sender<'a> {
    counter: &'a AtomicU64,
    sent: u64,
}

impl<'a> Sender<'a> {
    /// Creates the sender of `counter`, which must be at 0 and have no other
    /// sender.
    pub fn new(counter: &'a AtomicU64) -> Self {
        Sender { counter, sent: 0 }
    }

    /// Signals the other side. Release: every ring write before the signal
    /// is visible to a side that sees the new count.
    #[inline(always)]
    pub fn send(&mut self) {
        self.sent += 1;
        self.counter.store(self.sent, Ordering::Release);
    }

    /// Signals sent so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }
}

/// Outcome of [`Receiver::wait`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// At least one new signal arrived.
    Signalled,
    /// The deadline passed first.
    TimedOut,
    /// The stop flag was set first.
    Stopped,
}

/// The receiving end of a counter.
#[derive(Debug)]
pub struct Receiver<'a> {
    counter: &'a AtomicU64,
    seen: u64,
}

impl<'a> Receiver<'a> {
    /// Creates the receiver of `counter`, which must be at 0.
    pub fn new(counter: &'a AtomicU64) -> Self {
        Receiver { counter, seen: 0 }
    }

    /// Spins until the counter moves past the last value seen, until the
    /// time stamp counter passes `deadline_ticks`, or until `stop` is set.
    /// Signals that arrived together count as one wakeup.
    #[inline]
    pub fn wait(&mut self, deadline_ticks: Option<u64>, stop: Option<&AtomicBool>) -> Wait {
        let mut spins = 0u32;
        loop {
            let value = self.counter.load(Ordering::Acquire);
            if value != self.seen {
                self.seen = value;
                return Wait::Signalled;
            }
            spins = spins.wrapping_add(1);
            if !spins.is_multiple_of(CHECK_EVERY_SPINS) {
                continue;
            }
            if stop.is_some_and(|stop| stop.load(Ordering::Acquire)) {
                return Wait::Stopped;
            }
            if deadline_ticks.is_some_and(|deadline| tsc::now() > deadline) {
                return Wait::TimedOut;
            }
            if spins >= YIELD_AFTER_SPINS {
                thread::yield_now();
            }
        }
    }

    /// Returns whether a signal arrived that [`Self::wait`] has not
    /// reported, without consuming it.
    pub fn pending(&self) -> bool {
        self.counter.load(Ordering::Acquire) != self.seen
    }

    /// Signals seen so far.
    pub fn seen(&self) -> u64 {
        self.seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receiver_sees_signals_from_another_thread() {
        let signals = Signals::default();
        thread::scope(|scope| {
            scope.spawn(|| {
                let mut sender = Sender::new(&signals.doorbell.0);
                sender.send();
                sender.send();
                assert_eq!(sender.sent(), 2);
            });
            let mut receiver = Receiver::new(&signals.doorbell.0);
            let deadline = tsc::now() + 100_000_000_000;
            while receiver.seen() < 2 {
                assert_eq!(receiver.wait(Some(deadline), None), Wait::Signalled);
            }
        });
    }

    #[test]
    fn receiver_times_out_and_stops() {
        let signals = Signals::default();
        let mut receiver = Receiver::new(&signals.interrupt.0);
        assert_eq!(receiver.wait(Some(tsc::now()), None), Wait::TimedOut);
        signals.request_stop();
        assert_eq!(receiver.wait(None, Some(&signals.stop.0)), Wait::Stopped);
        assert!(!receiver.pending());
    }

    #[test]
    fn device_sleep_state_round_trips() {
        let signals = Signals::default();
        assert_eq!(signals.device_sleeping_at(), None);
        signals.device_sleeps(0);
        assert_eq!(signals.device_sleeping_at(), Some(0));
        signals.device_sleeps(0xffff);
        assert_eq!(signals.device_sleeping_at(), Some(0xffff));
        signals.device_wakes();
        assert_eq!(signals.device_sleeping_at(), None);
    }

    #[test]
    fn cache_line_pairs_are_apart() {
        let signals = Signals::default();
        let doorbell = &signals.doorbell as *const _ as usize;
        let interrupt = &signals.interrupt as *const _ as usize;
        assert_eq!(doorbell % 128, 0);
        assert!(interrupt.abs_diff(doorbell) >= 128);
    }
}
