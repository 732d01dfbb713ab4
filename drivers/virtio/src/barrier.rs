//! Memory barriers of the split virtqueue, the only place where the crate
//! executes them.
//!
//! The module owns the barrier instructions for both modes, the named barrier
//! sites of the queue, the per-site mode selection and the per-site counters.
//! The ordering points come from virtio 1.2 section 2.7.13 "Supplying Buffers
//! to The Device", section 2.7.14 "Receiving Used Buffers From The Device",
//! section 2.7.7 "Used Buffer Notification Suppression" and section 2.7.10
//! "Available Buffer Notification Suppression".
//!
//! | barrier | [`BarrierMode::Weak`] | [`BarrierMode::Strong`] |
//! |---|---|---|
//! | read | compiler barrier | `lfence` |
//! | write | compiler barrier | `sfence` |
//! | full | `lock add dword ptr [rsp], 0` | `mfence` |
//! | store then full | `xchg` to memory | store, then `mfence` |
//!
//! Weak barriers are the SMP barriers of a cache-coherent machine with total
//! store order. x86_64 never reorders a load with an older load, or a store
//! with an older store. So the read and write barriers only have to stop the
//! compiler, and only a store followed by a load needs an instruction. A
//! virtio-pci device is such a cache-coherent agent. Strong barriers are the mandatory
//! barriers a driver needs when `VIRTIO_F_ORDER_PLATFORM` is negotiated, that
//! is when the device's accesses are ordered by the platform's rules for
//! devices rather than by the CPU's rules for other CPUs.

use core::arch::asm;
use core::fmt;
use core::sync::atomic::{compiler_fence, Ordering};

/// Strength of the barrier instructions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BarrierMode {
    /// SMP barriers, correct when the device is a cache-coherent agent with
    /// total store order (virtio-pci without `VIRTIO_F_ORDER_PLATFORM`).
    Weak,
    /// Mandatory barriers (`lfence`, `sfence`, `mfence`).
    Strong,
}

impl BarrierMode {
    /// Both modes, in the order used by the counters.
    pub const ALL: [BarrierMode; 2] = [BarrierMode::Weak, BarrierMode::Strong];

    /// Stable lower-case name, as used on the kernel command line and console.
    pub const fn name(self) -> &'static str {
        match self {
            BarrierMode::Weak => "weak",
            BarrierMode::Strong => "strong",
        }
    }

    const fn counter_index(self) -> usize {
        match self {
            BarrierMode::Weak => 0,
            BarrierMode::Strong => 1,
        }
    }
}

impl fmt::Display for BarrierMode {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

/// Ordering guarantee of a barrier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BarrierKind {
    /// Earlier loads before later loads.
    Read,
    /// Earlier stores before later stores.
    Write,
    /// Earlier loads and stores before later loads and stores. The
    /// store-then-full barrier counts as this kind.
    Full,
}

impl BarrierKind {
    /// All kinds, in the order used by the counters.
    pub const ALL: [BarrierKind; 3] = [BarrierKind::Read, BarrierKind::Write, BarrierKind::Full];

    /// Stable lower-case name.
    pub const fn name(self) -> &'static str {
        match self {
            BarrierKind::Read => "read",
            BarrierKind::Write => "write",
            BarrierKind::Full => "full",
        }
    }
}

/// A place in the split virtqueue where a barrier executes. The names are
/// stable: counters, the console and the per-site benchmark use them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BarrierSite {
    /// Write barrier: descriptor table and avail ring entries before the
    /// avail idx store (section 2.7.13 "Supplying Buffers to The Device").
    AvailPublish,
    /// Full barrier: avail idx store before reading `avail_event` or the used
    /// ring flags for the notification decision (section 2.7.10).
    NotifyCheck,
    /// Read barrier: used idx load before reading used ring entries and buffer
    /// contents (section 2.7.14 "Receiving Used Buffers From The Device").
    UsedRead,
    /// Full barrier: clearing `VIRTQ_AVAIL_F_NO_INTERRUPT` before re-reading
    /// the used idx (section 2.7.7).
    InterruptEnable,
    /// Store then full barrier: the `used_event` store before re-reading the
    /// used idx (section 2.7.7).
    UsedEventStore,
}

