//! The virtio-net device driver (virtio 1.2 section 5.1 "Network Device").
#![no_std]

extern crate alloc;
#[cfg(test)]
extern crate std;
