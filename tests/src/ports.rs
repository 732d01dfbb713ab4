//! Host ports for QEMU's user-mode port forwarding on 127.0.0.1.
//!
//! Each guest gets one run of consecutive ports that were free for both TCP
//! and UDP when probed. Ports handed to a live guest stay reserved in this
//! process, so parallel tests never pick the same ones. Another process can
//! still take a port between the probe and QEMU's bind; `Guest::boot`
//! detects that from QEMU's error and retries with a new run.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::ops::RangeInclusive;
use std::sync::{Mutex, MutexGuard};

use crate::error::GuestError;

/// Ports before the netperf data ports in a run: echo, discard, chargen
/// and the netperf control port.
const SERVICE_PORT_COUNT: u16 = 4;
const MAX_PROBE_ATTEMPTS: u32 = 200;

/// Ports reserved by live guests of this process.
static RESERVED: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// Host ports on 127.0.0.1 that QEMU forwards to the guest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardedPorts {
    /// Forwarded to the echo service, TCP and UDP port 7.
    pub echo: u16,
    /// Forwarded to the discard service, TCP and UDP port 9.
    pub discard: u16,
    /// Forwarded to the chargen service, TCP port 19.
    pub chargen: u16,
    /// Forwarded to the netperf control port, TCP 12865.
    pub netperf_control: u16,
    /// Netperf data ports, forwarded TCP and UDP with the same numbers on
    /// the host and in the guest.
    pub data: RangeInclusive<u16>,
}

impl ForwardedPorts {
    fn all(&self) -> RangeInclusive<u16> {
        self.echo..=*self.data.end()
    }
}

/// Ports reserved for one guest; dropping it releases them.
#[derive(Debug)]
pub(crate) struct PortLease {
    pub(crate) ports: ForwardedPorts,
}

impl Drop for PortLease {
    fn drop(&mut self) {
        let mut reserved = lock_reserved();
        for port in self.ports.all() {
            reserved.remove(&port);
        }
    }
}

fn lock_reserved() -> MutexGuard<'static, BTreeSet<u16>> {
    // The set is only inserted into or removed from, so a poisoned lock
    // still guards a valid set.
    RESERVED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Reserves the service ports and `data_port_count` netperf data ports
/// (at least one, because `run.sh` takes a non-empty range).
///
/// # Errors
/// [`GuestError::NoFreePorts`] when no free run was found.
pub(crate) fn lease_ports(data_port_count: u16) -> Result<PortLease, GuestError> {
    let data_port_count = data_port_count.max(1);
    let count = SERVICE_PORT_COUNT + data_port_count;
    let first = reserve_free_run(count)?;
    let ports = ForwardedPorts {
        echo: first,
        discard: first + 1,
        chargen: first + 2,
        netperf_control: first + 3,
        data: first + SERVICE_PORT_COUNT..=first + count - 1,
    };
    Ok(PortLease { ports })
}

/// Finds `count` consecutive ports, free for TCP and UDP and not reserved,
/// reserves them and returns the first.
fn reserve_free_run(count: u16) -> Result<u16, GuestError> {
    let mut reserved = lock_reserved();
    for _ in 0..MAX_PROBE_ATTEMPTS {
        // The kernel picks an unused ephemeral port; the run starts there.
        let Ok(first) =
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).and_then(|probe| probe.local_addr())
        else {
            continue;
        };
        let first = first.port();
        let Some(last) = first.checked_add(count - 1) else {
            continue;
        };
        if (first..=last).all(|port| !reserved.contains(&port) && is_free(port)) {
            reserved.extend(first..=last);
            return Ok(first);
        }
    }
    Err(GuestError::NoFreePorts {
        count,
        attempts: MAX_PROBE_ATTEMPTS,
    })
}

/// Returns whether both a TCP listener and a UDP socket can bind `port` on
/// 127.0.0.1 now.
pub(crate) fn is_free(port: u16) -> bool {
    tcp_port_is_free(port) && udp_port_is_free(port)
}

/// Returns whether a TCP listener can bind `port` on 127.0.0.1 now. A port
/// with a listener is never free, even though QEMU and the standard library
/// both set `SO_REUSEADDR`.
pub(crate) fn tcp_port_is_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// Returns whether a UDP socket can bind `port` on 127.0.0.1 now.
pub(crate) fn udp_port_is_free(port: u16) -> bool {
    UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_is_consecutive_and_free() {
        let lease = lease_ports(4).unwrap();
        let ports = &lease.ports;
        assert_eq!(ports.discard, ports.echo + 1);
        assert_eq!(ports.chargen, ports.echo + 2);
        assert_eq!(ports.netperf_control, ports.echo + 3);
        assert_eq!(ports.data, ports.echo + 4..=ports.echo + 7);
        for port in ports.all() {
            assert!(is_free(port), "port {port} was leased but is in use");
        }
    }

    #[test]
    fn leases_never_overlap_while_held() {
        let leases: Vec<PortLease> = (0..8).map(|_| lease_ports(2).unwrap()).collect();
        let mut seen = BTreeSet::new();
        for lease in &leases {
            for port in lease.ports.all() {
                assert!(seen.insert(port), "port {port} leased twice");
            }
        }
    }

    #[test]
    fn drop_releases_reservation() {
        let lease = lease_ports(1).unwrap();
        let ports: Vec<u16> = lease.ports.all().collect();
        assert_eq!(ports.len(), 5);
        assert!(ports.iter().all(|port| lock_reserved().contains(port)));
        drop(lease);
        assert!(ports.iter().all(|port| !lock_reserved().contains(port)));
    }

    #[test]
    fn port_in_use_is_not_free() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        assert!(!is_free(listener.local_addr().unwrap().port()));
    }
}