impl BarrierSite {
    /// Number of sites.
    pub const COUNT: usize = 5;

    /// All sites, in the order used by the counters.
    pub const ALL: [BarrierSite; BarrierSite::COUNT] = [
        BarrierSite::AvailPublish,
        BarrierSite::NotifyCheck,
        BarrierSite::UsedRead,
        BarrierSite::InterruptEnable,
        BarrierSite::UsedEventStore,
    ];

    /// Stable name of the site.
    pub const fn name(self) -> &'static str {
        match self {
            BarrierSite::AvailPublish => "avail-publish",
            BarrierSite::NotifyCheck => "notify-check",
            BarrierSite::UsedRead => "used-read",
            BarrierSite::InterruptEnable => "interrupt-enable",
            BarrierSite::UsedEventStore => "used-event-store",
        }
    }

    /// Looks a site up by its stable name.
    pub fn from_name(name: &str) -> Option<BarrierSite> {
        BarrierSite::ALL
            .into_iter()
            .find(|site| site.name() == name)
    }

    /// Kind of barrier executed at this site.
    pub const fn kind(self) -> BarrierKind {
        match self {
            BarrierSite::AvailPublish => BarrierKind::Write,
            BarrierSite::UsedRead => BarrierKind::Read,
            BarrierSite::NotifyCheck
            | BarrierSite::InterruptEnable
            | BarrierSite::UsedEventStore => BarrierKind::Full,
        }
    }

    const fn counter_index(self) -> usize {
        match self {
            BarrierSite::AvailPublish => 0,
            BarrierSite::NotifyCheck => 1,
            BarrierSite::UsedRead => 2,
            BarrierSite::InterruptEnable => 3,
            BarrierSite::UsedEventStore => 4,
        }
    }
}

impl fmt::Display for BarrierSite {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

/// Orders earlier loads before later loads.
#[inline(always)]
pub fn read_barrier(mode: BarrierMode) {
    match mode {
        // x86_64 keeps loads in program order, so only the compiler must not
        // move a load across this point.
        BarrierMode::Weak => compiler_fence(Ordering::SeqCst),
        // SAFETY: `lfence` only waits for earlier loads; it touches no memory
        // or register. Without `nomem` the compiler treats it as a compiler
        // barrier too.
        BarrierMode::Strong => unsafe { asm!("lfence", options(nostack, preserves_flags)) },
    }
}

/// Orders earlier stores before later stores.
#[inline(always)]
pub fn write_barrier(mode: BarrierMode) {
    match mode {
        // x86_64 keeps stores in program order (total store order), so only
        // the compiler must not move a store across this point.
        BarrierMode::Weak => compiler_fence(Ordering::SeqCst),
        // SAFETY: `sfence` only orders earlier stores before later ones; it
        // touches no memory or register. Without `nomem` the compiler treats
        // it as a compiler barrier too.
        BarrierMode::Strong => unsafe { asm!("sfence", options(nostack, preserves_flags)) },
    }
}

/// Orders earlier loads and stores before later loads and stores, in
/// particular an earlier store before a later load.
#[inline(always)]
pub fn full_barrier(mode: BarrierMode) {
    match mode {
        // SAFETY: a locked add of zero to the word at the top of the stack
        // leaves its value unchanged, and `rsp` points into this thread's
        // private stack. The lock prefix drains the store buffer, which orders
        // a store before a later load on x86_64. The asm changes the flags,
        // so `preserves_flags` is absent. Without `nomem` it is a compiler
        // barrier too.
        BarrierMode::Weak => unsafe { asm!("lock add dword ptr [rsp], 0", options(nostack)) },
        // SAFETY: `mfence` only orders memory accesses; it touches no memory
        // or register. Without `nomem` it is a compiler barrier too.
        BarrierMode::Strong => unsafe { asm!("mfence", options(nostack, preserves_flags)) },
    }
}

/// Stores `value` to `target`, then orders that store and every earlier load
/// and store before all later loads and stores.
///
/// The value is stored with its bits as given, so a little-endian field takes
/// `value.to_le()`.
///
/// # Safety
/// `target` must be valid for a 2-byte write and aligned to 2 bytes, and no
/// Rust reference may cover it during the call.
#[inline(always)]
pub unsafe fn store_then_full_barrier(mode: BarrierMode, target: *mut u16, value: u16) {
    match mode {
        // SAFETY: the caller guarantees that `target` is valid and aligned for
        // a u16 write. `xchg` with a memory operand is implicitly locked, so
        // the store is globally visible before any later load, as with a
        // store followed by `mfence`. The old value lands in the discarded
        // register. Without `nomem` the asm is a compiler barrier.
        BarrierMode::Weak => unsafe {
            asm!(
                "xchg word ptr [{target}], {value:x}",
                target = in(reg) target,
                value = inout(reg) value => _,
                options(nostack, preserves_flags),
            )
        },
        BarrierMode::Strong => {
            // SAFETY: the caller guarantees that `target` is valid and
            // aligned for a u16 write.
            unsafe { target.write_volatile(value) };
            full_barrier(BarrierMode::Strong);
        }
    }
}

/// Executions of each barrier site, split by mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BarrierCounters {
    counts: [[u64; 2]; BarrierSite::COUNT],
    /// Executions that ran no barrier because the site was ablated. They are
    /// in no mode's count.
    #[cfg(feature = "ablation")]
    ablated: [u64; BarrierSite::COUNT],
}

