//! Split virtqueue tests against the device side in `crate::testing`: a
//! device-model thread for traffic, and `DeviceRings` driven step by step
//! where the order of driver and device actions matters.

use core::alloc::Layout;
use core::cell::Cell;
use core::ptr::NonNull;
use std::thread;
use std::time::{Duration, Instant};
use std::vec;
use std::vec::Vec;

use super::*;
use crate::barrier::BarrierSite;
use crate::testing::{DeviceModelConfig, DeviceModelThread, DeviceRings, Misbehaviour, OffsetDma};

/// How long a test waits for the other side before it reports a hang. This
/// only turns a lost notification into a failure instead of a stuck run; no
/// test asserts on speed.
const HANG_TIMEOUT: Duration = Duration::from_secs(60);

type TestQueue = SplitQueue<u32, OffsetDma>;

fn new_queue(dma: &OffsetDma, size: u16, mode: BarrierMode, event_idx: bool) -> TestQueue {
    SplitQueue::new(dma.clone(), 0, size, mode, event_idx, false).expect("queue allocation")
}

fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(
            start.elapsed() < HANG_TIMEOUT,
            "timed out waiting for {what}"
        );
        thread::yield_now();
    }
}

/// A buffer in DMA memory that the test fills and reads while the driver
/// owns it.
struct DmaBuffer {
    ptr: NonNull<u8>,
    len: u32,
    address: u64,
}

impl DmaBuffer {
    fn new(dma: &OffsetDma, len: u32) -> Self {
        let layout = Layout::from_size_align(len as usize, 8).expect("valid layout");
        let ptr = dma.alloc_zeroed(layout).expect("test heap");
        // The allocator releases the memory when its last clone drops.
        DmaBuffer {
            ptr,
            len,
            address: dma.device_address(ptr.as_ptr()),
        }
    }

    fn whole(&self) -> Buffer {
        self.prefix(self.len)
    }

    fn prefix(&self, len: u32) -> Buffer {
        assert!(len <= self.len);
        Buffer {
            address: self.address,
            len,
        }
    }

    fn write(&self, bytes: &[u8]) {
        assert!(bytes.len() <= self.len as usize);
        // SAFETY: the buffer is `len` bytes of live DMA memory, and the test
        // writes it only while no chain naming it is available to the device.
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ptr.as_ptr(), bytes.len()) };
    }

    fn read(&self, len: usize) -> Vec<u8> {
        assert!(len <= self.len as usize);
        let mut bytes = vec![0; len];
        // SAFETY: as in `write`; the test reads only after the used ring
        // returned the chain.
        unsafe { core::ptr::copy_nonoverlapping(self.ptr.as_ptr(), bytes.as_mut_ptr(), len) };
        bytes
    }
}

/// Writes the readable bytes reversed and XORed with 0x5a over the writable
/// buffers, which is the device's work in traffic tests.
fn reverse_and_mask(readable: &[&[u8]], writable: &mut [&mut [u8]]) -> u32 {
    let input: Vec<u8> = readable.concat();
    let output = input.iter().rev().map(|byte| byte ^ 0x5a);
    let destinations = writable.iter_mut().flat_map(|segment| segment.iter_mut());
    let mut written = 0;
    for (destination, byte) in destinations.zip(output) {
        *destination = byte;
        written += 1;
    }
    written
}

/// One request: an 8-byte sequence header and a payload, with a response in
/// two 40-byte buffers or one 80-byte buffer.
struct RequestSlot {
    header: DmaBuffer,
    payload: DmaBuffer,
    response_parts: [DmaBuffer; 2],
    response_whole: DmaBuffer,
    sequence: u64,
}

impl RequestSlot {
    fn new(dma: &OffsetDma) -> Self {
        RequestSlot {
            header: DmaBuffer::new(dma, 8),
            payload: DmaBuffer::new(dma, 64),
            response_parts: [DmaBuffer::new(dma, 40), DmaBuffer::new(dma, 40)],
            response_whole: DmaBuffer::new(dma, 80),
            sequence: 0,
        }
    }

    fn payload_len(&self) -> u32 {
        1 + (self.sequence % 60) as u32
    }

    fn split_response(&self) -> bool {
        self.sequence & 1 == 0
    }

    /// Fills the request for `sequence` and returns its buffers.
    fn prepare(&mut self, sequence: u64) -> ([Buffer; 2], Vec<Buffer>) {
        self.sequence = sequence;
        self.header.write(&sequence.to_le_bytes());
        let payload: Vec<u8> = (0..self.payload_len())
            .map(|i| (sequence as u8).wrapping_add(i as u8))
            .collect();
        self.payload.write(&payload);
        let readable = [self.header.whole(), self.payload.prefix(self.payload_len())];
        let writable = if self.split_response() {
            self.response_parts.iter().map(DmaBuffer::whole).collect()
        } else {
            vec![self.response_whole.whole()]
        };
        (readable, writable)
    }

