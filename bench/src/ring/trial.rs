//! One trial: a fresh guest memory region and queue, a device thread and a
//! driver thread on two pinned cores, and what both measured.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use virtio::barrier::BarrierMode;
use virtio::queue::SplitQueue;

use super::config::{BarrierConfig, RingConfig, TrialShape, BUFFER_BYTES};
use super::device::{run_device, DeviceStats};
use super::driver::{Driver, DriverOutcome};
use super::memory::{GuestMemoryDma, GuestRegion};
use super::signals::Signals;
use super::RingError;
use crate::host;
use crate::tsc::TscFrequency;

/// The two cores of a trial.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CorePair {
    /// Core of the driver thread.
    pub driver: usize,
    /// Core of the device thread.
    pub device: usize,
}

/// Everything one trial measured.
#[derive(Clone, Debug)]
pub struct TrialResult {
    /// Configuration that ran.
    pub config: RingConfig,
    /// Ring shape and run lengths.
    pub shape: TrialShape,
    /// Driver-side measurements.
    pub driver: DriverOutcome,
    /// Device-side counts.
    pub device: DeviceStats,
    /// Steal time of the whole machine during the trial, in milliseconds.
    pub steal_ms: Option<f64>,
    /// Wall-clock time of the trial, setup included.
    pub wall_time: Duration,
    /// Times the kernel preempted the driver or the device thread, as the
    /// kernel counts involuntary context switches.
    pub preemptions: Option<u64>,
}

/// Runs one trial of `config` with `shape` on `cores`.
///
/// # Errors
/// Any [`RingError`]: setup failures, a fault outside ablation runs, a
/// device fault, or a thread that could not be pinned.
pub fn run_trial(
    config: &RingConfig,
    shape: &TrialShape,
    cores: CorePair,
    frequency: &TscFrequency,
) -> Result<TrialResult, RingError> {
    #[cfg(not(feature = "ablation"))]
    if config.barriers.has_ablated_site() {
        return Err(RingError::AblationUnavailable);
    }
    let region = GuestRegion::new(region_size_bytes(shape)).map_err(|error| RingError::GuestMemory {
        size_bytes: error.size_bytes,
        message: error.message,
    })?;
    let dma = GuestMemoryDma::new(Arc::clone(&region));
    let mut queue = SplitQueue::<u64, _>::new(dma.clone(), 0, shape.queue_size, BarrierMode::Weak, config.event_idx, false)
        .map_err(RingError::Queue)?;
    config.barriers.apply_modes(&mut queue);
    let addresses = queue.addresses();
    let signals = Signals::default();
    let stall_timeout_ticks = frequency.duration_to_ticks(shape.stall_timeout).max(1);

    let steal_before = host::steal_ms();
    let started = Instant::now();
    let (driver_result, device_result) = thread::scope(|scope| {
        let device = scope.spawn(|| {
            if !host::pin_current_thread(cores.device) {
                signals.request_stop();
                return Err(RingError::PinningFailed { core: cores.device });
            }
            let preemptions_before = host::thread_preemptions();
            let stats = run_device(config.device, &region, addresses, config.event_idx, &signals)
                .map_err(RingError::Device)?;
            Ok((stats, preemptions_since(preemptions_before)))
        });
        let driver = scope.spawn(|| {
            let preemptions_before = host::thread_preemptions();
            let (queue, result) = drive(queue, &dma, &signals, shape, stall_timeout_ticks, cores.driver, &config.barriers);
            signals.request_stop();
            (queue, result.map(|outcome| (outcome, preemptions_since(preemptions_before))))
        });
        let (queue, driver_result) = driver
            .join()
            .unwrap_or_else(|_| (None, Err(RingError::ThreadPanicked { role: "driver" })));
        let device_result = device
            .join()
            .unwrap_or(Err(RingError::ThreadPanicked { role: "device" }));
        // The device has stopped, so the rings may go.
        drop(queue);
        (driver_result, device_result)
    });
    let wall_time = started.elapsed();
    let steal_ms = host::steal_ms()
        .zip(steal_before)
        .map(|(after, before)| after - before);

    // A device fault explains a driver that saw the device stop.
    let (device, device_preemptions) = device_result?;
    let (driver, driver_preemptions) = driver_result?;
    Ok(TrialResult {
        config: config.clone(),
        shape: *shape,
        driver,
        device,
        steal_ms,
        wall_time,
        preemptions: driver_preemptions.zip(device_preemptions).map(|(driver, device)| driver + device),
    })
}

fn preemptions_since(before: Option<u64>) -> Option<u64> {
    host::thread_preemptions()
        .zip(before)
        .map(|(after, before)| after - before)
}

/// The driver thread: pins itself, applies ablation (which is per thread),
/// and runs the round trips.
fn drive(
    queue: SplitQueue<u64, GuestMemoryDma>,
    dma: &GuestMemoryDma,
    signals: &Signals,
    shape: &TrialShape,
    stall_timeout_ticks: u64,
    core: usize,
    barriers: &BarrierConfig,
) -> (Option<SplitQueue<u64, GuestMemoryDma>>, Result<DriverOutcome, RingError>) {
    if !host::pin_current_thread(core) {
        return (Some(queue), Err(RingError::PinningFailed { core }));
    }
    let driver = match Driver::new(queue, dma, signals, *shape, stall_timeout_ticks) {
        Ok(driver) => driver,
        // `Driver::new` dropped the queue while the device may still poll
        // its rings. That is harmless: `GuestMemoryDma` never frees memory,
        // and the region outlives both threads.
        Err(error) => return (None, Err(error)),
    };
    set_ablation(barriers, true);
    let (queue, result) = driver.run();
    set_ablation(barriers, false);
    (Some(queue), result)
}

#[cfg(feature = "ablation")]
fn set_ablation(barriers: &BarrierConfig, ablated: bool) {
    use super::config::SiteSetting;
    use virtio::barrier::{ablation, BarrierSite};
    for site in BarrierSite::ALL {
        if barriers.setting(site) == SiteSetting::Ablated {
            ablation::set_site_ablated(site, ablated);
        }
    }
}

#[cfg(not(feature = "ablation"))]
fn set_ablation(_barriers: &BarrierConfig, _ablated: bool) {}

/// Guest memory for the rings and buffers: the three areas with their
/// cache-line padding, two buffers per chain slot, and 64 KiB to spare.
fn region_size_bytes(shape: &TrialShape) -> usize {
    let size = usize::from(shape.queue_size);
    let rings = 16 * size + (6 + 2 * size) + (6 + 8 * size) + 3 * 64;
    let buffers = 2 * usize::from(shape.batch) * BUFFER_BYTES as usize;
    (rings + buffers + (64 << 10)).next_multiple_of(4096)
}
