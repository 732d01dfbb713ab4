//! A process-wide limit on guests running at once.
//!
//! A QEMU guest under TCG keeps about one host core busy, so more guests
//! than cores slow every guest down until timeouts fire. Each `Guest` keeps
//! a [`GuestSlot`] from before `run.sh` starts until its process is gone.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::GuestError;

/// Guests allowed to run at once in this process. `GUEST_TESTS_MAX_GUESTS`
/// overrides it, for hosts with more cores.
pub const DEFAULT_MAX_GUESTS: usize = 2;

/// How long a test waits for a slot before it fails. Other tests hold a
/// slot for one boot and its checks, well under a minute each, so this is
/// long enough for a queue of them.
pub const SLOT_TIMEOUT: Duration = Duration::from_secs(15 * 60);

static IN_USE: Mutex<usize> = Mutex::new(0);
static RELEASED: Condvar = Condvar::new();

/// One of the running-guest slots; dropping it frees the slot.
#[derive(Debug)]
pub struct GuestSlot(());

impl Drop for GuestSlot {
    fn drop(&mut self) {
        *lock_in_use() -= 1;
        RELEASED.notify_one();
    }
}

fn lock_in_use() -> MutexGuard<'static, usize> {
    // The count changes only by one step under the lock, so a poisoned lock
    // still guards a consistent count.
    IN_USE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Returns the limit: `GUEST_TESTS_MAX_GUESTS` when it is a positive
/// number, else [`DEFAULT_MAX_GUESTS`].
pub fn max_guests() -> usize {
    std::env::var("GUEST_TESTS_MAX_GUESTS")
        .ok()
        .and_then(|value| value.parse::<usize>().ok())
        .filter(|&limit| limit > 0)
        .unwrap_or(DEFAULT_MAX_GUESTS)
}

/// Waits for a free slot and takes it.
///
/// # Errors
/// [`GuestError::SlotTimeout`] when no slot frees within `timeout`.
pub fn acquire_slot(timeout: Duration) -> Result<GuestSlot, GuestError> {
    let limit = max_guests();
    let deadline = Instant::now() + timeout;
    let mut in_use = lock_in_use();
    while *in_use >= limit {
        let now = Instant::now();
        if now >= deadline {
            return Err(GuestError::SlotTimeout { waited: timeout });
        }
        in_use = RELEASED
            .wait_timeout(in_use, deadline - now)
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .0;
    }
    *in_use += 1;
    Ok(GuestSlot(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    // The only test that takes slots in the unit-test binary, so no other
    // test changes the count under it.
    #[test]
    fn slots_block_at_limit_and_free_on_drop() {
        let limit = max_guests();
        let taken_slots: Vec<GuestSlot> = (0..limit)
            .map(|_| acquire_slot(Duration::ZERO).unwrap())
            .collect();
        assert!(matches!(
            acquire_slot(Duration::from_millis(50)),
            Err(GuestError::SlotTimeout { .. })
        ));

        let waiter = std::thread::spawn(|| acquire_slot(Duration::from_secs(10)).map(drop));
        std::thread::sleep(Duration::from_millis(50));
        drop(taken_slots);
        assert!(
            waiter.join().unwrap().is_ok(),
            "a freed slot must wake the waiter"
        );
        assert_eq!(*lock_in_use(), 0);
    }
}