    fn expected_response(&self) -> Vec<u8> {
        let request = [
            self.header.read(8),
            self.payload.read(self.payload_len() as usize),
        ];
        let readable: Vec<&[u8]> = request.iter().map(Vec::as_slice).collect();
        let mut response = [0u8; 80];
        let written = reverse_and_mask(&readable, &mut [&mut response[..]]);
        response[..written as usize].to_vec()
    }

    fn response(&self, len: usize) -> Vec<u8> {
        if self.split_response() {
            let mut bytes = self.response_parts[0].read(len.min(40));
            bytes.extend(self.response_parts[1].read(len.saturating_sub(40)));
            bytes
        } else {
            self.response_whole.read(len)
        }
    }
}

/// Pushes `total` requests through a queue served by a device-model thread,
/// keeping the ring as full as it gets, and checks every response.
fn run_traffic(
    mode: BarrierMode,
    event_idx: bool,
    start_index: u16,
    total: u64,
) -> (TestQueue, DeviceModelThread) {
    let dma = OffsetDma::new();
    let mut queue =
        SplitQueue::with_start_index(dma.clone(), 1, 64, mode, event_idx, false, start_index)
            .expect("queue allocation");
    let config = DeviceModelConfig::new(queue.addresses(), event_idx).with_start_index(start_index);
    let device =
        DeviceModelThread::spawn(dma.clone(), config, reverse_and_mask).expect("device attaches");

    let mut slots: Vec<RequestSlot> = (0..32).map(|_| RequestSlot::new(&dma)).collect();
    let mut free_slots: Vec<u32> = (0..32).collect();
    let (mut sent, mut received) = (0u64, 0u64);
    let mut last_progress = Instant::now();
    while received < total {
        while sent < total {
            let Some(slot) = free_slots.pop() else { break };
            let (readable, writable) = slots[slot as usize].prepare(sent);
            match queue.add(&readable, &writable, slot) {
                Ok(_) => sent += 1,
                Err(AddError {
                    error: QueueError::QueueFull { .. },
                    token,
                }) => {
                    free_slots.push(token);
                    break;
                }
                Err(other) => panic!("add failed: {other}"),
            }
        }
        if queue.publish() {
            device.notify();
        }

        while let Some(used) = queue.pop_used().expect("a well-behaved device") {
            let slot = &slots[used.token as usize];
            let expected = slot.expected_response();
            assert_eq!(
                used.length,
                UsedLength::Valid(expected.len() as u32),
                "length of request {}",
                slot.sequence
            );
            assert_eq!(
                slot.response(expected.len()),
                expected,
                "response to request {}",
                slot.sequence
            );
            free_slots.push(used.token);
            received += 1;
            last_progress = Instant::now();
        }
        assert!(
            last_progress.elapsed() < HANG_TIMEOUT,
            "no used buffer for {HANG_TIMEOUT:?} after {received} of {total}"
        );
        thread::yield_now();
    }
    (queue, device)
}

fn check_traffic(mode: BarrierMode, event_idx: bool, start_index: u16, total: u64) {
    let (queue, device) = run_traffic(mode, event_idx, start_index, total);
    let stats = device.stop().expect("the device saw no driver mistake");

    let counters = queue.counters();
    assert_eq!(stats.completions, total);
    assert_eq!(counters.adds, total);
    assert_eq!(counters.used_processed, total);
    assert_eq!(
        counters.errors,
        QueueErrorCounters {
            queue_full: counters.errors.queue_full,
            ..Default::default()
        }
    );
    assert_eq!(queue.descriptors_in_use(), 0);
    assert_eq!(queue.avail_idx(), start_index.wrapping_add(total as u16));
    assert_eq!(
        queue.last_used_idx(),
        start_index.wrapping_add(total as u16)
    );
    assert!(counters.kicks >= 1);
    assert!(
        stats.wakeups <= counters.kicks,
        "the device woke only for kicks"
    );
    let barriers = queue.barrier_counters();
    assert_eq!(barriers.count(BarrierSite::UsedRead, mode), total);
    assert_eq!(
        barriers.count(BarrierSite::AvailPublish, mode),
        counters.kicks + counters.kicks_suppressed
    );
    assert_eq!(barriers.mode_total(other_mode(mode)), 0);
}

fn other_mode(mode: BarrierMode) -> BarrierMode {
    match mode {
        BarrierMode::Weak => BarrierMode::Strong,
        BarrierMode::Strong => BarrierMode::Weak,
    }
}

#[test]
fn traffic_wraps_indices_weak_event_idx() {
    check_traffic(BarrierMode::Weak, true, 0, 70_000);
}

#[test]
fn traffic_wraps_indices_weak_flags() {
    check_traffic(BarrierMode::Weak, false, 0, 70_000);
}

#[test]
fn traffic_wraps_indices_strong_event_idx() {
    check_traffic(BarrierMode::Strong, true, 0, 70_000);
}

#[test]
fn traffic_wraps_indices_strong_flags() {
    check_traffic(BarrierMode::Strong, false, 0, 70_000);
}

