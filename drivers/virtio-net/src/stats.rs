//! Per-NIC counters, and logging that thins out repeated warnings.

/// Receive counters of one NIC.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxStats {
    pub frames: u64,
    pub bytes: u64,
    /// Received chains shorter than the virtio-net header plus an Ethernet header.
    pub dropped_short: u64,
    /// Received chains whose used length exceeds the buffer.
    pub dropped_too_long: u64,
    /// Doorbell writes after reposting buffers.
    pub notifications: u64,
}

/// Transmit counters of one NIC.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxStats {
    pub frames: u64,
    pub bytes: u64,
    /// Frames that do not fit a transmit buffer.
    pub dropped_too_long: u64,
    /// Frames dropped because every transmit buffer was in flight.
    pub dropped_ring_full: u64,
    /// Frames the queue rejected (a broken queue).
    pub dropped_queue_error: u64,
    /// Doorbell writes after publishing frames.
    pub notifications: u64,
}

/// All counters of one NIC.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    pub rx: RxStats,
    pub tx: TxStats,
}

/// Returns whether the `count`-th occurrence of an event should be logged:
/// the 1st, 2nd, 4th, 8th and so on, so a flood costs a few lines.
pub fn should_log(count: u64) -> bool {
    count.is_power_of_two()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logging_thins_out_floods() {
        let logged: std::vec::Vec<u64> = (1..=1000).filter(|&count| should_log(count)).collect();
        assert_eq!(logged, std::vec![1, 2, 4, 8, 16, 32, 64, 128, 256, 512]);
        assert!(!should_log(0));
    }
}
