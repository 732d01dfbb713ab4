//! The driver side of the ping-pong: the kernel's `SplitQueue`, unchanged,
//! on one pinned core.
//!
//! One round trip:
//!
//! ```text
//!  t0  add B chains, publish, notification decision    (submit path)
//!  t1  ring the doorbell if publish() returned true
//!      repeat until B chains are back and nothing is pending:
//!        wait for an interrupt (skipped when enable_interrupts() reported
//!        pending chains), disable_interrupts()
//!        c0  pop_used() until it returns None          (completion path)
//!        c1  enable_interrupts(), which re-reads the used idx   (re-arm)
//!        r1
//!  t2  the last r1, and latency = t2 - t0
//! ```
//!
//! This is the kernel's interrupt-mode loop: disable used buffer
//! notifications while polling, re-enable them after each pass and poll
//! again if the re-read finds chains. Every chain that comes back is checked
//! after t2: its token, its length and the sequence number in its response.

use std::ptr::NonNull;

use virtio::barrier::{BarrierCounters, BarrierMode, BarrierSite};
use virtio::queue::{Buffer, QueueCounters, SplitQueue, UsedLength};

use super::config::{response_len, TrialShape, BUFFER_BYTES};
use super::memory::GuestMemoryDma;
use super::signals::{Receiver, Sender, Signals, Wait};
use super::RingError;
use crate::tsc;

/// Stall timeouts in a row after which a device that is not asleep counts
/// as hung, even in an ablation run, if they add up to at least
/// [`MIN_HUNG_TICKS`].
const MIN_STALLS_BEFORE_HUNG: u64 = 10;
/// Ten seconds at 3 GHz, a floor for hung-device detection that outlasts a
/// vCPU preemption even with a short `--stall-timeout-ms`.
const MIN_HUNG_TICKS: u64 = 30_000_000_000;

/// Faults seen by the driver in a trial, warm-up included. Outside ablation
/// runs the first one ends the run with an error, so only ablation runs
/// report non-zero counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// The device slept with published chains it never took, and the driver
    /// had decided not to ring the doorbell.
    pub lost_available_notifications: u64,
    /// The device slept after returning chains without an interrupt, while
    /// the driver waited with interrupts enabled.
    pub lost_used_notifications: u64,
    /// Chains the device took but never returned.
    pub missing_buffers: u64,
    /// Chains returned twice, or used entries beyond the published chains.
    pub duplicate_buffers: u64,
    /// Used lengths that differ from the response length.
    pub wrong_lengths: u64,
    /// Responses whose sequence number is not the request's.
    pub wrong_contents: u64,
    /// Errors from `pop_used` (the queue marks itself broken).
    pub queue_errors: u64,
    /// Round trips with at least one fault. Their latency is not sampled.
    pub faulted_round_trips: u64,
}

impl FaultCounts {
    /// Total faults of every kind (not counting `faulted_round_trips`).
    pub fn total(&self) -> u64 {
        self.lost_available_notifications
            + self.lost_used_notifications
            + self.missing_buffers
            + self.duplicate_buffers
            + self.wrong_lengths
            + self.wrong_contents
            + self.queue_errors
    }
}

/// Barrier executions per site, split by what executed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SiteCounts {
    /// Weak barriers, indexed like [`BarrierSite::ALL`].
    pub weak: [u64; BarrierSite::COUNT],
    /// Strong barriers.
    pub strong: [u64; BarrierSite::COUNT],
    /// Executions of ablated sites, which ran no barrier.
    pub ablated: [u64; BarrierSite::COUNT],
}

impl SiteCounts {
    /// Copies the queue's counters.
    pub fn from_counters(counters: &BarrierCounters) -> Self {
        let mut counts = SiteCounts::default();
        for (index, site) in BarrierSite::ALL.into_iter().enumerate() {
            counts.weak[index] = counters.count(site, BarrierMode::Weak);
            counts.strong[index] = counters.count(site, BarrierMode::Strong);
            #[cfg(feature = "ablation")]
            {
                counts.ablated[index] = counters.ablated_count(site);
            }
        }
        counts
    }