#[test]
fn traffic_from_start_index_near_wrap() {
    for event_idx in [false, true] {
        check_traffic(BarrierMode::Weak, event_idx, u16::MAX - 5, 1_000);
    }
}

/// Interrupt-driven receive against the device thread: the driver sleeps
/// whenever `enable_interrupts` finds nothing pending, and only a device
/// interrupt wakes it. A lost interrupt hangs the loop and fails the test.
fn check_interrupt_driven(mode: BarrierMode, event_idx: bool) {
    const TOTAL: u64 = 20_000;
    let dma = OffsetDma::new();
    let mut queue = new_queue(&dma, 16, mode, event_idx);
    let config = DeviceModelConfig::new(queue.addresses(), event_idx);
    let device = DeviceModelThread::spawn(
        dma.clone(),
        config,
        |_: &[&[u8]], writable: &mut [&mut [u8]]| {
            writable[0][0] = 0xa5;
            1
        },
    )
    .expect("device attaches");
    let buffers: Vec<DmaBuffer> = (0..4).map(|_| DmaBuffer::new(&dma, 16)).collect();
    let mut free: Vec<u32> = (0..4).collect();
    let (mut sent, mut received) = (0u64, 0u64);

    queue.disable_interrupts();
    while received < TOTAL {
        while sent < TOTAL {
            let Some(token) = free.pop() else { break };
            queue
                .add(&[], &[buffers[token as usize].whole()], token)
                .expect("a free descriptor per buffer");
            sent += 1;
        }
        if queue.publish() {
            device.notify();
        }
        while let Some(used) = queue.pop_used().expect("a well-behaved device") {
            assert_eq!(used.length, UsedLength::Valid(1));
            assert_eq!(buffers[used.token as usize].read(1), [0xa5]);
            free.push(used.token);
            received += 1;
        }
        if received == TOTAL || queue.outstanding_chains() == 0 {
            continue;
        }

        let interrupts_before = device.interrupts();
        if queue.enable_interrupts() {
            queue.disable_interrupts();
            continue;
        }
        wait_until("an interrupt", || device.interrupts() != interrupts_before);
        queue.disable_interrupts();
    }
    let stats = device.stop().expect("the device saw no driver mistake");
    assert_eq!(stats.completions, TOTAL);
    assert!(stats.interrupts >= 1);
}

#[test]
fn interrupt_driven_receive_loses_no_interrupt() {
    for mode in BarrierMode::ALL {
        for event_idx in [false, true] {
            check_interrupt_driven(mode, event_idx);
        }
    }
}

#[test]
fn full_ring_rejects_then_recovers() {
    let dma = OffsetDma::new();
    let mut queue = new_queue(&dma, 8, BarrierMode::Weak, false);
    let mut device =
        DeviceRings::new(dma.clone(), queue.addresses(), false, 0).expect("device attaches");
    let buffer = DmaBuffer::new(&dma, 8);

    for token in 0..8 {
        queue
            .add(&[buffer.whole()], &[], token)
            .expect("a free descriptor");
    }
    let full = queue
        .add(&[buffer.whole()], &[], 99)
        .expect_err("no descriptor is free");
    assert_eq!(
        full.error,
        QueueError::QueueFull {
            queue: 0,
            needed: 1,
            free: 0
        }
    );
    assert_eq!(full.token, 99);
    assert_eq!(queue.counters().errors.queue_full, 1);
    assert_eq!(queue.descriptors_in_use(), 8);

    let too_long = queue
        .add(&[buffer.whole(); 9], &[], 98)
        .expect_err("longer than the queue");
    assert_eq!(
        too_long.error,
        QueueError::ChainTooLong {
            queue: 0,
            needed: 9,
            size: 8
        }
    );
    let empty = queue.add(&[], &[], 97).expect_err("no buffer");
    assert_eq!(empty.error, QueueError::EmptyChain { queue: 0 });

    assert!(queue.publish());
    for _ in 0..3 {
        let chain = device
            .pop_avail()
            .expect("valid chain")
            .expect("published chain");
        device.push_used(u32::from(chain.head), 0);
    }
    let tokens: Vec<u32> = (0..3)
        .map(|_| queue.pop_used().expect("valid").expect("used").token)
        .collect();
    assert_eq!(tokens, [0, 1, 2]);
    assert_eq!(queue.free_descriptors(), 3);

    queue
        .add(&[buffer.whole(), buffer.whole()], &[], 10)
        .expect("two free descriptors");
    let partial = queue
        .add(&[buffer.whole(), buffer.whole()], &[], 11)
        .expect_err("one descriptor free");
    assert_eq!(
        partial.error,
        QueueError::QueueFull {
            queue: 0,
            needed: 2,
            free: 1
        }
    );
    queue
        .add(&[buffer.whole()], &[], 12)
        .expect("the last descriptor");
    assert_eq!(queue.free_descriptors(), 0);
}

