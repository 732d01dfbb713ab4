//! A thread that serves a split virtqueue like a device on another CPU.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::vec::Vec;

use super::device::{DeviceChain, DeviceError, DeviceRings};
use super::dma::OffsetDma;
use crate::QueueAddresses;

/// A deliberate protocol violation for hostile-device tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Misbehaviour {
    /// Report this id in the used element instead of the chain head; the
    /// real chain is never returned.
    UsedId(u32),
    /// Report this length instead of the bytes written.
    UsedLength(u32),
    /// Advance the used idx by this many instead of 1.
    UsedIdxAdvance(u16),
}

/// Queue and behaviour of a device model thread.
#[derive(Clone, Debug)]
pub struct DeviceModelConfig {
    /// Areas of the queue to serve.
    pub addresses: QueueAddresses,
    /// Whether `VIRTIO_F_EVENT_IDX` was negotiated.
    pub event_idx: bool,
    /// Start value of the device's indices; must match the driver's.
    pub start_index: u16,
    /// Whether the device disables available buffer notifications while it
    /// is working through the avail ring, as QEMU does.
    pub suppress_notifications_while_busy: bool,
    /// Misbehaviours by completion number, counting from 0.
    pub misbehaviours: Vec<(u64, Misbehaviour)>,
}

impl DeviceModelConfig {
    /// Creates the configuration of a well-behaved device that starts at
    /// index 0 and suppresses notifications while busy.
    pub fn new(addresses: QueueAddresses, event_idx: bool) -> Self {
        DeviceModelConfig {
            addresses,
            event_idx,
            start_index: 0,
            suppress_notifications_while_busy: true,
            misbehaviours: Vec::new(),
        }
    }

    /// Starts the device's indices at `start_index`.
    pub fn with_start_index(mut self, start_index: u16) -> Self {
        self.start_index = start_index;
        self
    }

    /// Makes completion number `completion` (from 0) misbehave.
    pub fn misbehave_at(mut self, completion: u64, misbehaviour: Misbehaviour) -> Self {
        self.misbehaviours.push((completion, misbehaviour));
        self
    }
}

/// Activity counts of a device model thread.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceStats {
    /// Chains returned through the used ring.
    pub completions: u64,
    /// Used buffer notifications the device would have raised.
    pub interrupts: u64,
    /// Doorbell changes the device woke up for.
    pub wakeups: u64,
}

#[derive(Default)]
struct Shared {
    doorbell: Arc<AtomicU64>,
    stop: AtomicBool,
    completions: AtomicU64,
    interrupts: AtomicU64,
    wakeups: AtomicU64,
}

/// A std thread on the device side of a queue.
///
/// It waits for the doorbell (an `AtomicU64` that the test's notify step
/// increments) to change, then takes every published chain, passes its
/// buffers to the handler, returns it through the used ring and counts the
/// interrupts the driver asked for. While busy it suppresses notifications;
/// before sleeping it re-enables them and re-reads the avail idx.
///
/// Stop the thread (or drop it, which stops it) before dropping the queue,
/// because the thread has pointers into the queue's rings.
pub struct DeviceModelThread {
    shared: Arc<Shared>,
    handle: Option<JoinHandle<Result<(), DeviceError>>>,
}

impl DeviceModelThread {
    /// Attaches to the queue described by `config` and starts serving it with
    /// `handler`, which receives a chain's readable and writable buffers and
    /// returns the bytes it wrote. The device reports the smaller of that and
    /// the writable capacity, unless a configured misbehaviour overrides it.
    ///
    /// # Errors
    /// As for [`DeviceRings::new`].
    pub fn spawn<F>(
        dma: OffsetDma,
        config: DeviceModelConfig,
        handler: F,
    ) -> Result<Self, DeviceError>
    where
        F: FnMut(&[&[u8]], &mut [&mut [u8]]) -> u32 + Send + 'static,
    {
        let rings = DeviceRings::new(dma, config.addresses, config.event_idx, config.start_index)?;
        let shared = Arc::new(Shared::default());
        let thread_shared = Arc::clone(&shared);
        let handle = thread::spawn(move || serve(rings, &config, handler, &thread_shared));
        Ok(DeviceModelThread {
            shared,
            handle: Some(handle),
        })
    }