impl BarrierCounters {
    /// Executions of `site` in `mode`.
    pub fn count(&self, site: BarrierSite, mode: BarrierMode) -> u64 {
        self.counts[site.counter_index()][mode.counter_index()]
    }

    /// Executions of `site` in either mode.
    pub fn site_total(&self, site: BarrierSite) -> u64 {
        BarrierMode::ALL
            .into_iter()
            .map(|mode| self.count(site, mode))
            .sum()
    }

    /// Executions of every site of `kind`, in either mode.
    pub fn kind_total(&self, kind: BarrierKind) -> u64 {
        BarrierSite::ALL
            .into_iter()
            .filter(|site| site.kind() == kind)
            .map(|site| self.site_total(site))
            .sum()
    }

    /// Executions of every site in `mode`.
    pub fn mode_total(&self, mode: BarrierMode) -> u64 {
        BarrierSite::ALL
            .into_iter()
            .map(|site| self.count(site, mode))
            .sum()
    }

    /// Executions of every site in either mode.
    pub fn total(&self) -> u64 {
        BarrierSite::ALL
            .into_iter()
            .map(|site| self.site_total(site))
            .sum()
    }

    /// Executions of `site` that ran no barrier because the site was
    /// ablated (see [`ablation`]).
    #[cfg(feature = "ablation")]
    pub fn ablated_count(&self, site: BarrierSite) -> u64 {
        self.ablated[site.counter_index()]
    }

    fn record(&mut self, site: BarrierSite, mode: BarrierMode) {
        let count = &mut self.counts[site.counter_index()][mode.counter_index()];
        *count = count.wrapping_add(1);
    }

    #[cfg(feature = "ablation")]
    fn record_ablated(&mut self, site: BarrierSite) {
        let count = &mut self.ablated[site.counter_index()];
        *count = count.wrapping_add(1);
    }
}

/// The barrier mode of each site of one queue, with its counters.
///
/// When `VIRTIO_F_ORDER_PLATFORM` was negotiated every site stays strong: a
/// request for weak barriers is rejected and logged once at warn.
#[derive(Debug)]
pub struct SiteBarriers {
    queue_index: u16,
    queue_mode: BarrierMode,
    site_modes: [BarrierMode; BarrierSite::COUNT],
    order_platform: bool,
    weak_rejection_logged: bool,
    counters: BarrierCounters,
}

impl SiteBarriers {
    /// Creates the barrier state of queue `queue_index` with every site in
    /// `mode`, or strong whatever `mode` is when `order_platform` is set.
    pub fn new(queue_index: u16, mode: BarrierMode, order_platform: bool) -> Self {
        let mut barriers = SiteBarriers {
            queue_index,
            queue_mode: BarrierMode::Strong,
            site_modes: [BarrierMode::Strong; BarrierSite::COUNT],
            order_platform,
            weak_rejection_logged: false,
            counters: BarrierCounters::default(),
        };
        barriers.set_mode(mode);
        barriers
    }