#[test]
fn chain_reaches_device_in_order() {
    let dma = OffsetDma::new();
    let mut queue = new_queue(&dma, 8, BarrierMode::Strong, true);
    let mut device =
        DeviceRings::new(dma.clone(), queue.addresses(), true, 0).expect("device attaches");
    let buffers: Vec<DmaBuffer> = [8, 16, 32, 64]
        .into_iter()
        .map(|len| DmaBuffer::new(&dma, len))
        .collect();

    let head = queue
        .add(
            &[buffers[0].whole(), buffers[1].whole()],
            &[buffers[2].whole(), buffers[3].whole()],
            7,
        )
        .expect("room");
    assert_eq!(
        device.pop_avail().expect("valid"),
        None,
        "nothing is visible before publish"
    );
    assert!(queue.publish());

    let chain = device
        .pop_avail()
        .expect("valid chain")
        .expect("published chain");
    assert_eq!(chain.head, head);
    let addresses = |segments: &[crate::testing::Segment]| -> Vec<(u64, u32)> {
        segments
            .iter()
            .map(|segment| (segment.device_address, segment.len))
            .collect()
    };
    assert_eq!(
        addresses(&chain.readable),
        [(buffers[0].address, 8), (buffers[1].address, 16)]
    );
    assert_eq!(
        addresses(&chain.writable),
        [(buffers[2].address, 32), (buffers[3].address, 64)]
    );
    assert_eq!(chain.writable_capacity_bytes(), 96);
}

#[test]
fn need_event_matches_window_definition() {
    for old_idx in [0u16, 1, 100, 32768, 65530, 65535] {
        for count in 0u16..=40 {
            let new_idx = old_idx.wrapping_add(count);
            for distance in 0u16..=100 {
                let event_idx = old_idx.wrapping_sub(50).wrapping_add(distance);
                let in_window = event_idx.wrapping_sub(old_idx) < count;
                assert_eq!(
                    need_event(event_idx, new_idx, old_idx),
                    in_window,
                    "event {event_idx}, old {old_idx}, new {new_idx}"
                );
            }
        }
    }
}

#[test]
fn need_event_across_wraparound() {
    assert!(need_event(0, 1, 0));
    assert!(need_event(65535, 0, 65535));
    assert!(need_event(65535, 2, 65534));
    assert!(need_event(0, 2, 65534));
    assert!(!need_event(2, 2, 65534));
    assert!(!need_event(65533, 2, 65534));
    assert!(!need_event(5, 5, 5), "no new entries never need an event");
}

#[test]
fn device_suppresses_notifications_with_flags() {
    let dma = OffsetDma::new();
    let mut queue = new_queue(&dma, 8, BarrierMode::Weak, false);
    let mut device =
        DeviceRings::new(dma.clone(), queue.addresses(), false, 0).expect("device attaches");
    let buffer = DmaBuffer::new(&dma, 8);

    queue.add(&[buffer.whole()], &[], 0).expect("room");
    assert!(
        queue.publish(),
        "flags start at 0, so the device wants notifications"
    );

    device.disable_notifications();
    queue.add(&[buffer.whole()], &[], 1).expect("room");
    assert!(!queue.publish(), "VIRTQ_USED_F_NO_NOTIFY is set");
    assert_eq!(
        (queue.counters().kicks, queue.counters().kicks_suppressed),
        (1, 1)
    );

    assert!(
        device.enable_notifications(),
        "the device finds the unnotified entries"
    );
    queue.add(&[buffer.whole()], &[], 2).expect("room");
    assert!(queue.publish());
    assert!(!queue.publish(), "nothing new to publish");
    assert_eq!(
        (queue.counters().kicks, queue.counters().kicks_suppressed),
        (2, 1)
    );
}

#[test]
fn device_suppresses_notifications_with_event_idx() {
    let dma = OffsetDma::new();
    let mut queue = new_queue(&dma, 8, BarrierMode::Weak, true);
    let mut device =
        DeviceRings::new(dma.clone(), queue.addresses(), true, 0).expect("device attaches");
    let buffer = DmaBuffer::new(&dma, 8);

    queue.add(&[buffer.whole()], &[], 0).expect("room");
    queue.add(&[buffer.whole()], &[], 1).expect("room");
    assert!(
        queue.publish(),
        "avail_event 0 lies in the published window 0..2"
    );
    queue.add(&[buffer.whole()], &[], 2).expect("room");
    assert!(
        !queue.publish(),
        "avail_event 0 lies before the window 2..3"
    );

    while device.pop_avail().expect("valid chain").is_some() {}
    assert!(!device.enable_notifications());
    assert_eq!(device.avail_event(), 3);
    assert_eq!(queue.avail_event(), 3);
    queue.add(&[buffer.whole()], &[], 3).expect("room");
    assert!(queue.publish(), "the device asked for entry 3");

    device.disable_notifications();
    queue.add(&[buffer.whole()], &[], 4).expect("room");
    assert!(!queue.publish());
    assert_eq!(
        (queue.counters().kicks, queue.counters().kicks_suppressed),
        (2, 2)
    );
}

