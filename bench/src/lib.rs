//! Host-side benchmarks of the unikernel's virtio code.
//!
//! Guests run under TCG on the development machines, and TCG does not
//! execute fences the way a CPU does, so hardware-true barrier costs come
//! from running the driver's own split virtqueue on the host, between two
//! pinned cores. The crate is a library of reusable parts plus the `bench`
//! binary:
//!
//! - [`stats`]: percentiles, histograms, bootstrap confidence intervals and a
//!   permutation test.
//! - [`report`] and [`plot`]: CSV and markdown output, SVG plots of labelled
//!   series.
//! - [`tsc`] and [`host`]: serialised time stamp counter reads, the counter
//!   frequency, CPU facts, steal time and thread pinning.
//! - [`ring`]: `bench ring`, the two-core virtqueue ping-pong with per-site
//!   barrier attribution.
//! - [`e2e`]: `bench run`, weak against strong barriers end to end, with
//!   netperf against the unikernel under QEMU.

#[cfg(not(target_arch = "x86_64"))]
compile_error!("the bench crate measures x86_64 barrier instructions and builds only for x86_64");

pub mod e2e;
pub mod host;
pub mod plot;
pub mod report;
pub mod ring;
pub mod stats;
pub mod tsc;