    /// Sets every site to `mode`. Returns whether `mode` is now in force,
    /// which is false only for weak barriers under `VIRTIO_F_ORDER_PLATFORM`.
    pub fn set_mode(&mut self, mode: BarrierMode) -> bool {
        let mode = self.permitted(mode);
        self.queue_mode = mode.unwrap_or(BarrierMode::Strong);
        self.site_modes = [self.queue_mode; BarrierSite::COUNT];
        mode.is_some()
    }

    /// Sets one site to `mode`, leaving the others as they are. Returns
    /// whether `mode` is now in force at that site.
    pub fn set_site_mode(&mut self, site: BarrierSite, mode: BarrierMode) -> bool {
        let mode = self.permitted(mode);
        self.site_modes[site.counter_index()] = mode.unwrap_or(BarrierMode::Strong);
        mode.is_some()
    }

    /// Mode last set for the whole queue; [`Self::set_site_mode`] may have
    /// changed single sites since.
    pub fn mode(&self) -> BarrierMode {
        self.queue_mode
    }

    /// Mode in force at `site`.
    pub fn site_mode(&self, site: BarrierSite) -> BarrierMode {
        self.site_modes[site.counter_index()]
    }

    /// Returns whether `VIRTIO_F_ORDER_PLATFORM` forces strong barriers.
    pub fn order_platform(&self) -> bool {
        self.order_platform
    }

    /// Executions so far.
    pub fn counters(&self) -> &BarrierCounters {
        &self.counters
    }

    /// Executes and counts the barrier of `site`.
    ///
    /// # Panics
    /// Panics in debug builds for [`BarrierSite::UsedEventStore`], whose
    /// barrier includes a store and goes through [`Self::store_then_fence`].
    #[inline(always)]
    pub fn fence(&mut self, site: BarrierSite) {
        debug_assert!(
            site != BarrierSite::UsedEventStore,
            "the used-event-store site stores through store_then_fence"
        );
        #[cfg(feature = "ablation")]
        if ablation::is_site_ablated(site) {
            self.counters.record_ablated(site);
            return;
        }
        let mode = self.site_mode(site);
        self.counters.record(site, mode);
        match site.kind() {
            BarrierKind::Read => read_barrier(mode),
            BarrierKind::Write => write_barrier(mode),
            BarrierKind::Full => full_barrier(mode),
        }
    }

    /// Stores `value` to `target` with the store-then-full barrier of `site`,
    /// and counts it.
    ///
    /// # Safety
    /// As for [`store_then_full_barrier`]: `target` is valid and aligned for
    /// a u16 write and no Rust reference covers it.
    #[inline(always)]
    pub unsafe fn store_then_fence(&mut self, site: BarrierSite, target: *mut u16, value: u16) {
        #[cfg(feature = "ablation")]
        if ablation::is_site_ablated(site) {
            self.counters.record_ablated(site);
            // SAFETY: the caller guarantees that `target` is valid and
            // aligned for a u16 write, with no reference covering it.
            unsafe { target.write_volatile(value) };
            return;
        }
        let mode = self.site_mode(site);
        self.counters.record(site, mode);
        // SAFETY: the caller upholds the contract of this function, which is
        // that of `store_then_full_barrier`.
        unsafe { store_then_full_barrier(mode, target, value) };
    }

    /// Returns `Some(mode)` when `mode` may be used, `None` when
    /// `VIRTIO_F_ORDER_PLATFORM` rejects weak barriers.
    fn permitted(&mut self, mode: BarrierMode) -> Option<BarrierMode> {
        if !(self.order_platform && mode == BarrierMode::Weak) {
            return Some(mode);
        }
        if !self.weak_rejection_logged {
            self.weak_rejection_logged = true;
            log::warn!(
                "virtio queue {}: weak barriers rejected because VIRTIO_F_ORDER_PLATFORM \
                 was negotiated; the queue keeps strong barriers",
                self.queue_index
            );
        }
        None
    }
}

/// Removal of single barrier sites, for fault-injection runs of the host
/// ring benchmark. The module exists only with the `ablation` feature, which
/// needs std. The kernel never enables it, so it cannot execute an ablated
/// site.
///
/// An ablated site executes no barrier instruction and no compiler barrier.
/// The used-event-store site still stores `used_event`, with a plain volatile
/// store. Ablation is per thread: it applies to the barrier sites of every
/// queue that the calling thread drives, and to no other thread.
#[cfg(feature = "ablation")]
pub mod ablation {
    extern crate std;