/// Checks a completion that lands after the driver's last poll found nothing
/// and before the driver re-enables interrupts. Interrupts are disabled at
/// that point, so the device raises none and only the re-check in
/// `enable_interrupts` finds the chain.
fn check_completion_between_poll_and_enable(event_idx: bool) {
    let dma = OffsetDma::new();
    let mut queue = new_queue(&dma, 8, BarrierMode::Weak, event_idx);
    let mut device =
        DeviceRings::new(dma.clone(), queue.addresses(), event_idx, 0).expect("device attaches");
    let buffer = DmaBuffer::new(&dma, 8);

    queue.disable_interrupts();
    queue.add(&[], &[buffer.whole()], 0).expect("room");
    assert!(queue.publish());
    assert_eq!(
        queue.pop_used(),
        Ok(None),
        "the driver's last poll finds nothing"
    );

    let chain = device
        .pop_avail()
        .expect("valid chain")
        .expect("published chain");
    assert!(
        !device.push_used(u32::from(chain.head), 8),
        "interrupts are disabled, so the device raises none"
    );

    assert!(
        queue.enable_interrupts(),
        "the re-check finds the completion"
    );
    let used = queue.pop_used().expect("valid").expect("the completion");
    assert_eq!((used.token, used.length), (0, UsedLength::Valid(8)));
    assert!(!queue.enable_interrupts(), "nothing else is pending");
    if event_idx {
        assert_eq!(device.used_event(), 1, "used_event names the next entry");
    } else {
        assert_eq!(device.avail_flags(), 0);
    }

    queue.add(&[], &[buffer.whole()], 1).expect("room");
    queue.publish();
    let chain = device
        .pop_avail()
        .expect("valid chain")
        .expect("published chain");
    assert!(
        device.push_used(u32::from(chain.head), 8),
        "interrupts are enabled again"
    );
}

#[test]
fn completion_before_enable_found_by_recheck_flags() {
    check_completion_between_poll_and_enable(false);
}

#[test]
fn completion_before_enable_found_by_recheck_event_idx() {
    check_completion_between_poll_and_enable(true);
}

#[test]
fn disabled_interrupts_stay_disabled_for_full_ring() {
    for event_idx in [false, true] {
        let dma = OffsetDma::new();
        let mut queue = SplitQueue::<u32, _>::with_start_index(
            dma.clone(),
            0,
            8,
            BarrierMode::Weak,
            event_idx,
            false,
            65533,
        )
        .expect("queue allocation");
        let mut device = DeviceRings::new(dma.clone(), queue.addresses(), event_idx, 65533)
            .expect("device attaches");
        let buffer = DmaBuffer::new(&dma, 8);

        queue.disable_interrupts();
        for token in 0..8 {
            queue.add(&[buffer.whole()], &[], token).expect("room");
        }
        queue.publish();
        while let Some(chain) = device.pop_avail().expect("valid chain") {
            assert!(
                !device.push_used(u32::from(chain.head), 0),
                "event idx {event_idx}: interrupt while disabled"
            );
        }
    }
}

#[test]
fn hostile_used_id_breaks_queue_without_losing_tokens() {
    let dma = OffsetDma::new();
    let mut queue = new_queue(&dma, 16, BarrierMode::Weak, true);
    let config =
        DeviceModelConfig::new(queue.addresses(), true).misbehave_at(3, Misbehaviour::UsedId(1000));
    let device =
        DeviceModelThread::spawn(dma.clone(), config, |_: &[&[u8]], _: &mut [&mut [u8]]| 0)
            .expect("device attaches");
    let buffer = DmaBuffer::new(&dma, 8);

    for token in 0..6 {
        queue.add(&[buffer.whole()], &[], token).expect("room");
    }
    assert!(queue.publish());
    device.notify();
    wait_until("six completions", || device.completions() == 6);

    for token in 0..3 {
        assert_eq!(queue.pop_used().expect("valid").expect("used").token, token);
    }
    assert_eq!(
        queue.pop_used(),
        Err(QueueError::UsedIdOutOfRange {
            queue: 0,
            id: 1000,
            size: 16
        })
    );
    assert!(queue.is_broken());
    assert_eq!(queue.pop_used(), Err(QueueError::Broken { queue: 0 }));
    assert_eq!(queue.counters().errors.used_id_invalid, 1);

    let rejected = queue
        .add(&[buffer.whole()], &[], 42)
        .expect_err("broken queue");
    assert_eq!(
        (rejected.error, rejected.token),
        (QueueError::Broken { queue: 0 }, 42)
    );
    assert!(!queue.publish());
    assert!(!queue.enable_interrupts());

    device.stop().expect("the device saw no driver mistake");
    let mut remaining = queue.take_outstanding();
    remaining.sort_unstable();
    assert_eq!(
        remaining,
        [3, 4, 5],
        "every token not yet returned comes back after the reset"
    );
}

