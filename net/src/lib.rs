//! Networking for the unikernel: smoltcp glue and the services.
//!
//! - [`netperf`]: netperf 2.7's control protocol as a pure codec.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod netperf;
