//! Host test doubles for the split virtqueue, built with the `testing`
//! feature (which pulls in std) and for this crate's own tests.
//!
//! - [`OffsetDma`]: heap memory whose device addresses differ from pointers
//!   by a fixed offset, with the device-side translation back.
//! - [`DeviceRings`]: the device's half of a split virtqueue (virtio 1.2
//!   section 2.7), written independently of the driver's ring module so that
//!   a layout mistake on one side shows up as a test failure.
//! - [`DeviceModelThread`]: a thread that serves a queue through
//!   [`DeviceRings`] the way a device on another CPU would.
//!
//! NOTE: the device side uses atomics with acquire and release ordering on
//! the idx fields, while the driver side uses volatile accesses and the
//! barrier module, as it must for a real device. Rust's memory model does not
//! define volatile accesses racing with atomic ones, so these tests show
//! behaviour on x86_64 hardware, where both compile to plain loads and stores.

mod device;
mod dma;
mod thread;

pub use device::{DeviceChain, DeviceError, DeviceRings, Segment};
pub use dma::{OffsetDma, TranslationError};
pub use thread::{DeviceModelConfig, DeviceModelThread, DeviceStats, Misbehaviour};