#[test]
fn hostile_used_id_of_non_head_is_rejected() {
    let dma = OffsetDma::new();
    let mut queue = new_queue(&dma, 8, BarrierMode::Weak, false);
    let mut device =
        DeviceRings::new(dma.clone(), queue.addresses(), false, 0).expect("device attaches");
    let buffers = [DmaBuffer::new(&dma, 8), DmaBuffer::new(&dma, 8)];

    let head = queue
        .add(&[buffers[0].whole(), buffers[1].whole()], &[], 0)
        .expect("room");
    queue.publish();
    device
        .pop_avail()
        .expect("valid chain")
        .expect("published chain");
    let inner = (head + 1) % 8;
    device.push_used(u32::from(inner), 0);
    assert_eq!(
        queue.pop_used(),
        Err(QueueError::UsedIdNotOutstanding {
            queue: 0,
            id: inner
        })
    );
    assert_eq!(queue.counters().errors.used_id_invalid, 1);
}

#[test]
fn hostile_duplicate_used_id_is_rejected() {
    let dma = OffsetDma::new();
    let mut queue = new_queue(&dma, 8, BarrierMode::Weak, false);
    let mut device =
        DeviceRings::new(dma.clone(), queue.addresses(), false, 0).expect("device attaches");
    let buffer = DmaBuffer::new(&dma, 8);

    queue.add(&[buffer.whole()], &[], 0).expect("room");
    queue.add(&[buffer.whole()], &[], 1).expect("room");
    queue.publish();
    let chain = device
        .pop_avail()
        .expect("valid chain")
        .expect("published chain");
    device.push_used(u32::from(chain.head), 0);
    device.push_used(u32::from(chain.head), 0);

    assert_eq!(queue.pop_used().expect("valid").expect("used").token, 0);
    assert_eq!(
        queue.pop_used(),
        Err(QueueError::UsedIdNotOutstanding {
            queue: 0,
            id: chain.head
        })
    );
}

#[test]
fn hostile_used_idx_jump_is_rejected() {
    let dma = OffsetDma::new();
    let mut queue = new_queue(&dma, 8, BarrierMode::Weak, false);
    let mut device =
        DeviceRings::new(dma.clone(), queue.addresses(), false, 0).expect("device attaches");
    let buffer = DmaBuffer::new(&dma, 8);

    queue.add(&[buffer.whole()], &[], 0).expect("room");
    queue.publish();
    queue
        .add(&[buffer.whole()], &[], 1)
        .expect("room for a chain the device cannot see");
    let chain = device
        .pop_avail()
        .expect("valid chain")
        .expect("published chain");
    device.push_used_advancing(u32::from(chain.head), 0, 2);
    assert_eq!(
        queue.pop_used(),
        Err(QueueError::UsedIdxInvalid {
            queue: 0,
            used_idx: 2,
            last_used_idx: 0,
            published_chains: 1
        })
    );
    assert_eq!(queue.counters().errors.used_idx_invalid, 1);
    assert_eq!(
        queue.barrier_counters().site_total(BarrierSite::UsedRead),
        0,
        "no element was read"
    );
}

#[test]
fn hostile_used_length_returns_token_flagged() {
    let dma = OffsetDma::new();
    let mut queue = new_queue(&dma, 8, BarrierMode::Strong, false);
    let config = DeviceModelConfig::new(queue.addresses(), false)
        .misbehave_at(1, Misbehaviour::UsedLength(10_000));
    let device = DeviceModelThread::spawn(
        dma.clone(),
        config,
        |_: &[&[u8]], writable: &mut [&mut [u8]]| {
            writable[0].fill(0x11);
            writable[0].len() as u32
        },
    )
    .expect("device attaches");
    let buffers: Vec<DmaBuffer> = (0..3).map(|_| DmaBuffer::new(&dma, 32)).collect();

    for (token, buffer) in (0..).zip(&buffers) {
        queue.add(&[], &[buffer.whole()], token).expect("room");
    }
    assert!(queue.publish());
    device.notify();
    wait_until("three completions", || device.completions() == 3);

    let lengths: Vec<(u32, UsedLength)> = (0..3)
        .map(|_| queue.pop_used().expect("valid id"))
        .map(|used| used.map(|used| (used.token, used.length)).expect("used"))
        .collect();
    assert_eq!(
        lengths,
        [
            (0, UsedLength::Valid(32)),
            (
                1,
                UsedLength::ExceedsCapacity {
                    reported: 10_000,
                    capacity_bytes: 32
                }
            ),
            (2, UsedLength::Valid(32)),
        ]
    );
    assert_eq!(queue.counters().errors.used_length_invalid, 1);
    assert!(!queue.is_broken());

    queue
        .add(&[], &[buffers[1].whole()], 1)
        .expect("the flagged buffer can be reposted");
    assert!(queue.publish());
    device.notify();
    wait_until("the reposted buffer", || device.completions() == 4);
    let used = queue.pop_used().expect("valid id").expect("used");
    assert_eq!((used.token, used.length), (1, UsedLength::Valid(32)));
    device.stop().expect("the device saw no driver mistake");
}

