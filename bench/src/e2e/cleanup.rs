//! What a run leaves behind if it stops early: the process groups of the
//! guests it started and the network namespaces it created, and the Ctrl-C
//! handler that removes both.
//!
//! Each guest's `run.sh` leads its own process group, so the terminal's
//! SIGINT never reaches QEMU; the handler ends those groups itself, deletes
//! the namespaces and exits with status 130 (128 + SIGINT), as a shell does
//! for a program that SIGINT ended.

use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, Once};
use std::thread;
use std::time::Duration;

/// Time between SIGTERM and SIGKILL for the guests' process groups.
const TERMINATE_GRACE: Duration = Duration::from_secs(2);

struct Leftovers {
    process_groups: Vec<i32>,
    namespaces: Vec<String>,
}

static LEFTOVERS: Mutex<Leftovers> = Mutex::new(Leftovers {
    process_groups: Vec::new(),
    namespaces: Vec::new(),
});
static HANDLER: Once = Once::new();

fn leftovers() -> MutexGuard<'static, Leftovers> {
    // Entries are only pushed or removed whole, so a poisoned lock still
    // guards consistent lists.
    LEFTOVERS.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Installs the Ctrl-C handler once per process. Returns the handler
/// library's error message when another handler was installed before.
pub fn install_interrupt_handler() -> Result<(), String> {
    let mut outcome = Ok(());
    HANDLER.call_once(|| {
        outcome = ctrlc::set_handler(|| {
            eprintln!("bench run: interrupted; stopping guests and removing network namespaces");
            remove_all();
            std::process::exit(130);
        })
        .map_err(|error| error.to_string());
    });
    outcome
}

/// Records a guest's process group, which [`remove_all`] ends.
pub fn register_process_group(group: i32) {
    leftovers().process_groups.push(group);
}

/// Forgets a process group that its owner has ended.
pub fn unregister_process_group(group: i32) {
    leftovers().process_groups.retain(|&registered| registered != group);
}

/// Records a network namespace, which [`remove_all`] deletes.
pub fn register_namespace(name: &str) {
    leftovers().namespaces.push(name.to_string());
}

/// Forgets a namespace that its owner has deleted.
pub fn unregister_namespace(name: &str) {
    leftovers().namespaces.retain(|registered| registered != name);
}

/// Ends every registered process group (SIGTERM, then SIGKILL after a
/// grace period) and deletes every registered namespace.
pub fn remove_all() {
    let (groups, namespaces) = {
        let mut leftovers = leftovers();
        (
            std::mem::take(&mut leftovers.process_groups),
            std::mem::take(&mut leftovers.namespaces),
        )
    };
    if !groups.is_empty() {
        for &group in &groups {
            signal_process_group(group, libc::SIGTERM);
        }
        thread::sleep(TERMINATE_GRACE);
        for &group in &groups {
            signal_process_group(group, libc::SIGKILL);
        }
    }
    for namespace in namespaces {
        delete_namespace(&namespace);
    }
}

/// Sends `signal` to process group `group`. A group that no longer exists
/// is not an error.
pub fn signal_process_group(group: i32, signal: i32) {
    if group <= 1 {
        return;
    }
    // SAFETY: killpg only sends a signal. The group ID is positive and
    // above 1, so it names one process group (never "every process").
    unsafe { libc::killpg(group, signal) };
}

/// Runs `ip netns delete NAME`, reporting a failure on stderr.
pub fn delete_namespace(name: &str) {
    let status = Command::new("ip")
        .args(["netns", "delete", name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match status {
        Ok(status) if status.success() => {}
        Ok(status) => eprintln!("bench run: `ip netns delete {name}` failed ({status}); delete it by hand"),
        Err(error) => eprintln!("bench run: cannot run `ip netns delete {name}`: {error}; delete it by hand"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    #[test]
    fn remove_all_ends_registered_groups() {
        let mut child = Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .expect("sleep starts");
        let group = child.id() as i32;
        register_process_group(group);
        remove_all();
        let status = child.wait().expect("sleep is reaped");
        assert!(!status.success(), "sleep ran to its end: {status}");
        assert!(leftovers().process_groups.is_empty());
    }
}