    /// Returns the doorbell, for a notify closure to increment.
    pub fn doorbell(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.shared.doorbell)
    }

    /// Rings the doorbell.
    pub fn notify(&self) {
        self.shared.doorbell.fetch_add(1, Ordering::Release);
    }

    /// Chains returned so far.
    pub fn completions(&self) -> u64 {
        self.shared.completions.load(Ordering::Acquire)
    }

    /// Interrupts raised so far.
    pub fn interrupts(&self) -> u64 {
        self.shared.interrupts.load(Ordering::Acquire)
    }

    /// Stops the thread and returns its statistics.
    ///
    /// # Errors
    /// The [`DeviceError`] that stopped the device early, or
    /// [`DeviceError::ThreadPanicked`].
    pub fn stop(mut self) -> Result<DeviceStats, DeviceError> {
        self.join()?;
        Ok(DeviceStats {
            completions: self.shared.completions.load(Ordering::Acquire),
            interrupts: self.shared.interrupts.load(Ordering::Acquire),
            wakeups: self.shared.wakeups.load(Ordering::Acquire),
        })
    }

    fn join(&mut self) -> Result<(), DeviceError> {
        self.shared.stop.store(true, Ordering::Release);
        match self.handle.take() {
            Some(handle) => handle.join().map_err(|_| DeviceError::ThreadPanicked)?,
            None => Ok(()),
        }
    }
}

impl Drop for DeviceModelThread {
    fn drop(&mut self) {
        // The result was not asked for; `stop` is the way to see it.
        let _ = self.join();
    }
}

fn serve<F>(
    mut rings: DeviceRings,
    config: &DeviceModelConfig,
    mut handler: F,
    shared: &Shared,
) -> Result<(), DeviceError>
where
    F: FnMut(&[&[u8]], &mut [&mut [u8]]) -> u32,
{
    let mut seen_doorbell = 0;
    let mut completions = 0u64;
    while !shared.stop.load(Ordering::Acquire) {
        let doorbell = shared.doorbell.load(Ordering::Acquire);
        if doorbell == seen_doorbell {
            thread::yield_now();
            continue;
        }
        seen_doorbell = doorbell;
        shared.wakeups.fetch_add(1, Ordering::Relaxed);

        if config.suppress_notifications_while_busy {
            rings.disable_notifications();
        }
        loop {
            while let Some(chain) = rings.pop_avail()? {
                let interrupt = complete(&mut rings, &chain, config, completions, &mut handler);
                completions += 1;
                shared.completions.fetch_add(1, Ordering::Release);
                if interrupt {
                    shared.interrupts.fetch_add(1, Ordering::Release);
                }
            }
            if !rings.enable_notifications() {
                break;
            }
            if config.suppress_notifications_while_busy {
                rings.disable_notifications();
            }
        }
    }
    Ok(())
}

/// Serves one chain and returns it through the used ring, applying any
/// misbehaviour configured for completion number `completion`. Returns
/// whether the driver asked for an interrupt.
fn complete<F>(
    rings: &mut DeviceRings,
    chain: &DeviceChain,
    config: &DeviceModelConfig,
    completion: u64,
    handler: &mut F,
) -> bool
where
    F: FnMut(&[&[u8]], &mut [&mut [u8]]) -> u32,
{
    let written = chain.serve(handler);
    let mut id = u32::from(chain.head);
    let mut len = written.min(u32::try_from(chain.writable_capacity_bytes()).unwrap_or(u32::MAX));
    let mut advance = 1;
    for &(_, misbehaviour) in config
        .misbehaviours
        .iter()
        .filter(|(at, _)| *at == completion)
    {
        match misbehaviour {
            Misbehaviour::UsedId(bad_id) => id = bad_id,
            Misbehaviour::UsedLength(bad_len) => len = bad_len,
            Misbehaviour::UsedIdxAdvance(bad_advance) => advance = bad_advance,
        }
    }
    rings.push_used_advancing(id, len, advance)
}