/// Adds, publishes, completes and pops one chain.
fn round_trip_once(queue: &mut TestQueue, device: &mut DeviceRings, buffer: &DmaBuffer) {
    queue.add(&[], &[buffer.whole()], 0).expect("room");
    queue.publish();
    let chain = device
        .pop_avail()
        .expect("valid chain")
        .expect("published chain");
    device.push_used(u32::from(chain.head), 0);
    queue.pop_used().expect("valid").expect("used");
    assert_eq!(queue.pop_used(), Ok(None));
}

#[test]
fn barrier_counters_follow_sites_flags() {
    let dma = OffsetDma::new();
    let mut queue = new_queue(&dma, 8, BarrierMode::Strong, false);
    let mut device =
        DeviceRings::new(dma.clone(), queue.addresses(), false, 0).expect("device attaches");
    let buffer = DmaBuffer::new(&dma, 8);

    assert!(!queue.publish());
    assert_eq!(
        queue.barrier_counters().total(),
        0,
        "publishing nothing executes no barrier"
    );

    round_trip_once(&mut queue, &mut device, &buffer);
    queue.disable_interrupts();
    queue.enable_interrupts();
    let counters = queue.barrier_counters();
    for (site, expected) in [
        (BarrierSite::AvailPublish, 1),
        (BarrierSite::NotifyCheck, 1),
        (BarrierSite::UsedRead, 1),
        (BarrierSite::InterruptEnable, 1),
        (BarrierSite::UsedEventStore, 0),
    ] {
        assert_eq!(
            counters.count(site, BarrierMode::Strong),
            expected,
            "{site}"
        );
    }
    assert_eq!(counters.mode_total(BarrierMode::Weak), 0);
    assert_eq!(counters.kind_total(crate::barrier::BarrierKind::Full), 2);
}

#[test]
fn barrier_counters_follow_sites_event_idx() {
    let dma = OffsetDma::new();
    let mut queue = new_queue(&dma, 8, BarrierMode::Weak, true);
    let mut device =
        DeviceRings::new(dma.clone(), queue.addresses(), true, 0).expect("device attaches");
    let buffer = DmaBuffer::new(&dma, 8);

    round_trip_once(&mut queue, &mut device, &buffer);
    queue.enable_interrupts();
    let counters = queue.barrier_counters();
    assert_eq!(
        counters.count(BarrierSite::UsedEventStore, BarrierMode::Weak),
        1
    );
    assert_eq!(counters.site_total(BarrierSite::InterruptEnable), 0);
    assert_eq!(counters.mode_total(BarrierMode::Weak), 4);
    assert_eq!(counters.mode_total(BarrierMode::Strong), 0);
    assert_eq!(queue.used_event(), 1);
}

#[test]
fn site_override_changes_only_that_site() {
    let dma = OffsetDma::new();
    let mut queue = new_queue(&dma, 8, BarrierMode::Strong, false);
    let mut device =
        DeviceRings::new(dma.clone(), queue.addresses(), false, 0).expect("device attaches");
    let buffer = DmaBuffer::new(&dma, 8);

    assert!(queue.set_site_mode(BarrierSite::UsedRead, BarrierMode::Weak));
    assert_eq!(queue.site_mode(BarrierSite::UsedRead), BarrierMode::Weak);
    round_trip_once(&mut queue, &mut device, &buffer);
    let counters = *queue.barrier_counters();
    assert_eq!(counters.count(BarrierSite::UsedRead, BarrierMode::Weak), 1);
    assert_eq!(
        counters.count(BarrierSite::UsedRead, BarrierMode::Strong),
        0
    );
    assert_eq!(
        counters.count(BarrierSite::AvailPublish, BarrierMode::Strong),
        1
    );
    assert_eq!(
        counters.count(BarrierSite::NotifyCheck, BarrierMode::Strong),
        1
    );

    assert!(queue.set_barrier_mode(BarrierMode::Weak));
    assert_eq!(queue.barrier_mode(), BarrierMode::Weak);
    round_trip_once(&mut queue, &mut device, &buffer);
    let counters = queue.barrier_counters();
    assert_eq!(
        counters.count(BarrierSite::AvailPublish, BarrierMode::Weak),
        1
    );
    assert_eq!(counters.count(BarrierSite::UsedRead, BarrierMode::Weak), 2);
    assert_eq!(counters.mode_total(BarrierMode::Strong), 2);
}

#[test]
fn order_platform_forces_strong_barriers() {
    let dma = OffsetDma::new();
    let mut queue = SplitQueue::<u32, _>::new(dma.clone(), 2, 8, BarrierMode::Weak, false, true)
        .expect("queue allocation");
    let mut device =
        DeviceRings::new(dma.clone(), queue.addresses(), false, 0).expect("device attaches");
    let buffer = DmaBuffer::new(&dma, 8);

    assert!(queue.order_platform());
    assert_eq!(queue.barrier_mode(), BarrierMode::Strong);
    assert!(!queue.set_barrier_mode(BarrierMode::Weak));
    assert!(!queue.set_site_mode(BarrierSite::NotifyCheck, BarrierMode::Weak));
    round_trip_once(&mut queue, &mut device, &buffer);
    assert_eq!(queue.barrier_counters().mode_total(BarrierMode::Weak), 0);
    assert_eq!(queue.barrier_counters().mode_total(BarrierMode::Strong), 3);
}