    /// Executions since `earlier`.
    pub fn since(&self, earlier: &SiteCounts) -> SiteCounts {
        let subtract = |later: [u64; BarrierSite::COUNT], earlier: [u64; BarrierSite::COUNT]| {
            std::array::from_fn(|index| later[index].wrapping_sub(earlier[index]))
        };
        SiteCounts {
            weak: subtract(self.weak, earlier.weak),
            strong: subtract(self.strong, earlier.strong),
            ablated: subtract(self.ablated, earlier.ablated),
        }
    }

    /// Executions of the site at `index`, whatever executed.
    pub fn site_total(&self, index: usize) -> u64 {
        self.weak[index] + self.strong[index] + self.ablated[index]
    }
}

/// Per round trip samples of the timed phase, in ticks.
#[derive(Clone, Debug, Default)]
pub struct Samples {
    /// t2 - t0.
    pub latency: Vec<u64>,
    /// t1 - t0: add, publish and the notification decision.
    pub submit: Vec<u64>,
    /// Sum of c1 - c0: pop_used calls, the last returning None.
    pub completion: Vec<u64>,
    /// Sum of r1 - c1: enable_interrupts calls.
    pub rearm: Vec<u64>,
}

/// Measurements the driver took in one trial.
#[derive(Clone, Debug)]
pub struct DriverOutcome {
    /// Samples of the round trips without faults.
    pub samples: Samples,
    /// Round trips of the timed phase, faulted ones included.
    pub round_trips: u64,
    /// Ticks from the first timed round trip's start to the last one's end.
    pub elapsed_ticks: u64,
    /// Barrier executions during the timed phase.
    pub barriers: SiteCounts,
    /// Queue counters at the end of the warm-up and at the end.
    pub queue_counters: (QueueCounters, QueueCounters),
    /// Interrupt waits of the timed phase that returned with a signal.
    pub wakeups: u64,
    /// Timed-phase wakeups after which `pop_used` found nothing.
    pub spurious_wakeups: u64,
    /// Timed-phase passes started because `enable_interrupts` found pending
    /// chains.
    pub pending_rechecks: u64,
    /// Faults (ablation runs only).
    pub faults: FaultCounts,
    /// Reason the trial ended before its last round trip, if it did.
    pub ended_early: Option<String>,
}

/// Request and response buffer of one chain slot.
struct BufferPair {
    request: NonNull<u64>,
    response: NonNull<u64>,
    readable: [Buffer; 1],
    writable: [Buffer; 1],
}

/// One used chain as `pop_used` returned it.
struct Completion {
    sequence: u64,
    length: UsedLength,
}

/// Outcome of one round trip.
enum RoundTrip {
    /// Every chain came back: latency, submit, completion and re-arm ticks.
    Completed([u64; 4]),
    /// The trial cannot go on (ablation runs), for this reason.
    CannotContinue(String),
}

/// Outcome of a stalled wait.
enum StallOutcome {
    /// Chains are in the used ring: poll them.
    Poll,
    /// Keep waiting.
    Wait,
}

/// The driver of one trial.
pub struct Driver<'s> {
    queue: SplitQueue<u64, GuestMemoryDma>,
    slots: Vec<BufferPair>,
    signals: &'s Signals,
    doorbell: Sender<'s>,
    interrupt: Receiver<'s>,
    shape: TrialShape,
    stall_timeout_ticks: u64,
    last_publish_notified: bool,
    completions: Vec<Completion>,
    seen_slots: Vec<bool>,
    wakeups: u64,
    spurious_wakeups: u64,
    pending_rechecks: u64,
    faults: FaultCounts,
    faulted: bool,
}