    use core::cell::Cell;

    use super::BarrierSite;

    std::thread_local! {
        /// Bit `counter_index` is set for each ablated site.
        static ABLATED_SITES: Cell<u8> = const { Cell::new(0) };
    }

    /// Removes the barrier of `site` for the calling thread when `ablated` is
    /// true, and restores it when false.
    pub fn set_site_ablated(site: BarrierSite, ablated: bool) {
        let bit = 1u8 << site.counter_index();
        ABLATED_SITES.with(|sites| {
            let mask = sites.get();
            sites.set(if ablated { mask | bit } else { mask & !bit });
        });
    }

    /// Restores every site for the calling thread.
    pub fn restore_all_sites() {
        ABLATED_SITES.with(|sites| sites.set(0));
    }

    /// Returns whether `site` is ablated for the calling thread.
    #[inline(always)]
    pub fn is_site_ablated(site: BarrierSite) -> bool {
        ABLATED_SITES.with(|sites| sites.get() & (1u8 << site.counter_index()) != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_names_are_stable_and_unique() {
        let names: [&str; BarrierSite::COUNT] = BarrierSite::ALL.map(BarrierSite::name);
        assert_eq!(
            names,
            [
                "avail-publish",
                "notify-check",
                "used-read",
                "interrupt-enable",
                "used-event-store"
            ]
        );
        for site in BarrierSite::ALL {
            assert_eq!(BarrierSite::from_name(site.name()), Some(site));
        }
        assert_eq!(BarrierSite::from_name("unknown"), None);
    }

    #[test]
    fn site_kinds_match_the_spec_steps() {
        assert_eq!(BarrierSite::AvailPublish.kind(), BarrierKind::Write);
        assert_eq!(BarrierSite::NotifyCheck.kind(), BarrierKind::Full);
        assert_eq!(BarrierSite::UsedRead.kind(), BarrierKind::Read);
        assert_eq!(BarrierSite::InterruptEnable.kind(), BarrierKind::Full);
        assert_eq!(BarrierSite::UsedEventStore.kind(), BarrierKind::Full);
    }

    #[test]
    fn barrier_instructions_execute_in_both_modes() {
        for mode in BarrierMode::ALL {
            read_barrier(mode);
            write_barrier(mode);
            full_barrier(mode);
            let mut word: u16 = 0x1234;
            // SAFETY: `word` is a live, aligned local with no reference to it
            // during the call.
            unsafe { store_then_full_barrier(mode, &raw mut word, 0xbeef) };
            assert_eq!(word, 0xbeef, "{mode} store-then-full must store the value");
        }
    }

    #[test]
    fn counters_follow_site_and_mode() {
        let mut barriers = SiteBarriers::new(3, BarrierMode::Weak, false);
        barriers.fence(BarrierSite::AvailPublish);
        barriers.fence(BarrierSite::NotifyCheck);
        barriers.set_site_mode(BarrierSite::UsedRead, BarrierMode::Strong);
        barriers.fence(BarrierSite::UsedRead);
        let mut word = 0u16;
        // SAFETY: `word` is a live, aligned local with no reference to it
        // during the call.
        unsafe { barriers.store_then_fence(BarrierSite::UsedEventStore, &raw mut word, 7) };

        let counters = barriers.counters();
        assert_eq!(
            counters.count(BarrierSite::AvailPublish, BarrierMode::Weak),
            1
        );
        assert_eq!(
            counters.count(BarrierSite::NotifyCheck, BarrierMode::Weak),
            1
        );
        assert_eq!(
            counters.count(BarrierSite::UsedRead, BarrierMode::Strong),
            1
        );
        assert_eq!(counters.count(BarrierSite::UsedRead, BarrierMode::Weak), 0);
        assert_eq!(
            counters.count(BarrierSite::UsedEventStore, BarrierMode::Weak),
            1
        );
        assert_eq!(counters.kind_total(BarrierKind::Read), 1);
        assert_eq!(counters.kind_total(BarrierKind::Write), 1);
        assert_eq!(counters.kind_total(BarrierKind::Full), 2);
        assert_eq!(counters.mode_total(BarrierMode::Weak), 3);
        assert_eq!(counters.mode_total(BarrierMode::Strong), 1);
        assert_eq!(counters.total(), 4);
    }

    #[test]
    fn order_platform_keeps_strong_barriers() {
        let mut barriers = SiteBarriers::new(0, BarrierMode::Weak, true);
        assert_eq!(barriers.mode(), BarrierMode::Strong);
        assert!(BarrierSite::ALL
            .iter()
            .all(|&site| barriers.site_mode(site) == BarrierMode::Strong));

        assert!(!barriers.set_mode(BarrierMode::Weak));
        assert!(!barriers.set_site_mode(BarrierSite::UsedRead, BarrierMode::Weak));
        assert_eq!(
            barriers.site_mode(BarrierSite::UsedRead),
            BarrierMode::Strong
        );
        assert!(barriers.set_mode(BarrierMode::Strong));
    }

    #[test]
    fn set_mode_overrides_every_site() {
        let mut barriers = SiteBarriers::new(0, BarrierMode::Strong, false);
        barriers.set_site_mode(BarrierSite::NotifyCheck, BarrierMode::Weak);
        assert_eq!(
            barriers.site_mode(BarrierSite::NotifyCheck),
            BarrierMode::Weak
        );
        assert_eq!(
            barriers.site_mode(BarrierSite::AvailPublish),
            BarrierMode::Strong
        );

        assert!(barriers.set_mode(BarrierMode::Weak));
        assert!(BarrierSite::ALL
            .iter()
            .all(|&site| barriers.site_mode(site) == BarrierMode::Weak));
        assert_eq!(barriers.mode(), BarrierMode::Weak);
    }
}

#[cfg(all(test, feature = "ablation"))]
mod ablation_tests {
    use super::*;

    #[test]
    fn ablated_site_counts_apart_from_modes() {
        let mut barriers = SiteBarriers::new(0, BarrierMode::Strong, false);
        ablation::set_site_ablated(BarrierSite::NotifyCheck, true);
        barriers.fence(BarrierSite::NotifyCheck);
        barriers.fence(BarrierSite::AvailPublish);
        ablation::restore_all_sites();
        barriers.fence(BarrierSite::NotifyCheck);

        let counters = barriers.counters();
        assert_eq!(counters.ablated_count(BarrierSite::NotifyCheck), 1);
        assert_eq!(
            counters.count(BarrierSite::NotifyCheck, BarrierMode::Strong),
            1
        );
        assert_eq!(counters.ablated_count(BarrierSite::AvailPublish), 0);
        assert_eq!(
            counters.count(BarrierSite::AvailPublish, BarrierMode::Strong),
            1
        );
        assert!(!ablation::is_site_ablated(BarrierSite::NotifyCheck));
    }

    #[test]
    fn ablated_used_event_store_still_stores() {
        let mut barriers = SiteBarriers::new(0, BarrierMode::Weak, false);
        ablation::set_site_ablated(BarrierSite::UsedEventStore, true);
        let mut word = 0u16;
        // SAFETY: `word` is a live, aligned local with no reference to it
        // during the call.
        unsafe { barriers.store_then_fence(BarrierSite::UsedEventStore, &raw mut word, 9) };
        ablation::set_site_ablated(BarrierSite::UsedEventStore, false);

        assert_eq!(word, 9);
        let counters = barriers.counters();
        assert_eq!(counters.ablated_count(BarrierSite::UsedEventStore), 1);
        assert_eq!(counters.site_total(BarrierSite::UsedEventStore), 0);
    }

    #[test]
    fn ablation_is_per_thread() {
        ablation::set_site_ablated(BarrierSite::UsedRead, true);
        let other_thread = std::thread::spawn(|| {
            let mut barriers = SiteBarriers::new(0, BarrierMode::Weak, false);
            barriers.fence(BarrierSite::UsedRead);
            (
                ablation::is_site_ablated(BarrierSite::UsedRead),
                barriers.counters().ablated_count(BarrierSite::UsedRead),
            )
        })
        .join()
        .expect("the other thread does not panic");
        assert!(ablation::is_site_ablated(BarrierSite::UsedRead));
        ablation::restore_all_sites();

        assert_eq!(other_thread, (false, 0));
    }
}