#[test]
fn queue_size_validation() {
    let dma = OffsetDma::new();
    for size in [0u16, 3, 100, 32769, 49152, u16::MAX] {
        let result =
            SplitQueue::<u32, _>::new(dma.clone(), 4, size, BarrierMode::Weak, false, false);
        assert_eq!(
            result.err(),
            Some(QueueError::InvalidSize { queue: 4, size })
        );
    }
    for size in [1u16, 2, 256, 32768] {
        let queue =
            SplitQueue::<u32, _>::new(dma.clone(), 4, size, BarrierMode::Weak, false, false)
                .expect("valid size");
        assert_eq!(queue.size(), size);
        assert_eq!(queue.free_descriptors(), size);
    }
    assert_eq!(dma.live_allocations(), 0, "dropped queues free their areas");
}

#[test]
fn single_descriptor_queue_round_trips() {
    let dma = OffsetDma::new();
    let mut queue = new_queue(&dma, 1, BarrierMode::Weak, true);
    let mut device =
        DeviceRings::new(dma.clone(), queue.addresses(), true, 0).expect("device attaches");
    let buffer = DmaBuffer::new(&dma, 8);
    for _ in 0..5 {
        round_trip_once(&mut queue, &mut device, &buffer);
    }
    assert_eq!(queue.counters().used_processed, 5);
}

#[test]
fn addresses_are_device_addresses_with_spec_alignment() {
    let dma = OffsetDma::with_offset(0x4000_0000_0000_0000);
    let queue = new_queue(&dma, 256, BarrierMode::Weak, false);
    let addresses = queue.addresses();
    assert_eq!(addresses.size, 256);
    for (address, align, len) in [
        (addresses.descriptor_area, 16, 16 * 256),
        (addresses.driver_area, 2, 6 + 2 * 256),
        (addresses.device_area, 4, 6 + 8 * 256),
    ] {
        let pointer = address - dma.offset();
        assert_eq!(pointer % align, 0, "area at {address:#x}");
        assert!(
            dma.translate(address, len).is_ok(),
            "area at {address:#x} spans {len:#x} bytes"
        );
    }
}

/// DMA memory that runs out after a number of allocations.
struct ExhaustibleDma {
    inner: OffsetDma,
    allocations_left: Cell<usize>,
}

impl Dma for ExhaustibleDma {
    fn alloc_zeroed(&self, layout: Layout) -> Option<NonNull<u8>> {
        let left = self.allocations_left.get();
        self.allocations_left.set(left.checked_sub(1)?);
        self.inner.alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: forwarded from the caller, and every pointer came from
        // `inner`.
        unsafe { self.inner.dealloc(ptr, layout) }
    }

    fn device_address(&self, ptr: *const u8) -> u64 {
        self.inner.device_address(ptr)
    }
}

#[test]
fn allocation_failure_is_an_error_without_leak() {
    for (allocations, area) in [
        (0, QueueArea::Descriptor),
        (1, QueueArea::Driver),
        (2, QueueArea::Device),
    ] {
        let inner = OffsetDma::new();
        let dma = ExhaustibleDma {
            inner: inner.clone(),
            allocations_left: Cell::new(allocations),
        };
        let result = SplitQueue::<u32, _>::new(dma, 5, 16, BarrierMode::Weak, false, false);
        match result {
            Err(QueueError::AllocationFailed {
                queue: 5,
                area: failed,
                ..
            }) => assert_eq!(failed, area),
            other => panic!(
                "expected an allocation failure of the {area}, got {:?}",
                other.err()
            ),
        }
        assert_eq!(
            inner.live_allocations(),
            0,
            "areas allocated before the {area} failure are freed"
        );
    }
}

#[test]
fn drop_frees_all_three_areas() {
    let dma = OffsetDma::new();
    let queue = new_queue(&dma, 64, BarrierMode::Weak, false);
    assert_eq!(dma.live_allocations(), 3);
    drop(queue);
    assert_eq!(dma.live_allocations(), 0);
}

#[test]
fn start_index_initialises_both_rings() {
    let dma = OffsetDma::new();
    let queue = SplitQueue::<u32, _>::with_start_index(
        dma.clone(),
        0,
        8,
        BarrierMode::Weak,
        true,
        false,
        65530,
    )
    .expect("queue allocation");
    let device =
        DeviceRings::new(dma.clone(), queue.addresses(), true, 65530).expect("device attaches");
    assert_eq!(device.avail_idx(), 65530);
    assert_eq!(device.used_event(), 65530);
    assert_eq!(queue.used_idx(), 65530);
    assert_eq!(queue.avail_event(), 65530);
    assert_eq!(
        (
            queue.avail_idx(),
            queue.published_avail_idx(),
            queue.last_used_idx()
        ),
        (65530, 65530, 65530)
    );
}