impl<'s> Driver<'s> {
    /// Allocates `shape.batch` request and response buffers from the
    /// queue's guest memory and prepares to drive `queue`.
    ///
    /// # Errors
    /// [`RingError::GuestMemoryFull`] when the region has no room for the
    /// buffers.
    pub fn new(
        queue: SplitQueue<u64, GuestMemoryDma>,
        dma: &GuestMemoryDma,
        signals: &'s Signals,
        shape: TrialShape,
        stall_timeout_ticks: u64,
    ) -> Result<Self, RingError> {
        let slots = (0..shape.batch)
            .map(|_| allocate_pair(dma))
            .collect::<Option<Vec<_>>>()
            .ok_or(RingError::GuestMemoryFull {
                allocated_bytes: dma.region().allocated_bytes(),
            })?;
        let batch = usize::from(shape.batch);
        Ok(Driver {
            queue,
            slots,
            signals,
            doorbell: Sender::new(&signals.doorbell.0),
            interrupt: Receiver::new(&signals.interrupt.0),
            shape,
            stall_timeout_ticks,
            last_publish_notified: false,
            completions: Vec::with_capacity(2 * batch),
            seen_slots: vec![false; batch],
            wakeups: 0,
            spurious_wakeups: 0,
            pending_rechecks: 0,
            faults: FaultCounts::default(),
            faulted: false,
        })
    }

    /// Runs the warm-up and the timed round trips, and hands back the queue
    /// (to be dropped after the device stops) with the measurements.
    ///
    /// # Errors
    /// Outside ablation runs, the first fault: [`RingError::Stall`],
    /// [`RingError::Queue`] or [`RingError::WrongCompletion`].
    pub fn run(mut self) -> (SplitQueue<u64, GuestMemoryDma>, Result<DriverOutcome, RingError>) {
        let result = self.run_round_trips();
        (self.queue, result)
    }

    fn run_round_trips(&mut self) -> Result<DriverOutcome, RingError> {
        let mut ended_early = None;
        for round_trip in 0..self.shape.warmup {
            if let RoundTrip::CannotContinue(reason) = self.round_trip(round_trip)? {
                ended_early = Some(reason);
                break;
            }
        }
        let barriers_before = SiteCounts::from_counters(self.queue.barrier_counters());
        let counters_before = *self.queue.counters();
        self.wakeups = 0;
        self.spurious_wakeups = 0;
        self.pending_rechecks = 0;

        let capacity = usize::try_from(self.shape.iterations).unwrap_or(0);
        let mut samples = Samples {
            latency: Vec::with_capacity(capacity),
            submit: Vec::with_capacity(capacity),
            completion: Vec::with_capacity(capacity),
            rearm: Vec::with_capacity(capacity),
        };
        let first = self.shape.warmup;
        let mut round_trips = 0;
        let started = tsc::now();
        if ended_early.is_none() {
            for round_trip in first..first + self.shape.iterations {
                round_trips += 1;
                match self.round_trip(round_trip)? {
                    RoundTrip::Completed(times) if !self.faulted => {
                        samples.latency.push(times[0]);
                        samples.submit.push(times[1]);
                        samples.completion.push(times[2]);
                        samples.rearm.push(times[3]);
                    }
                    RoundTrip::Completed(_) => {}
                    RoundTrip::CannotContinue(reason) => {
                        ended_early = Some(reason);
                        break;
                    }
                }
            }
        }
        let elapsed_ticks = tsc::now() - started;

        Ok(DriverOutcome {
            samples,
            round_trips,
            elapsed_ticks,
            barriers: SiteCounts::from_counters(self.queue.barrier_counters()).since(&barriers_before),
            queue_counters: (counters_before, *self.queue.counters()),
            wakeups: self.wakeups,
            spurious_wakeups: self.spurious_wakeups,
            pending_rechecks: self.pending_rechecks,
            faults: self.faults,
            ended_early,
        })
    }

    /// Runs round trip number `round_trip` and counts it as faulted if it
    /// met a fault.
    fn round_trip(&mut self, round_trip: u64) -> Result<RoundTrip, RingError> {
        let outcome = self.checked_round_trip(round_trip);
        if self.faulted || matches!(outcome, Ok(RoundTrip::CannotContinue(_))) {
            self.faults.faulted_round_trips += 1;
        }
        outcome
    }

