//! The tap network of `--net tap`: a network namespace owned by the run,
//! holding a tap device with the host's address. QEMU and netperf run in
//! the namespace (`ip netns exec`), so no traffic leaves it, and deleting
//! the namespace removes the tap device too.
//!
//! ```text
//!  namespace vbench-PID:
//!    netperf ──> vbtap0 (10.213.0.1/24) ──> QEMU tap netdev ──> guest 10.213.0.2
//! ```

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use super::cleanup;
use super::E2eError;

/// Name of the tap device inside the namespace.
const TAP_NAME: &str = "vbtap0";
/// The host's address on the tap device.
const HOST_ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 213, 0, 1);
/// The guest's address, given on its command line.
const GUEST_ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 213, 0, 2);
const PREFIX_LENGTH: u8 = 24;

/// A network namespace with a tap device; dropping it deletes both.
#[derive(Debug)]
pub struct TapNetwork {
    namespace: String,
}

impl TapNetwork {
    /// Creates namespace `vbench-PID` with the tap device up and addressed.
    ///
    /// # Errors
    /// [`E2eError::TapNeedsRoot`] when not running as root, and
    /// [`E2eError::TapSetup`] naming the `ip` command that failed; a
    /// half-built namespace is deleted first.
    pub fn create() -> Result<TapNetwork, E2eError> {
        // SAFETY: geteuid only reads the process's effective user ID.
        if unsafe { libc::geteuid() } != 0 {
            return Err(E2eError::TapNeedsRoot);
        }
        let namespace = format!("vbench-{}", std::process::id());
        run_ip(&["netns", "add", &namespace])?;
        cleanup::register_namespace(&namespace);
        let network = TapNetwork { namespace };

        let host_address = format!("{HOST_ADDRESS}/{PREFIX_LENGTH}");
        let steps: [&[&str]; 4] = [
            &["link", "set", "lo", "up"],
            &["tuntap", "add", "dev", TAP_NAME, "mode", "tap"],
            &["address", "add", &host_address, "dev", TAP_NAME],
            &["link", "set", TAP_NAME, "up"],
        ];
        for step in steps {
            let mut arguments = vec!["netns", "exec", &network.namespace, "ip"];
            arguments.extend_from_slice(step);
            // On error, dropping `network` deletes the namespace.
            run_ip(&arguments)?;
        }
        Ok(network)
    }

    /// Returns the namespace's name.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Returns the command prefix that runs a program inside the namespace.
    pub fn command_prefix(&self) -> Vec<String> {
        ["ip", "netns", "exec", &self.namespace].map(str::to_string).to_vec()
    }

    /// QEMU arguments that attach the guest's virtio-net device to the tap
    /// device, for `run.sh --no-nic -- ARGS`.
    pub fn qemu_arguments(&self) -> Vec<String> {
        vec![
            "-netdev".into(),
            format!("tap,id=net0,ifname={TAP_NAME},script=no,downscript=no"),
            "-device".into(),
            "virtio-net-pci,netdev=net0".into(),
        ]
    }

    /// Kernel command-line options that give the guest its address.
    pub fn kernel_options(&self) -> String {
        format!("ip={GUEST_ADDRESS}/{PREFIX_LENGTH} gw={HOST_ADDRESS}")
    }

    /// Returns the guest's address, which netperf targets.
    pub fn guest_address(&self) -> Ipv4Addr {
        GUEST_ADDRESS
    }
}

impl Drop for TapNetwork {
    fn drop(&mut self) {
        cleanup::delete_namespace(&self.namespace);
        cleanup::unregister_namespace(&self.namespace);
    }
}

fn run_ip(arguments: &[&str]) -> Result<(), E2eError> {
    let command = format!("ip {}", arguments.join(" "));
    let output = Command::new("ip")
        .args(arguments)
        .stdin(Stdio::null())
        .output()
        .map_err(|error| E2eError::TapSetup {
            command: command.clone(),
            message: error.to_string(),
        })?;
    if output.status.success() {
        return Ok(());
    }
    Err(E2eError::TapSetup {
        command,
        message: String::from_utf8_lossy(&output.stderr).trim().to_string(),
    })
}