    fn checked_round_trip(&mut self, round_trip: u64) -> Result<RoundTrip, RingError> {
        let batch = u64::from(self.shape.batch);
        let first_sequence = round_trip * batch;
        self.faulted = false;
        self.completions.clear();
        for (slot, pair) in self.slots.iter().enumerate() {
            // SAFETY: the request buffer belongs to the driver until it is
            // added below, because the previous round trip got it back.
            unsafe { pair.request.as_ptr().write_volatile(first_sequence + slot as u64) };
        }

        let t0 = tsc::start();
        for (slot, pair) in self.slots.iter().enumerate() {
            let sequence = first_sequence + slot as u64;
            if let Err(error) = self.queue.add(&pair.readable, &pair.writable, sequence) {
                let reason = format!("add of chain {sequence} failed: {}", error.error);
                return Ok(RoundTrip::CannotContinue(reason));
            }
        }
        let notify = self.queue.publish();
        let t1 = tsc::stop();
        self.last_publish_notified = notify;
        if notify {
            self.doorbell.send();
        }

        let mut completion_ticks = 0;
        let mut rearm_ticks = 0;
        let mut pending = false;
        let mut end;
        loop {
            if pending {
                self.pending_rechecks += 1;
            } else if !self.wait_for_interrupt(round_trip)? {
                let reason = format!("round trip {round_trip}: chains never came back");
                return Ok(RoundTrip::CannotContinue(reason));
            }
            self.queue.disable_interrupts();

            let before = self.completions.len();
            let c0 = tsc::start();
            let popped = self.pop_all();
            let c1 = tsc::stop();
            pending = self.queue.enable_interrupts();
            let r1 = tsc::stop();
            completion_ticks += c1 - c0;
            rearm_ticks += r1 - c1;
            end = r1;

            if let Err(error) = popped {
                let reason = error.to_string();
                self.record_fault(|faults| faults.queue_errors += 1, error)?;
                return Ok(RoundTrip::CannotContinue(reason));
            }
            if self.completions.len() == before && !pending {
                self.spurious_wakeups += 1;
            }
            if self.completions.len() >= self.slots.len() && !pending {
                break;
            }
        }
        self.check_completions(first_sequence)?;
        Ok(RoundTrip::Completed([end - t0, t1 - t0, completion_ticks, rearm_ticks]))
    }

    /// Pops every used chain into `completions`.
    #[inline(always)]
    fn pop_all(&mut self) -> Result<(), RingError> {
        while let Some(used) = self.queue.pop_used().map_err(RingError::Queue)? {
            self.completions.push(Completion {
                sequence: used.token,
                length: used.length,
            });
        }
        Ok(())
    }

    /// Waits for an interrupt. Returns false when the chains of this round
    /// trip can no longer come back (ablation runs).
    fn wait_for_interrupt(&mut self, round_trip: u64) -> Result<bool, RingError> {
        let mut stalls = 0;
        loop {
            let deadline = tsc::now() + self.stall_timeout_ticks;
            match self.interrupt.wait(Some(deadline), Some(&self.signals.stop.0)) {
                Wait::Signalled => {
                    self.wakeups += 1;
                    return Ok(true);
                }
                Wait::Stopped => return Err(RingError::DeviceStopped),
                Wait::TimedOut => {}
            }
            stalls += 1;
            match self.diagnose_stall(round_trip, stalls)? {
                Some(StallOutcome::Poll) => return Ok(true),
                Some(StallOutcome::Wait) => {}
                None => return Ok(false),
            }
        }
    }

    /// Works out why no interrupt came within the stall timeout. Returns
    /// `None` when the round trip cannot complete.
    fn diagnose_stall(&mut self, round_trip: u64, stalls: u64) -> Result<Option<StallOutcome>, RingError> {
        let published = self.queue.published_avail_idx();
        let used_pending = self.queue.used_idx() != self.queue.last_used_idx();
        let stall = |diagnosis: &str| RingError::Stall {
            round_trip,
            diagnosis: diagnosis.to_string(),
            published_avail_idx: published,
            used_idx: self.queue.used_idx(),
            last_used_idx: self.queue.last_used_idx(),
            device_sleeping_at: self.signals.device_sleeping_at(),
        };
        let Some(device_avail_idx) = self.signals.device_sleeping_at() else {
            let waited_ticks = stalls.saturating_mul(self.stall_timeout_ticks);
            if stalls < MIN_STALLS_BEFORE_HUNG || waited_ticks < MIN_HUNG_TICKS {
                return Ok(Some(StallOutcome::Wait));
            }
            return Err(stall("the device stayed busy or descheduled"));
        };
        if used_pending && !self.interrupt.pending() {
            let error = stall("lost used buffer notification: the device slept after returning chains without an interrupt");
            self.record_fault(|faults| faults.lost_used_notifications += 1, error)?;
            return Ok(Some(StallOutcome::Poll));
        }
        if device_avail_idx != published && !self.last_publish_notified {
            let error = stall("lost available buffer notification: the device slept with published chains");
            self.record_fault(|faults| faults.lost_available_notifications += 1, error)?;
            self.last_publish_notified = true;
            self.doorbell.send();
            return Ok(Some(StallOutcome::Wait));
        }
        if device_avail_idx == published && !used_pending {
            let missing = self.slots.len() - self.completions.len().min(self.slots.len());
            let error = stall("missing buffers: the device took chains and slept without returning them");
            self.record_fault(|faults| faults.missing_buffers += missing as u64, error)?;
            return Ok(None);
        }
        Ok(Some(StallOutcome::Wait))
    }

    /// Checks every completion of the round trip that started at
    /// `first_sequence`.
    fn check_completions(&mut self, first_sequence: u64) -> Result<(), RingError> {
        self.seen_slots.fill(false);
        for index in 0..self.completions.len() {
            let Completion { sequence, length } = self.completions[index];
            let slot = sequence.wrapping_sub(first_sequence);
            let wrong = |problem: String| RingError::WrongCompletion { sequence, problem };
            let Some(seen) = self.seen_slots.get_mut(slot as usize) else {
                let error = wrong(format!("token from outside this round trip (first {first_sequence})"));
                self.record_fault(|faults| faults.duplicate_buffers += 1, error)?;
                continue;
            };
            if std::mem::replace(seen, true) {
                let error = wrong("returned twice".to_string());
                self.record_fault(|faults| faults.duplicate_buffers += 1, error)?;
                continue;
            }
            let expected_len = response_len(sequence);
            if length != UsedLength::Valid(expected_len) {
                let error = wrong(format!("used length {length:?}, expected {expected_len}"));
                self.record_fault(|faults| faults.wrong_lengths += 1, error)?;
            }
            // SAFETY: the chain came back through the used ring, so the
            // response buffer belongs to the driver again.
            let echoed = unsafe { self.slots[slot as usize].response.as_ptr().read_volatile() };
            if echoed != sequence {
                let error = wrong(format!("response holds sequence {echoed}"));
                self.record_fault(|faults| faults.wrong_contents += 1, error)?;
            }
        }
        Ok(())
    }

    /// Counts a fault in an ablation run, or returns `error` otherwise.
    fn record_fault(&mut self, count: impl FnOnce(&mut FaultCounts), error: RingError) -> Result<(), RingError> {
        if !self.shape.tolerate_faults {
            return Err(error);
        }
        count(&mut self.faults);
        self.faulted = true;
        Ok(())
    }
}

fn allocate_pair(dma: &GuestMemoryDma) -> Option<BufferPair> {
    use virtio::dma::Dma;
    let layout = core::alloc::Layout::from_size_align(BUFFER_BYTES as usize, BUFFER_BYTES as usize)
        .expect("one cache line is a valid layout");
    let request = dma.alloc_zeroed(layout)?;
    let response = dma.alloc_zeroed(layout)?;
    let buffer = |ptr: NonNull<u8>| Buffer {
        address: dma.device_address(ptr.as_ptr()),
        len: BUFFER_BYTES,
    };
    Some(BufferPair {
        request: request.cast(),
        response: response.cast(),
        readable: [buffer(request)],
        writable: [buffer(response)],
    })
}
